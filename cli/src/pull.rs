//! `rbuild pull` and pulling base images that are not in the store.

use anyhow::{Context, Result};
use rbuild_cache::Store;
use rbuild_cache::pull::pull;
use rbuild_cache::registry::{ClientOptions, Platform, RegistryClient};
use std::path::Path;
use std::process::ExitCode;

pub fn client(insecure: &[String]) -> Result<RegistryClient> {
    RegistryClient::new(ClientOptions {
        insecure: insecure.to_vec(),
        ..ClientOptions::default()
    })
    .context("cannot set up the registry client")
}

/// Pulls `reference` into `store` on `runtime` and returns the manifest digest.
pub fn pull_into(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    client: &RegistryClient,
    reference: &str,
) -> Result<String> {
    let image = runtime
        .block_on(pull(store, client, reference, &Platform::host()))
        .with_context(|| format!("cannot pull {reference}"))?;
    Ok(image.manifest_digest)
}

pub fn pull_cmd(
    root: &Path,
    reference: &str,
    insecure: &[String],
    quiet: bool,
) -> Result<ExitCode> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let client = client(insecure)?;
    let digest = pull_into(&runtime, &store, &client, reference)?;
    if quiet {
        println!("{reference}");
    } else {
        println!("{reference}: pulled, digest {digest}");
    }
    Ok(ExitCode::SUCCESS)
}
