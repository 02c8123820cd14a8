//! `rbuild build`: read the inputs, lower the Dockerfile (resolving base images), add the
//! actions the build ends with (export, push, run), solve it all at once, export the
//! cache, then write the outputs. One module per step; this one runs them in order.

mod actions;
mod cache;
mod dry_run;
mod inputs;
mod lower;
mod outputs;
mod solve;

use crate::flags::hiargs::{Build, Global};
use crate::shared::{exit, registry, runtime, store};
use anyhow::{Result, bail};
use rbuild_cache::Store;
use rbuild_cache::registry::RegistryClient;
use rbuild_solver::{SolveError, Solver};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the build; the exit code is that of the `--run` container when there is one.
pub fn build(global: &Global, build: &Build) -> Result<ExitCode> {
    let insecure = &global.insecure_registries;
    let inputs = inputs::read(build)?;
    if let Some(format) = build.dry_run {
        dry_run::run(global, build, &inputs, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = store::open(&global.root)?;
    let runtime = runtime::start(None)?;
    let lowered = lower::lower(build, &inputs, Some(&store), Some((&runtime, insecure)))?;
    let plan = actions::add(lowered.targets, build)?;
    let mut opts = solve::options(build, &inputs);
    let client = registry_client(lowered.client, build, insecure)?;
    opts.registry = client.clone();
    if let Some(client) = &client
        && !build.cache.from.is_empty()
        && !build.no_cache
    {
        opts.imported = cache::import(&runtime, client, &build.cache.from, &mut |w| {
            eprintln!("{w}")
        });
    }

    let graph = Arc::new(plan.graph);
    let solver = Solver::new(store.clone());
    if solver.uses_copying_snapshotter() && !build.quiet {
        eprintln!(
            "note: overlayfs cannot be used under {} (is it on overlayfs itself?); using the slower copying snapshotter",
            global.root.display()
        );
    }
    let solved = solve::solve(
        &runtime,
        &solver,
        &graph,
        &plan.roots,
        &opts,
        build.progress,
    );
    let outcomes = match solved {
        Ok(o) => o,
        // Ctrl-C while the container of --run runs: its status, as `docker run` gives it.
        Err(SolveError::Cancelled) if plan.run.is_some() => {
            return Ok(exit::exit_code(Some(exit::INTERRUPTED)));
        }
        Err(e) => bail!(
            "{}",
            solve::explain_failure(&e, &inputs.dockerfile_name, &inputs.source)
        ),
    };

    let built = outputs::built_images(&store, &plan.exports, &outcomes)?;
    if let Some(client) = &client {
        let solved = cache::Built {
            runtime: &runtime,
            client,
            solver: &solver,
            opts: &opts,
            graph: &graph,
            outcomes: &outcomes,
            root: plan.last_root,
        };
        export_cache(&store, &solved, build)?;
    }
    outputs::finish(&store, build, built)?;
    match plan.run {
        Some(v) => Ok(exit::exit_code(outcomes.get(&v).and_then(|o| o.exit_code))),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// One client for pulls, pushes and the cache: the one resolving a base image made, or a
/// new one only when the build pushes or moves cache.
fn registry_client(
    resolver: Option<RegistryClient>,
    build: &Build,
    insecure: &[String],
) -> Result<Option<RegistryClient>> {
    let needed = build.push || !build.cache.to.is_empty() || !build.cache.from.is_empty();
    Ok(match resolver {
        Some(c) => Some(c),
        None if needed => Some(registry::client(insecure)?),
        None => None,
    })
}

/// Step 5: the `--cache-to` exports, then what the import brought in, noted unless `-q`.
/// Outcomes are remembered for cache records imported lazily.
fn export_cache(store: &Store, solved: &cache::Built, build: &Build) -> Result<()> {
    if build.cache.to.is_empty() && build.cache.from.is_empty() {
        return Ok(());
    }
    cache::export(store, solved, &build.cache.to, &mut |n| {
        if !build.quiet {
            eprintln!("{n}")
        }
    })?;
    solved.solver.remember_outcomes(solved.outcomes)?;
    if let Some(imported) = &solved.opts.imported
        && !build.quiet
    {
        eprintln!("{}", cache::import_summary(imported));
    }
    Ok(())
}
