//! The store's OCI documents, modelled by oci-spec ([`ImageIndex`], [`ImageManifest`],
//! [`Descriptor`], [`Platform`], [`MediaType`]): reading them, the exact bytes rbuild writes
//! for them, and what the store reads from image configs (diff_ids, platform).
//!
//! The readers are public so that `fuzz/` can feed them arbitrary bytes.
//!
//! Manifests are written by oci-spec's serializer (its field order and omitted fields are
//! today's bytes; `tests/golden.rs` checks them). Index files are not: see [`index_json`].

use crate::CacheError;
use oci_spec::image::{Arch, Descriptor, Digest, ImageIndex, ImageManifest, MediaType, Os};
use rbuild_registry::Platform;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The annotation naming a tag in an OCI layout's index.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and `docker save`'s) name of an image in an OCI archive.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A descriptor of `size` bytes of `media_type` content with `digest`.
pub(crate) fn descriptor(
    media_type: MediaType,
    digest: &str,
    size: u64,
) -> Result<Descriptor, CacheError> {
    let digest =
        Digest::try_from(digest).map_err(|_| CacheError::InvalidDigest(digest.to_string()))?;
    Ok(Descriptor::new(media_type, size, digest))
}

/// The annotation `key` of a descriptor.
pub(crate) fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations().as_ref()?.get(key).map(String::as_str)
}

/// The tag an index entry names (`org.opencontainers.image.ref.name`).
pub(crate) fn ref_name(d: &Descriptor) -> Option<&str> {
    annotation(d, REF_NAME)
}

/// `d` with exactly the annotations `pairs` (none: no annotations at all).
pub(crate) fn with_annotations(mut d: Descriptor, pairs: &[(&str, &str)]) -> Descriptor {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    d.set_annotations((!map.is_empty()).then_some(map));
    d
}

/// An OCI image index (also a layout's `index.json`).
///
/// oci-spec 0.10 reads a platform's `os.version` and `os.features` under the names
/// `os_version` and `os_features`, so they would be lost; they are renamed before it
/// reads them (and [`index_json`] writes the spec's names back).
pub fn parse_index(bytes: &[u8]) -> Result<ImageIndex, serde_json::Error> {
    if !bytes.windows(4).any(|w| w == b"\"os.") {
        return serde_json::from_slice(bytes);
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(entries) = v.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        for p in entries
            .iter_mut()
            .filter_map(|e| e.get_mut("platform")?.as_object_mut())
        {
            for (from, to) in [("os.version", "os_version"), ("os.features", "os_features")] {
                if let Some(x) = p.remove(from) {
                    p.insert(to.to_string(), x);
                }
            }
        }
    }
    serde_json::from_value(v)
}

/// An image manifest (OCI, or Docker schema 2, which has the same shape).
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The bytes of a manifest rbuild writes: oci-spec's encoding (the fields rbuild sets —
/// schemaVersion, mediaType, artifactType, config, layers — in that order, no annotations).
pub fn manifest_json(m: &ImageManifest) -> Vec<u8> {
    // Plain strings and numbers: encoding cannot fail.
    let Some(annotations) = m.annotations() else {
        return serde_json::to_vec(m).unwrap_or_default();
    };
    // oci-spec keeps annotations in a HashMap, whose order differs run to run: written
    // last and sorted, so an annotated manifest's digest is the same every time.
    #[derive(Serialize)]
    struct Annotated<'a> {
        #[serde(flatten)]
        manifest: &'a ImageManifest,
        annotations: BTreeMap<&'a str, &'a str>,
    }
    let mut bare = m.clone();
    bare.set_annotations(None);
    serde_json::to_vec(&Annotated {
        manifest: &bare,
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    })
    .unwrap_or_default()
}

