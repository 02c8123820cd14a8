//! The run action: a throwaway container of input 0's image. The rootfs is an overlay over
//! the image's snapshots with a temporary upper dir, mounted only inside the container's
//! mount namespace and removed when the command exits, so a run leaves nothing behind but
//! its exit status. The process gets rbuild's own stdin (when asked), stdout and stderr.

use super::rootfs::{copy_rootfs, mount_lowers, step_dirs};
use crate::error::{SolveError, StepFailure};
use crate::op::{SolveOp, StepContext, Work};
use crate::outcome::Outcome;
use rbuild_executor::{CancelToken, CgroupOptions, ExecError, Network, RunSpec, Security, Stream};
use rbuild_graph::image::ImageConfig;
use rbuild_graph::{NetworkMode, RunOp};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The argv a container starts with: ENTRYPOINT + (the given command, or CMD). An
/// `--entrypoint` replaces the image's and drops its CMD (docker's rule).
pub fn container_args(
    config: &ImageConfig,
    entrypoint: Option<&str>,
    command: &[String],
) -> Vec<String> {
    let mut args = match entrypoint {
        None => config.config.entrypoint.clone().unwrap_or_default(),
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
    };
    if command.is_empty() && entrypoint.is_none() {
        args.extend(config.config.cmd.clone().unwrap_or_default());
    } else {
        args.extend(command.iter().cloned());
    }
    args
}

/// Image env with `K=V` overrides applied.
pub fn container_env(config: &ImageConfig, overrides: &[String]) -> Vec<String> {
    let mut c = config.config.clone();
    for e in overrides {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        c.env_set(k, v);
    }
    c.env
}

/// 127 when the command does not exist, 126 when it cannot be executed (docker's codes).
pub fn exec_failure_code(message: &str) -> i32 {
    if message.contains("not found") || message.contains("No such file") {
        127
    } else {
        126
    }
}

/// Runs a throwaway container of input 0's image; its exit status is the outcome.
pub struct RunAction {
    op: RunOp,
}

impl RunAction {
    pub(crate) fn new(op: &RunOp) -> Self {
        RunAction { op: op.clone() }
    }
}

impl SolveOp for RunAction {
    fn cacheable(&self) -> bool {
        false
    }

    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        Work::blocking(move || run_container(&self.op, &step))
    }
}

/// Runs the container and returns its exit status (128+signal when killed; 130 when
/// cancelled; 141 when the reader of its stdout went away, as SIGPIPE would end it).
fn run_container(op: &RunOp, step: &StepContext) -> Result<Outcome, SolveError> {
    let input = step.input(0);
    let config = input
        .config
        .as_ref()
        .ok_or_else(|| step.fail(StepFailure::NotAnImage { action: "run" }))?;
    let argv = container_args(config, op.entrypoint.as_deref(), &op.command);
    if argv.is_empty() {
        return Err(step.fail(StepFailure::NoCommand {
            name: op.name.clone(),
        }));
    }
    // The upper dir lives in the store's tmp/ and goes when `scratch` drops (or at the
    // next store open, if rbuild itself is killed).
    let (scratch, upper, work) = step_dirs(step, "run")?;
    // Chroot isolation mounts nothing: the container is a plain copy of the image.
    let chroot = rbuild_executor::chroot_isolation();
    let copy_root = scratch.path().join("rootfs");
    let lowerdirs = if chroot {
        copy_rootfs(
            step,
            &input.layers,
            &scratch.path().join("base"),
            &copy_root,
        )?;
        Vec::new()
    } else {
        mount_lowers(step, &input.layers)?
    };
    let spec = RunSpec {
        lowerdirs,
        upperdir: upper,
        workdir: work,
        args: argv,
        env: container_env(config, &op.env),
        cwd: op
            .workdir
            .clone()
            .unwrap_or_else(|| match config.config.working_dir.as_str() {
                "" => "/".to_string(),
                w => w.to_string(),
            }),
        user: op
            .user
            .clone()
            .unwrap_or_else(|| config.config.user.clone()),
        network: match op.network {
            NetworkMode::Host => Network::Host,
            NetworkMode::None => Network::None,
        },
        hostname: "rbuild".into(),
        mounts: vec![],
        secret_env: Vec::new(),
        stdin: op.stdin,
        security: Security::default(),
        rlimits: Vec::new(),
        cgroup: CgroupOptions::default(),
        extra_hosts: Vec::new(),
        shm_size: None,
        // The image's own platform: a foreign image runs through its emulator.
        platform: (!config.architecture.is_empty()).then(|| {
            let mut p = format!("{}/{}", config.os, config.architecture);
            if let Some(v) = config.variant.as_deref().filter(|v| !v.is_empty()) {
                p = format!("{p}/{v}");
            }
            p
        }),
    };
    // Our own token: a reader that went away ends this container without cancelling the
    // solve; the solve's token is forwarded to it.
    let local = CancelToken::new();
    let finished = Arc::new(AtomicBool::new(false));
    let forward = {
        let (parent, child, finished) = (step.cancel.clone(), local.clone(), finished.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                if parent.is_cancelled() {
                    child.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut broken_pipe = false;
    let mut print = |stream, data: &[u8]| {
        // Flushed at once: a prompt without a newline must show before the process waits.
        let written = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data).and_then(|_| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
        if written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            broken_pipe = true;
            local.cancel();
        }
    };
    let result = if chroot {
        rbuild_executor::run_in_dir(&copy_root, &spec, &local, &mut print)
    } else {
        rbuild_executor::run(&spec, &local, &mut print)
    };
    finished.store(true, Ordering::SeqCst);
    let _ = forward.join();
    drop(scratch);
    let code = match result {
        Ok(exit) => exit.code,
        Err(ExecError::Cancelled) if broken_pipe => 128 + nix::sys::signal::Signal::SIGPIPE as i32,
        Err(ExecError::Cancelled) => 130,
        Err(e @ ExecError::Exec { .. }) => {
            eprintln!("error: {e}");
            exec_failure_code(&e.to_string())
        }
        Err(source) => {
            return Err(step.fail(StepFailure::Run {
                name: op.name.clone(),
                source,
            }));
        }
    };
    Ok(Outcome {
        exit_code: Some(code),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_replaces_cmd_but_not_entrypoint() {
        let mut c = ImageConfig::default();
        c.config.entrypoint = Some(vec!["/bin/app".into()]);
        c.config.cmd = Some(vec!["serve".into()]);
        assert_eq!(container_args(&c, None, &[]), ["/bin/app", "serve"]);
        assert_eq!(
            container_args(&c, None, &["health".into()]),
            ["/bin/app", "health"]
        );
        // --entrypoint drops CMD; "" drops the entrypoint too.
        assert_eq!(container_args(&c, Some("/bin/sh"), &[]), ["/bin/sh"]);
        assert_eq!(
            container_args(&c, Some("/bin/sh"), &["-c".into(), "x".into()]),
            ["/bin/sh", "-c", "x"]
        );
        assert!(container_args(&c, Some(""), &[]).is_empty());
        assert_eq!(container_args(&c, Some(""), &["ls".into()]), ["ls"]);
        c.config.env = vec!["A=1".into()];
        assert_eq!(
            container_env(&c, &["A=2".into(), "B=3".into(), "C=".into()]),
            ["A=2", "B=3", "C="]
        );
    }

    #[test]
    fn exec_failures_map_to_dockers_codes() {
        assert_eq!(
            exec_failure_code("exec \"x\": executable file not found in $PATH"),
            127
        );
        assert_eq!(
            exec_failure_code("exec \"/etc\": Permission denied (os error 13)"),
            126
        );
    }
}
