//! The distribution-API client: auth flow, manifests, blobs, uploads, login.
//!
//! Written on reqwest rather than oci-client: we need per-request retries that
//! can resume a streamed download, multi-scope tokens for cross-repo mounts,
//! the `refresh_token` exchange, 202-declined mounts and errors that name
//! registry/repository/digest — most of that sits outside oci-client's API.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::RegistryError;
use super::auth::{Challenge, merge_scopes, parse_challenges, parse_token_response, repo_scope};
use super::credentials::{Credential, CredentialSource, erase_credentials, store_credentials};
use super::reference::{Reference, api_host, normalize_registry, validate_digest};
use super::retry::RetryPolicy;

/// Manifest and config media types the client understands.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}
use media_types::*;

const MAX_MANIFEST: usize = 8 << 20;
const MAX_CONFIG: usize = 64 << 20;
const MAX_SMALL_BODY: usize = 1 << 20;
/// Blobs up to this size are uploaded from memory in one PUT.
const MONOLITHIC_MAX: u64 = 4 << 20;

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback
    /// registries (127.0.0.0/8, localhost, [::1]) always are.
    pub insecure: Vec<String>,
    pub credentials: CredentialSource,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// `None` (default): blobs up to 4 MiB go in one PUT, larger ones are
    /// streamed from the file in one PATCH, as docker does. `Some(n)`: blobs
    /// larger than `n` go in PATCH chunks of `n` bytes (for registries with
    /// request-size limits).
    pub chunk_size: Option<u64>,
    /// PEM files of extra CA certificates trusted for TLS registries, on top
    /// of the system's (what docker reads from `certs.d/<host>/ca.crt`).
    pub ca_certs: Vec<PathBuf>,
    /// Fixed addresses for host names, bypassing DNS (like curl's `--resolve`).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: Vec::new(),
            credentials: CredentialSource::Default,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            chunk_size: None,
            ca_certs: Vec::new(),
            resolve: Vec::new(),
        }
    }
}

/// A content descriptor (manifest, config or layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// An image platform, as in an index's `platform` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform of this machine in OCI terms (`linux/amd64`, `linux/arm64/v8` …).
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// Does an index entry's platform satisfy this one? An absent variant on
    /// either side matches, except that arm64's implicit variant is v8.
    fn matches(&self, p: &Platform) -> bool {
        if self.os != p.os || self.architecture != p.architecture {
            return false;
        }
        let norm = |v: &Option<String>| match (self.architecture.as_str(), v.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match (norm(&self.variant), norm(&p.variant)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Digest of `manifest_bytes` (verified).
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub media_type: String,
    /// The index / manifest list the manifest was chosen from, if any.
    pub index_digest: Option<String>,
    pub config_digest: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest or index as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBytes {
    /// sha256 of `bytes` (verified).
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What a blob push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    /// The registry had the blob; nothing was sent.
    AlreadyExists,
    Uploaded,
    /// Mounted from another repository of the same registry.
    Mounted,
}

#[derive(Default)]
struct AuthCache {
    challenge: Option<Challenge>,
    /// merged scope list → (token, expiry)
    tokens: HashMap<String, (String, Instant)>,
    credential: Option<Option<Credential>>,
}

struct Inner {
    http: reqwest::Client,
    /// Without proxies, for loopback hosts (as Go's ProxyFromEnvironment does).
    direct: reqwest::Client,
    opts: ClientOptions,
    auth: Mutex<HashMap<String, AuthCache>>,
}

/// An OCI distribution client; cheap to clone, share it between tasks.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    // Opaque: the client holds credentials and tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryClient")
    }
}

/// Names used in errors for one operation.
struct Ctx<'a> {
    registry: &'a str,
    repository: &'a str,
    what: String,
}

