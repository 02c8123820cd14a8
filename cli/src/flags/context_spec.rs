//! `--build-context NAME=VALUE`: a directory, `docker-image://REF` or
//! `oci-layout://PATH[:TAG|@DIGEST]` (buildx's forms that need no daemon session).

use anyhow::{Result, bail};
use std::path::PathBuf;

/// Where a named context comes from, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    Dir(PathBuf),
    /// `docker-image://REF`, REF as written.
    Image(String),
    /// `oci-layout://PATH[:TAG|@DIGEST]`; TAG defaults to `latest` when neither is given.
    OciLayout {
        path: PathBuf,
        tag: Option<String>,
        digest: Option<String>,
    },
}

/// One `--build-context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    pub name: String,
    pub source: ContextSource,
}

const FORMS: &str = "give a directory, docker-image://REF or oci-layout://PATH[:TAG|@DIGEST]";

/// Reads every `--build-context`; a name given twice is refused.
pub fn parse_build_contexts(values: &[String]) -> Result<Vec<BuildContext>> {
    let mut out: Vec<BuildContext> = Vec::new();
    for v in values {
        let c = parse_one(v)?;
        if out.iter().any(|o| o.name == c.name) {
            bail!(
                "--build-context {:?} is given twice; give each name once",
                c.name
            );
        }
        out.push(c);
    }
    Ok(out)
}

fn parse_one(v: &str) -> Result<BuildContext> {
    let Some((name, value)) = v.split_once('=') else {
        bail!("--build-context {v:?}: expected NAME=VALUE; {FORMS}");
    };
    if name.is_empty() || value.is_empty() {
        bail!("--build-context {v:?}: the name and the value must not be empty; {FORMS}");
    }
    let source = if let Some(r) = value.strip_prefix("docker-image://") {
        if r.is_empty() {
            bail!("--build-context {name}: docker-image:// needs an image reference");
        }
        ContextSource::Image(r.to_string())
    } else if let Some(rest) = value.strip_prefix("oci-layout://") {
        oci_layout(name, rest)?
    } else if let Some((scheme, _)) = value.split_once("://") {
        let why = match scheme {
            "http" | "https" | "git" | "ssh" => "remote contexts (git, http) are not supported yet",
            "local" | "input" | "target" => "this form needs a BuildKit session or bake",
            _ => "unknown scheme",
        };
        bail!("--build-context {name}: unsupported context source {scheme}:// ({why}); {FORMS}");
    } else if value.starts_with("git@") {
        bail!("--build-context {name}: git contexts are not supported yet; {FORMS}");
    } else {
        ContextSource::Dir(PathBuf::from(value))
    };
    Ok(BuildContext {
        name: name.to_string(),
        source,
    })
}

/// `PATH[:TAG][@DIGEST]`: the tag is a `:` after the last `/`, so a path may hold colons
/// in its directories.
fn oci_layout(name: &str, rest: &str) -> Result<ContextSource> {
    let (rest, digest) = match rest.rsplit_once('@') {
        Some((r, d)) => {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                bail!("--build-context {name}: {d:?} is not a sha256:<64 hex> digest");
            }
            (r, Some(d.to_string()))
        }
        None => (rest, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        bail!("--build-context {name}: oci-layout:// needs the layout's directory");
    }
    Ok(ContextSource::OciLayout {
        path: PathBuf::from(path),
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> ContextSource {
        parse_one(v).unwrap_or_else(|e| panic!("{v}: {e}")).source
    }

    #[test]
    fn forms() {
        assert_eq!(one("a=dir/x"), ContextSource::Dir("dir/x".into()));
        assert_eq!(
            one("a=docker-image://alpine:3"),
            ContextSource::Image("alpine:3".into())
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            one(&format!("a=oci-layout:///l/x:v1@{d}")),
            ContextSource::OciLayout {
                path: "/l/x".into(),
                tag: Some("v1".into()),
                digest: Some(d)
            }
        );
        assert_eq!(
            one("a=oci-layout:///a:b/layout"),
            ContextSource::OciLayout {
                path: "/a:b/layout".into(),
                tag: None,
                digest: None
            }
        );
    }

    #[test]
    fn refused() {
        for bad in [
            "noequals",
            "=x",
            "a=",
            "a=foo://x",
            "a=https://h/r.git",
            "a=oci-layout://x@sha256:12",
        ] {
            assert!(parse_one(bad).is_err(), "{bad}");
        }
        let twice = ["a=x".to_string(), "a=y".to_string()];
        assert!(parse_build_contexts(&twice).is_err());
    }
}
