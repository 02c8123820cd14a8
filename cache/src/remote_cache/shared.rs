//! A registry cache reference shared by a fleet of builders.
//!
//! A registry has no compare-and-swap on tags, so merging alone (read the cache, add this
//! build's records, write it back) can lose a concurrent builder's write. Each export
//! therefore first pushes this build's records as a manifest under a tag of its own,
//! [`build_tag`] (`TAG.rb-<16 hex of its config digest>`), which no other builder writes.
//! It then merges: the current cache at `TAG`, every build tag the cache does not list as
//! merged yet ([`CacheConfig::merged`]) and its own records, bounded by `max-size`, pushed
//! to `TAG`; a re-read that finds another manifest there (someone wrote meanwhile) merges
//! again, up to [`ATTEMPTS`] times. An import reads `TAG` and the build tags it does not
//! list as merged, so a record is never lost even when the last write to `TAG` missed it.
//! Caches written before this (no `merged` list, no build tags) read as they did.

use super::merge::{ExportOptions, now_ms};
use super::{
    CacheConfig, ExportSummary, MAX_CONFIG, MEDIA_TYPE_CACHE_CONFIG, RemoteCacheError,
    export_registry, format_err, load_registry, manifest_bytes, push_config_and_manifest,
};
use crate::oci::parse_manifest;
use crate::registry::{Reference, RegistryClient};
use crate::{Store, fsutil};

/// Merge rounds an export tries before it leaves `TAG` to the builders it raced with (its
/// records stay readable through its build tag).
pub const ATTEMPTS: usize = 8;

/// Separates a cache tag from a build's suffix.
const BUILD_TAG_MARK: &str = ".rb-";

/// The tag of one build's records in the cache tagged `tag`: the tag (cut to fit the
/// 128-character limit), [`BUILD_TAG_MARK`], and 16 hex of the records' config digest.
pub fn build_tag(tag: &str, config_digest: &str) -> String {
    let hex = config_digest.trim_start_matches("sha256:");
    let keep = 128 - BUILD_TAG_MARK.len() - 16;
    let base: String = tag.chars().take(keep).collect();
    format!("{base}{BUILD_TAG_MARK}{}", &hex[..hex.len().min(16)])
}

