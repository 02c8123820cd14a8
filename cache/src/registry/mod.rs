//! OCI distribution (registry) client: reference parsing, credentials,
//! anonymous/basic/bearer auth, pull and push of manifests and blobs, retries.
//!
//! Self-contained: depends on nothing else in this crate.
//!
//! - Loopback registries (127.0.0.0/8, `localhost`, `[::1]`) and hosts in
//!   [`ClientOptions::insecure`] are reached over plain HTTP, others over TLS.
//! - Auth is learned from the registry's 401 challenge: basic credentials, or a
//!   bearer token from the token service, cached per scope set.
//! - 5xx, timeouts and broken connections are retried with exponential backoff
//!   ([`RetryPolicy`]); other 4xx are not.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rbuild_cache::registry::*;
//! let client = RegistryClient::new(ClientOptions::default())?;
//! let image = Reference::parse("busybox")?; // docker.io/library/busybox:latest
//! let resolved = client.resolve(&image, &Platform::host()).await?;
//! let config = client.fetch_config(&image, &resolved.config_digest).await?;
//! for layer in &resolved.layers {
//!     let dest = std::path::Path::new("/tmp").join(&layer.digest[7..]);
//!     client.fetch_blob(&image, &layer.digest, &dest).await?;
//! }
//! // Push: blobs first (skipped when present, mounted when possible), then the manifest.
//! let target = Reference::parse("127.0.0.1:5000/me/busybox:1")?;
//! for layer in &resolved.layers {
//!     let path = std::path::Path::new("/tmp").join(&layer.digest[7..]);
//!     client.mount_or_push_blob(&target, None, &layer.digest, layer.size, &path).await?;
//! }
//! let config_path = std::path::Path::new("/tmp/config.json");
//! std::fs::write(config_path, &config)?;
//! client.push_blob(&target, &resolved.config_digest, config.len() as u64, config_path).await?;
//! client.push_manifest(&target, &resolved.media_type, &resolved.manifest_bytes).await?;
//! # Ok(()) }
//! ```

mod auth;
mod client;
pub mod credentials;
pub mod reference;
mod retry;

pub use client::{
    ClientOptions, Descriptor, ManifestBytes, Platform, PushStatus, RegistryClient, Resolved,
    media_types, sha256_digest,
};
pub use credentials::{Credential, CredentialSource};
pub use reference::Reference;
pub use retry::RetryPolicy;

/// Everything that can go wrong talking to a registry. Messages name the
/// registry, repository and digest involved and, where possible, what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    #[error("{registry}: authentication failed ({scope}): {message}")]
    Unauthorized {
        registry: String,
        scope: String,
        message: String,
    },
    #[error(
        "{registry}/{repository}: {what}: access denied ({message}); check that your account may access this repository"
    )]
    Denied {
        registry: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error("{registry}/{repository}: {what} not found{message}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error(
        "{registry}/{repository}: {what}: content digest mismatch: expected {expected}, got {actual}; the data was refused and nothing was stored"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{registry}/{repository}: {what}: HTTP {status}: {message}{}", attempts_note(*attempts))]
    Status {
        registry: String,
        repository: String,
        what: String,
        status: u16,
        message: String,
        attempts: u32,
    },
    #[error(
        "{registry}: {what}: {message}{}; check that the registry is reachable (plain-HTTP registries other than loopback must be listed as insecure)",
        attempts_note(*attempts)
    )]
    Network {
        registry: String,
        what: String,
        message: String,
        /// Timeouts, resets and refused connections are worth retrying.
        transient: bool,
        attempts: u32,
    },
    #[error("{registry}/{repository}: {message}")]
    Protocol {
        registry: String,
        repository: String,
        message: String,
    },
    #[error("{reference}: no image for platform {platform} in the index (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials: {0}")]
    Credentials(String),
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl RegistryError {
    /// Worth another attempt: server errors and transient network failures
    /// that were not already retried (so nested retry loops do not multiply).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status {
                status, attempts, ..
            } => *status >= 500 && *attempts <= 1,
            RegistryError::Network {
                transient,
                attempts,
                ..
            } => *transient && *attempts <= 1,
            _ => false,
        }
    }

    pub(crate) fn set_attempts(&mut self, n: u32) {
        match self {
            RegistryError::Status { attempts, .. } | RegistryError::Network { attempts, .. } => {
                // Keep the count of an inner retry loop that gave up first.
                *attempts = (*attempts).max(n)
            }
            _ => {}
        }
    }
}
