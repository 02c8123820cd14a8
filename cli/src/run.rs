//! `rbuild run` and `rbuild build --run`: a throwaway container from an image.
//! The rootfs is an overlay over the image's snapshots with a temporary upper
//! dir, mounted only inside the container's mount namespace and removed when
//! the command exits, so a run leaves nothing behind but the exit code.
//! An image that is not in the store is pulled first.

use crate::args::RunArgs;
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::{Store, StoredImage};
use rbuild_executor::{CancelToken, Network, RunSpec, Stream};
use rbuild_solver::image::ImageConfig;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// How a container is started, on top of what the image config says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `-e K=V` (or `-e K`, copied from rbuild's environment when set).
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// `host` (the default) or `none`.
    pub network: Option<String>,
    /// Feed rbuild's stdin to the process (`-i`); otherwise it reads /dev/null.
    pub stdin: bool,
    /// Replaces the image's CMD (not its ENTRYPOINT) when not empty.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's ENTRYPOINT and drops its CMD
    /// (docker's rule); `""` means none.
    pub entrypoint: Option<String>,
}

impl RunOptions {
    pub fn from_args(args: &RunArgs) -> RunOptions {
        RunOptions {
            env: args.env.clone(),
            user: args.user.clone(),
            workdir: args.workdir.clone(),
            network: Some(args.network.clone()),
            stdin: args.interactive,
            command: args.command.clone(),
            entrypoint: args.entrypoint.clone(),
        }
    }
}

/// The argv a container starts with: ENTRYPOINT + (the given command, or
/// CMD). An `--entrypoint` replaces the image's and drops its CMD.
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

/// Image env with `-e` entries applied (`K=V`, or `K` copied from our environment).
pub fn container_env(config: &ImageConfig, overrides: &[String]) -> Result<Vec<String>> {
    let mut c = config.config.clone();
    for e in overrides {
        if e.is_empty() || e.starts_with('=') {
            bail!("-e {e:?}: the variable name is empty; write -e NAME=VALUE");
        }
        match e.split_once('=') {
            Some((k, v)) => c.env_set(k, v),
            None => {
                if let Ok(v) = std::env::var(e) {
                    c.env_set(e, &v)
                }
            }
        }
    }
    Ok(c.env)
}