impl Ctx<'_> {
    fn net(&self, e: reqwest::Error) -> RegistryError {
        let message = error_chain(&e);
        // A certificate the client does not trust will not become trusted by asking again.
        let tls_trust = message.to_ascii_lowercase().contains("certificate");
        let transient =
            !tls_trust && (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body());
        RegistryError::Network {
            registry: self.registry.to_string(),
            what: self.what.clone(),
            message: if tls_trust {
                format!(
                    "{message}; to trust a private CA, add its certificate to the client's CA files"
                )
            } else {
                message
            },
            transient,
            attempts: 1,
        }
    }

    fn status(&self, status: StatusCode, message: String) -> RegistryError {
        let (registry, repository, what) = (
            self.registry.to_string(),
            self.repository.to_string(),
            self.what.clone(),
        );
        match status.as_u16() {
            404 => RegistryError::NotFound {
                registry,
                repository,
                what,
                message: if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                },
            },
            403 => RegistryError::Denied {
                registry,
                repository,
                what,
                message,
            },
            s => RegistryError::Status {
                registry,
                repository,
                what,
                status: s,
                message,
                attempts: 1,
            },
        }
    }

    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            message: format!("{}: {message}", self.what),
        }
    }

    fn mismatch(&self, expected: &str, actual: &str) -> RegistryError {
        RegistryError::DigestMismatch {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            what: self.what.clone(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    /// A failure while reading a body we already started: worth a retry.
    fn body_io(&self, message: String) -> RegistryError {
        RegistryError::Network {
            registry: self.registry.to_string(),
            what: self.what.clone(),
            message,
            transient: true,
            attempts: 1,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> RegistryError {
    move |source| RegistryError::Io { context, source }
}

/// `sha256:<hex>` of `data`.
/// The `Accept` header of manifest requests: every manifest and index type we read.
fn manifest_accept() -> String {
    [
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ]
    .join(", ")
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn digest_of(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Plain HTTP for loopback hosts and hosts listed as insecure.
pub(crate) fn use_plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = host_without_port(registry);
    if is_loopback_host(host) {
        return true;
    }
    insecure.iter().any(|i| {
        let i = normalize_registry(i);
        i == registry || i == host
    })
}

/// `localhost`, 127.0.0.0/8 or ::1 (brackets allowed).
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// The registry's error text: `CODE: message` from its JSON envelope, else the
/// start of the body.
fn error_message_from(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body)
        && !env.errors.is_empty()
    {
        return env
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    t.chars().take(200).collect()
}

async fn error_message(resp: Response) -> String {
    let mut resp = resp;
    let mut body = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        body.extend_from_slice(&c);
        if body.len() > 64 << 10 {
            break;
        }
    }
    error_message_from(&body)
}

async fn read_limited(
    ctx: &Ctx<'_>,
    mut resp: Response,
    limit: usize,
) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|e| ctx.net(e))? {
        if body.len() + c.len() > limit {
            return Err(ctx.protocol(format!("response larger than {limit} bytes")));
        }
        body.extend_from_slice(&c);
    }
    Ok(body)
}

fn header_str(h: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// End offset (exclusive) from an upload's `Range: 0-N` header.
pub(crate) fn parse_upload_range(v: &str) -> Option<u64> {
    let v = v.trim().trim_start_matches("bytes=");
    let (start, end) = v.split_once('-')?;
    let _: u64 = start.trim().parse().ok()?;
    end.trim().parse::<u64>().ok().map(|e| e + 1)
}

/// Start offset of a `Content-Range: bytes S-E/T` answer.
fn parse_content_range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes")?.trim();
    v.split('-').next()?.trim().parse().ok()
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawManifest {
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawIndex {
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct MediaTypeOnly {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The manifest's media type: the header if it is specific, else the body's
/// `mediaType`, else a guess from its shape.
fn manifest_media_type(content_type: Option<&str>, body: &[u8]) -> Result<String, String> {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let parsed: MediaTypeOnly =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if parsed.schema_version == Some(1)
        || ct
            .as_deref()
            .is_some_and(|c| c.contains("distribution.manifest.v1"))
    {
        return Err("schema 1 manifests are not supported; the image must be pushed again by a current client".into());
    }
    Ok(ct.or(parsed.media_type).unwrap_or_else(|| {
        if parsed.manifests.is_some() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    }))
}

fn convert(d: RawDescriptor) -> Result<Descriptor, String> {
    validate_digest(&d.digest)?;
    Ok(Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
    })
}

/// Pick the index entry for `want`: an exact variant match first, then the first match.
fn select_platform(body: &[u8], want: &Platform) -> Result<(Descriptor, String), String> {
    let index: RawIndex =
        serde_json::from_slice(body).map_err(|e| format!("invalid image index: {e}"))?;
    let mut available = Vec::new();
    let mut best: Option<(u8, RawDescriptor)> = None;
    for m in index.manifests {
        let Some(p) = &m.platform else { continue };
        let plat = Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().filter(|v| !v.is_empty()),
        };
        if plat.os != "unknown" {
            available.push(plat.to_string());
        }
        if !want.matches(&plat) {
            continue;
        }
        let rank = if plat.variant == want.variant { 0 } else { 1 };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, m));
        }
    }
    match best {
        Some((_, m)) => Ok((convert(m)?, String::new())),
        None => Ok((
            Descriptor {
                media_type: String::new(),
                digest: String::new(),
                size: 0,
            },
            if available.is_empty() {
                "nothing".to_string()
            } else {
                available.join(", ")
            },
        )),
    }
}

/// "manifest sha256:…" or "manifest for tag \"v1\"" for error messages.
fn manifest_what(mref: &str) -> String {
    if mref.contains(':') {
        format!("manifest {mref}")
    } else {
        format!("manifest for tag {mref:?}")
    }
}

fn basic_header(username: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{username}:{password}")))
}

impl RegistryClient {
    pub fn new(opts: ClientOptions) -> Result<Self, RegistryError> {
        // reqwest is built without a default crypto provider; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut certs = Vec::new();
        for path in &opts.ca_certs {
            let pem = std::fs::read(path).map_err(io_err(format!(
                "reading CA certificates {}",
                path.display()
            )))?;
            let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Credentials(format!(
                    "{} holds no valid PEM certificates: {}",
                    path.display(),
                    error_chain(&e)
                ))
            })?;
            if found.is_empty() {
                return Err(RegistryError::Credentials(format!(
                    "{} holds no PEM certificates",
                    path.display()
                )));
            }
            certs.extend(found);
        }
        let build = |direct: bool| {
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(opts.connect_timeout)
                .read_timeout(opts.read_timeout);
            if !certs.is_empty() {
                b = b.tls_certs_merge(certs.iter().cloned());
            }
            for (host, addr) in &opts.resolve {
                b = b.resolve(host, *addr);
            }
            if direct {
                b = b.no_proxy();
            }
            b.build().map_err(|e| RegistryError::Network {
                registry: String::new(),
                what: "creating the HTTP client".into(),
                message: error_chain(&e),
                transient: false,
                attempts: 1,
            })
        };
        let http = build(false)?;
        let direct = build(true)?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                direct,
                opts,
                auth: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The HTTP client for `url`: loopback hosts bypass any proxy.
    fn http_for(&self, url: &Url) -> &reqwest::Client {
        if url.host_str().is_some_and(is_loopback_host) {
            &self.inner.direct
        } else {
            &self.inner.http
        }
    }

    fn opts(&self) -> &ClientOptions {
        &self.inner.opts
    }

    fn base_url(&self, registry: &str) -> String {
        let scheme = if use_plain_http(registry, &self.opts().insecure) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/", api_host(registry))
    }

    fn url(&self, r: &Reference, path: &str) -> Result<Url, RegistryError> {
        let s = format!("{}{}/{path}", self.base_url(&r.registry), r.repository);
        Url::parse(&s).map_err(|e| RegistryError::InvalidReference {
            input: r.to_string(),
            reason: format!("cannot form URL {s}: {e}"),
        })
    }

    fn with_cache<T>(&self, registry: &str, f: impl FnOnce(&mut AuthCache) -> T) -> T {
        let mut map = self
            .inner
            .auth
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        f(map.entry(registry.to_string()).or_default())
    }

    async fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = self.with_cache(registry, |c| c.credential.clone()) {
            return Ok(c);
        }
        let source = self.opts().credentials.clone();
        let reg = registry.to_string();
        // Credential helpers are external programs: keep them off the runtime.
        let cred = tokio::task::spawn_blocking(move || source.lookup(&reg))
            .await
            .map_err(|e| RegistryError::Credentials(format!("credential lookup failed: {e}")))??;
        self.with_cache(registry, |c| c.credential = Some(cred.clone()));
        Ok(cred)
    }

    /// The Authorization header for `scopes`, from what the registry asked before.
    async fn auth_header(
        &self,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let cred = self.credential(registry).await?;
        if let Some(Credential::RegistryToken(t)) = &cred {
            return Ok(Some(format!("Bearer {t}")));
        }
        match self.with_cache(registry, |c| c.challenge.clone()) {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match &cred {
                Some(Credential::Basic { username, password }) => {
                    Some(basic_header(username, password))
                }
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let merged = merge_scopes(scopes);
                let key = merged.join(" ");
                let now = Instant::now();
                let cached = self.with_cache(registry, |c| {
                    c.tokens
                        .get(&key)
                        .filter(|(_, exp)| *exp > now)
                        .map(|(t, _)| t.clone())
                });
                if let Some(t) = cached {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, lifetime) = self
                    .fetch_token(registry, &realm, service.as_deref(), &merged, cred.as_ref())
                    .await?;
                // Renew a little early so a request never carries an expiring token.
                let expiry = now
                    + lifetime
                        .saturating_sub(Duration::from_secs(10))
                        .max(Duration::from_secs(1));
                self.with_cache(registry, |c| {
                    c.tokens.insert(key, (token.clone(), expiry));
                });
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Ask the token service for a token covering `scopes`.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        cred: Option<&Credential>,
    ) -> Result<(String, Duration), RegistryError> {
        let ctx = Ctx {
            registry,
            repository: "",
            what: format!("token request to {realm}"),
        };
        let url = Url::parse(realm).map_err(|e| {
            ctx.protocol(format!(
                "the registry's token realm {realm:?} is not a URL: {e}"
            ))
        })?;
        let scope_joined = scopes.join(" ");
        self.opts()
            .retry
            .run(|_| {
                let ctx = &ctx;
                let url = &url;
                let scope_joined = &scope_joined;
                async move {
                    let rb = match cred {
                        Some(Credential::IdentityToken(refresh)) => {
                            // OAuth2 refresh-token grant, as docker does for identity tokens.
                            let mut form = Url::parse("http://form/").expect("static URL");
                            {
                                let mut q = form.query_pairs_mut();
                                q.append_pair("grant_type", "refresh_token");
                                q.append_pair("refresh_token", refresh);
                                q.append_pair("client_id", "rbuild");
                                if let Some(s) = service {
                                    q.append_pair("service", s);
                                }
                                if !scope_joined.is_empty() {
                                    q.append_pair("scope", scope_joined);
                                }
                            }
                            self.http_for(url).post(url.clone())
                                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                                .body(form.query().unwrap_or("").to_string())
                        }
                        _ => {
                            let mut u = url.clone();
                            {
                                let mut q = u.query_pairs_mut();
                                if let Some(s) = service {
                                    q.append_pair("service", s);
                                }
                                for s in scopes {
                                    q.append_pair("scope", s);
                                }
                                if let Some(Credential::Basic { username, .. }) = cred {
                                    q.append_pair("account", username);
                                }
                            }
                            let mut rb = self.http_for(&u).get(u);
                            if let Some(Credential::Basic { username, password }) = cred {
                                rb = rb.basic_auth(username, Some(password));
                            }
                            rb
                        }
                    };
                    let resp = rb.send().await.map_err(|e| ctx.net(e))?;
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        let msg = error_message(resp).await;
                        return Err(RegistryError::Unauthorized {
                            registry: registry.to_string(),
                            scope: scope_joined.clone(),
                            message: match cred {
                                Some(_) => format!(
                                    "the token service {realm} rejected the stored credentials ({msg}); run `rbuild login {registry}` again"
                                ),
                                None => format!(
                                    "the token service {realm} requires credentials ({msg}); run `rbuild login {registry}`"
                                ),
                            },
                        });
                    }
                    if !status.is_success() {
                        let msg = error_message(resp).await;
                        return Err(ctx.status(status, msg));
                    }
                    let body = read_limited(ctx, resp, MAX_SMALL_BODY).await?;
                    let tok = parse_token_response(&body)
                        .map_err(|m| ctx.protocol(m.to_string()))?;
                    Ok((tok.token, tok.lifetime))
                }
            })
            .await
    }

    async fn unauthorized(&self, ctx: &Ctx<'_>, scopes: &[String], msg: String) -> RegistryError {
        let cred = self.credential(ctx.registry).await.ok().flatten();
        let bearer = self.with_cache(ctx.registry, |c| {
            matches!(c.challenge, Some(Challenge::Bearer { .. }))
        });
        let hint = match cred {
            None => format!(
                "no credentials for {reg}; run `rbuild login {reg}`",
                reg = ctx.registry
            ),
            // The token service accepted the credentials but the token it
            // issued does not cover this request: a permission problem.
            Some(Credential::Basic { username, .. }) if bearer => format!(
                "the token issued to user {username:?} does not grant {}; check the account's permissions on {}",
                merge_scopes(scopes).join(" "),
                ctx.repository
            ),
            Some(Credential::Basic { username, .. }) => format!(
                "the registry rejected the credentials of user {username:?}; check them or run `rbuild login {}` again",
                ctx.registry
            ),
            Some(_) => format!(
                "the registry rejected the stored token; run `rbuild login {}` again",
                ctx.registry
            ),
        };
        RegistryError::Unauthorized {
            registry: ctx.registry.to_string(),
            scope: format!("{} {}", ctx.what, merge_scopes(scopes).join(" ")),
            message: if msg.is_empty() {
                hint
            } else {
                format!("{msg}; {hint}")
            },
        }
    }

    /// One HTTP exchange with the auth dance: on 401, learn the challenge, get
    /// credentials or a token for `scopes` and resend once. 5xx becomes a
    /// (retryable) error; other statuses are the caller's.
    async fn send(
        &self,
        ctx: &Ctx<'_>,
        scopes: &[String],
        build: &(dyn Fn() -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let mut scopes = scopes.to_vec();
        let mut challenged = false;
        loop {
            let mut rb = build();
            if let Some(h) = self.auth_header(ctx.registry, &scopes).await? {
                rb = rb.header(AUTHORIZATION, h);
            }
            let resp = rb.send().await.map_err(|e| ctx.net(e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                let headers: Vec<String> = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                let msg = error_message(resp).await;
                let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
                let challenge = parse_challenges(&refs);
                let Some(challenge) = challenge.filter(|_| !challenged) else {
                    return Err(self.unauthorized(ctx, &scopes, msg).await);
                };
                if let Challenge::Bearer { scopes: extra, .. } = &challenge {
                    scopes.extend(extra.iter().cloned());
                }
                let key = merge_scopes(&scopes).join(" ");
                self.with_cache(ctx.registry, |c| {
                    c.challenge = Some(challenge);
                    c.tokens.remove(&key);
                });
                challenged = true;
                continue;
            }
            if status.is_server_error() {
                let msg = error_message(resp).await;
                return Err(ctx.status(status, msg));
            }
            return Ok(resp);
        }
    }

    /// Error for an unexpected status.
    async fn fail(ctx: &Ctx<'_>, resp: Response) -> RegistryError {
        let status = resp.status();
        let msg = error_message(resp).await;
        ctx.status(status, msg)
    }

    async fn get_manifest(
        &self,
        r: &Reference,
        mref: &str,
    ) -> Result<(Vec<u8>, String, String), RegistryError> {
        let ctx = Ctx {
            registry: &r.registry,
            repository: &r.repository,
            what: manifest_what(mref),
        };
        let url = self.url(r, &format!("manifests/{mref}"))?;
        let scopes = [repo_scope(&r.repository, "pull")];
        let accept = manifest_accept();
        let build = || {
            self.http_for(&url)
                .get(url.clone())
                .header(ACCEPT, accept.as_str())
        };
        let (body, ct, header_digest) = self
            .opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                if !resp.status().is_success() {
                    return Err(Self::fail(&ctx, resp).await);
                }
                let ct = header_str(resp.headers(), CONTENT_TYPE);
                let hd = header_str(
                    resp.headers(),
                    "docker-content-digest".parse().expect("static"),
                );
                let body = read_limited(&ctx, resp, MAX_MANIFEST).await?;
                Ok((body, ct, hd))
            })
            .await?;
        let digest = sha256_digest(&body);
        let expected = if mref.contains(':') {
            Some(mref.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(exp) = expected
            && exp != digest
        {
            return Err(ctx.mismatch(&exp, &digest));
        }
        let media_type = manifest_media_type(ct.as_deref(), &body).map_err(|m| ctx.protocol(m))?;
        Ok((body, media_type, digest))
    }

    /// The manifest or index a tag or digest points at, exactly as stored
    /// (digest verified), without choosing a platform.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<ManifestBytes, RegistryError> {
        let (bytes, media_type, digest) = self
            .get_manifest(reference, reference.manifest_ref())
            .await?;
        Ok(ManifestBytes {
            digest,
            media_type,
            bytes,
        })
    }

    /// The descriptor a tag or digest points at, by HEAD (no body, so it does
    /// not count against pull rate limits); `None` if there is no such manifest.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let mref = reference.manifest_ref();
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: manifest_what(mref),
        };
        let url = self.url(reference, &format!("manifests/{mref}"))?;
        let scopes = [repo_scope(&reference.repository, "pull")];
        let accept = manifest_accept();
        let build = || {
            self.http_for(&url)
                .head(url.clone())
                .header(ACCEPT, accept.as_str())
        };
        let resp = self
            .opts()
            .retry
            .run(|_| async { self.send(&ctx, &scopes, &build).await })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::fail(&ctx, resp).await);
        }
        let h = resp.headers();
        let digest = header_str(h, "docker-content-digest".parse().expect("static"))
            .or_else(|| reference.digest.clone())
            .ok_or_else(|| ctx.protocol("HEAD answer has no Docker-Content-Digest".into()))?;
        validate_digest(&digest).map_err(|m| ctx.protocol(m))?;
        if let Some(d) = &reference.digest
            && *d != digest
        {
            return Err(ctx.mismatch(d, &digest));
        }
        let media_type = header_str(h, CONTENT_TYPE)
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let size = header_str(h, CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some(Descriptor {
            media_type,
            digest,
            size,
        }))
    }

    /// Resolve a tag or digest to the image manifest for `platform`, through an
    /// index or manifest list; every manifest's digest is verified.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let (mut body, mut media_type, mut digest) = self
            .get_manifest(reference, reference.manifest_ref())
            .await?;
        let mut index_digest = None;
        if is_index(&media_type) {
            let ctx = Ctx {
                registry: &reference.registry,
                repository: &reference.repository,
                what: format!("index {digest}"),
            };
            let (chosen, available) =
                select_platform(&body, platform).map_err(|m| ctx.protocol(m))?;
            if chosen.digest.is_empty() {
                return Err(RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available,
                });
            }
            index_digest = Some(digest);
            (body, media_type, digest) = self.get_manifest(reference, &chosen.digest).await?;
            if is_index(&media_type) {
                return Err(ctx.protocol(format!(
                    "entry {} for {platform} is another index; nested indexes are not supported",
                    chosen.digest
                )));
            }
        }
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: format!("manifest {digest}"),
        };
        let m: RawManifest = serde_json::from_slice(&body)
            .map_err(|e| ctx.protocol(format!("invalid image manifest: {e}")))?;
        let config = convert(m.config).map_err(|e| ctx.protocol(e))?;
        let layers = m
            .layers
            .into_iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ctx.protocol(e))?;
        Ok(Resolved {
            manifest_digest: digest,
            manifest_bytes: body,
            media_type,
            index_digest,
            config_digest: config.digest.clone(),
            config,
            layers,
        })
    }

    /// Fetch a small blob (an image config) into memory, verified.
    pub async fn fetch_config(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "config blob")?;
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        let scopes = [repo_scope(&reference.repository, "pull")];
        let build = || self.http_for(&url).get(url.clone());
        let body = self
            .opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                if !resp.status().is_success() {
                    return Err(Self::fail(&ctx, resp).await);
                }
                read_limited(&ctx, resp, MAX_CONFIG).await
            })
            .await?;
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(ctx.mismatch(digest, &actual));
        }
        Ok(body)
    }

    fn blob_ctx<'a>(
        &self,
        r: &'a Reference,
        digest: &str,
        kind: &str,
    ) -> Result<Ctx<'a>, RegistryError> {
        validate_digest(digest).map_err(|reason| RegistryError::InvalidReference {
            input: digest.to_string(),
            reason,
        })?;
        Ok(Ctx {
            registry: &r.registry,
            repository: &r.repository,
            what: format!("{kind} {digest}"),
        })
    }

    /// Stream a blob into `dest`: written to a temp file beside it, sha256
    /// checked, renamed into place only on a match. Interrupted transfers are
    /// resumed with a Range request. Returns the size.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        self.fetch_blob_with_progress(reference, digest, dest, &|_| {})
            .await
    }

    /// [`fetch_blob`](Self::fetch_blob), calling `progress` with the bytes
    /// received so far (it can go back to 0 when a transfer restarts).
    pub async fn fetch_blob_with_progress(
        &self,
        reference: &Reference,
        digest: &str,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "blob")?;
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".rbuild-blob-")
            .tempfile_in(dir)
            .map_err(io_err(format!("creating a temp file in {}", dir.display())))?;
        let std_file = tmp
            .reopen()
            .map_err(io_err(format!("opening {}", tmp.path().display())))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut state = Download {
            hasher: Sha256::new(),
            written: 0,
            progress,
        };
        let policy = self.opts().retry;
        let mut attempt = 1;
        loop {
            match self
                .fetch_blob_attempt(&ctx, &url, reference, &mut file, &mut state, tmp.path())
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < policy.attempts => {
                    tokio::time::sleep(policy.delay(attempt)).await;
                    attempt += 1;
                }
                Err(mut e) => {
                    e.set_attempts(attempt);
                    return Err(e);
                }
            }
        }
        let ctx_io = |what: &str| io_err(format!("{what} {}", tmp.path().display()));
        file.flush().await.map_err(ctx_io("writing"))?;
        file.sync_all().await.map_err(ctx_io("syncing"))?;
        drop(file);
        let actual = digest_of(state.hasher);
        if actual != digest {
            // `tmp` is removed on drop: nothing is stored.
            return Err(ctx.mismatch(digest, &actual));
        }
        tmp.persist(dest).map_err(|e| RegistryError::Io {
            context: format!("renaming the blob into {}", dest.display()),
            source: e.error,
        })?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(state.written)
    }

    async fn fetch_blob_attempt(
        &self,
        ctx: &Ctx<'_>,
        url: &Url,
        r: &Reference,
        file: &mut tokio::fs::File,
        st: &mut Download<'_>,
        tmp_path: &Path,
    ) -> Result<(), RegistryError> {
        let scopes = [repo_scope(&r.repository, "pull")];
        let offset = st.written;
        let build = || {
            let rb = self.http_for(url).get(url.clone());
            if offset > 0 {
                rb.header(RANGE, format!("bytes={offset}-"))
            } else {
                rb
            }
        };
        let mut resp = self.send(ctx, &scopes, &build).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::fail(ctx, resp).await);
        }
        let io = |e: std::io::Error| RegistryError::Io {
            context: format!("writing {}", tmp_path.display()),
            source: e,
        };
        let resumed = status == StatusCode::PARTIAL_CONTENT
            && header_str(resp.headers(), CONTENT_RANGE)
                .and_then(|v| parse_content_range_start(&v))
                == Some(offset);
        if offset > 0 && !resumed {
            // The server sent the whole blob: start over.
            file.set_len(0).await.map_err(io)?;
            file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
            st.hasher = Sha256::new();
            st.written = 0;
            (st.progress)(0);
        }
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(ctx.body_io(format!(
                        "transfer broke after {} bytes: {}",
                        st.written,
                        error_chain(&e)
                    )));
                }
            };
            file.write_all(&chunk).await.map_err(io)?;
            st.hasher.update(&chunk);
            st.written += chunk.len() as u64;
            (st.progress)(st.written);
        }
        Ok(())
    }

    /// Does the repository have this blob? (HEAD)
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        self.blob_exists_as(reference, digest, "pull").await
    }

    async fn blob_exists_as(
        &self,
        reference: &Reference,
        digest: &str,
        actions: &str,
    ) -> Result<bool, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "blob")?;
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        let scopes = [repo_scope(&reference.repository, actions)];
        let build = || self.http_for(&url).head(url.clone());
        self.opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                match resp.status() {
                    s if s.is_success() => Ok(true),
                    StatusCode::NOT_FOUND => Ok(false),
                    _ => Err(Self::fail(&ctx, resp).await),
                }
            })
            .await
    }

    fn push_scopes(r: &Reference) -> Vec<String> {
        vec![repo_scope(&r.repository, "pull,push")]
    }

    /// Upload `path` as blob `digest` unless the registry has it. Small blobs go
    /// in one PUT, larger ones in PATCH chunks that resume after a failure; an
    /// interrupted push run again starts a fresh session and completes.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<PushStatus, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "upload of blob")?;
        let (mono, chunk) = match self.opts().chunk_size {
            Some(c) => (c.max(1), c.max(1)),
            None => (MONOLITHIC_MAX, u64::MAX),
        };
        // A blob that goes in one PUT is checked first; a larger one is hashed as it is
        // sent and checked before the PUT that commits it (reading it twice would cost
        // as much as sending it), so a corrupt file never becomes a registry blob.
        if size <= mono {
            check_local_blob(path, digest, size).await?;
        } else {
            check_local_size(path, digest, size).await?;
        }
        if self.blob_exists_as(reference, digest, "pull,push").await? {
            return Ok(PushStatus::AlreadyExists);
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(io_err(format!("opening {}", path.display())))?;
        let policy = self.opts().retry;
        let sent = Arc::new(Mutex::new(SentHash::default()));
        let mut failures = 0;
        let mut session: Option<(Url, u64)> = None;
        loop {
            let before = session.clone();
            let step = match before.clone() {
                None => self
                    .start_upload(&ctx, reference, &Self::push_scopes(reference))
                    .await
                    .map(|loc| Some((loc, 0))),
                Some(current) => {
                    self.upload_step(
                        &ctx,
                        reference,
                        digest,
                        (size, mono, chunk),
                        &mut file,
                        (path, &sent),
                        current,
                    )
                    .await
                }
            };
            match step {
                Ok(None) => return Ok(PushStatus::Uploaded),
                Ok(Some(next)) => {
                    // Progress earns the failure budget back: a long upload
                    // may meet more than `attempts` unrelated hiccups.
                    if before.as_ref().is_some_and(|(_, off)| next.1 > *off) {
                        failures = 0;
                    }
                    session = Some(next);
                }
                Err(e) if e.is_retryable() && failures + 1 < policy.attempts => {
                    failures += 1;
                    tokio::time::sleep(policy.delay(failures)).await;
                    // Ask the registry how much of the session it kept.
                    session = match before {
                        Some((loc, _)) => self.upload_status(&ctx, reference, &loc).await,
                        None => None,
                    };
                }
                Err(mut e) => {
                    e.set_attempts(failures + 1);
                    return Err(e);
                }
            }
        }
    }

    /// One step of an upload; `Ok(None)` when the blob is complete.
    #[allow(clippy::too_many_arguments)]
    async fn upload_step(
        &self,
        ctx: &Ctx<'_>,
        r: &Reference,
        digest: &str,
        (size, mono, chunk): (u64, u64, u64),
        file: &mut tokio::fs::File,
        (path, sent): (&Path, &Arc<Mutex<SentHash>>),
        (loc, offset): (Url, u64),
    ) -> Result<Option<(Url, u64)>, RegistryError> {
        let scopes = Self::push_scopes(r);
        let mut put_url = loc.clone();
        put_url.query_pairs_mut().append_pair("digest", digest);
        if offset == 0 && size <= mono {
            let body = read_at(file, path, 0, size).await?;
            let build = || {
                self.http_for(&put_url)
                    .put(put_url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(body.clone())
            };
            let resp = self.send(ctx, &scopes, &build).await?;
            if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
                return Err(Self::fail(ctx, resp).await);
            }
            return Ok(None);
        }
        if offset < size {
            let n = chunk.min(size - offset);
            let build = || {
                self.http_for(&loc)
                    .patch(loc.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{}-{}", offset, offset + n - 1))
                    .header(CONTENT_LENGTH, n)
                    .body(file_body(path, offset, n, sent))
            };
            let resp = self.send(ctx, &scopes, &build).await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(Self::fail(ctx, resp).await);
            }
            let next = next_location(ctx, &resp, &loc)?;
            let end = header_str(resp.headers(), RANGE)
                .and_then(|v| parse_upload_range(&v))
                .unwrap_or(offset + n);
            return Ok(Some((next, end)));
        }
        // Everything is sent: commit only what hashes to the digest. When the bytes were
        // not all hashed in order (a resumed or retried chunk), hash the file now.
        let streamed = sent.lock().ok().and_then(|h| h.finished(size));
        match streamed {
            Some(actual) if actual == digest => {}
            Some(actual) => {
                return Err(RegistryError::Io {
                    context: format!("refusing to push {}", path.display()),
                    source: std::io::Error::other(format!(
                        "the file sent has digest {actual}, but {digest} was expected"
                    )),
                });
            }
            None => check_local_blob(path, digest, size).await?,
        }
        let build = || {
            self.http_for(&put_url)
                .put(put_url.clone())
                .header(CONTENT_LENGTH, 0)
        };
        let resp = self.send(ctx, &scopes, &build).await?;
        if !resp.status().is_success() {
            return Err(Self::fail(ctx, resp).await);
        }
        Ok(None)
    }

    async fn start_upload(
        &self,
        ctx: &Ctx<'_>,
        r: &Reference,
        scopes: &[String],
    ) -> Result<Url, RegistryError> {
        let url = self.url(r, "blobs/uploads/")?;
        let build = || {
            self.http_for(&url)
                .post(url.clone())
                .header(CONTENT_LENGTH, 0)
        };
        let resp = self.send(ctx, scopes, &build).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::fail(ctx, resp).await);
        }
        next_location(ctx, &resp, &url)
    }

    /// Where an upload session stands; `None` if it is gone.
    async fn upload_status(&self, ctx: &Ctx<'_>, r: &Reference, loc: &Url) -> Option<(Url, u64)> {
        let scopes = Self::push_scopes(r);
        let build = || self.http_for(loc).get(loc.clone());
        let resp = self.send(ctx, &scopes, &build).await.ok()?;
        if resp.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let next = next_location(ctx, &resp, loc).ok()?;
        let range = header_str(resp.headers(), RANGE)?;
        // Distribution answers "0-0" both for an empty upload and for one
        // byte; it does not check where a PATCH starts, so guessing wrong
        // corrupts the blob. Start a new session instead.
        if range.trim().trim_start_matches("bytes=") == "0-0" {
            return None;
        }
        let end = parse_upload_range(&range)?;
        Some((next, end))
    }

    /// Cross-repository mount of `digest` from `from_repo` on the same
    /// registry. `Ok(false)` when the registry declines (202): upload instead.
    pub async fn mount_blob(
        &self,
        reference: &Reference,
        from_repo: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let ctx = self.blob_ctx(
            reference,
            digest,
            &format!("mount from {from_repo} of blob"),
        )?;
        let mut url = self.url(reference, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from_repo);
        // One token must cover both repositories.
        let scopes = [
            repo_scope(&reference.repository, "pull,push"),
            repo_scope(from_repo, "pull"),
        ];
        let build = || {
            self.http_for(&url)
                .post(url.clone())
                .header(CONTENT_LENGTH, 0)
        };
        let resp = self
            .opts()
            .retry
            .run(|_| async { self.send(&ctx, &scopes, &build).await })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // Declined: the registry opened an upload session; close it.
                if let Ok(loc) = next_location(&ctx, &resp, &url) {
                    let del = || self.http_for(&loc).delete(loc.clone());
                    let _ = self.send(&ctx, &scopes, &del).await;
                }
                Ok(false)
            }
            _ => Err(Self::fail(&ctx, resp).await),
        }
    }

    /// Make `digest` present in `reference`'s repository: nothing if it is
    /// there, a mount from `from_repo` if given and accepted, else an upload.
    pub async fn mount_or_push_blob(
        &self,
        reference: &Reference,
        from_repo: Option<&str>,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<PushStatus, RegistryError> {
        if self.blob_exists_as(reference, digest, "pull,push").await? {
            return Ok(PushStatus::AlreadyExists);
        }
        if let Some(from) = from_repo.filter(|f| *f != reference.repository)
            && self.mount_blob(reference, from, digest).await?
        {
            return Ok(PushStatus::Mounted);
        }
        self.push_blob(reference, digest, size, path).await
    }

    /// Push manifest `bytes` exactly as given, under the reference's tag (or
    /// digest). Returns the manifest digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let target = reference.tag.clone().unwrap_or_else(|| digest.clone());
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: format!("push of manifest {target}"),
        };
        if let Some(d) = &reference.digest
            && *d != digest
        {
            return Err(ctx.mismatch(d, &digest));
        }
        let url = self.url(reference, &format!("manifests/{target}"))?;
        let scopes = Self::push_scopes(reference);
        let body = bytes.to_vec();
        let build = || {
            self.http_for(&url)
                .put(url.clone())
                .header(CONTENT_TYPE, media_type)
                .body(body.clone())
        };
        let returned = self
            .opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                if !resp.status().is_success() {
                    return Err(Self::fail(&ctx, resp).await);
                }
                Ok(header_str(
                    resp.headers(),
                    "docker-content-digest".parse().expect("static"),
                ))
            })
            .await?;
        if let Some(d) = returned.filter(|d| d.starts_with("sha256:"))
            && d != digest
        {
            return Err(ctx.mismatch(&digest, &d));
        }
        Ok(digest)
    }

    /// Verify `username`/`password` against `registry` and store them in the
    /// docker config (`auths`, or its credential helper).
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let registry = normalize_registry(registry);
        let cred = Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        self.verify_login(&registry, &cred).await?;
        let dir = self.opts().credentials.config_dir().ok_or_else(|| {
            RegistryError::Credentials(
                "no docker config directory: set DOCKER_CONFIG or HOME".into(),
            )
        })?;
        let (reg, u, p) = (registry.clone(), username.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || store_credentials(&dir, &reg, &u, &p))
            .await
            .map_err(|e| {
                RegistryError::Credentials(format!("storing credentials failed: {e}"))
            })??;
        self.forget(&registry);
        Ok(())
    }

    /// Remove stored credentials; `Ok(false)` if there were none.
    pub async fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        let registry = normalize_registry(registry);
        let dir = self.opts().credentials.config_dir().ok_or_else(|| {
            RegistryError::Credentials(
                "no docker config directory: set DOCKER_CONFIG or HOME".into(),
            )
        })?;
        let reg = registry.clone();
        let removed = tokio::task::spawn_blocking(move || erase_credentials(&dir, &reg))
            .await
            .map_err(|e| {
                RegistryError::Credentials(format!("removing credentials failed: {e}"))
            })??;
        self.forget(&registry);
        Ok(removed)
    }

    fn forget(&self, registry: &str) {
        let mut map = self
            .inner
            .auth
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        map.remove(registry);
    }

    async fn verify_login(&self, registry: &str, cred: &Credential) -> Result<(), RegistryError> {
        let ctx = Ctx {
            registry,
            repository: "",
            what: "login".into(),
        };
        let url = Url::parse(&self.base_url(registry))
            .map_err(|e| ctx.protocol(format!("bad registry URL: {e}")))?;
        let Credential::Basic { username, password } = cred else {
            return Ok(());
        };
        let probe = |auth: Option<String>| {
            let url = url.clone();
            let ctx = &ctx;
            async move {
                self.opts()
                    .retry
                    .run(|_| {
                        let url = url.clone();
                        let auth = auth.clone();
                        async move {
                            let mut rb = self.http_for(&url).get(url);
                            if let Some(a) = auth {
                                rb = rb.header(AUTHORIZATION, a);
                            }
                            let resp = rb.send().await.map_err(|e| ctx.net(e))?;
                            if resp.status().is_server_error() {
                                return Err(Self::fail(ctx, resp).await);
                            }
                            Ok(resp)
                        }
                    })
                    .await
            }
        };
        let resp = probe(None).await?;
        if resp.status().is_success() {
            return Ok(()); // open registry: nothing to check
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(Self::fail(&ctx, resp).await);
        }
        let headers: Vec<String> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let rejected = |msg: String| RegistryError::Unauthorized {
            registry: registry.to_string(),
            scope: "login".into(),
            message: format!(
                "the registry rejected user {username:?}: {msg}; check the username and password"
            ),
        };
        let auth = match parse_challenges(&refs) {
            Some(Challenge::Bearer { realm, service, .. }) => {
                let (tok, _) = self
                    .fetch_token(registry, &realm, service.as_deref(), &[], Some(cred))
                    .await
                    .map_err(|e| match e {
                        RegistryError::Unauthorized { message, .. } => rejected(message),
                        e => e,
                    })?;
                format!("Bearer {tok}")
            }
            _ => basic_header(username, password),
        };
        let resp = probe(Some(auth)).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let msg = error_message(resp).await;
        if status == StatusCode::UNAUTHORIZED {
            return Err(rejected(msg));
        }
        Err(ctx.status(status, msg))
    }
}

