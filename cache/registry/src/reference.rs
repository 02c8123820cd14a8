//! Image reference parsing with Docker's normalisation rules
//! (`busybox` → `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use super::RegistryError;

/// Why a reference (or its tag or digest) is not valid; the text completes
/// "invalid image reference \"…\": ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty reference")]
    Empty,
    #[error("leading or trailing whitespace")]
    Whitespace,
    #[error("empty registry host")]
    EmptyHost,
    #[error("invalid registry host {0:?}")]
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

/// Registry name Docker uses for images without an explicit registry.
pub const DOCKER_HUB: &str = "docker.io";
/// Host that actually serves Docker Hub's distribution API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Key Docker uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

const MAX_NAME_LEN: usize = 255;

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
    /// Parse and normalise a reference the way `docker pull` does.
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        let bad = |reason: ReferenceError| RegistryError::InvalidReference {
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
        let tag = tag.map(str::to_string);
        if let Some(t) = &tag {
            validate_tag(t).map_err(bad)?;
        }
        let (registry, repository) = split_domain(name);
        if registry.is_empty() {
            return Err(bad(ReferenceError::EmptyHost));
        }
        validate_host(&registry).map_err(bad)?;
        validate_repository(&repository).map_err(bad)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(ReferenceError::NameTooLong));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
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

/// Normalise a registry name given on a command line (`docker login HOST`):
/// strips a scheme and path, maps Docker Hub aliases to `docker.io`.
pub fn normalize_registry(input: &str) -> String {
    let s = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

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
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Split `name` into (registry, repository) with Docker's rule: the first
/// component is a host only if it has a '.' or ':', is `localhost`, or has
/// upper-case letters (repositories cannot).
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let registry = match first {
                "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
                h => h.to_string(),
            };
            let repository = if registry == DOCKER_HUB && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            (registry, repository)
        }
        Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
        None => (DOCKER_HUB.to_string(), format!("library/{name}")),
    }
}

fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !ok {
        return Err(ReferenceError::Host(host.to_string()));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && !host.starts_with('[')
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(ReferenceError::Port(host.to_string()));
    }
    Ok(())
}

/// Repository components: `[a-z0-9]+` joined by `.`, `_`, `__` or `-+`.
fn validate_repository(repo: &str) -> Result<(), ReferenceError> {
    if repo.is_empty() {
        return Err(ReferenceError::EmptyRepository);
    }
    for comp in repo.split('/') {
        if comp.is_empty() {
            return Err(ReferenceError::EmptyComponent);
        }
        if comp.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(comp.to_string()));
        }
        if !valid_component(comp) {
            return Err(ReferenceError::Component(comp.to_string()));
        }
    }
    Ok(())
}

fn valid_component(comp: &str) -> bool {
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() {
        return Err(ReferenceError::EmptyTag);
    }
    if b.len() > 128 {
        return Err(ReferenceError::TagTooLong);
    }
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(ReferenceError::Tag(tag.to_string()));
    }
    Ok(())
}

/// Accepts `sha256:<64 lowercase hex>`; other algorithms are refused by name.
pub fn validate_digest(d: &str) -> Result<(), DigestError> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(DigestError::Format(d.to_string()));
    };
    if alg != "sha256" {
        return Err(DigestError::Algorithm(alg.to_string()));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(DigestError::Hex(d.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_normalisation() {
        let r = p("busybox");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(p("user/app:1.0").repository, "user/app");
        assert_eq!(p("docker.io/busybox").repository, "library/busybox");
        assert_eq!(p("index.docker.io/library/alpine").registry, "docker.io");
        // a bare "localhost" is an image name, not a host
        assert_eq!(p("localhost").repository, "library/localhost");
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let r = p("127.0.0.1:5000/team/app:v1.2");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        let r = p("localhost/x");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "x")
        );
        let r = p("host:5000/repo");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.registry, "host:5000");
        let r = p(&format!("repo@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.manifest_ref(), D);
        let r = p(&format!("quay.io/a/b:t@{D}"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("quay.io/a/b:t@{D}"));
        assert_eq!(p("Registry/app").registry, "Registry");
        assert_eq!(p("[::1]:5000/app").registry, "[::1]:5000");
        assert_eq!(p("a.b/c__d/e-f--g.h_i").repository, "c__d/e-f--g.h_i");
    }

    #[test]
    fn bad_references_are_explained() {
        for (input, needle) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("repo:", "empty tag"),
            ("repo:-x", "invalid tag"),
            ("repo@sha256:abc", "64"),
            ("repo@md5:abc", "unsupported digest algorithm"),
            ("a//b", "empty path component"),
            ("host:5000/", "empty repository"),
            ("a/b_", "invalid repository path component"),
            ("a/b___c", "invalid repository path component"),
            (" busybox", "whitespace"),
            ("host:port/x", "invalid port"),
        ] {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(Reference::parse(&long).is_err());
    }

    #[test]
    fn tags_split_after_the_last_slash_and_familiar_names() {
        assert_eq!(split_tag("a:b"), ("a", Some("b")));
        assert_eq!(
            split_tag("localhost:5000/x/y:1"),
            ("localhost:5000/x/y", Some("1"))
        );
        assert_eq!(split_tag("localhost:5000/x"), ("localhost:5000/x", None));
        assert_eq!(split_tag("x:"), ("x", Some("")));
        assert_eq!(familiar_name("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(familiar_name("index.docker.io/user/app"), "user/app");
        assert_eq!(familiar_name("ghcr.io/x/y"), "ghcr.io/x/y");
    }

    #[test]
    fn registry_normalisation_for_login() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
    }
}
