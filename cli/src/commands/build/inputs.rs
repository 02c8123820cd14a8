//! Step 1 of a build: what it reads before anything else — the context directory, the
//! Dockerfile (a file or stdin) and the context's `.dockerignore`.

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
}

/// Checks the context and reads the Dockerfile and `.dockerignore`.
pub fn read(build: &Build) -> Result<Inputs> {
    let context = build.context.clone();
    if !context.is_dir() {
        bail!(
            "build context {} is not a directory; pass the context directory as the last argument",
            context.display()
        );
    }
    let (source, dockerfile_name) = match &build.dockerfile {
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
    let df_path = match &build.dockerfile {
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
    })
}
