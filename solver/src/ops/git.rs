//! `ADD <git URL>[#ref[:subdir]]`: the commit a reference names (the step's key) and its
//! tree checked out, with the `git` binary.
//!
//! The binary rather than a crate: it speaks every transport users have (https with their
//! credential helpers, ssh with their agent and `~/.ssh/config`, git://, dumb http,
//! `insteadOf` rewrites), fetches shallowly, and updates submodules; the pure-Rust
//! implementations cover a part of that. BuildKit shells out to git for the same reasons.
//!
//! As in BuildKit's git source, the key is the commit: `git ls-remote` resolves a branch or
//! tag every build (a full commit id needs no request), so a step re-runs only when the
//! reference moved. A checkout fetches that commit alone (`--depth=1`; a server that cannot
//! fetch by id gets a full fetch of its branches and tags).

use crate::error::{SolveError, StepFailure};
use crate::op::StepContext;
use rbuild_graph::CopySource;
use rbuild_graph::paths::clean_rel;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fail(remote: &str, reason: impl std::fmt::Display) -> StepFailure {
    StepFailure::Git {
        remote: super::http::redact(remote),
        reason: reason.to_string(),
    }
}

/// `git` with no prompt for credentials (a build must not hang on one) and ssh in batch
/// mode unless the user configured another ssh command; `agent` (the `--ssh default`
/// agent, as BuildKit uses for git over ssh) replaces `SSH_AUTH_SOCK` when given.
fn git(agent: Option<&Path>) -> Command {
    let mut c = Command::new("git");
    if let Some(a) = agent {
        c.env("SSH_AUTH_SOCK", a);
    }
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null());
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        c.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    c
}

/// Runs `cmd`; its stdout, or an error with git's own message.
fn run(remote: &str, what: &str, cmd: &mut Command) -> Result<String, StepFailure> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            fail(
                remote,
                "the git binary is not installed (apt-get install git)",
            )
        } else {
            fail(remote, format!("running git {what}: {e}"))
        }
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(fail(remote, format!("git {what} failed: {}", msg.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A full commit id (sha1 or sha256).
pub(crate) fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `reference` names in `remote` (none: its HEAD); checked against `checksum`.
pub(crate) fn resolve(
    remote: &str,
    reference: Option<&str>,
    checksum: Option<&str>,
    agent: Option<&Path>,
) -> Result<String, StepFailure> {
    let commit = match reference {
        Some(r) if is_commit_id(r) => r.to_ascii_lowercase(),
        _ => ls_remote(remote, reference, agent)?,
    };
    if let Some(c) = checksum
        && !commit.starts_with(&c.to_ascii_lowercase())
    {
        return Err(fail(
            remote,
            format!(
                "{} is commit {commit}, --checksum expects {c}",
                reference.unwrap_or("HEAD")
            ),
        ));
    }
    Ok(commit)
}

fn ls_remote(
    remote: &str,
    reference: Option<&str>,
    agent: Option<&Path>,
) -> Result<String, StepFailure> {
    let name = reference.unwrap_or("HEAD");
    let out = run(
        remote,
        "ls-remote",
        git(agent).args(["ls-remote", "--", remote, name]),
    )?;
    let refs: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    // A branch before a tag of the same name; an annotated tag's commit (`^{}`) before
    // the tag object.
    let wanted = [
        name.to_string(),
        format!("refs/heads/{name}"),
        format!("refs/tags/{name}^{{}}"),
        format!("refs/tags/{name}"),
    ];
    for w in &wanted {
        if let Some((sha, _)) = refs.iter().find(|(_, n)| n == w) {
            return Ok(sha.to_string());
        }
    }
    Err(fail(
        remote,
        format!("no branch or tag {name:?} in the repository"),
    ))
}

/// Checks out `commit` of `remote` at `dir` (created), submodules included; the `.git`
/// directory is removed unless `keep_git_dir`.
pub(crate) fn checkout(
    remote: &str,
    reference: Option<&str>,
    commit: &str,
    keep_git_dir: bool,
    dir: &Path,
    agent: Option<&Path>,
) -> Result<(), StepFailure> {
    let d = dir.as_os_str();
    run(remote, "init", git(agent).args(["init", "-q"]).arg(d))?;
    let in_dir = || {
        let mut c = git(agent);
        c.arg("-C").arg(d);
        c
    };
    run(
        remote,
        "remote add",
        in_dir().args(["remote", "add", "origin", "--", remote]),
    )?;
    let shallow = run(
        remote,
        "fetch",
        in_dir().args(["fetch", "-q", "--depth=1", "origin", commit]),
    );
    if shallow.is_err() {
        // Dumb http and servers that refuse a want by id: everything, then the commit.
        let mut specs = vec![
            "+refs/heads/*:refs/remotes/origin/*".to_string(),
            "+refs/tags/*:refs/tags/*".to_string(),
        ];
        if let Some(r) = reference.filter(|r| r.starts_with("refs/")) {
            specs.push(format!("+{r}:{r}"));
        }
        run(
            remote,
            "fetch",
            in_dir().args(["fetch", "-q", "origin"]).args(&specs),
        )?;
    }
    run(
        remote,
        "checkout",
        in_dir().args(["-c", "advice.detachedHead=false", "checkout", "-q", commit]),
    )?;
    if dir.join(".gitmodules").is_file() {
        run(
            remote,
            "submodule update",
            in_dir().args([
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth=1",
            ]),
        )?;
    }
    if !keep_git_dir {
        let git_dir = dir.join(".git");
        std::fs::remove_dir_all(&git_dir)
            .map_err(|e| fail(remote, format!("removing {}: {e}", git_dir.display())))?;
    }
    Ok(())
}

/// The tree a git copy source reads: `commit` (the one its key was made of, else resolved
/// now) checked out at `dir`, then the subdir asked for, resolved inside the checkout.
pub(crate) fn tree(
    step: &StepContext,
    source: &CopySource,
    commit: Option<String>,
    dir: &Path,
) -> Result<PathBuf, SolveError> {
    let CopySource::Git {
        remote,
        reference,
        subdir,
        keep_git_dir,
        checksum,
    } = source
    else {
        return Err(SolveError::Internal("not a git source".into()));
    };
    let agent = step.opts.ssh.socket("default");
    let commit = match commit {
        Some(c) => c,
        None => resolve(remote, reference.as_deref(), checksum.as_deref(), agent)
            .map_err(|f| step.fail(f))?,
    };
    checkout(
        remote,
        reference.as_deref(),
        &commit,
        *keep_git_dir,
        dir,
        agent,
    )
    .map_err(|f| step.fail(f))?;
    let Some(sub) = subdir.as_deref().map(clean_rel).filter(|s| !s.is_empty()) else {
        return Ok(dir.to_path_buf());
    };
    match rbuild_executor::resolve_in_root(dir, &sub) {
        Ok(p) if p.is_dir() => Ok(p),
        _ => Err(step.fail(fail(
            remote,
            format!("no directory {sub:?} in commit {commit}"),
        ))),
    }
}
