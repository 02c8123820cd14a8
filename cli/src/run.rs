//! `rbuild run`: a throwaway container from a stored image. The rootfs is an
//! overlay over the image's snapshots with a temporary upper dir, removed
//! when the command exits.

use crate::args::RunArgs;
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_executor::{CancelToken, Network, RunSpec, Stream};
use rbuild_solver::image::ImageConfig;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The argv a container starts with: ENTRYPOINT + (the given command, or CMD).
pub fn container_args(config: &ImageConfig, command: &[String]) -> Vec<String> {
    let mut args = config.config.entrypoint.clone().unwrap_or_default();
    if command.is_empty() {
        args.extend(config.config.cmd.clone().unwrap_or_default());
    } else {
        args.extend(command.iter().cloned());
    }
    args
}

/// Image env with `-e` entries applied (`K=V`, or `K` copied from our environment).
pub fn container_env(config: &ImageConfig, overrides: &[String]) -> Vec<String> {
    let mut c = config.config.clone();
    for e in overrides {
        match e.split_once('=') {
            Some((k, v)) => c.env_set(k, v),
            None => {
                if let Ok(v) = std::env::var(e) {
                    c.env_set(e, &v)
                }
            }
        }
    }
    c.env
}

pub fn run(root: &Path, args: RunArgs) -> Result<ExitCode> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let image = store.image(&args.image)?.ok_or_else(|| {
        anyhow!(
            "no image {:?} in {}; build it with `rbuild build -t` or import it with `rbuild load -i`",
            args.image,
            root.display()
        )
    })?;
    let config: ImageConfig =
        serde_json::from_slice(&image.config).context("the image config is not valid JSON")?;
    let argv = container_args(&config, &args.command);
    if argv.is_empty() {
        bail!(
            "image {} has no ENTRYPOINT or CMD; give a command after the image name",
            args.image
        );
    }
    let network = match args.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        other => bail!("--network={other}: rbuild supports host and none"),
    };
    let mut lowerdirs = Vec::new();
    for layer in &image.layers {
        lowerdirs.push(store.snapshot(layer)?);
    }
    let scratch = store.tmp_dir("run")?;
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    std::fs::create_dir(&upper)?;
    std::fs::create_dir(&work)?;
    let spec = RunSpec {
        lowerdirs,
        upperdir: upper,
        workdir: work,
        args: argv,
        env: container_env(&config, &args.env),
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| match config.config.working_dir.as_str() {
                "" => "/".to_string(),
                w => w.to_string(),
            }),
        user: args
            .user
            .clone()
            .unwrap_or_else(|| config.config.user.clone()),
        network,
        hostname: "rbuild".into(),
        mounts: vec![],
    };
    let cancel = CancelToken::new();
    let c = cancel.clone();
    // Ctrl-C ends the container, then rbuild exits with its status.
    let _ = ctrlc_cancel(move || c.cancel());
    let code = rbuild_executor::run(&spec, &cancel, &mut |stream, data| {
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(data),
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    })
    .with_context(|| format!("cannot run {}", args.image))?;
    drop(scratch);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Calls `f` on the first SIGINT/SIGTERM, from a watcher thread.
fn ctrlc_cancel(f: impl FnOnce() + Send + 'static) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            f();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_replaces_cmd_but_not_entrypoint() {
        let mut c = ImageConfig::default();
        c.config.entrypoint = Some(vec!["/bin/app".into()]);
        c.config.cmd = Some(vec!["serve".into()]);
        assert_eq!(container_args(&c, &[]), ["/bin/app", "serve"]);
        assert_eq!(
            container_args(&c, &["health".into()]),
            ["/bin/app", "health"]
        );
        c.config.env = vec!["A=1".into()];
        assert_eq!(
            container_env(&c, &["A=2".into(), "B=3".into()]),
            ["A=2", "B=3"]
        );
    }
}
