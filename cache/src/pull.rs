//! Pull: an image from a registry into the store, in two parts. [`resolve`] finds
//! the manifest for the wanted platform (through an index) and fetches the config:
//! what a build needs to plan. [`fetch`] brings every missing layer, a few at a
//! time, verified by the client; each blob is stored once and each layer extracted
//! once, and the manifest is stored as the registry has it, tagged with the
//! reference the user gave.

use crate::oci::config_diff_ids;
use crate::registry::media_types::layer_media_type;
use crate::registry::{Platform, Reference, RegistryClient, RegistryError};
use crate::{CacheError, ConfigError, Layer, Store, StoredImage, normalize_tag};
use oci_spec::image::MediaType;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Layers fetched at the same time.
const PARALLEL_FETCHES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] CacheError),
    #[error("{reference}: {message}")]
    Invalid { reference: String, message: String },
}

/// The `rootfs.diff_ids` of a registry image's config, which must list them.
fn required_diff_ids(config: &[u8]) -> Result<Vec<String>, ConfigError> {
    config_diff_ids(config)?.ok_or(ConfigError::NoDiffIds)
}

/// A registry image resolved for one platform: manifest and config, no layers yet.
/// This is what a build needs to plan (the config carries ENV, WORKDIR, ONBUILD…);
/// [`fetch`] brings the layers.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    pub reference: Reference,
    /// The registry's digest of the manifest (through an index, the platform's entry).
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub media_type: MediaType,
    pub config: Vec<u8>,
    pub layers: Vec<Layer>,
}

/// Resolves `reference` (a tag or digest) to the manifest for `platform` and fetches its
/// config; every digest is verified.
pub async fn resolve(
    client: &RegistryClient,
    reference: &str,
    platform: &Platform,
) -> Result<RemoteImage, PullError> {
    let r = Reference::parse(reference).map_err(RegistryError::from)?;
    resolve_ref(client, r, platform).await
}

/// [`resolve`] of the manifest `digest` of `reference`'s repository: what a build
/// resolved earlier, fetched now.
pub async fn resolve_pinned(
    client: &RegistryClient,
    reference: &str,
    digest: &str,
    platform: &Platform,
) -> Result<RemoteImage, PullError> {
    let mut r = Reference::parse(reference).map_err(RegistryError::from)?;
    r.digest = Some(digest.to_string());
    resolve_ref(client, r, platform).await
}

