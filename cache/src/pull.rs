//! Pull: an image from a registry into the store. The manifest is resolved to
//! the wanted platform (through an index), the config and every missing layer
//! are fetched concurrently and verified by the client, each blob is stored
//! once and each layer extracted once; the image is then tagged with the
//! reference the user gave.

use crate::registry::{Platform, Reference, RegistryClient, RegistryError};
use crate::{
    CacheError, Layer, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD, Store,
    StoredImage, normalize_tag,
};
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

/// The OCI media type a registry layer is stored under, or why it cannot be used.
pub fn layer_media_type(registry_type: &str) -> Result<&'static str, String> {
    match registry_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        | MEDIA_TYPE_LAYER_GZIP => Ok(MEDIA_TYPE_LAYER_GZIP),
        "application/vnd.docker.image.rootfs.diff.tar" | MEDIA_TYPE_LAYER_TAR => {
            Ok(MEDIA_TYPE_LAYER_TAR)
        }
        MEDIA_TYPE_LAYER_ZSTD => Err("zstd-compressed layers are not supported yet".into()),
        other => Err(format!("unknown layer media type {other:?}")),
    }
}

/// The `rootfs.diff_ids` of an image config.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
    v["rootfs"]["diff_ids"]
        .as_array()
        .ok_or("config has no rootfs.diff_ids")?
        .iter()
        .map(|d| {
            d.as_str()
                .map(String::from)
                .ok_or_else(|| "a diff_id is not a string".to_string())
        })
        .collect()
}

/// Pulls `reference` for `platform` into `store` and returns the stored image.
pub async fn pull(
    store: &Store,
    client: &RegistryClient,
    reference: &str,
    platform: &Platform,
) -> Result<StoredImage, PullError> {
    let invalid = |message: String| PullError::Invalid {
        reference: reference.to_string(),
        message,
    };
    let r = Reference::parse(reference)?;
    let resolved = client.resolve(&r, platform).await?;
    let config = client.fetch_config(&r, &resolved.config_digest).await?;
    let ids = diff_ids(&config).map_err(invalid)?;
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
            digest: desc.digest.clone(),
            diff_id,
            size: desc.size,
            media_type: layer_media_type(&desc.media_type)
                .map_err(|m| invalid(format!("layer {}: {m}", desc.digest)))?
                .to_string(),
        });
    }

    // Fetch what the store lacks, then extract, a few layers at a time.
    let limit = Arc::new(Semaphore::new(PARALLEL_FETCHES));
    let mut tasks = tokio::task::JoinSet::new();
    for layer in layers.clone() {
        let (store, client, r, limit) = (store.clone(), client.clone(), r.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if !store.has_blob(&layer.digest) {
                let dest = store.blob_path(&layer.digest);
                client.fetch_blob(&r, &layer.digest, &dest).await?;
            }
            let digest = layer.digest.clone();
            match tokio::task::spawn_blocking(move || store.snapshot(&layer)).await {
                Ok(extracted) => extracted.map(|_| ()).map_err(PullError::from),
                Err(e) => Err(PullError::Invalid {
                    reference: digest,
                    message: format!("extraction stopped: {e}"),
                }),
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => result?,
            Err(e) => return Err(invalid(format!("a layer fetch stopped: {e}"))),
        }
    }
    // Where these blobs are, for cross-repository mounts when pushing; a hint only.
    for d in layers
        .iter()
        .map(|l| &l.digest)
        .chain([&resolved.config_digest])
    {
        let _ = crate::push::record_source(store, d, &r.registry, &r.repository);
    }

    let tag = normalize_tag(reference);
    let store2 = store.clone();
    let (config2, layers2, tags) = (config.clone(), layers.clone(), vec![tag.clone()]);
    tokio::task::spawn_blocking(move || store2.put_image(&config2, &layers2, &tags))
        .await
        .map_err(|e| invalid(format!("storing the image stopped: {e}")))??;
    store
        .image(&tag)?
        .ok_or_else(|| invalid("the pulled image is missing from the store".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_layer_types_map_to_oci() {
        assert_eq!(
            layer_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Ok(MEDIA_TYPE_LAYER_GZIP)
        );
        assert_eq!(
            layer_media_type(MEDIA_TYPE_LAYER_TAR),
            Ok(MEDIA_TYPE_LAYER_TAR)
        );
        assert!(layer_media_type(MEDIA_TYPE_LAYER_ZSTD).is_err());
        assert!(layer_media_type("text/plain").is_err());
    }

    #[test]
    fn diff_ids_come_from_the_config() {
        let c = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;
        assert_eq!(diff_ids(c).unwrap(), ["sha256:aa", "sha256:bb"]);
        assert!(diff_ids(b"{}").is_err());
        assert!(diff_ids(b"nope").is_err());
    }
}
