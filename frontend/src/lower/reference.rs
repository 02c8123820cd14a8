//! Docker image references as FROM and `--from` write them: parsed with Docker's grammar
//! and normalized (`alpine` → `docker.io/library/alpine:latest`).
//!
//! Moved here unchanged from the former `lower/util.rs`; reference parsing is to be unified
//! with the registry crate's (on oci-spec), which will replace this module.

use regex::Regex;
use std::sync::OnceLock;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// A Docker image reference split into its normalized parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// `docker.io/library/alpine:latest`-style full form (`:latest` added when
    /// neither tag nor digest is given, as `docker build` does).
    pub fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.domain, self.path);
        match (&self.tag, &self.digest) {
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => s.push_str(":latest"),
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// Parses a reference with Docker's grammar (lower-case repository path,
/// optional registry host[:port], tag, digest); `None` when it is not one.
pub fn parse_image_ref(s: &str) -> Option<ImageRef> {
    static COMPONENT: OnceLock<Regex> = OnceLock::new();
    static DOMAIN: OnceLock<Regex> = OnceLock::new();
    static TAG: OnceLock<Regex> = OnceLock::new();
    static DIGEST: OnceLock<Regex> = OnceLock::new();
    let component = re(&COMPONENT, r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$");
    let domain_re = re(
        &DOMAIN,
        r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$",
    );
    // Docker's tag grammar is ASCII `[\w][\w.-]{0,127}`. Spelled as an ASCII class
    // with the length checked apart: a Unicode `\w` repeated 127 times compiles
    // to an NFA that cost every build ~40 ms.
    let tag_re = re(&TAG, r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$");
    let digest_re = re(
        &DIGEST,
        r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$",
    );

    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !digest_re.is_match(d) {
                return None;
            }
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let t = &rest[last_slash + i + 1..];
            if t.len() > 128 || !tag_re.is_match(t) {
                return None;
            }
            (&rest[..last_slash + i], Some(t.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() || name.len() > 255 {
        return None;
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            if !domain_re.is_match(first) {
                return None;
            }
            (first.to_string(), remainder.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if !path.split('/').all(|c| component.is_match(c)) {
        return None;
    }
    Some(ImageRef {
        domain,
        path,
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_dockers_ascii_grammar() {
        let long = "a".repeat(128);
        assert!(parse_image_ref(&format!("img:{long}")).is_some());
        assert!(parse_image_ref(&format!("img:{long}a")).is_none());
        assert!(parse_image_ref("img:v1.2_3-x").is_some());
        assert!(parse_image_ref("img:.v1").is_none());
        assert!(parse_image_ref("img:tä").is_none());
    }

    #[test]
    fn image_refs_normalize_and_reject() {
        let n = |s: &str| parse_image_ref(s).map(|r| r.normalized());
        assert_eq!(
            n("alpine").as_deref(),
            Some("docker.io/library/alpine:latest")
        );
        assert_eq!(
            n("alpine:3.19").as_deref(),
            Some("docker.io/library/alpine:3.19")
        );
        assert_eq!(
            n("localhost:5000/me/app").as_deref(),
            Some("localhost:5000/me/app:latest")
        );
        assert_eq!(n("ghcr.io/a/b:v1").as_deref(), Some("ghcr.io/a/b:v1"));
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&d),
            Some(format!(
                "docker.io/library/busybox@sha256:{}",
                "a".repeat(64)
            ))
        );
        assert_eq!(n("Build"), None);
        assert_eq!(n("my stage"), None);
        assert_eq!(n("a:b:c"), None);
        assert_eq!(n(""), None);
        assert_eq!(
            n("foo--bar"),
            Some("docker.io/library/foo--bar:latest".into())
        );
    }
}
