//! Manifests and indexes: fetch (digest verified, media type found), HEAD, resolve a
//! tag through an index to one platform's image manifest, push exact bytes.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use serde::Deserialize;

use crate::auth::repo_scope;
use crate::client::{header_str, read_limited, sha256_digest};
use crate::error::Ctx;
use crate::media_types::*;
use crate::reference::{Reference, validate_digest};
use crate::{Platform, RegistryClient, RegistryError};

const MAX_MANIFEST: usize = 8 << 20;

/// A content descriptor (manifest, config or layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// An image manifest resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Digest of `manifest_bytes` (verified).
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub media_type: String,
    /// The index / manifest list the manifest was chosen from, if any.
    pub index_digest: Option<String>,
    pub config_digest: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest or index as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBytes {
    /// sha256 of `bytes` (verified).
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The `Accept` header of manifest requests: every manifest and index type we read.
fn manifest_accept() -> String {
    [
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ]
    .join(", ")
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawManifest {
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawIndex {
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct MediaTypeOnly {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The manifest's media type: the header if it is specific, else the body's
/// `mediaType`, else a guess from its shape.
fn manifest_media_type(content_type: Option<&str>, body: &[u8]) -> Result<String, String> {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let parsed: MediaTypeOnly =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if parsed.schema_version == Some(1)
        || ct
            .as_deref()
            .is_some_and(|c| c.contains("distribution.manifest.v1"))
    {
        return Err("schema 1 manifests are not supported; the image must be pushed again by a current client".into());
    }
    Ok(ct.or(parsed.media_type).unwrap_or_else(|| {
        if parsed.manifests.is_some() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    }))
}

fn convert(d: RawDescriptor) -> Result<Descriptor, String> {
    validate_digest(&d.digest)?;
    Ok(Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
    })
}

/// Pick the index entry for `want`: an exact variant match first, then the first match.
fn select_platform(body: &[u8], want: &Platform) -> Result<(Descriptor, String), String> {
    let index: RawIndex =
        serde_json::from_slice(body).map_err(|e| format!("invalid image index: {e}"))?;
    let mut available = Vec::new();
    let mut best: Option<(u8, RawDescriptor)> = None;
    for m in index.manifests {
        let Some(p) = &m.platform else { continue };
        let plat = Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().filter(|v| !v.is_empty()),
        };
        if plat.os != "unknown" {
            available.push(plat.to_string());
        }
        if !want.matches(&plat) {
            continue;
        }
        let rank = if plat.variant == want.variant { 0 } else { 1 };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, m));
        }
    }
    match best {
        Some((_, m)) => Ok((convert(m)?, String::new())),
        None => Ok((
            Descriptor {
                media_type: String::new(),
                digest: String::new(),
                size: 0,
            },
            if available.is_empty() {
                "nothing".to_string()
            } else {
                available.join(", ")
            },
        )),
    }
}

/// "manifest sha256:…" or "manifest for tag \"v1\"" for error messages.
fn manifest_what(mref: &str) -> String {
    if mref.contains(':') {
        format!("manifest {mref}")
    } else {
        format!("manifest for tag {mref:?}")
    }
}

