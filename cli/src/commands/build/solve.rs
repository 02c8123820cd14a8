//! Step 4 of a build: one solve of every root, its events printed as they come, Ctrl-C
//! cancelling it; a failure shown with the Dockerfile lines it came from.

use super::actions::Plan;
use super::inputs::Inputs;
use crate::flags::hiargs::Build;
use crate::shared::progress::{self, Printer};
use anyhow::{Result, bail};
use rbuild_cache::Store;
use rbuild_graph::{BuildGraph, Op, VertexId};
use rbuild_solver::secrets::Secrets;
use rbuild_solver::ssh::SshAgents;
use rbuild_solver::{Outcome, SolveError, SolveOptions, Solver};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// How a solve ended, when it did not fail.
pub enum Ended {
    /// Every root reached: what each vertex produced.
    Solved(HashMap<VertexId, Outcome>),
    /// Ctrl-C while the `--run` container ran.
    Interrupted,
}

/// The solve's options before the registry, the imported cache, the secrets and the
/// SSH agents are known.
pub fn options(build: &Build, inputs: &Inputs) -> SolveOptions {
    SolveOptions {
        no_cache: build.no_cache,
        context_dir: Some(inputs.context.clone()),
        named_dirs: inputs.contexts.dirs.clone(),
        cancel: rbuild_executor::CancelToken::new(),
        allow_insecure: build.allow_insecure,
        max_parallelism: build.max_parallelism,
        epoch: build.epoch,
        ..Default::default()
    }
}

/// Adds the build's `--secret` and `--ssh` inputs to `opts`: the secrets' sources
/// checked (values are read when a step mounts them) and the SSH agents set up (one
/// started for key files stops when the options drop). Runs on the main thread, which
/// an agent's parent-death signal is tied to.
pub fn add_secrets(opts: &mut SolveOptions, build: &Build) -> Result<()> {
    let secrets = Secrets::resolve(&build.secrets, |name| std::env::var_os(name).is_some())?;
    let ssh = SshAgents::start(&build.ssh, std::env::var_os("SSH_AUTH_SOCK"))?;
    opts.secrets = Arc::new(secrets);
    opts.ssh = Arc::new(ssh);
    Ok(())
}

/// `--no-cache-filter`: the RUN steps of the named stages (case-insensitive, as BuildKit
/// matches them), and every step built on one of them, so that no cached result made on
/// top of an older run of theirs is used. A name no step of the build is in gets a
/// warning (unless `quiet`): the stage may exist without being needed.
pub fn no_cache_vertices(graph: &BuildGraph, stages: &[String], quiet: bool) -> HashSet<VertexId> {
    let mut out = HashSet::new();
    if stages.is_empty() {
        return out;
    }
    let mut matched = vec![false; stages.len()];
    // Vertices are added after their inputs: one pass in id order sees inputs first.
    for (id, v) in graph.iter() {
        let named = v
            .meta
            .stage
            .as_deref()
            .and_then(|s| stages.iter().position(|n| n.eq_ignore_ascii_case(s)));
        if let Some(i) = named {
            matched[i] = true;
        }
        let filtered = named.is_some() && matches!(v.op, Op::Exec(_));
        if filtered || v.inputs.iter().any(|i| out.contains(i)) {
            out.insert(id);
        }
    }
    if !quiet {
        for (name, _) in stages.iter().zip(&matched).filter(|(_, m)| !**m) {
            eprintln!(
                "WARNING: --no-cache-filter {name}: no step of this build is in a stage of that name"
            );
        }
    }
    out
}

/// The solver on `store` (under `root`), saying once, unless `quiet`, when it has to use
/// the copying snapshotter.
pub fn solver(store: &Store, root: &Path, quiet: bool) -> Solver {
    let solver = Solver::new(store.clone());
    if solver.uses_copying_snapshotter() && !quiet && !rbuild_executor::chroot_isolation() {
        eprintln!(
            "note: overlayfs cannot be used under {} (is it on overlayfs itself?); using the slower copying snapshotter",
            root.display()
        );
    }
    solver
}

/// Solves every root of `plan`, printing progress in `mode`. A failed step is explained
/// with the lines of the Dockerfile in `inputs` it came from.
pub fn solve(
    runtime: &Runtime,
    solver: &Solver,
    plan: &Plan,
    opts: &SolveOptions,
    mode: progress::Mode,
    inputs: &Inputs,
) -> Result<Ended> {
    match solve_roots(runtime, solver, plan, opts, mode) {
        Ok(outcomes) => Ok(Ended::Solved(outcomes)),
        // Ctrl-C while the container of --run runs: its status, as `docker run` gives it.
        Err(SolveError::Cancelled) if plan.run.is_some() => Ok(Ended::Interrupted),
        Err(e) => bail!(
            "{}",
            explain_failure(&e, &inputs.dockerfile_name, &inputs.source)
        ),
    }
}

fn solve_roots(
    runtime: &Runtime,
    solver: &Solver,
    plan: &Plan,
    opts: &SolveOptions,
    mode: progress::Mode,
) -> Result<HashMap<VertexId, Outcome>, SolveError> {
    let graph = &plan.graph;
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = Printer::new(mode, graph.clone());
        let printing = tokio::spawn(printer.consume(rx));
        let cancel = opts.cancel.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        });
        let solved = solver.solve(graph.clone(), &plan.roots, opts, tx).await;
        ctrl_c.abort();
        let _ = printing.await;
        solved
    })
}

/// A failed step as BuildKit shows it: its last output, then the Dockerfile
/// lines it came from (marked `>>>`), then the error naming file and line.
pub fn explain_failure(err: &SolveError, dockerfile: &str, source: &str) -> String {
    let (lines, output): (Option<(usize, usize)>, &[String]) = match err {
        SolveError::RunFailed {
            lines, last_output, ..
        } => (*lines, last_output),
        SolveError::MissingContextFile { lines, .. } | SolveError::Step { lines, .. } => {
            (*lines, &[])
        }
        _ => (None, &[]),
    };
    let mut out = String::new();
    if !output.is_empty() {
        out.push_str("------ last output:\n");
        for l in output {
            out.push_str(&format!("  {l}\n"));
        }
        out.push_str("------\n");
    }
    let Some((start, end)) = lines else {
        return format!("{out}{err}");
    };
    out.push_str(&format!("{dockerfile}:{start}\n"));
    let text: Vec<&str> = source.lines().collect();
    let from = start.saturating_sub(3).max(1);
    for n in from..=end.min(text.len()) {
        let mark = if n >= start { ">>>" } else { "   " };
        out.push_str(&format!("  {n:>4} | {mark} {}\n", text[n - 1]));
    }
    out.push_str(&format!("{dockerfile}:{start}: {err}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_show_output_and_the_dockerfile_lines() {
        let err = SolveError::RunFailed {
            vertex: VertexId(3),
            description: "[2/2] RUN false".into(),
            lines: Some((2, 2)),
            exit_code: 1,
            last_output: vec!["oops".into()],
            note: None,
        };
        let text = explain_failure(&err, "ctx/Dockerfile", "FROM scratch\nRUN false\n");
        assert!(text.contains("  oops\n"), "{text}");
        assert!(text.contains("     2 | >>> RUN false"), "{text}");
        assert!(text.ends_with("ctx/Dockerfile:2: [2/2] RUN false: process did not complete successfully: exit code: 1"), "{text}");
    }
}
