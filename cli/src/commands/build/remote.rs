//! A build context named by a git URL, as docker reads it: `URL[#REF][:SUBDIR]` with
//! `https://…​.git`, `git@host:path`, `git://`, `ssh://`, `file://…` (any of them; an
//! http(s) URL counts as git when its path ends in `.git`). It is cloned (the `git`
//! binary, as `ADD <git URL>` does) into a temporary directory, `.git` left out as
//! BuildKit leaves it out. Other http(s) URLs are downloaded ([`download`]): a tar (plain
//! or gzip) is the context, a text file is the Dockerfile with an empty context, as
//! docker reads them.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A git context: where to clone from, which ref, which directory of it.
#[derive(Debug, PartialEq, Eq)]
pub struct GitContext {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

/// What a context word names, when it is no local path.
#[derive(Debug, PartialEq, Eq)]
pub enum Remote {
    Git(GitContext),
    /// An http(s) URL that is not a git repository (a tarball).
    Url(String),
}

/// Reads a context word as docker does; None for a local path.
pub fn parse(word: &str, exists: bool) -> Option<Remote> {
    let (url, fragment) = match word.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (word, None),
    };
    let http = url.starts_with("https://") || url.starts_with("http://");
    let git = url.starts_with("git@")
        || url.starts_with("git://")
        || url.starts_with("ssh://")
        || url.starts_with("file://")
        || (http && (url.ends_with(".git") || fragment.is_some()))
        || (url.ends_with(".git") && !exists && !word.starts_with('.') && !word.starts_with('/'));
    if !git {
        return http.then(|| Remote::Url(word.to_string()));
    }
    let (reference, subdir) = match fragment {
        None => (None, None),
        Some(f) => {
            let (r, d) = match f.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (f, None),
            };
            let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
            (nonempty(r), d.and_then(nonempty))
        }
    };
    Some(Remote::Git(GitContext {
        url: url.to_string(),
        reference,
        subdir,
    }))
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String> {
    let mut c = Command::new("git");
    c.args(args).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c
        .output()
        .context("cannot run git (install it to build from a git context)")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Clones `ctx` into `into` (a new directory) and returns the context directory in it.
pub fn clone(ctx: &GitContext, into: &Path) -> Result<PathBuf> {
    let dest = into.to_str().context("temporary directory is not UTF-8")?;
    let what = format!("build context {}", ctx.url);
    // A branch or tag: a shallow clone of it; anything else (a commit): the whole
    // history, then a checkout of it.
    let shallow = match &ctx.reference {
        None => git(
            &["clone", "--depth=1", "--recurse-submodules", &ctx.url, dest],
            None,
        ),
        Some(r) => git(
            &[
                "clone",
                "--depth=1",
                "--recurse-submodules",
                "--branch",
                r,
                &ctx.url,
                dest,
            ],
            None,
        ),
    };
    if let Err(e) = shallow {
        let Some(r) = &ctx.reference else {
            return Err(e).context(what);
        };
        let _ = std::fs::remove_dir_all(into);
        git(&["clone", "--recurse-submodules", &ctx.url, dest], None).context(what.clone())?;
        git(&["checkout", "--quiet", r], Some(into))
            .with_context(|| format!("{what}: no branch, tag or commit {r:?}"))?;
    }
    std::fs::remove_dir_all(into.join(".git")).ok();
    let dir = match &ctx.subdir {
        Some(d) => into.join(d),
        None => into.to_path_buf(),
    };
    // The subdirectory must stay inside the clone.
    let real = std::fs::canonicalize(&dir).with_context(|| {
        format!(
            "{what}: no directory {:?} in it",
            ctx.subdir.as_deref().unwrap_or("")
        )
    })?;
    if !real.starts_with(std::fs::canonicalize(into)?) || !real.is_dir() {
        bail!(
            "{what}: {:?} is not a directory inside the repository",
            ctx.subdir.as_deref().unwrap_or("")
        );
    }
    Ok(real)
}

/// Downloads `url` into the file `into` (a tarball or a Dockerfile, read by the caller).
/// A status other than 2xx is an error naming the URL and the status.
pub fn download(url: &str, into: &Path) -> Result<()> {
    use std::io::Write;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP client's runtime")?;
    // With rustls' "no provider" build, a client cannot be made before one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut file =
        std::fs::File::create(into).with_context(|| format!("cannot create {}", into.display()))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up an HTTP client")?;
        let mut response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("build context {url}: cannot download it"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("build context {url}: the server answered {status}");
        }
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("build context {url}: the download stopped"))?
        {
            file.write_all(&chunk)
                .with_context(|| format!("cannot write {}", into.display()))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_of(word: &str) -> GitContext {
        match parse(word, false) {
            Some(Remote::Git(g)) => g,
            other => panic!("{word}: {other:?}"),
        }
    }

    #[test]
    fn dockers_context_words() {
        let g = git_of("https://example.com/app.git#v1:sub/dir");
        assert_eq!(g.url, "https://example.com/app.git");
        assert_eq!(g.reference.as_deref(), Some("v1"));
        assert_eq!(g.subdir.as_deref(), Some("sub/dir"));
        let g = git_of("git@github.com:me/app.git");
        assert_eq!((g.reference, g.subdir), (None, None));
        let g = git_of("https://example.com/app#:docs");
        assert_eq!((g.reference, g.subdir.as_deref()), (None, Some("docs")));
        assert_eq!(
            git_of("file:///srv/app.git#main").reference.as_deref(),
            Some("main")
        );
        assert_eq!(
            parse("https://example.com/ctx.tar.gz", false),
            Some(Remote::Url("https://example.com/ctx.tar.gz".into()))
        );
        assert_eq!(parse("ctx", false), None);
        assert_eq!(parse("./app.git", false), None);
        assert_eq!(parse("app.git", true), None);
    }
}
