//! OCI distribution (registry) client: credentials, anonymous/basic/bearer auth, pull and
//! push of manifests and blobs, retries. References are parsed by `rbuild-reference`
//! (re-exported as [`reference`]), the one parser the frontend uses too.
//! Manifests, indexes, descriptors, platforms and media types are oci-spec's types.
//! It knows nothing of rbuild's store: `rbuild-cache` depends on it, never the reverse.
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
//! use rbuild_registry::*;
//! let client = RegistryClient::new(ClientOptions::default())?;
//! let image = Reference::parse("busybox")?; // docker.io/library/busybox:latest
//! let resolved = client.resolve(&image, &platform::host()).await?;
//! let config_digest = resolved.config.digest().to_string();
//! let config = client.fetch_config(&image, &config_digest).await?;
//! for layer in &resolved.layers {
//!     let dest = std::path::Path::new("/tmp").join(layer.digest().digest());
//!     client.fetch_blob(&image, layer.digest().as_ref(), &dest).await?;
//! }
//! // Push: blobs first (skipped when present, mounted when possible), then the manifest.
//! let target = Reference::parse("127.0.0.1:5000/me/busybox:1")?;
//! for layer in &resolved.layers {
//!     let path = std::path::Path::new("/tmp").join(layer.digest().digest());
//!     let digest = layer.digest().as_ref();
//!     client.mount_or_push_blob(&target, None, digest, layer.size(), &path).await?;
//! }
//! let config_path = std::path::Path::new("/tmp/config.json");
//! std::fs::write(config_path, &config)?;
//! client.push_blob(&target, &config_digest, config.len() as u64, config_path).await?;
//! client.push_manifest(&target, &resolved.media_type, &resolved.manifest_bytes).await?;
//! # Ok(()) }
//! ```

// One module per concern: `client` (HTTP session, auth dance), `auth` (challenges,
// tokens), `http` (the transport both use), `login`, `documents` (reading manifests, no
// I/O), `manifests`, `blobs` (download), `uploads`, `tags` (tag listing), `error`, `retry`.
mod auth;
mod blobs;
mod client;
pub mod credentials;
pub mod documents;
mod error;
mod http;
mod login;
mod manifests;
pub mod media_types;
pub mod platform;
mod retry;
mod tags;
mod uploads;

pub use client::{ClientOptions, RegistryClient, sha256_digest};
pub use credentials::{Credential, CredentialSource};
pub use documents::declared_media_type;
pub use error::RegistryError;
pub use manifests::{ManifestBytes, Resolved};
pub use media_types::MediaType;
pub use oci_spec::image::Descriptor;
pub use platform::Platform;
/// Image references: Docker's grammar and normalisation, in a leaf crate the frontend
/// shares (it must not depend on this crate's HTTP stack).
pub use rbuild_reference as reference;
pub use reference::{InvalidReference, Reference};
pub use retry::RetryPolicy;
pub use uploads::PushStatus;
