//! `rbuild push`, `rbuild build --push`, `rbuild tag`, `rbuild login` / `logout`.
//!
//! Push progress in plain mode reads like a build step:
//! `#N pushing layers`, one line per blob (`pushed`, `exists`, `mounted`),
//! `#N pushing manifest …`, `#N DONE 1.2s`.

use crate::args::Progress;
use crate::commands::human_size;
use crate::progress::seconds;
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_cache::push::{PushEvent, PushProgress, PushReport, push_with_progress};
use rbuild_cache::registry::{PushStatus, RegistryClient};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// `sha256:0123456789ab` (docker shows 12 hex digits).
fn short(digest: &str) -> &str {
    let end = "sha256:".len() + 12;
    digest.get(..end).unwrap_or(digest)
}

/// The line printed when a blob is done.
pub fn blob_line(digest: &str, size: u64, status: PushStatus, took: f64) -> String {
    let d = short(digest);
    match status {
        PushStatus::Uploaded => format!("{d} pushed {} {took:.1}s", human_size(size)),
        PushStatus::AlreadyExists => format!("{d} exists"),
        PushStatus::Mounted => format!("{d} mounted"),
    }
}

/// The summary line: what went up and what did not need to.
pub fn summary(report: &PushReport) -> String {
    format!(
        "pushed {} blob(s) ({}), {} already present, {} mounted",
        report.pushed,
        human_size(report.bytes),
        report.skipped,
        report.mounted
    )
}

/// Pushes `local` to `target`, printing progress as step `#step` unless quiet.
pub fn push_step(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    client: &RegistryClient,
    local: &str,
    target: &str,
    step: usize,
    mode: Progress,
) -> Result<PushReport> {
    let quiet = mode == Progress::Quiet;
    let started = Instant::now();
    let say = move |text: &str| {
        if !quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "#{step} {text}");
        }
    };
    if !quiet {
        eprintln!("\n#{step} pushing {target}");
    }
    say("pushing layers");
    let begun: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let progress: PushProgress = Arc::new(move |ev| match ev {
        PushEvent::BlobStarted { digest, .. } => {
            if let Ok(mut b) = begun.lock() {
                b.insert(digest, Instant::now());
            }
        }
        PushEvent::BlobDone {
            digest,
            size,
            status,
        } => {
            let took = begun
                .lock()
                .ok()
                .and_then(|b| b.get(&digest).map(|t| t.elapsed().as_secs_f64()))
                .unwrap_or(0.0);
            say(&blob_line(&digest, size, status, took));
        }
        PushEvent::Manifest { digest, .. } => say(&format!("pushing manifest {digest}")),
    });
    let result = runtime.block_on(push_with_progress(store, client, local, target, progress));
    match result {
        Ok(report) => {
            say(&summary(&report));
            say(&format!("DONE {}", seconds(started.elapsed())));
            Ok(report)
        }
        Err(e) => {
            say(&format!("ERROR: {e}"));
            Err(anyhow!(e)).with_context(|| format!("cannot push {target}"))
        }
    }
}

/// `rbuild push REF`: a local tag goes to the registry its name says.
pub fn push_cmd(
    root: &Path,
    insecure: &[String],
    reference: &str,
    quiet: bool,
) -> Result<ExitCode> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let client = crate::pull::client(insecure)?;
    let mode = if quiet {
        Progress::Quiet
    } else {
        Progress::Plain
    };
    let report = push_step(&runtime, &store, &client, reference, reference, 1, mode)?;
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

/// `rbuild build --push`: every `-t` goes up after export, as step `first_step`, …
pub fn push_built(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    insecure: &[String],
    manifest_digest: &str,
    tags: &[String],
    first_step: usize,
    mode: Progress,
) -> Result<()> {
    if tags.is_empty() {
        bail!("--push needs a name to push to: add -t REGISTRY/NAME:TAG");
    }
    let client = crate::pull::client(insecure)?;
    for (i, tag) in tags.iter().enumerate() {
        push_step(
            runtime,
            store,
            &client,
            manifest_digest,
            tag,
            first_step + i,
            mode,
        )?;
    }
    Ok(())
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
    fn blob_lines_say_what_happened() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            blob_line(&d, 1_500_000, PushStatus::Uploaded, 0.25),
            "sha256:0123456789ab pushed 1.5MB 0.2s"
        );
        assert_eq!(
            blob_line(&d, 9, PushStatus::AlreadyExists, 0.0),
            "sha256:0123456789ab exists"
        );
        assert_eq!(
            blob_line(&d, 9, PushStatus::Mounted, 0.0),
            "sha256:0123456789ab mounted"
        );
        assert_eq!(short("odd"), "odd");
    }

    #[test]
    fn summary_counts_everything() {
        let r = PushReport {
            pushed: 2,
            bytes: 2_000_000,
            skipped: 1,
            mounted: 3,
            ..PushReport::default()
        };
        assert_eq!(
            summary(&r),
            "pushed 2 blob(s) (2.0MB), 1 already present, 3 mounted"
        );
    }

    #[test]
    fn tags_of_references() {
        assert_eq!(tag_of("127.0.0.1:5000/app:1"), "1");
        assert_eq!(tag_of("127.0.0.1:5000/app"), "latest");
        assert_eq!(tag_of("app:v2"), "v2");
        assert_eq!(server_or_hub(None), "docker.io");
        assert_eq!(server_or_hub(Some("r:1")), "r:1");
    }
}
