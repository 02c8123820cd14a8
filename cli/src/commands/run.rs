//! `rbuild run`: a throwaway container from an image, as a graph of two vertices: the
//! image source (pulled first when it is not local) and the run action on it (see
//! `rbuild_solver::ops::run`). Nothing is left behind but the exit code.

use crate::flags::hiargs::{Global, PullPolicy, Run};
use crate::shared::oneshot::{self, Show, Source};
use crate::shared::{exit, progress, runtime, store};
use anyhow::{Context, Result, anyhow, bail};
use rbuild_graph::actions;
use rbuild_graph::{BuildGraph, RunOp};
use rbuild_solver::{SolveError, SolveOptions};
use std::process::ExitCode;

/// Runs the container; rbuild exits with its status.
pub fn run(global: &Global, run: &Run) -> Result<ExitCode> {
    if run.tty && !run.stdin {
        eprintln!("note: -t is accepted but no pseudo-terminal is allocated");
    } else if run.tty {
        eprintln!(
            "note: -t is accepted but no pseudo-terminal is allocated; stdin is passed as is (-i)"
        );
    }
    let store = store::open(&global.root)?;
    let runtime = runtime::start(Some(1))?;
    let local = store.image(&run.image)?.is_some();
    match (local, run.pull) {
        (false, PullPolicy::Never) => bail!(
            "no image {:?} in {} (and --pull=never)",
            run.image,
            store.root().display()
        ),
        (false, _) => eprintln!("Unable to find image '{}' locally", run.image),
        _ => {}
    }
    let mut graph = BuildGraph::new();
    let source = Source {
        runtime: &runtime,
        store: &store,
        registry: (run.pull != PullPolicy::Never).then_some(global.insecure_registries.as_slice()),
        always: run.pull == PullPolicy::Always,
        platform: run.platform.clone(),
    };
    let not_found = || {
        format!(
            "no image {:?} in {} and pulling it failed; build it with `rbuild build -t` or import it with `rbuild load -i`",
            run.image,
            store.root().display()
        )
    };
    let (image, client) = oneshot::image_vertex(&mut graph, &source, &run.image)
        .with_context(not_found)?
        .ok_or_else(|| anyhow!(not_found()))?;
    let container = actions::add_run(
        &mut graph,
        image,
        RunOp {
            command: run.command.clone(),
            entrypoint: run.entrypoint.clone(),
            env: run.env.clone(),
            user: run.user.clone(),
            workdir: run.workdir.clone(),
            network: run.network,
            stdin: run.stdin,
            name: run.image.clone(),
        },
    );
    // Only a pull shows progress; the container prints on its own.
    let pulling = !local || run.pull == PullPolicy::Always;
    let show = Show {
        progress: progress::Mode::Plain,
        hidden: if pulling {
            vec![container]
        } else {
            vec![image, container]
        },
        cached: false,
    };
    let solved = oneshot::solve(
        &runtime,
        &store,
        graph,
        &[container],
        SolveOptions::default(),
        client,
        show,
    );
    match solved {
        Ok(outcomes) => Ok(exit::exit_code(
            outcomes.get(&container).and_then(|o| o.exit_code),
        )),
        Err(SolveError::Cancelled) => Ok(exit::exit_code(Some(exit::INTERRUPTED))),
        Err(e) => Err(anyhow!("{e}")),
    }
}
