//! The HTTP session with registries: [`ClientOptions`], the [`RegistryClient`] handle,
//! URLs (plain HTTP for loopback and insecure hosts), and [`RegistryClient::send`], one
//! exchange with the auth dance. What is sent lives beside it, one concern per module:
//! `manifests`, `blobs`, `uploads`, `auth`, `login`.
//!
//! Written on reqwest rather than oci-client: we need per-request retries that
//! can resume a streamed download, multi-scope tokens for cross-repo mounts,
//! the `refresh_token` exchange, 202-declined mounts and errors that name
//! registry/repository/digest — most of that sits outside oci-client's API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::RegistryError;
use crate::auth::{Auth, Challenge, challenge_of};
use crate::credentials::CredentialSource;
use crate::error::{Ctx, error_chain, error_message, io_err};
use crate::http::{Http, is_loopback_host};
use crate::reference::{InvalidReference, Reference, ReferenceError, api_host, normalize_registry};
use crate::retry::RetryPolicy;

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback
    /// registries (127.0.0.0/8, localhost, `[::1]`) always are.
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

pub(crate) struct Inner {
    http: Http,
    opts: ClientOptions,
    /// What each registry asked for and granted, and its credential.
    auth: Auth,
}

/// An OCI distribution client; cheap to clone, share it between tasks.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    // Opaque: the client holds credentials and tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryClient")
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub(crate) fn digest_of(hasher: Sha256) -> String {
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

fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    }
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
        let http = Http {
            proxied: build(false)?,
            direct: build(true)?,
        };
        let auth = Auth::new(opts.credentials.clone(), opts.retry);
        Ok(RegistryClient {
            inner: Arc::new(Inner { http, opts, auth }),
        })
    }

    /// The HTTP client for `url`: loopback hosts bypass any proxy.
    pub(crate) fn http_for(&self, url: &Url) -> &reqwest::Client {
        self.inner.http.for_url(url)
    }

    pub(crate) fn http(&self) -> &Http {
        &self.inner.http
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub(crate) fn opts(&self) -> &ClientOptions {
        &self.inner.opts
    }

    pub(crate) fn base_url(&self, registry: &str) -> String {
        let scheme = if use_plain_http(registry, &self.opts().insecure) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/", api_host(registry))
    }

    pub(crate) fn url(&self, r: &Reference, path: &str) -> Result<Url, RegistryError> {
        let s = format!("{}{}/{path}", self.base_url(&r.registry), r.repository);
        Url::parse(&s).map_err(|e| {
            InvalidReference {
                input: r.to_string(),
                reason: ReferenceError::Url {
                    url: s.clone(),
                    message: e.to_string(),
                },
            }
            .into()
        })
    }

    /// One HTTP exchange with the auth dance: on 401, learn the challenge, get
    /// credentials or a token for `scopes` and resend once. 5xx becomes a
    /// (retryable) error; other statuses are the caller's.
    pub(crate) async fn send(
        &self,
        ctx: &Ctx<'_>,
        scopes: &[String],
        build: &(dyn Fn() -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let mut scopes = scopes.to_vec();
        let mut challenged = false;
        loop {
            let mut rb = build();
            if let Some(h) = self
                .auth()
                .auth_header(self.http(), ctx.registry, &scopes)
                .await?
            {
                rb = rb.header(AUTHORIZATION, h);
            }
            let resp = rb.send().await.map_err(|e| ctx.net(e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                let challenge = challenge_of(&resp);
                let msg = error_message(resp).await;
                let Some(challenge) = challenge.filter(|_| !challenged) else {
                    return Err(self.auth().unauthorized(ctx, &scopes, msg).await);
                };
                if let Challenge::Bearer { scopes: extra, .. } = &challenge {
                    scopes.extend(extra.iter().cloned());
                }
                self.auth()
                    .learn_challenge(ctx.registry, challenge, &scopes);
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
    pub(crate) async fn fail(ctx: &Ctx<'_>, resp: Response) -> RegistryError {
        let status = resp.status();
        let msg = error_message(resp).await;
        ctx.status(status, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_types::MediaType;
    use crate::platform;
    use std::path::Path;

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
        let plat = platform::host();
        send(&c.resolve(&r, &plat));
        send(&c.fetch_manifest(&r));
        send(&c.head_manifest(&r));
        send(&c.fetch_blob(&r, d, p));
        send(&c.fetch_config(&r, d));
        send(&c.blob_exists(&r, d));
        send(&c.push_blob(&r, d, 0, p));
        send(&c.mount_blob(&r, "a", d));
        send(&c.mount_or_push_blob(&r, None, d, 0, p));
        send(&c.push_manifest(&r, &MediaType::ImageManifest, b"{}"));
        send(&c.login("x", "u", "p"));
        send(&c.logout("x"));
    }
}
