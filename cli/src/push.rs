//! `rbuild push`, `rbuild tag`, `rbuild login` / `logout`.
//!
//! A push is a vertex (see `rbuild_solver::ops::push`); its progress in plain mode reads
//! like a build step: `#N pushing REF`, one line per blob (`pushed`, `exists`,
//! `mounted`), `pushing manifest …`, a summary, `#N DONE 1.2s`.

use crate::args::Progress;
use crate::oneshot::{self, Show, Source};
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_graph::BuildGraph;
use rbuild_graph::actions;
use rbuild_solver::SolveOptions;
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

/// `rbuild push REF`: a local image and the push of it, as one small graph.
pub fn push_cmd(
    root: &Path,
    insecure: &[String],
    reference: &str,
    quiet: bool,
) -> Result<ExitCode> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut graph = BuildGraph::new();
    let source = Source {
        runtime: &runtime,
        store: &store,
        registry: None,
        always: false,
    };
    let Some((image, _)) = oneshot::image_vertex(&mut graph, &source, reference)? else {
        bail!(
            "cannot push {reference}: no image by that name in the local store; `rbuild images` lists them, `rbuild tag` names one"
        );
    };
    let push = actions::add_push(&mut graph, image, reference);
    let show = Show {
        progress: if quiet {
            Progress::Quiet
        } else {
            Progress::Plain
        },
        hidden: vec![image],
        cached: false,
    };
    let client = crate::pull::client(insecure)?;
    let outcomes = oneshot::solve(
        &runtime,
        &store,
        graph,
        &[push],
        SolveOptions::default(),
        Some(client),
        show,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let report = outcomes
        .get(&push)
        .and_then(|o| o.pushed.clone())
        .ok_or_else(|| anyhow!("the push of {reference} reported nothing"))?;
    if quiet {
        println!("{reference}");
    } else {
        // docker push's last line.
        println!(
            "{}: digest: {} size: {}",
            tag_of(reference),
            report.manifest_digest,
            report.manifest_size
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The tag part of a reference (`latest` when there is none).
fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        Some((_, t)) => t.split('@').next().unwrap_or(t),
        None => "latest",
    }
}

/// `rbuild tag SOURCE TARGET`.
pub fn tag_cmd(root: &Path, source: &str, target: &str) -> Result<ExitCode> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    store
        .tag_image(source, target)
        .with_context(|| format!("cannot tag {source} as {target}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Docker Hub when no server is named.
fn server_or_hub(server: Option<&str>) -> &str {
    server.unwrap_or("docker.io")
}

/// The password: `-p`, else stdin with `--password-stdin` (trailing newline
/// dropped, as docker does), else a prompt.
fn read_password(password: Option<String>, from_stdin: bool) -> Result<String> {
    if from_stdin {
        if password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut s)
            .context("cannot read the password from stdin")?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Some(p) = password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: give -p, --password-stdin, or run on a terminal");
    }
    eprint!("Password: ");
    let line = read_line_without_echo().context("cannot read the password");
    eprintln!();
    Ok(line?.trim_end_matches(['\n', '\r']).to_string())
}

/// A line from the terminal on stdin, not shown as it is typed.
fn read_line_without_echo() -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let mut s = String::new();
    let read = stdin.lock().read_line(&mut s);
    // Echo comes back whatever the read did.
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved).map_err(std::io::Error::from);
    read?;
    restored?;
    Ok(s)
}

pub fn login_cmd(
    insecure: &[String],
    server: Option<&str>,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> Result<ExitCode> {
    let server = server_or_hub(server);
    let username = match username {
        Some(u) => u,
        None => {
            if !std::io::stdin().is_terminal() || password_stdin {
                bail!("no username: give -u USERNAME");
            }
            eprint!("Username: ");
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut s)
                .context("cannot read the username")?;
            s.trim().to_string()
        }
    };
    if username.is_empty() {
        bail!("the username is empty");
    }
    let password = read_password(password, password_stdin)?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let client = crate::pull::client(insecure)?;
    runtime
        .block_on(client.login(server, &username, &password))
        .with_context(|| format!("login to {server} failed"))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout_cmd(insecure: &[String], server: Option<&str>) -> Result<ExitCode> {
    let server = server_or_hub(server);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let client = crate::pull::client(insecure)?;
    let removed = runtime
        .block_on(client.logout(server))
        .with_context(|| format!("logout from {server} failed"))?;
    if removed {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_references() {
        assert_eq!(tag_of("127.0.0.1:5000/app:1"), "1");
        assert_eq!(tag_of("127.0.0.1:5000/app"), "latest");
        assert_eq!(tag_of("app:v2"), "v2");
        assert_eq!(server_or_hub(None), "docker.io");
        assert_eq!(server_or_hub(Some("r:1")), "r:1");
    }
}
