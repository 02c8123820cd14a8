//! `rbuild`: the command-line entry point. Reads the flags once into settings, then hands
//! the command to its module; errors get their context at this edge and nowhere deeper.

mod commands;
mod flags;
mod shared;

use anyhow::Result;
use commands::{build, check, debug, images, login, pull, push, run, store_ops};
use flags::HiArgs;
use flags::hiargs::Command;
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    match flags::parse().and_then(dispatch) {
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

/// The commands that mount, make namespaces or change file owners, by name.
fn needs_root(command: &Command) -> Option<&'static str> {
    match command {
        Command::Build(b) if b.dry_run.is_none() && b.call.is_none() => Some("build"),
        Command::Run(_) => Some("run"),
        Command::Load(_) => Some("load"),
        Command::Pull(_) => Some("pull"),
        Command::Prune(_) => Some("prune"),
        Command::Check(c) if c.repair => Some("check --repair"),
        _ => None,
    }
}

fn dispatch(args: HiArgs) -> Result<ExitCode> {
    if let Some(name) = needs_root(&args.command)
        && !nix::unistd::geteuid().is_root()
    {
        anyhow::bail!(
            "rbuild {name} needs root: it mounts overlays, makes namespaces and gives files their owners; run it as root (sudo rbuild …)"
        );
    }
    let g = &args.global;
    match &args.command {
        Command::Build(b) => build::build(g, b),
        Command::Run(r) => run::run(g, r),
        Command::Pull(p) => pull::pull(g, p),
        Command::Push(p) => push::push(g, p),
        Command::Login(l) => login::login(g, l),
        Command::Logout(l) => login::logout(g, l),
        Command::Load(l) => store_ops::load(g, l),
        Command::Save(s) => store_ops::save(g, s),
        Command::Images(i) => images::images(g, i),
        Command::Inspect(i) => images::inspect(g, i),
        Command::History(h) => images::history(g, h),
        Command::DiskUsage => store_ops::disk_usage(g),
        Command::Version => {
            println!("rbuild {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Tag(t) => store_ops::tag(g, t),
        Command::Rmi(r) => store_ops::rmi(g, r),
        Command::Prune(p) => store_ops::prune(g, p),
        Command::Check(c) => check::check(g, c),
        Command::DebugParse(d) => debug::parse(d),
    }
}
