//! `rbuild`: the command-line entry point. Parses flags, then hands each
//! command to its module; errors get their context here and nowhere deeper.

mod args;
mod build;
mod cache_flags;
mod commands;
mod oneshot;
mod outputs;
mod progress;
mod pull;
mod push;
mod run;
mod targets;

use anyhow::{Context, Result};
use args::{Cli, Command, DebugCommand};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives threads that allocate at the same time arenas of their own, and memory freed
/// in one stays there: with the tokio, rayon and compression threads of a build, peak RSS
/// of the 400 MiB big-context build went from ~52 to ~70 MB with no gain in speed.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let root = cli.root;
    let insecure = cli.insecure_registries;
    match cli.command {
        None => build::build(&root, &insecure, cli.build),
        Some(Command::Build(args)) => build::build(&root, &insecure, args),
        Some(Command::Pull { reference, quiet }) => {
            pull::pull_cmd(&root, &reference, &insecure, quiet)
        }
        Some(Command::Push { reference, quiet }) => {
            push::push_cmd(&root, &insecure, &reference, quiet)
        }
        Some(Command::Tag { source, target }) => push::tag_cmd(&root, &source, &target),
        Some(Command::Login {
            server,
            username,
            password,
            password_stdin,
        }) => push::login_cmd(
            &insecure,
            server.as_deref(),
            username,
            password,
            password_stdin,
        ),
        Some(Command::Logout { server }) => push::logout_cmd(&insecure, server.as_deref()),
        Some(Command::Debug {
            command: DebugCommand::Parse { file },
        }) => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let df = rbuild_frontend::parser::parse(&source)
                .map_err(|d| anyhow::anyhow!("{}", d.in_file(file.display().to_string())))?;
            print!("{}", rbuild_frontend::dump::dump(&df));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Load { input, quiet }) => commands::load(&root, &input, quiet),
        Some(Command::Images { quiet }) => commands::images(&root, quiet),
        Some(Command::Inspect { image }) => commands::inspect(&root, &image),
        Some(Command::Rmi { images }) => commands::rmi(&root, &images),
        Some(Command::Prune { all }) => commands::prune(&root, all),
        Some(Command::Run(args)) => run::run(&root, &insecure, args),
    }
}