/// `n` bytes of `path` from `offset`, streamed. Each call opens the file
/// afresh so a request can be rebuilt (after a 401) with its whole body.
/// The sha256 of the bytes of an upload sent so far, in order from offset 0.
#[derive(Default)]
pub(crate) struct SentHash {
    hasher: Sha256,
    /// Bytes hashed: the next chunk must start here to be hashed.
    upto: u64,
    /// False once a chunk did not continue where the hash stands (a resend after a
    /// fault): the file is then hashed again before the commit.
    broken: bool,
}

impl SentHash {
    /// Starts hashing a chunk at `offset`; false (and broken from now on) if it does not
    /// continue the hash.
    fn begin(&mut self, offset: u64) -> bool {
        if offset != self.upto {
            self.broken = true;
        }
        !self.broken
    }

    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.upto += data.len() as u64;
    }

    /// The digest of all `size` bytes if they were hashed in order; None otherwise.
    fn finished(&self, size: u64) -> Option<String> {
        (!self.broken && self.upto == size).then(|| digest_of(self.hasher.clone()))
    }
}

fn file_body(path: &Path, offset: u64, n: u64, sent: &Arc<Mutex<SentHash>>) -> reqwest::Body {
    use futures_util::TryStreamExt;
    use std::io::Seek;
    let opened = std::fs::File::open(path).and_then(|mut f| {
        f.seek(std::io::SeekFrom::Start(offset))?;
        Ok(f)
    });
    match opened {
        Ok(f) => {
            let reader = tokio::fs::File::from_std(f).take(n);
            let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
            let hashing = sent.lock().map(|mut h| h.begin(offset)).unwrap_or(false);
            let sent = sent.clone();
            reqwest::Body::wrap_stream(stream.inspect_ok(move |chunk| {
                if hashing && let Ok(mut h) = sent.lock() {
                    h.update(chunk);
                }
            }))
        }
        // The file vanished after it was hashed: send nothing, so the length
        // check fails the request and the error surfaces.
        Err(_) => reqwest::Body::from(Vec::new()),
    }
}

