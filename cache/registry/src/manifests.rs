//! Manifests and indexes: fetch (digest verified, media type found), HEAD, resolve a
//! tag through an index to one platform's image manifest, push exact bytes. They are
//! read as oci-spec's [`ImageManifest`] and [`ImageIndex`] (Docker's schema 2 manifests
//! and manifest lists have the same shape) and always kept as the registry's bytes.

use oci_spec::image::{Descriptor, Digest, MediaType, Platform};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use crate::auth::repo_scope;
use crate::client::sha256_digest;
use crate::documents::{
    ManifestError, choose_from_index, manifest_media_type, read_image_manifest,
};
use crate::error::Ctx;
use crate::http::{header_str, read_limited};
use crate::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, is_index};
use crate::platform;
use crate::reference::{Reference, validate_digest};
use crate::{RegistryClient, RegistryError};

const MAX_MANIFEST: usize = 8 << 20;

/// An image manifest resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Digest of `manifest_bytes` (verified).
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub media_type: MediaType,
    /// The index / manifest list the manifest was chosen from, if any.
    pub index_digest: Option<String>,
    /// The manifest's config and layer descriptors (sha256 digests only).
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest or index as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBytes {
    /// sha256 of `bytes` (verified).
    pub digest: String,
    pub media_type: MediaType,
    pub bytes: Vec<u8>,
}

/// The `Accept` header of manifest requests: every manifest and index type we read.
fn manifest_accept() -> String {
    [
        MediaType::ImageIndex.as_ref(),
        DOCKER_MANIFEST_LIST,
        MediaType::ImageManifest.as_ref(),
        DOCKER_MANIFEST,
    ]
    .join(", ")
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
    /// The manifest or index `mref` (a tag or digest) of `r`'s repository, its digest
    /// verified against the digest asked for or the one the registry announced.
    async fn get_manifest(
        &self,
        r: &Reference,
        mref: &str,
    ) -> Result<ManifestBytes, RegistryError> {
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
        let media_type =
            manifest_media_type(ct.as_deref(), &body).map_err(|e| ctx.protocol(e.to_string()))?;
        Ok(ManifestBytes {
            digest,
            media_type,
            bytes: body,
        })
    }

    /// The manifest or index a tag or digest points at, exactly as stored
    /// (digest verified), without choosing a platform.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<ManifestBytes, RegistryError> {
        self.get_manifest(reference, reference.manifest_ref()).await
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
        validate_digest(&digest).map_err(|e| ctx.protocol(e.to_string()))?;
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
        let digest = Digest::try_from(digest.as_str()).map_err(|e| ctx.protocol(e.to_string()))?;
        Ok(Some(Descriptor::new(
            MediaType::from(media_type.as_str()),
            size,
            digest,
        )))
    }

    /// Resolve a tag or digest to the image manifest for `platform`, through an
    /// index or manifest list; every manifest's digest is verified.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let mut found = self
            .get_manifest(reference, reference.manifest_ref())
            .await?;
        let mut index_digest = None;
        if is_index(&found.media_type) {
            let ctx = Ctx {
                registry: &reference.registry,
                repository: &reference.repository,
                what: format!("index {}", found.digest),
            };
            let chosen = choose_from_index(&found.bytes, platform).map_err(|e| match e {
                ManifestError::NoPlatform { available } => RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform::name(platform),
                    available,
                },
                e => ctx.protocol(e.to_string()),
            })?;
            index_digest = Some(found.digest);
            found = self
                .get_manifest(reference, chosen.digest().as_ref())
                .await?;
            if is_index(&found.media_type) {
                return Err(ctx.protocol(format!(
                    "entry {} for {} is another index; nested indexes are not supported",
                    chosen.digest(),
                    platform::name(platform)
                )));
            }
        }
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: format!("manifest {}", found.digest),
        };
        let m = read_image_manifest(&found.bytes).map_err(|e| ctx.protocol(e.to_string()))?;
        Ok(Resolved {
            manifest_digest: found.digest,
            manifest_bytes: found.bytes,
            media_type: found.media_type,
            index_digest,
            config: m.config().clone(),
            layers: m.layers().clone(),
        })
    }

    /// Push manifest `bytes` exactly as given, under the reference's tag (or
    /// digest). Returns the manifest digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &MediaType,
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
                .header(CONTENT_TYPE, media_type.as_ref())
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
