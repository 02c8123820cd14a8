//! `rbuild run`: a throwaway container from an image, as a graph of two vertices: the
//! image source (pulled first when it is not local) and the run action on it (see
//! `rbuild_solver::ops::run`). Nothing is left behind but the exit code.

use crate::args::{Progress, RunArgs};
use crate::oneshot::{self, Show, Source};
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_executor::CancelToken;
use rbuild_graph::actions;
use rbuild_graph::{BuildGraph, NetworkMode, RunOp};
use rbuild_solver::{SolveError, SolveOptions};
use std::path::Path;
use std::process::ExitCode;

/// `-e` entries as `K=V`: `K` alone takes rbuild's own value, or is left out when unset.
pub fn resolve_env(overrides: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in overrides {
        if e.is_empty() || e.starts_with('=') {
            bail!("-e {e:?}: the variable name is empty; write -e NAME=VALUE");
        }
        if e.contains('=') {
            out.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            out.push(format!("{e}={v}"));
        }
    }
    Ok(out)
}

/// `--network` as a run knows it.
pub fn parse_network(value: Option<&str>) -> Result<NetworkMode> {
    match value {
        None | Some("host") | Some("default") => Ok(NetworkMode::Host),
        Some("none") => Ok(NetworkMode::None),
        Some(other) => bail!("--network={other}: rbuild supports host and none"),
    }
}

/// A container's status (0-255, 128+signal when killed) as rbuild's exit
/// code; anything else cannot come from a process and reads as a failure.
pub fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(exit_byte(code))
}

/// Ctrl-C or SIGTERM cancels `cancel` (the container is killed, then rbuild
/// exits with its status). The listeners live on `runtime`'s threads.
pub fn cancel_on_signals(runtime: &tokio::runtime::Runtime, cancel: &CancelToken) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before returning, so a signal that comes at once is not lost.
    let _in_runtime = runtime.enter();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let c = cancel.clone();
    runtime.spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        c.cancel();
    });
}

/// `--pull`: when an image is fetched from its registry (docker's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PullPolicy {
    /// Only when it is not in the local store.
    #[default]
    Missing,
    Always,
    Never,
}

pub fn run(root: &Path, insecure: &[String], args: RunArgs) -> Result<ExitCode> {
    if args.tty && !args.interactive {
        eprintln!("note: -t is accepted but no pseudo-terminal is allocated");
    } else if args.tty {
        eprintln!(
            "note: -t is accepted but no pseudo-terminal is allocated; stdin is passed as is (-i)"
        );
    }
    let env = resolve_env(&args.env)?;
    let network = parse_network(Some(&args.network))?;
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = store.image(&args.image)?.is_some();
    match (local, args.pull) {
        (false, PullPolicy::Never) => bail!(
            "no image {:?} in {} (and --pull=never)",
            args.image,
            store.root().display()
        ),
        (false, _) => eprintln!("Unable to find image '{}' locally", args.image),
        _ => {}
    }
    let mut graph = BuildGraph::new();
    let source = Source {
        runtime: &runtime,
        store: &store,
        registry: (args.pull != PullPolicy::Never).then_some(insecure),
        always: args.pull == PullPolicy::Always,
    };
    let not_found = || {
        format!(
            "no image {:?} in {} and pulling it failed; build it with `rbuild build -t` or import it with `rbuild load -i`",
            args.image,
            store.root().display()
        )
    };
    let (image, client) = oneshot::image_vertex(&mut graph, &source, &args.image)
        .with_context(not_found)?
        .ok_or_else(|| anyhow!(not_found()))?;
    let run = actions::add_run(
        &mut graph,
        image,
        RunOp {
            command: args.command.clone(),
            entrypoint: args.entrypoint.clone(),
            env,
            user: args.user.clone(),
            workdir: args.workdir.clone(),
            network,
            stdin: args.interactive,
            name: args.image.clone(),
        },
    );
    // Only a pull shows progress; the container prints on its own.
    let pulling = !local || args.pull == PullPolicy::Always;
    let show = Show {
        progress: Progress::Plain,
        hidden: if pulling { vec![run] } else { vec![image, run] },
        cached: false,
    };
    let outcomes = match oneshot::solve(
        &runtime,
        &store,
        graph,
        &[run],
        SolveOptions::default(),
        client,
        show,
    ) {
        Ok(o) => o,
        Err(SolveError::Cancelled) => return Ok(exit_code(130)),
        Err(e) => return Err(anyhow!("{e}")),
    };
    let code = outcomes.get(&run).and_then(|o| o.exit_code).unwrap_or(255);
    Ok(exit_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_and_networks() {
        // SAFETY: single-threaded test setting a variable only it reads.
        unsafe { std::env::set_var("RBUILD_RUN_TEST_VAR", "v") };
        assert_eq!(
            resolve_env(&[
                "A=1".into(),
                "C=".into(),
                "RBUILD_RUN_TEST_VAR".into(),
                "RBUILD_UNSET_Q".into()
            ])
            .unwrap(),
            ["A=1", "C=", "RBUILD_RUN_TEST_VAR=v"]
        );
        assert!(resolve_env(&["=x".into()]).is_err());
        assert!(resolve_env(&["".into()]).is_err());
        assert_eq!(parse_network(None).unwrap(), NetworkMode::Host);
        assert_eq!(parse_network(Some("none")).unwrap(), NetworkMode::None);
        assert!(parse_network(Some("bridge")).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_byte(42), 42);
        assert_eq!(exit_byte(137), 137);
        assert_eq!(exit_byte(300), 255);
        assert_eq!(exit_byte(-1), 255);
    }
}