impl RegistryClient {
    async fn get_manifest(
        &self,
        r: &Reference,
        mref: &str,
    ) -> Result<(Vec<u8>, String, String), RegistryError> {
        let ctx = Ctx {
            registry: &r.registry,
            repository: &r.repository,
            what: manifest_what(mref),
        };
        let url = self.url(r, &format!("manifests/{mref}"))?;
        let scopes = [repo_scope(&r.repository, "pull")];
        let accept = manifest_accept();
        let build = || {
            self.http_for(&url)
                .get(url.clone())
                .header(ACCEPT, accept.as_str())
        };
        let (body, ct, header_digest) = self
            .opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                if !resp.status().is_success() {
                    return Err(Self::fail(&ctx, resp).await);
                }
                let ct = header_str(resp.headers(), CONTENT_TYPE);
                let hd = header_str(
                    resp.headers(),
                    "docker-content-digest".parse().expect("static"),
                );
                let body = read_limited(&ctx, resp, MAX_MANIFEST).await?;
                Ok((body, ct, hd))
            })
            .await?;
        let digest = sha256_digest(&body);
        let expected = if mref.contains(':') {
            Some(mref.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(exp) = expected
            && exp != digest
        {
            return Err(ctx.mismatch(&exp, &digest));
        }
        let media_type = manifest_media_type(ct.as_deref(), &body).map_err(|m| ctx.protocol(m))?;
        Ok((body, media_type, digest))
    }

    /// The manifest or index a tag or digest points at, exactly as stored
    /// (digest verified), without choosing a platform.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<ManifestBytes, RegistryError> {
        let (bytes, media_type, digest) = self
            .get_manifest(reference, reference.manifest_ref())
            .await?;
        Ok(ManifestBytes {
            digest,
            media_type,
            bytes,
        })
    }

    /// The descriptor a tag or digest points at, by HEAD (no body, so it does
    /// not count against pull rate limits); `None` if there is no such manifest.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let mref = reference.manifest_ref();
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: manifest_what(mref),
        };
        let url = self.url(reference, &format!("manifests/{mref}"))?;
        let scopes = [repo_scope(&reference.repository, "pull")];
        let accept = manifest_accept();
        let build = || {
            self.http_for(&url)
                .head(url.clone())
                .header(ACCEPT, accept.as_str())
        };
        let resp = self
            .opts()
            .retry
            .run(|_| async { self.send(&ctx, &scopes, &build).await })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::fail(&ctx, resp).await);
        }
        let h = resp.headers();
        let digest = header_str(h, "docker-content-digest".parse().expect("static"))
            .or_else(|| reference.digest.clone())
            .ok_or_else(|| ctx.protocol("HEAD answer has no Docker-Content-Digest".into()))?;
        validate_digest(&digest).map_err(|m| ctx.protocol(m))?;
        if let Some(d) = &reference.digest
            && *d != digest
        {
            return Err(ctx.mismatch(d, &digest));
        }
        let media_type = header_str(h, CONTENT_TYPE)
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let size = header_str(h, CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some(Descriptor {
            media_type,
            digest,
            size,
        }))
    }

    /// Resolve a tag or digest to the image manifest for `platform`, through an
    /// index or manifest list; every manifest's digest is verified.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let (mut body, mut media_type, mut digest) = self
            .get_manifest(reference, reference.manifest_ref())
            .await?;
        let mut index_digest = None;
        if is_index(&media_type) {
            let ctx = Ctx {
                registry: &reference.registry,
                repository: &reference.repository,
                what: format!("index {digest}"),
            };
            let (chosen, available) =
                select_platform(&body, platform).map_err(|m| ctx.protocol(m))?;
            if chosen.digest.is_empty() {
                return Err(RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available,
                });
            }
            index_digest = Some(digest);
            (body, media_type, digest) = self.get_manifest(reference, &chosen.digest).await?;
            if is_index(&media_type) {
                return Err(ctx.protocol(format!(
                    "entry {} for {platform} is another index; nested indexes are not supported",
                    chosen.digest
                )));
            }
        }
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: format!("manifest {digest}"),
        };
        let m: RawManifest = serde_json::from_slice(&body)
            .map_err(|e| ctx.protocol(format!("invalid image manifest: {e}")))?;
        let config = convert(m.config).map_err(|e| ctx.protocol(e))?;
        let layers = m
            .layers
            .into_iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ctx.protocol(e))?;
        Ok(Resolved {
            manifest_digest: digest,
            manifest_bytes: body,
            media_type,
            index_digest,
            config_digest: config.digest.clone(),
            config,
            layers,
        })
    }

    /// Push manifest `bytes` exactly as given, under the reference's tag (or
    /// digest). Returns the manifest digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let target = reference.tag.clone().unwrap_or_else(|| digest.clone());
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: format!("push of manifest {target}"),
        };
        if let Some(d) = &reference.digest
            && *d != digest
        {
            return Err(ctx.mismatch(d, &digest));
        }
        let url = self.url(reference, &format!("manifests/{target}"))?;
        let scopes = Self::push_scopes(reference);
        let body = bytes.to_vec();
        let build = || {
            self.http_for(&url)
                .put(url.clone())
                .header(CONTENT_TYPE, media_type)
                .body(body.clone())
        };
        let returned = self
            .opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                if !resp.status().is_success() {
                    return Err(Self::fail(&ctx, resp).await);
                }
                Ok(header_str(
                    resp.headers(),
                    "docker-content-digest".parse().expect("static"),
                ))
            })
            .await?;
        if let Some(d) = returned.filter(|d| d.starts_with("sha256:"))
            && d != digest
        {
            return Err(ctx.mismatch(&digest, &d));
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_detection() {
        assert_eq!(
            manifest_media_type(Some(DOCKER_MANIFEST), b"{}").unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), br#"{"mediaType":"x/y"}"#).unwrap(),
            "x/y"
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2}"#).unwrap(),
            OCI_MANIFEST
        );
        assert!(
            manifest_media_type(None, br#"{"schemaVersion":1}"#)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(manifest_media_type(None, b"nope").is_err());
    }

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> Vec<u8> {
        let m: Vec<_> = entries
            .iter()
            .map(|(os, arch, var, c)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = var {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "size": 1,
                    "digest": format!("sha256:{}", c.to_string().repeat(64)), "platform": p})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": m})).unwrap()
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
        let pick = |p: Platform| select_platform(&idx, &p).unwrap().0.digest;
        assert_eq!(
            pick(Platform::new("linux", "amd64", None)),
            format!("sha256:{}", "4".repeat(64))
        );
        assert_eq!(
            pick(Platform::new("linux", "arm", Some("v7"))),
            format!("sha256:{}", "2".repeat(64))
        );
        assert_eq!(
            pick(Platform::new("linux", "arm64", None)),
            format!("sha256:{}", "3".repeat(64))
        );
        let (d, avail) = select_platform(&idx, &Platform::new("linux", "s390x", None)).unwrap();
        assert!(d.digest.is_empty());
        assert_eq!(
            avail,
            "linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/amd64"
        );
        // arm64 entries without a variant are v8
        let idx = index(&[("linux", "arm64", None, 'a')]);
        let (d, _) = select_platform(&idx, &Platform::new("linux", "arm64", Some("v8"))).unwrap();
        assert_eq!(d.digest, format!("sha256:{}", "a".repeat(64)));
        let (d, _) = select_platform(&idx, &Platform::new("linux", "arm64", Some("v9"))).unwrap();
        assert!(d.digest.is_empty());
        assert!(select_platform(b"[]", &Platform::host()).is_err());
    }
}
