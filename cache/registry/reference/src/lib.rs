//! Docker image references, `[host[:port]/]path[:tag][@digest]`, parsed with Docker's grammar
//! and normalised as `docker pull` and `docker build` do (`busybox` →
//! `docker.io/library/busybox:latest`; distribution/reference's `ParseNormalizedNamed`).
//!
//! rbuild's one reference parser: the frontend (FROM, `COPY --from`, `RUN --mount=from=`),
//! the store's local image names ([`split_tag`], [`familiar_name`]) and the registry client
//! (`rbuild-registry` re-exports this crate as `rbuild_registry::reference`) all call it, so
//! what a Dockerfile accepts is what the registry client can pull, and a base image's name
//! is written the same way in a cache key, the store and a registry URL.
//!
//! A leaf crate (it depends on `thiserror` alone) so that the frontend parses references
//! without the registry client's HTTP and TLS stack. oci-spec's `distribution::Reference`
//! was judged not to fit: it refuses bracketed IPv6 registry hosts (`[::1]:5000/app`) and
//! its errors do not say what is wrong.
//!
//! One deliberate difference from Docker: a digest must be `sha256:` with 64 lowercase hex
//! digits, the only algorithm the store and the registry client verify; Docker also takes
//! `sha384:` and `sha512:`. A reference with another algorithm is refused here, by name,
//! rather than failing later at the registry.

mod grammar;

use std::fmt;
use std::str::FromStr;

pub use grammar::validate_digest;

/// Registry name Docker uses for images without an explicit registry.
pub const DOCKER_HUB: &str = "docker.io";
/// Host that actually serves Docker Hub's distribution API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Key Docker uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// Docker Hub's former name ("the Docker Index"), folded into [`DOCKER_HUB`] when parsing.
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Longest repository path Docker accepts (`library/busybox` counts, the host does not).
const MAX_PATH_LEN: usize = 255;

/// A reference that could not be parsed: what was given and why it is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct InvalidReference {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: ReferenceError,
}

/// Why a reference (or its tag or digest) is not valid; the text completes
/// "invalid image reference \"…\": ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty reference")]
    Empty,
    #[error("leading or trailing whitespace")]
    Whitespace,
    #[error(
        "invalid registry host {0:?}: use a DNS name or IPv4 address (letters, digits, '-' inside dot-separated labels) or an IPv6 address in brackets"
    )]
    Host(String),
    #[error("invalid port in registry host {0:?}")]
    Port(String),
    #[error("repository name longer than 255 characters")]
    NameTooLong,
    #[error("empty repository name")]
    EmptyRepository,
    #[error("empty path component in repository name")]
    EmptyComponent,
    #[error("repository name must be lowercase (got {0:?})")]
    Uppercase(String),
    #[error(
        "invalid repository path component {0:?}: use lowercase letters, digits and single separators (. _ __ -)"
    )]
    Component(String),
    #[error("empty tag")]
    EmptyTag,
    #[error("tag longer than 128 characters")]
    TagTooLong,
    #[error("invalid tag {0:?}: use letters, digits, '_', '.', '-' (not first)")]
    Tag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A valid reference that still makes no URL (the registry client's check).
    #[error("cannot form URL {url}: {message}")]
    Url { url: String, message: String },
}

/// Why a digest is refused: only `sha256:` and 64 lowercase hex digits are used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<hex>")]
    Format(String),
    #[error("unsupported digest algorithm {0:?} (only sha256)")]
    Algorithm(String),
    #[error("invalid digest {0:?}: sha256 needs 64 lowercase hex characters")]
    Hex(String),
}

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` when given with `@`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference the way `docker pull` does.
    pub fn parse(input: &str) -> Result<Self, InvalidReference> {
        let bad = |reason: ReferenceError| InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(bad(ReferenceError::Empty));
        }
        if input.trim() != input {
            return Err(bad(ReferenceError::Whitespace));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|e| bad(e.into()))?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        let (name, tag) = split_tag(rest);
        if let Some(t) = tag {
            grammar::validate_tag(t).map_err(bad)?;
        }
        let (registry, repository) = split_domain(name);
        grammar::validate_host(registry).map_err(bad)?;
        grammar::validate_repository(&repository).map_err(bad)?;
        if repository.len() > MAX_PATH_LEN {
            return Err(bad(ReferenceError::NameTooLong));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// Same registry and repository, addressed by `digest`.
    pub fn with_digest(&self, digest: &str) -> Self {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }

    /// Same registry, another repository (e.g. the source of a cross-repo mount).
    pub fn with_repository(&self, repository: &str) -> Self {
        Reference {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// What to put after `/manifests/`: the digest if present, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Host to talk to for the distribution API (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The full form, `registry/repository[:tag][@digest]`: what a cache key and the store hold.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = InvalidReference;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `name[:tag]` (without a digest) at the tag: a ':' after the last '/', so
/// `host:5000/repo` keeps its port. [`Reference::parse`] and the store's local image names
/// (which need not be references a registry accepts) share this rule.
pub fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

/// Docker's short form of a name: `docker.io/library/x` → `x`, `docker.io/u/x` → `u/x`
/// (what `docker load` and `docker images` show).
pub fn familiar_name(name: &str) -> &str {
    for p in [
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ] {
        if let Some(rest) = name.strip_prefix(p) {
            return rest;
        }
    }
    name
}

/// The host serving the API for a registry name.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Normalises a registry name given on a command line (`docker login HOST`): strips a
/// scheme and path, maps Docker Hub's aliases (its API host included) to `docker.io`.
pub fn normalize_registry(input: &str) -> String {
    let s = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | LEGACY_DOCKER_HUB | DOCKER_HUB_API | DOCKER_HUB => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Splits `name` into (registry, repository) with Docker's rule: the first component is a
/// host only if it is `localhost`, has a '.' or ':', or has upper-case letters (repository
/// paths cannot). `index.docker.io` is Docker Hub's old name and becomes `docker.io`; its API
/// host `registry-1.docker.io` is kept as written, as Docker does. A Docker Hub repository
/// of one component is an official image, under `library/`.
fn split_domain(name: &str) -> (&str, String) {
    let Some((first, rest)) = name.split_once('/') else {
        return (DOCKER_HUB, format!("library/{name}"));
    };
    let is_host =
        first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first;
    if !is_host {
        return (DOCKER_HUB, name.to_string());
    }
    let registry = if first == LEGACY_DOCKER_HUB {
        DOCKER_HUB
    } else {
        first
    };
    let repository = if registry == DOCKER_HUB && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_string()
    };
    (registry, repository)
}

#[cfg(test)]
mod tests;