/// The bytes of an index rbuild writes (the store's `index.json`, an archive's, a cache
/// layout's), as it always wrote them, because oci-spec's serializer would change them
/// (and with them every layout's bytes): it writes annotations from a `HashMap` (order
/// differs run to run), writes `os.version`/`os.features` as `os_version`/`os_features`,
/// and keeps `urls`, `artifactType` and `data`, which rbuild never wrote. So: schemaVersion,
/// mediaType, manifests; each descriptor mediaType, digest, size, annotations (sorted, if
/// any), platform (keys sorted, if any).
pub fn index_json(idx: &ImageIndex) -> Vec<u8> {
    #[derive(Serialize)]
    struct Index<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
        media_type: Option<&'a str>,
        manifests: Vec<Entry<'a>>,
    }
    #[derive(Serialize)]
    struct Entry<'a> {
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        digest: &'a str,
        size: u64,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        annotations: BTreeMap<&'a str, &'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        platform: Option<PlatformOut<'a>>,
    }
    // Field order = sorted key order, as the JSON object rbuild used to keep.
    #[derive(Serialize)]
    struct PlatformOut<'a> {
        architecture: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        features: Option<&'a Vec<String>>,
        os: String,
        #[serde(rename = "os.features", skip_serializing_if = "Option::is_none")]
        os_features: Option<&'a Vec<String>>,
        #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
        os_version: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        variant: Option<&'a str>,
    }
    let out = Index {
        schema_version: idx.schema_version(),
        media_type: idx.media_type().as_ref().map(|m| m.as_ref()),
        manifests: idx
            .manifests()
            .iter()
            .map(|d| Entry {
                media_type: d.media_type().as_ref(),
                digest: d.digest().as_ref(),
                size: d.size(),
                annotations: d
                    .annotations()
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                platform: d.platform().as_ref().map(|p| PlatformOut {
                    architecture: p.architecture().to_string(),
                    features: p.features().as_ref(),
                    os: p.os().to_string(),
                    os_features: p.os_features().as_ref(),
                    os_version: p.os_version().as_deref(),
                    variant: p.variant().as_deref(),
                }),
            })
            .collect(),
    };
    // Plain strings and numbers: encoding cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

/// An image config rbuild cannot read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid image config: {0}")]
    Json(#[source] serde_json::Error),
    #[error("config has no rootfs.diff_ids")]
    NoDiffIds,
}

/// The `rootfs.diff_ids` of an image config; `None` if it has none (absent or `null`).
/// Nothing else of the config is read, so fields the store does not know never fail it.
pub fn config_diff_ids(config: &[u8]) -> Result<Option<Vec<String>>, ConfigError> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        rootfs: Option<Rootfs>,
    }
    #[derive(Deserialize)]
    struct Rootfs {
        #[serde(default)]
        diff_ids: Option<Vec<String>>,
    }
    let c: Config = serde_json::from_slice(config).map_err(ConfigError::Json)?;
    Ok(c.rootfs.and_then(|r| r.diff_ids))
}

/// `{architecture, os, variant}` of a config, for the index descriptor; `None` when the
/// config does not name both an architecture and an OS.
pub fn config_platform(config: &[u8]) -> Option<Platform> {
    /// Only the fields read: the rest (a long history, the environment) is skipped by the
    /// parser instead of being built as a `Value` (10,000 history entries took 6 MB).
    #[derive(serde::Deserialize)]
    struct Fields {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let f: Fields = serde_json::from_slice(config).ok()?;
    if f.architecture.is_empty() || f.os.is_empty() {
        return None;
    }
    let mut p = Platform::default();
    p.set_architecture(Arch::from(f.architecture.as_str()));
    p.set_os(Os::from(f.os.as_str()));
    p.set_variant(f.variant);
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_ids_from_config() {
        let c = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        assert_eq!(
            config_diff_ids(c).unwrap(),
            Some(vec!["sha256:aa".to_string()])
        );
        assert!(config_diff_ids(b"nope").is_err());
        assert_eq!(config_diff_ids(b"{}").unwrap(), None);
        assert_eq!(
            config_diff_ids(br#"{"rootfs":null,"history":null}"#).unwrap(),
            None
        );
        assert_eq!(
            config_diff_ids(br#"{"rootfs":{"diff_ids":null}}"#).unwrap(),
            None
        );
        assert!(config_diff_ids(br#"{"rootfs":{"diff_ids":[1]}}"#).is_err());
    }

    #[test]
    fn index_keeps_platform_fields_oci_spec_would_rename() {
        let d = format!("sha256:{}", "a".repeat(64));
        let bytes = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":1,"annotations":{{"z":"1","a":"2"}},"platform":{{"os":"windows","architecture":"amd64","os.version":"10.0","os.features":["win32k"],"features":["x"],"variant":""}}}}]}}"#
        );
        let idx = parse_index(bytes.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(index_json(&idx)).unwrap(),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":1,"annotations":{{"a":"2","z":"1"}},"platform":{{"architecture":"amd64","features":["x"],"os":"windows","os.features":["win32k"],"os.version":"10.0","variant":""}}}}]}}"#
            )
        );
    }

    #[test]
    fn platform_of_config() {
        let p =
            config_platform(br#"{"architecture":"arm64","os":"linux","variant":"v8"}"#).unwrap();
        assert_eq!(rbuild_registry::platform::name(&p), "linux/arm64/v8");
        assert!(config_platform(br#"{"architecture":"","os":"linux"}"#).is_none());
        assert!(config_platform(br#"{"os":"linux"}"#).is_none());
    }
}