/// `--network` as the executor knows it.
pub fn parse_network(value: Option<&str>) -> Result<Network> {
    match value {
        None | Some("host") | Some("default") => Ok(Network::Host),
        Some("none") => Ok(Network::None),
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

/// Runs one container from `image` (called `name` in messages) and returns
/// its exit code. Blocks until the process is gone; `cancel` kills it.
pub fn run_image(
    store: &Store,
    image: &StoredImage,
    name: &str,
    opts: &RunOptions,
    cancel: &CancelToken,
) -> Result<i32> {
    let config: ImageConfig =
        serde_json::from_slice(&image.config).context("the image config is not valid JSON")?;
    let argv = container_args(&config, opts.entrypoint.as_deref(), &opts.command);
    if argv.is_empty() {
        bail!("image {name} has no ENTRYPOINT or CMD; give a command after the image name");
    }
    let env = container_env(&config, &opts.env)?;
    let network = parse_network(opts.network.as_deref())?;
    let mut lowerdirs = Vec::new();
    for layer in &image.layers {
        lowerdirs.push(store.snapshot(layer)?);
    }
    // The upper dir lives in the store's tmp/ and goes when `scratch` drops
    // (or at the next store open, if rbuild itself is killed).
    let scratch = store.tmp_dir("run")?;
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    std::fs::create_dir(&upper)?;
    std::fs::create_dir(&work)?;
    let spec = RunSpec {
        lowerdirs,
        upperdir: upper,
        workdir: work,
        args: argv,
        env,
        cwd: opts
            .workdir
            .clone()
            .unwrap_or_else(|| match config.config.working_dir.as_str() {
                "" => "/".to_string(),
                w => w.to_string(),
            }),
        user: opts
            .user
            .clone()
            .unwrap_or_else(|| config.config.user.clone()),
        network,
        hostname: "rbuild".into(),
        mounts: vec![],
        stdin: opts.stdin,
    };
    // A reader that went away (`rbuild run img yes | head -1`) ends the
    // container, as SIGPIPE would end a process writing to it.
    let mut broken_pipe = false;
    let code = rbuild_executor::run(&spec, cancel, &mut |stream, data| {
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
            cancel.cancel();
        }
    });
    drop(scratch);
    match code {
        Ok(code) => Ok(code),
        Err(rbuild_executor::ExecError::Cancelled) if broken_pipe => {
            Ok(128 + nix::sys::signal::Signal::SIGPIPE as i32)
        }
        Err(rbuild_executor::ExecError::Cancelled) => Ok(130),
        // Docker's codes for a command that cannot be started.
        Err(e @ rbuild_executor::ExecError::Exec { .. }) => {
            eprintln!("error: {e}");
            Ok(exec_failure_code(&e.to_string()))
        }
        Err(e) => Err(anyhow!(e).context(format!("cannot run {name}"))),
    }
}

/// 127 when the command does not exist, 126 when it cannot be executed.
pub fn exec_failure_code(message: &str) -> i32 {
    if message.contains("not found") || message.contains("No such file") {
        127
    } else {
        126
    }
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

/// The stored image for `reference`, pulled first as `policy` says.
pub fn local_or_pull(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    insecure: &[String],
    reference: &str,
    policy: PullPolicy,
) -> Result<StoredImage> {
    let local = store.image(reference)?;
    match (local, policy) {
        (Some(img), PullPolicy::Missing | PullPolicy::Never) => return Ok(img),
        (None, PullPolicy::Never) => bail!(
            "no image {reference:?} in {} (and --pull=never)",
            store.root().display()
        ),
        (None, _) => eprintln!("Unable to find image '{reference}' locally"),
        (Some(_), PullPolicy::Always) => {}
    }
    let client = crate::pull::client(insecure)?;
    let digest = crate::pull::pull_into(runtime, store, &client, reference)
        .with_context(|| {
            format!(
                "no image {reference:?} in {} and pulling it failed; build it with `rbuild build -t` or import it with `rbuild load -i`",
                store.root().display()
            )
        })?;
    eprintln!("{reference}: pulled, digest {digest}");
    store
        .image(reference)?
        .ok_or_else(|| anyhow!("{reference} was pulled but is missing from the store"))
}

pub fn run(root: &Path, insecure: &[String], args: RunArgs) -> Result<ExitCode> {
    if args.tty && !args.interactive {
        eprintln!("note: -t is accepted but no pseudo-terminal is allocated");
    } else if args.tty {
        eprintln!(
            "note: -t is accepted but no pseudo-terminal is allocated; stdin is passed as is (-i)"
        );
    }
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let image = local_or_pull(&runtime, &store, insecure, &args.image, args.pull)?;
    let cancel = CancelToken::new();
    cancel_on_signals(&runtime, &cancel);
    let code = run_image(
        &store,
        &image,
        &args.image,
        &RunOptions::from_args(&args),
        &cancel,
    )?;
    Ok(exit_code(code))
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
            container_env(&c, &["A=2".into(), "B=3".into(), "C=".into()]).unwrap(),
            ["A=2", "B=3", "C="]
        );
        assert!(container_env(&c, &["=x".into()]).is_err());
        assert!(container_env(&c, &["".into()]).is_err());
    }

    #[test]
    fn networks_and_exit_codes() {
        assert_eq!(parse_network(None).unwrap(), Network::Host);
        assert_eq!(parse_network(Some("none")).unwrap(), Network::None);
        assert!(parse_network(Some("bridge")).is_err());
        assert_eq!(exit_byte(42), 42);
        assert_eq!(exit_byte(137), 137);
        assert_eq!(exit_byte(300), 255);
        assert_eq!(exit_byte(-1), 255);
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
