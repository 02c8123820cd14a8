//! The command line, read once: clap reads the low-level arguments (`lowargs`), which are
//! settled into the typed settings each command runs with (`hiargs`). Values of flags
//! with a syntax of their own are read by the modules beside them (`--cache-to/--cache-from`,
//! `--call`, `--output`, `--target` and `-t`, `--build-arg`, `--label`/`--annotation`/the
//! attestation flags in `image_spec`, `--add-host`/`--ulimit`/`--shm-size`/`--cgroup-parent`
//! in `run_settings`).

mod argv;
pub mod cache_spec;
pub mod call_spec;
pub mod context_spec;
pub mod hiargs;
mod image_cmds;
mod image_spec;
mod lowargs;
pub mod output_spec;
mod platform;
mod run_settings;
mod secret_spec;
mod targets;
mod vars;

use anyhow::{Result, anyhow, bail};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
pub use hiargs::HiArgs;
use std::ffi::OsString;

/// Reads the process's arguments. `--help`, `--version`, a bare `rbuild` or flags without a
/// command or context (the help) and usage errors end the process here, as clap does (usage
/// errors with status 2); a flag that clap read but rbuild refuses is an error for the
/// caller to report.
pub fn parse() -> Result<HiArgs> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = lowargs::LowArgs::command();
    if args.len() == 1 {
        let _ = cmd.print_help();
        std::process::exit(0);
    }
    let args = argv::hoist(args, &cmd);
    let low = match lowargs::LowArgs::try_parse_from(args) {
        Ok(low) => low,
        Err(e) if e.kind() == ErrorKind::UnknownArgument => {
            eprint!("{}", without_dash_dash_tip(&e.render().to_string()));
            std::process::exit(2);
        }
        Err(e) => return Err(refused_network(&e).unwrap_or_else(|| e.exit())),
    };
    // Flags alone (`rbuild --root X`): docker prints its help; a build needs its context
    // named when no `build` says so.
    if low.command.is_none() && low.build.context.is_none() && low.build.run_command.is_empty() {
        let _ = cmd.print_help();
        std::process::exit(0);
    }
    if low.command.is_none()
        && let Some(word) = low.build.context.as_deref()
    {
        cmd.build();
        unknown_command(word, &cmd)?;
    }
    HiArgs::from_low(low)
}

/// `rbuild WORD` where WORD is no directory and reads like a command (no `/` or `.`): an
/// unknown command, said so with the closest one, rather than a missing build context.
fn unknown_command(word: &std::path::Path, cmd: &clap::Command) -> Result<()> {
    let Some(w) = word.to_str() else {
        return Ok(());
    };
    if word.exists() || w.contains(['/', '.']) || w.is_empty() || w == "-" {
        return Ok(());
    }
    let names = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_all_aliases()));
    let hint = match (
        crate::shared::suggest::closest(w, names),
        containers_only(w),
    ) {
        (Some(s), _) => format!("did you mean `rbuild {s}`? "),
        (None, true) => format!(
            "`docker {w}` works on containers, and rbuild keeps none (`rbuild run` removes each when it ends); "
        ),
        (None, false) => String::new(),
    };
    bail!(
        "unknown command {w:?} for rbuild: {hint}`rbuild --help` lists the commands (a build context must be an existing directory: `rbuild build ./{w}` if you meant one)"
    )
}

/// clap's tip to pass an unknown flag as a value after `--` would put it into the
/// `--run` command, which is never what was meant: left out.
fn without_dash_dash_tip(message: &str) -> String {
    message
        .lines()
        .filter(|l| !(l.contains("tip: to pass '") && l.contains("as a value, use '--")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// docker's commands about containers, volumes and networks, which rbuild has not.
fn containers_only(word: &str) -> bool {
    const CONTAINER_COMMANDS: &[&str] = &[
        "ps",
        "exec",
        "start",
        "stop",
        "kill",
        "restart",
        "logs",
        "attach",
        "container",
        "create",
        "cp",
        "commit",
        "top",
        "stats",
        "wait",
        "pause",
        "unpause",
        "rm",
        "rename",
        "port",
        "diff",
        "export",
        "volume",
        "network",
        "compose",
    ];
    CONTAINER_COMMANDS.contains(&word)
}

/// `--network` took any text before it was a closed set, and refused an unknown mode with
/// its own message and status 1; both are kept.
fn refused_network(e: &clap::Error) -> Option<anyhow::Error> {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    let value = text(ContextKind::InvalidValue)?;
    (e.kind() == ErrorKind::InvalidValue && arg.starts_with("--network "))
        .then(|| anyhow!("--network={value}: rbuild supports host and none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag, positional and command `--help` shows says what it is.
    #[test]
    fn no_blank_help() {
        fn walk(cmd: &clap::Command, path: &str, blank: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !a.is_hide_set() && !builtin && a.get_help().is_none() {
                    blank.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    blank.push(p.clone());
                }
                walk(sub, &p, blank);
            }
        }
        let mut cmd = lowargs::LowArgs::command();
        cmd.build();
        let mut blank = Vec::new();
        walk(&cmd, "rbuild", &mut blank);
        assert!(blank.is_empty(), "no help text: {blank:#?}");
    }

    #[test]
    fn no_tip_into_the_run_command() {
        let e = lowargs::LowArgs::try_parse_from(["rbuild", "build", "--lod", "."]).unwrap_err();
        let text = without_dash_dash_tip(&e.render().to_string());
        assert!(text.contains("unexpected argument '--lod'"), "{text}");
        assert!(text.contains("'--load'"), "{text}");
        assert!(!text.contains("-- --lod"), "{text}");
    }

    #[test]
    fn unknown_networks_keep_their_message() {
        for args in [
            &["rbuild", "--network", "bridge", "."][..],
            &["rbuild", "build", "--network=bridge"][..],
            &["rbuild", "run", "--network", "bridge", "img"][..],
        ] {
            let e = lowargs::LowArgs::try_parse_from(args).unwrap_err();
            let refused = refused_network(&e).expect("a --network error");
            assert_eq!(
                refused.to_string(),
                "--network=bridge: rbuild supports host and none"
            );
        }
        let e = lowargs::LowArgs::try_parse_from(["rbuild", "--progress=x"]).unwrap_err();
        assert!(refused_network(&e).is_none());
    }
}
