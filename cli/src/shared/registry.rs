//! The registry client factory: one place that knows how rbuild reaches registries
//! (`--insecure-registry` hosts over plain HTTP, the rest as the client decides).

use anyhow::{Context, Result};
use rbuild_cache::registry::{ClientOptions, RegistryClient};

/// A client for pulls, pushes, logins and cache imports and exports. Made only when
/// something needs it: setting up TLS reads every CA certificate.
pub fn client(insecure: &[String]) -> Result<RegistryClient> {
    RegistryClient::new(ClientOptions {
        insecure: insecure.to_vec(),
        ..ClientOptions::default()
    })
    .context("cannot set up the registry client")
}