async fn resolve_ref(
    client: &RegistryClient,
    r: Reference,
    platform: &Platform,
) -> Result<RemoteImage, PullError> {
    let invalid = |message: String| PullError::Invalid {
        reference: r.to_string(),
        message,
    };
    let resolved = client.resolve(&r, platform).await?;
    let config = client
        .fetch_config(&r, resolved.config.digest().as_ref())
        .await?;
    let ids = required_diff_ids(&config).map_err(|e| invalid(e.to_string()))?;
    if ids.len() != resolved.layers.len() {
        return Err(invalid(format!(
            "the manifest has {} layers but the config {} diff_ids",
            resolved.layers.len(),
            ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(ids.len());
    for (desc, diff_id) in resolved.layers.iter().zip(ids) {
        layers.push(Layer {
            digest: desc.digest().to_string(),
            diff_id,
            size: desc.size(),
            media_type: layer_media_type(desc.media_type())
                .map_err(|e| invalid(format!("layer {}: {e}", desc.digest())))?,
        });
    }
    Ok(RemoteImage {
        reference: r,
        manifest_digest: resolved.manifest_digest,
        manifest_bytes: resolved.manifest_bytes,
        media_type: resolved.media_type,
        config,
        layers,
    })
}

/// What a pull is doing, per layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The layer was downloaded (verified) and extracted.
    Fetched { digest: String, size: u64 },
    /// The store had the blob; it was only extracted if needed.
    Present { digest: String },
}

/// Receives [`PullEvent`]s; called from several tasks.
pub type PullProgress = Arc<dyn Fn(PullEvent) + Send + Sync>;

/// Fetches blob `digest` into the store: into a temp dir of this process (a killed
/// fetch leaves nothing a later open cannot tell dead), verified, then moved into place.
pub(crate) async fn fetch_into<E: From<RegistryError> + From<CacheError>>(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    digest: &str,
) -> Result<u64, E> {
    let tmp = store.tmp_dir("fetch")?;
    let dest = tmp.path().join("blob");
    let size = client.fetch_blob(reference, digest, &dest).await?;
    store.install_fetched_blob(&dest, digest)?;
    Ok(size)
}

/// Fetches the layers of `remote` the store lacks (a few at a time, each verified),
/// extracts each once, then stores the manifest byte for byte (so the local digest is
/// the registry's) and points `tags` at it.
pub async fn fetch(
    store: &Store,
    client: &RegistryClient,
    remote: &RemoteImage,
    tags: &[String],
    progress: PullProgress,
) -> Result<StoredImage, PullError> {
    let r = &remote.reference;
    let invalid = |message: String| PullError::Invalid {
        reference: r.to_string(),
        message,
    };
    let limit = Arc::new(Semaphore::new(PARALLEL_FETCHES));
    let mut tasks = tokio::task::JoinSet::new();
    for layer in remote.layers.clone() {
        let (store, client, r, limit) = (store.clone(), client.clone(), r.clone(), limit.clone());
        let progress = progress.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            // Leased before it is looked for: a prune running now leaves it.
            store.lease_layers(std::slice::from_ref(&layer))?;
            let event = if store.has_blob(&layer.digest) {
                PullEvent::Present {
                    digest: layer.digest.clone(),
                }
            } else {
                let size = fetch_into::<PullError>(&store, &client, &r, &layer.digest).await?;
                PullEvent::Fetched {
                    digest: layer.digest.clone(),
                    size,
                }
            };
            let digest = layer.digest.clone();
            match tokio::task::spawn_blocking(move || store.snapshot(&layer)).await {
                Ok(extracted) => extracted.map(|_| ()).map_err(PullError::from)?,
                Err(e) => {
                    return Err(PullError::Invalid {
                        reference: digest,
                        message: format!("extraction stopped: {e}"),
                    });
                }
            }
            progress(event);
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => result?,
            Err(e) => return Err(invalid(format!("a layer fetch stopped: {e}"))),
        }
    }
    let config_digest = store.put_blob(&remote.config)?;
    // Where these blobs are, for cross-repository mounts when pushing; a hint only.
    for d in remote
        .layers
        .iter()
        .map(|l| &l.digest)
        .chain([&config_digest])
    {
        let _ = crate::push::record_source(store, d, &r.registry, &r.repository);
    }
    let store2 = store.clone();
    let (bytes, media_type, names) = (
        remote.manifest_bytes.clone(),
        remote.media_type.clone(),
        tags.to_vec(),
    );
    let digest =
        tokio::task::spawn_blocking(move || store2.put_manifest(&bytes, &media_type, &names))
            .await
            .map_err(|e| invalid(format!("storing the image stopped: {e}")))??;
    // Read back from its manifest, not found again through index.json: a pull of another
    // platform under the same tag, in the same build, may have moved the tag meanwhile.
    Ok(store.load_image(&digest, tags.to_vec())?)
}

/// Pulls `reference` for `platform` into `store`, tagged with `reference`, and returns
/// the stored image.
pub async fn pull(
    store: &Store,
    client: &RegistryClient,
    reference: &str,
    platform: &Platform,
) -> Result<StoredImage, PullError> {
    let remote = resolve(client, reference, platform).await?;
    fetch(
        store,
        client,
        &remote,
        &[normalize_tag(reference)],
        Arc::new(|_| {}),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_ids_come_from_the_config() {
        let c = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;
        assert_eq!(required_diff_ids(c).unwrap(), ["sha256:aa", "sha256:bb"]);
        assert!(matches!(
            required_diff_ids(b"{}"),
            Err(ConfigError::NoDiffIds)
        ));
        assert!(matches!(
            required_diff_ids(b"nope"),
            Err(ConfigError::Json(_))
        ));
    }
}