async fn read_at(
    file: &mut tokio::fs::File,
    path: &Path,
    off: u64,
    n: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut buf = vec![0u8; n as usize];
    file.seek(std::io::SeekFrom::Start(off))
        .await
        .map_err(io_err(format!("reading {}", path.display())))?;
    file.read_exact(&mut buf)
        .await
        .map_err(io_err(format!("reading {}", path.display())))?;
    Ok(buf)
}

struct Download<'a> {
    hasher: Sha256,
    written: u64,
    progress: &'a (dyn Fn(u64) + Send + Sync),
}

fn next_location(ctx: &Ctx<'_>, resp: &Response, base: &Url) -> Result<Url, RegistryError> {
    let loc = header_str(resp.headers(), LOCATION)
        .ok_or_else(|| ctx.protocol("upload answer has no Location header".into()))?;
    base.join(&loc)
        .map_err(|e| ctx.protocol(format!("upload Location {loc:?} is not a URL: {e}")))
}

/// Refuse to upload a file whose size or digest is not what the caller said.
/// The file at `path` is `size` bytes (its content is checked as it is sent).
async fn check_local_size(path: &Path, digest: &str, size: u64) -> Result<(), RegistryError> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(io_err(format!("reading {}", path.display())))?
        .len();
    if len != size {
        return Err(RegistryError::Io {
            context: format!("refusing to push {}", path.display()),
            source: std::io::Error::other(format!(
                "the file is {len} bytes, but {size} bytes with {digest} were expected"
            )),
        });
    }
    Ok(())
}

