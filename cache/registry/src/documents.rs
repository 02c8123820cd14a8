//! Reading what a registry serves as manifests (no I/O): the media type of a body, the
//! index entry to follow for a platform, an image manifest's descriptors. The client's
//! `resolve` is these three in turn; `fuzz/` feeds them arbitrary bytes.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType, Platform};
use serde::Deserialize;

use crate::platform;
use crate::reference::{DigestError, validate_digest};

/// Why a manifest or index from a registry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "schema 1 manifests are not supported; the image must be pushed again by a current client"
    )]
    Schema1,
    #[error("invalid image index: {0}")]
    Index(#[source] serde_json::Error),
    #[error("invalid image manifest: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// No entry of the index matches; `available` lists what it offers (`nothing` if none).
    #[error("no entry for the platform; the index offers {available}")]
    NoPlatform { available: String },
}

/// The fields of a manifest or index that say what it is.
#[derive(Deserialize)]
struct Declared {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// The `mediaType` a manifest or index declares in its body, if any.
pub fn declared_media_type(body: &[u8]) -> Result<Option<MediaType>, serde_json::Error> {
    let d: Declared = serde_json::from_slice(body)?;
    Ok(d.media_type.map(|m| MediaType::from(m.as_str())))
}

/// The manifest's media type: the `Content-Type` header if it is specific, else the
/// body's `mediaType`, else a guess from its shape. Schema 1 is refused.
pub fn manifest_media_type(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<MediaType, ManifestError> {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let parsed: Declared = serde_json::from_slice(body).map_err(ManifestError::NotJson)?;
    if parsed.schema_version == Some(1)
        || ct
            .as_deref()
            .is_some_and(|c| c.contains("distribution.manifest.v1"))
    {
        return Err(ManifestError::Schema1);
    }
    Ok(match ct.or(parsed.media_type) {
        Some(m) => MediaType::from(m.as_str()),
        None if parsed.manifests.is_some() => MediaType::ImageIndex,
        None => MediaType::ImageManifest,
    })
}

/// The entry of the index `body` to follow for `want` (its digest a valid sha256).
pub fn choose_from_index(body: &[u8], want: &Platform) -> Result<Descriptor, ManifestError> {
    let index: ImageIndex = serde_json::from_slice(body).map_err(ManifestError::Index)?;
    let chosen = select_platform(&index, want).ok_or_else(|| ManifestError::NoPlatform {
        available: available_platforms(&index),
    })?;
    check_sha256(&chosen)?;
    Ok(chosen)
}

/// The image manifest `body`, its config and layer digests checked to be sha256.
pub fn read_image_manifest(body: &[u8]) -> Result<ImageManifest, ManifestError> {
    let m: ImageManifest = serde_json::from_slice(body).map_err(ManifestError::Manifest)?;
    for d in m.layers().iter().chain([m.config()]) {
        check_sha256(d)?;
    }
    Ok(m)
}

/// rbuild fetches and stores only sha256 content.
fn check_sha256(d: &Descriptor) -> Result<(), DigestError> {
    validate_digest(d.digest().as_ref())
}

/// Pick the index entry for `want`: an exact variant match first, then the first match.
fn select_platform(index: &ImageIndex, want: &Platform) -> Option<Descriptor> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for m in index.manifests() {
        let Some(have) = m.platform() else { continue };
        if !platform::matches(want, have) {
            continue;
        }
        let rank = if platform::variant(have) == platform::variant(want) {
            0
        } else {
            1
        };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, m));
        }
    }
    best.map(|(_, m)| m.clone())
}

/// The platforms an index offers, for an error message (`nothing` if none).
fn available_platforms(index: &ImageIndex) -> String {
    let names: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|m| m.platform().as_ref())
        .filter(|p| p.os().to_string() != "unknown")
        .map(platform::name)
        .collect();
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_types::DOCKER_MANIFEST;

    #[test]
    fn media_type_detection() {
        assert_eq!(
            manifest_media_type(Some(DOCKER_MANIFEST), b"{}").unwrap(),
            MediaType::from(DOCKER_MANIFEST)
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), br#"{"mediaType":"x/y"}"#).unwrap(),
            MediaType::from("x/y")
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            MediaType::ImageIndex
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2}"#).unwrap(),
            MediaType::ImageManifest
        );
        assert!(
            manifest_media_type(None, br#"{"schemaVersion":1}"#)
                .unwrap_err()
                .to_string()
                .contains("schema 1")
        );
        assert!(manifest_media_type(None, b"nope").is_err());
        assert_eq!(
            declared_media_type(br#"{"mediaType":"x/y"}"#).unwrap(),
            Some(MediaType::from("x/y"))
        );
        assert_eq!(declared_media_type(b"{}").unwrap(), None);
        assert!(declared_media_type(b"[").is_err());
    }

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> ImageIndex {
        let m: Vec<_> = entries
            .iter()
            .map(|(os, arch, var, c)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = var {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": MediaType::ImageManifest, "size": 1,
                    "digest": format!("sha256:{}", c.to_string().repeat(64)), "platform": p})
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": m})).unwrap()
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
        let pick = |p: Platform| select_platform(&idx, &p).unwrap().digest().to_string();
        assert_eq!(
            pick(platform::of("linux", "amd64", None)),
            format!("sha256:{}", "4".repeat(64))
        );
        assert_eq!(
            pick(platform::of("linux", "arm", Some("v7"))),
            format!("sha256:{}", "2".repeat(64))
        );
        assert_eq!(
            pick(platform::of("linux", "arm64", None)),
            format!("sha256:{}", "3".repeat(64))
        );
        assert!(select_platform(&idx, &platform::of("linux", "s390x", None)).is_none());
        assert_eq!(
            available_platforms(&idx),
            "linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/amd64"
        );
        assert_eq!(available_platforms(&index(&[])), "nothing");
        // arm64 entries without a variant are v8
        let idx = index(&[("linux", "arm64", None, 'a')]);
        let d = select_platform(&idx, &platform::of("linux", "arm64", Some("v8"))).unwrap();
        assert_eq!(d.digest().to_string(), format!("sha256:{}", "a".repeat(64)));
        assert!(select_platform(&idx, &platform::of("linux", "arm64", Some("v9"))).is_none());
        assert!(serde_json::from_slice::<ImageIndex>(b"[]").is_err());
    }
}
