//! Step 1 of a build: what it reads before anything else — the context directory (or,
//! for `rbuild build -`, a tar on stdin unpacked into a temporary one, or a Dockerfile on
//! stdin with an empty context), the Dockerfile (a file or stdin) and the context's
//! `.dockerignore`. A git URL is cloned, another URL downloaded (`remote.rs`): a tarball
//! is the context, a text file the Dockerfile.

use crate::flags::hiargs::{Build, Dockerfile};
use anyhow::{Context, Result, anyhow, bail};
use std::io::Read;
use std::path::PathBuf;

/// The build's inputs, read.
pub struct Inputs {
    pub context: PathBuf,
    /// How diagnostics name the Dockerfile (`-` for stdin).
    pub dockerfile_name: String,
    /// The Dockerfile's text.
    pub source: String,
    /// `.dockerignore` patterns.
    pub ignore: Vec<String>,
    /// `--build-context`s, read.
    pub contexts: super::contexts::Contexts,
    /// The context unpacked from stdin or cloned (removed when the build ends).
    _stdin_context: Option<tempfile::TempDir>,
}

/// What `rbuild build -` read from stdin.
enum StdinContext {
    /// A tar (plain or gzip), unpacked here.
    Tar(tempfile::TempDir),
    /// A Dockerfile, with this empty directory as its context.
    Dockerfile(String, tempfile::TempDir),
}

/// Reads stdin as a context tar (plain or gzip) or, when it is none, a Dockerfile.
fn read_stdin_context() -> Result<StdinContext> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("cannot read the build context from stdin")?;
    let dir = tempfile::Builder::new()
        .prefix("rbuild-stdin-context-")
        .tempdir()
        .context("cannot make a directory for the context read from stdin")?;
    match stdin_kind(&bytes) {
        kind @ (StdinKind::Gzip | StdinKind::Tar) => {
            unpack_tar(&kind, bytes.as_slice(), dir.path()).with_context(|| {
                format!(
                    "cannot unpack the {} read from stdin as the build context",
                    kind.tar_name()
                )
            })?;
            Ok(StdinContext::Tar(dir))
        }
        StdinKind::Other(what) => bail!(
            "the build context on stdin is {what}: rbuild reads a plain or gzip tar, or a Dockerfile"
        ),
        StdinKind::Text => {
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("the Dockerfile read from stdin is not valid UTF-8"))?;
            Ok(StdinContext::Dockerfile(text, dir))
        }
    }
}

/// A context URL downloaded: a tar (plain or gzip) unpacked into the returned directory,
/// or a text file, returned as the Dockerfile's text (the directory then stays empty).
fn url_context(url: &str) -> Result<(tempfile::TempDir, Option<String>)> {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-url-context-")
        .tempdir()
        .context("cannot make a directory for the context")?;
    let download = tempfile::NamedTempFile::new().context("cannot make a file for the download")?;
    super::remote::download(url, download.path())?;
    let mut head = Vec::new();
    std::fs::File::open(download.path())
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .context("cannot read the downloaded context")?;
    let open =
        || std::fs::File::open(download.path()).context("cannot read the downloaded context");
    match stdin_kind(&head) {
        kind @ (StdinKind::Gzip | StdinKind::Tar) => {
            unpack_tar(&kind, open()?, dir.path()).with_context(|| {
                format!("build context {url}: cannot unpack the {}", kind.tar_name())
            })?;
            Ok((dir, None))
        }
        StdinKind::Other(what) => bail!(
            "build context {url} is {what}: rbuild reads a plain or gzip tar, or a Dockerfile"
        ),
        StdinKind::Text => {
            let text = std::fs::read_to_string(download.path()).map_err(|_| {
                anyhow!("build context {url}: neither a tar nor a UTF-8 Dockerfile")
            })?;
            Ok((dir, Some(text)))
        }
    }
}

/// Unpacks a context tar (`kind` Gzip or Tar) read from `r` into `dir`.
fn unpack_tar(kind: &StdinKind, r: impl Read, dir: &std::path::Path) -> std::io::Result<()> {
    match kind {
        StdinKind::Gzip => tar::Archive::new(flate2::read::GzDecoder::new(r)).unpack(dir),
        _ => tar::Archive::new(r).unpack(dir),
    }
}

/// What stdin holds, by its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum StdinKind {
    Gzip,
    Tar,
    Other(&'static str),
    Text,
}

impl StdinKind {
    /// How errors name a tar of this kind.
    fn tar_name(&self) -> &'static str {
        match self {
            StdinKind::Gzip => "gzip tar",
            _ => "tar",
        }
    }
}

fn stdin_kind(bytes: &[u8]) -> StdinKind {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        StdinKind::Gzip
    } else if bytes.get(257..262) == Some(b"ustar") {
        StdinKind::Tar
    } else if bytes.starts_with(b"BZh") {
        StdinKind::Other("bzip2-compressed (recompress it with gzip)")
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        StdinKind::Other("xz-compressed (recompress it with gzip)")
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        StdinKind::Other("zstd-compressed (recompress it with gzip)")
    } else {
        StdinKind::Text
    }
}