async fn check_local_blob(path: &Path, digest: &str, size: u64) -> Result<(), RegistryError> {
    let p = path.to_path_buf();
    let (len, actual) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            len += n as u64;
        }
        Ok::<_, std::io::Error>((len, digest_of(h)))
    })
    .await
    .map_err(|e| RegistryError::Io {
        context: format!("hashing {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(io_err(format!("reading {}", path.display())))?;
    if len != size || actual != digest {
        return Err(RegistryError::Io {
            context: format!("refusing to push {}", path.display()),
            source: std::io::Error::other(format!(
                "the file is {len} bytes with digest {actual}, but {size} bytes with {digest} were expected"
            )),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_insecure() {
        let none: Vec<String> = vec![];
        for r in [
            "127.0.0.1:5000",
            "127.9.9.9",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(use_plain_http(r, &none), "{r}");
        }
        for r in ["docker.io", "10.0.0.1:5000", "myreg:5000", "128.0.0.1"] {
            assert!(!use_plain_http(r, &none), "{r}");
        }
        let insecure = vec!["myreg:5000".to_string(), "http://other.io/".to_string()];
        assert!(use_plain_http("myreg:5000", &insecure));
        assert!(!use_plain_http("myreg:6000", &insecure));
        assert!(use_plain_http("other.io:443", &insecure));
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["localhost.example", "10.0.0.1", "[::2]", "example.com"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-99"), Some(100));
        assert_eq!(parse_upload_range("bytes=0-0"), Some(1));
        assert_eq!(parse_upload_range("garbage"), None);
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("100-199"), None);
    }

    #[test]
    fn registry_error_text() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"}]}"#;
        assert_eq!(
            error_message_from(body),
            "BLOB_UNKNOWN: blob unknown to registry"
        );
        assert_eq!(error_message_from(b"  oops \n"), "oops");
        assert_eq!(error_message_from(&[b'x'; 500]).len(), 200);
    }

    #[test]
    fn media_type_detection() {
        assert_eq!(
            manifest_media_type(Some(DOCKER_MANIFEST), b"{}").unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), br#"{"mediaType":"x/y"}"#).unwrap(),
            "x/y"
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2}"#).unwrap(),
            OCI_MANIFEST
        );
        assert!(
            manifest_media_type(None, br#"{"schemaVersion":1}"#)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(manifest_media_type(None, b"nope").is_err());
    }

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> Vec<u8> {
        let m: Vec<_> = entries
            .iter()
            .map(|(os, arch, var, c)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = var {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "size": 1,
                    "digest": format!("sha256:{}", c.to_string().repeat(64)), "platform": p})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": m})).unwrap()
    }

    #[test]
    fn platform_selection() {
        let idx = index(&[
            ("linux", "arm", Some("v6"), '1'),
            ("linux", "arm", Some("v7"), '2'),
            ("linux", "arm64", Some("v8"), '3'),
            ("linux", "amd64", None, '4'),
            ("unknown", "unknown", None, '5'),
        ]);
        let pick = |p: Platform| select_platform(&idx, &p).unwrap().0.digest;
        assert_eq!(
            pick(Platform::new("linux", "amd64", None)),
            format!("sha256:{}", "4".repeat(64))
        );
        assert_eq!(
            pick(Platform::new("linux", "arm", Some("v7"))),
            format!("sha256:{}", "2".repeat(64))
        );
        assert_eq!(
            pick(Platform::new("linux", "arm64", None)),
            format!("sha256:{}", "3".repeat(64))
        );
        let (d, avail) = select_platform(&idx, &Platform::new("linux", "s390x", None)).unwrap();
        assert!(d.digest.is_empty());
        assert_eq!(
            avail,
            "linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/amd64"
        );
        // arm64 entries without a variant are v8
        let idx = index(&[("linux", "arm64", None, 'a')]);
        let (d, _) = select_platform(&idx, &Platform::new("linux", "arm64", Some("v8"))).unwrap();
        assert_eq!(d.digest, format!("sha256:{}", "a".repeat(64)));
        let (d, _) = select_platform(&idx, &Platform::new("linux", "arm64", Some("v9"))).unwrap();
        assert!(d.digest.is_empty());
        assert!(select_platform(b"[]", &Platform::host()).is_err());
    }

    /// The solver spawns these futures on a multi-threaded runtime.
    #[test]
    fn client_and_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn send_sync<T: Send + Sync + Clone + 'static>() {}
        send_sync::<RegistryClient>();
        let c = RegistryClient::new(ClientOptions::default()).unwrap();
        let r = Reference::parse("127.0.0.1:1/x:y").unwrap();
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let p = Path::new("/nonexistent");
        let plat = Platform::host();
        send(&c.resolve(&r, &plat));
        send(&c.fetch_manifest(&r));
        send(&c.head_manifest(&r));
        send(&c.fetch_blob(&r, d, p));
        send(&c.fetch_config(&r, d));
        send(&c.blob_exists(&r, d));
        send(&c.push_blob(&r, d, 0, p));
        send(&c.mount_blob(&r, "a", d));
        send(&c.mount_or_push_blob(&r, None, d, 0, p));
        send(&c.push_manifest(&r, OCI_MANIFEST, b"{}"));
        send(&c.login("x", "u", "p"));
        send(&c.logout("x"));
    }

    #[test]
    fn host_platform_is_linux() {
        let p = Platform::host();
        assert_eq!(p.os, "linux");
        assert!(!p.architecture.is_empty());
    }
}
