//! `rbuild build`: read the inputs, lower the Dockerfile (resolving base images), add the
//! actions the build ends with (export, push, run), load the last build's record
//! (`history`), solve it all at once, save this build's record, export the cache, then
//! write the outputs and `--metadata-file`; the build checks' findings are listed at the
//! end (`checks`). One module per step; this one runs them in order. `--call` (`call`)
//! and `--dry-run` (`dry_run`) stop after lowering and print instead.

mod actions;
mod attestations;
mod cache;
mod call;
mod checks;
mod contexts;
mod dry_run;
mod gc;
mod history;
mod inputs;
mod lower;
mod metadata;
mod outputs;
mod platforms;
mod remote;
mod solve;

use crate::flags::hiargs::{Build, Global};
use crate::shared::{exit, registry, runtime, store};
use anyhow::Result;
use rbuild_cache::registry::RegistryClient;
use solve::Ended;
use std::process::ExitCode;

/// Runs the build; the exit code is that of the `--run` container when there is one.
pub fn build(global: &Global, build: &Build) -> Result<ExitCode> {
    let insecure = &global.insecure_registries;
    let mut inputs = inputs::read(build)?;
    if let Some(call) = build.call {
        return call::run(global, build, &inputs, call);
    }
    if let Some(format) = build.dry_run {
        dry_run::run(global, build, &inputs, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    platforms::check(build)?;
    // Secrets and agents first: a wrong path fails before anything is resolved.
    let mut opts = solve::options(build, &inputs);
    solve::add_secrets(&mut opts, build)?;
    let store = store::open(&global.root)?;
    let policy = gc::policy(&store)?;
    inputs.contexts.import(&store)?;
    let runtime = runtime::start(None)?;
    let mut lowered = lower::lower(build, &inputs, Some(&store), Some((&runtime, insecure)))?;
    let findings = std::mem::take(&mut lowered.targets.lint);
    checks::enforce(&findings)?;
    let result = run(global, build, &inputs, &store, &runtime, lowered, opts);
    checks::print_summary(&findings, build.progress);
    checks::warn_unused_args(&inputs.source, &build.build_args, build.progress);
    if result.is_ok() {
        gc::apply(&store, &policy, build.progress);
    }
    result
}

/// The build from the lowered graph on: actions, solve, cache export, outputs.
fn run(
    global: &Global,
    build: &Build,
    inputs: &inputs::Inputs,
    store: &rbuild_cache::Store,
    runtime: &tokio::runtime::Runtime,
    lowered: lower::Lowered,
    mut opts: rbuild_solver::SolveOptions,
) -> Result<ExitCode> {
    let insecure = &global.insecure_registries;
    let started = chrono::Utc::now();
    let plan = actions::add(lowered.targets, build)?;
    opts.no_cache_vertices =
        solve::no_cache_vertices(&plan.graph, &build.no_cache_filter, build.quiet);
    let client = registry_client(lowered.client, build, insecure)?;
    opts.registry = client.clone();
    opts.imported = cache::import_for(build, runtime, client.as_ref());
    opts.history = history::load(build, inputs, store, &plan, opts.imported.as_deref());

    let solver = solve::solver(store, &global.root, build.quiet);
    let solved = solve::solve(runtime, &solver, &plan, &opts, build.progress, inputs);
    // Saved even when a step failed: the steps that ran are the next build's baseline.
    history::save(opts.history.as_deref(), store, build.quiet);
    let outcomes = match solved? {
        Ended::Solved(outcomes) => outcomes,
        Ended::Interrupted => return Ok(exit::exit_code(Some(exit::INTERRUPTED))),
    };

    let built = outputs::built_images(store, &plan.exports, &outcomes)?;
    let indexes = match platforms::several(build) {
        true => {
            let times = attestations::Times::new(build, started);
            platforms::make_indexes(store, build, &built, &plan.graph, &times)?
        }
        false => Vec::new(),
    };
    if let (Some(path), Some(image)) = (&build.metadata_file, built.last()) {
        let tags = build.target_tags.last().cloned().unwrap_or_default();
        let index = indexes.last().map(|i| i.digest.as_str());
        let history = opts.history.as_deref();
        metadata::write(path, image, index, &tags, &plan.graph, history)?;
    }
    if let Some(client) = &client {
        let solved = cache::Built {
            runtime,
            client,
            solver: &solver,
            opts: &opts,
            graph: &plan.graph,
            outcomes: &outcomes,
            roots: &plan.last_roots,
        };
        cache::export_for(build, store, &solved)?;
    }
    if platforms::several(build) {
        if build.push {
            let client = client
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--push needs a registry client"))?;
            platforms::push(runtime, client, store, build, &indexes)?;
        }
        platforms::finish(store, build, &built, &indexes)?;
    } else {
        outputs::finish(store, build, built)?;
    }
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