/// Whether `candidate` is a build tag of the cache tagged `tag`.
pub fn is_build_tag_of(tag: &str, candidate: &str) -> bool {
    let keep = 128 - BUILD_TAG_MARK.len() - 16;
    let base: String = tag.chars().take(keep).collect();
    candidate
        .strip_prefix(&base)
        .and_then(|rest| rest.strip_prefix(BUILD_TAG_MARK))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn with_tag(reference: &Reference, tag: &str) -> Reference {
    Reference {
        tag: Some(tag.to_string()),
        digest: None,
        ..reference.clone()
    }
}

/// What a tag holds, as far as a cache export or import cares.
enum Current {
    Absent,
    /// An rbuild cache artifact: its manifest digest and config.
    Cache(String, CacheConfig),
    /// Something else (an image, maybe with inline cache metadata).
    Other,
}

async fn read_current(
    client: &RegistryClient,
    reference: &Reference,
) -> Result<Current, RemoteCacheError> {
    let name = reference.to_string();
    let found = match client.fetch_manifest(reference).await {
        Ok(f) => f,
        Err(crate::registry::RegistryError::NotFound { .. }) => return Ok(Current::Absent),
        Err(e) => return Err(e.into()),
    };
    let Ok(m) = parse_manifest(&found.bytes) else {
        return Ok(Current::Other);
    };
    if m.config().media_type().as_ref() != MEDIA_TYPE_CACHE_CONFIG {
        return Ok(Current::Other);
    }
    if m.config().size() > MAX_CONFIG {
        return Err(super::invalid(&name, "cache config is too large"));
    }
    let config = client
        .fetch_config(reference, m.config().digest().as_ref())
        .await?;
    let cfg = CacheConfig::parse(&config).map_err(format_err(&name))?;
    Ok(Current::Cache(found.digest, cfg))
}

/// Adds to `into` the records of the build tags of `tag` among `tags` that it does not
/// hold yet. A build tag gone or unreadable meanwhile is passed over.
async fn absorb_build_tags(
    client: &RegistryClient,
    reference: &Reference,
    tag: &str,
    tags: &[String],
    into: &mut CacheConfig,
) {
    for t in tags {
        if !is_build_tag_of(tag, t) || into.merged.contains(t) {
            continue;
        }
        if let Ok(cfg) = load_registry(client, &with_tag(reference, t)).await {
            into.absorb(cfg);
            into.merged.insert(t.clone());
        }
    }
}

/// Exports `cfg` to `reference`, merged with what other builders exported there (see the
/// module doc). With `merge=false`, or a reference by digest, it replaces the cache as
/// [`export_registry`] does.
pub async fn export_registry_shared(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    cfg: &CacheConfig,
    opts: &ExportOptions,
) -> Result<ExportSummary, RemoteCacheError> {
    let tag = match (&reference.tag, &reference.digest) {
        (Some(t), None) if opts.merge => t.clone(),
        _ => return export_registry(store, client, reference, cfg).await,
    };
    // This build's records under a tag no one else writes: whatever the races below, an
    // import finds them there. Named by their content (no stamps), so a rebuild that
    // exports the same records writes the same tag again instead of a new one.
    let own_digest = format!("sha256:{}", fsutil::sha256_hex(&cfg.to_json()));
    let own_tag = build_tag(&tag, &own_digest);
    export_registry(store, client, &with_tag(reference, &own_tag), cfg).await?;
    let mut ours = cfg.clone();
    ours.touch_all(now_ms());
    ours.merged.insert(own_tag);

    let mut summary = None;
    for _ in 0..ATTEMPTS {
        // A registry that does not list tags (denied, unsupported) still gets a merge of
        // what TAG holds; this build's records stay under their build tag.
        let tags = client.list_tags(reference).await.unwrap_or_default();
        let mut merged = ours.clone();
        let current = match read_current(client, reference).await? {
            Current::Cache(digest, c) => {
                merged.absorb(c);
                Some(digest)
            }
            Current::Absent | Current::Other => None,
        };
        absorb_build_tags(client, reference, &tag, &tags, &mut merged).await;
        if let Some(max) = opts.max_size {
            merged.bound(max);
        }
        let manifest = manifest_bytes(&merged, &merged.to_json())?;
        let digest = format!("sha256:{}", fsutil::sha256_hex(&manifest));
        if current.as_deref() == Some(digest.as_str()) {
            // The cache already says all of it.
            return Ok(ExportSummary {
                manifest_digest: digest,
                records: merged.records.len(),
                blobs: merged.layers().len(),
            });
        }
        // Every layer blob is in the repository already (this build pushed its own; the
        // others came from manifests there): only the config and the manifest go up.
        let done = push_config_and_manifest(store, client, reference, &merged).await?;
        // Re-read: another manifest there means another builder wrote after our read;
        // merge again with what it wrote.
        let now_there = client.head_manifest(reference).await?;
        if now_there.is_some_and(|d| d.digest().as_ref() == done.manifest_digest) {
            return Ok(done);
        }
        summary = Some(done);
    }
    // Raced every time: the others' merges carry on; ours stays under its build tag.
    summary.ok_or_else(|| super::invalid(reference.to_string(), "no merge attempt was made"))
}

/// Reads the cache at `reference` with the records of build tags it does not hold yet;
/// an image (inline cache) or a reference by digest reads as [`load_registry`] does.
pub async fn load_registry_shared(
    client: &RegistryClient,
    reference: &Reference,
) -> Result<CacheConfig, RemoteCacheError> {
    let tag = match (&reference.tag, &reference.digest) {
        (Some(t), None) => t.clone(),
        _ => return load_registry(client, reference).await,
    };
    let mut cfg = match read_current(client, reference).await? {
        Current::Cache(_, c) => c,
        Current::Other => return load_registry(client, reference).await,
        Current::Absent => CacheConfig::new(Default::default()),
    };
    // Without a tag list, TAG alone is what there is (as before build tags).
    let tags = client.list_tags(reference).await.unwrap_or_default();
    absorb_build_tags(client, reference, &tag, &tags, &mut cfg).await;
    if cfg.merged.is_empty() && cfg.records.is_empty() {
        // Neither a cache nor build tags: the error a plain read gives.
        return load_registry(client, reference).await;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_tags_are_recognised_and_fit() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let t = build_tag("x", &d);
        assert_eq!(t, "x.rb-abababababababab");
        assert!(is_build_tag_of("x", &t));
        assert!(!is_build_tag_of("y", &t));
        assert!(!is_build_tag_of("x", "x.rb-nothex!"));
        assert!(!is_build_tag_of("x", "x"));
        let long = "l".repeat(128);
        let t = build_tag(&long, &d);
        assert_eq!(t.len(), 128);
        assert!(is_build_tag_of(&long, &t));
    }
}