/// Checks the context and reads the Dockerfile and `.dockerignore`.
pub fn read(build: &Build) -> Result<Inputs> {
    let mut context = build.context.clone();
    let mut dockerfile = build.dockerfile.clone();
    let mut stdin_context = None;
    let word = context.to_str().unwrap_or_default().to_string();
    match super::remote::parse(&word, context.exists()) {
        Some(super::remote::Remote::Url(url)) => {
            let (dir, text) = url_context(&url)?;
            match text {
                // A text file is the Dockerfile, with an empty context (docker's rule).
                Some(text) => {
                    if dockerfile != Dockerfile::File(context.join("Dockerfile")) {
                        bail!(
                            "build context {url} is a Dockerfile (text, not a tar), so -f has nothing to name: leave out -f"
                        );
                    }
                    let path = dir.path().join("Dockerfile");
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    dockerfile = Dockerfile::File(path);
                }
                // -f names a file inside the tarball's context, as docker reads it.
                None => {
                    if let Dockerfile::File(f) = &dockerfile {
                        let inside = f.strip_prefix(&word).unwrap_or(f);
                        dockerfile = Dockerfile::File(dir.path().join(inside));
                    }
                }
            }
            context = dir.path().to_path_buf();
            stdin_context = Some(dir);
        }
        Some(super::remote::Remote::Git(git)) => {
            let dir = tempfile::Builder::new()
                .prefix("rbuild-git-context-")
                .tempdir()
                .context("cannot make a directory for the git context")?;
            let clone = dir.path().join("repo");
            context = super::remote::clone(&git, &clone)?;
            // -f names a file inside the repository's context directory.
            if let Dockerfile::File(f) = &dockerfile {
                let inside = f.strip_prefix(&word).unwrap_or(f);
                dockerfile = Dockerfile::File(context.join(inside));
            }
            stdin_context = Some(dir);
        }
        None => {}
    }
    if context.as_os_str() == "-" {
        if dockerfile == Dockerfile::Stdin {
            bail!(
                "stdin can hold the build context (rbuild build -) or the Dockerfile (-f -), not both"
            );
        }
        let default = Dockerfile::File(context.join("Dockerfile"));
        match read_stdin_context()? {
            StdinContext::Tar(dir) => {
                // -f names a file inside the context, as docker reads it.
                if let Dockerfile::File(f) = &dockerfile {
                    let inside = f.strip_prefix("-").unwrap_or(f);
                    dockerfile = Dockerfile::File(dir.path().join(inside));
                }
                context = dir.path().to_path_buf();
                stdin_context = Some(dir);
            }
            StdinContext::Dockerfile(text, dir) => {
                if dockerfile != default {
                    bail!(
                        "-f names a Dockerfile, and stdin holds one (rbuild build - < Dockerfile): give one of them"
                    );
                }
                let path = dir.path().join("Dockerfile");
                std::fs::write(&path, text)?;
                dockerfile = Dockerfile::File(path);
                context = dir.path().to_path_buf();
                stdin_context = Some(dir);
            }
        }
    }
    if !context.is_dir() {
        bail!(
            "build context {} is not a directory; pass the context directory as the last argument",
            context.display()
        );
    }
    let (source, dockerfile_name) = match &dockerfile {
        Dockerfile::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the Dockerfile from stdin")?;
            (s, "-".to_string())
        }
        Dockerfile::File(path) => {
            let bytes = std::fs::read(path).with_context(|| {
                format!(
                    "cannot read Dockerfile {}; name it with -f or put a Dockerfile in the context",
                    path.display()
                )
            })?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("{}: the Dockerfile is not valid UTF-8", path.display()))?;
            (text, path.display().to_string())
        }
    };
    // A Dockerfile from stdin takes the context's own .dockerignore.
    let df_path = match &dockerfile {
        Dockerfile::Stdin => context.join("Dockerfile"),
        Dockerfile::File(path) => path.clone(),
    };
    let ignore = rbuild_graph::dockerignore::read_ignore_file(&context, &df_path)
        .with_context(|| format!("cannot read the .dockerignore of {}", context.display()))?;
    let contexts = super::contexts::read(&build.build_contexts)?;
    Ok(Inputs {
        context,
        dockerfile_name,
        source,
        ignore,
        contexts,
        _stdin_context: stdin_context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_a_tar_or_a_dockerfile() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(stdin_kind(&tar), StdinKind::Tar);
        assert_eq!(stdin_kind(&[0x1f, 0x8b, 8]), StdinKind::Gzip);
        assert_eq!(stdin_kind(b"FROM busybox\n"), StdinKind::Text);
        assert!(matches!(stdin_kind(b"BZh91AY"), StdinKind::Other(_)));
    }
}
