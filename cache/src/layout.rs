//! The OCI image layout under `root/oci`: index.json, manifests, tags.

use crate::error::{CacheError, IoContext};
use crate::oci::{
    REF_NAME, config_diff_ids, config_platform, descriptor, index_json, manifest_json, parse_index,
    parse_manifest, ref_name, with_annotations,
};
use crate::{Layer, Store, StoredImage, digest_hex, fsutil};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifestBuilder, MediaType, SCHEMA_VERSION};
use rbuild_registry::media_types::{is_index, manifest_layer_media_type};
pub use rbuild_registry::reference::familiar_name;
use rbuild_registry::reference::split_tag;
use std::collections::{BTreeMap, HashMap};

/// `name` with `:latest` appended when it has neither a tag nor a digest.
pub fn normalize_tag(name: &str) -> String {
    if name.contains('@') || split_tag(name).1.is_some() {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// The identity of a tag for matching: `docker.io/library/x` and `x` are the same image
/// name, as in docker.
pub(crate) fn tag_key(name: &str) -> String {
    normalize_tag(familiar_name(name))
}

/// Normalises and checks a tag; OCI ref names must be printable without spaces.
pub(crate) fn check_tag(tag: &str) -> Result<String, CacheError> {
    let bad = |reason: &str| CacheError::InvalidTag {
        tag: tag.to_string(),
        reason: reason.to_string(),
    };
    if tag.is_empty() {
        return Err(bad("empty name"));
    }
    if tag.len() > 255 {
        return Err(bad("longer than 255 characters"));
    }
    if !tag.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only printable ASCII without spaces is allowed"));
    }
    if tag.starts_with([':', '/', '@', '.', '-']) || tag.ends_with([':', '/', '@']) {
        return Err(bad(
            "must start with a letter or digit and name a repository",
        ));
    }
    Ok(normalize_tag(tag))
}

impl Store {
    fn index_path(&self) -> std::path::PathBuf {
        self.oci_dir().join("index.json")
    }

    pub(crate) fn read_index(&self) -> Result<ImageIndex, CacheError> {
        let p = self.index_path();
        let bytes = std::fs::read(&p).ctx("read", &p)?;
        parse_index(&bytes).map_err(|e| CacheError::Corrupt {
            path: p,
            reason: format!(
                "invalid OCI index: {e}; `rbuild check --repair` rebuilds it from the stored manifests"
            ),
        })
    }

    /// Read-modify-write of index.json under the cross-process index lock.
    pub(crate) fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<Descriptor>) -> T,
    ) -> Result<T, CacheError> {
        let _g = self.lock_index()?;
        let mut idx = self.read_index()?;
        let before = index_json(&idx);
        let mut entries = idx.manifests().clone();
        let out = f(&mut entries);
        idx.set_manifests(entries);
        let after = index_json(&idx);
        // A no-op rebuild re-tags the same manifest: skip the write and its fsyncs.
        if before != after {
            fsutil::atomic_write(&self.index_path(), &after)?;
        }
        Ok(out)
    }

    /// Points each tag (normalised) at the manifest `desc`; untagged manifests get one
    /// entry without a name so they stay listed.
    pub(crate) fn tag_manifest(&self, desc: Descriptor, tags: &[String]) -> Result<(), CacheError> {
        let mut tags: Vec<String> = tags
            .iter()
            .map(|t| check_tag(t))
            .collect::<Result<_, _>>()?;
        let mut seen = std::collections::HashSet::new();
        tags.retain(|t| seen.insert(tag_key(t)));
        self.update_index(|entries| {
            if tags.is_empty() {
                if !entries.iter().any(|d| d.digest() == desc.digest()) {
                    entries.push(with_annotations(desc.clone(), &[]));
                }
                return;
            }
            let keys: Vec<String> = tags.iter().map(|t| tag_key(t)).collect();
            let already = |k: &String| {
                entries.iter().any(|d| {
                    d.digest() == desc.digest() && ref_name(d).is_some_and(|n| &tag_key(n) == k)
                })
            };
            if keys.iter().all(already) {
                return;
            }
            entries.retain(|d| {
                let named = ref_name(d);
                // Drop entries of the same tags, and the unnamed entry of this manifest.
                !(named.is_some_and(|n| keys.contains(&tag_key(n)))
                    || (named.is_none() && d.digest() == desc.digest()))
            });
            for t in &tags {
                entries.push(with_annotations(desc.clone(), &[(REF_NAME, t)]));
            }
        })
    }

    /// Writes config blob + OCI manifest and points each tag at it. Returns the manifest
    /// digest.
    pub fn put_image(
        &self,
        config_json: &[u8],
        layers: &[Layer],
        tags: &[String],
    ) -> Result<String, CacheError> {
        self.put_image_annotated(config_json, layers, tags, &BTreeMap::new())
    }

    /// [`put_image`](Self::put_image) with `annotations` in the manifest (`--annotation`).
    pub fn put_image_annotated(
        &self,
        config_json: &[u8],
        layers: &[Layer],
        tags: &[String],
        annotations: &BTreeMap<String, String>,
    ) -> Result<String, CacheError> {
        for t in tags {
            check_tag(t)?;
        }
        for l in layers {
            if !self.has_blob(&l.digest) {
                return Err(CacheError::MissingBlob {
                    digest: l.digest.clone(),
                    path: self.blob_path(&l.digest),
                });
            }
        }
        // A config that disagrees with its layers makes an image no tool can use.
        let ids = config_diff_ids(config_json)
            .map_err(|e| CacheError::Corrupt {
                path: self.oci_dir(),
                reason: format!("put_image: {e}"),
            })?
            .unwrap_or_default();
        if ids
            .iter()
            .map(String::as_str)
            .ne(layers.iter().map(|l| l.diff_id.as_str()))
        {
            return Err(CacheError::Corrupt {
                path: self.oci_dir(),
                reason: format!(
                    "put_image: config rootfs.diff_ids {ids:?} do not match the layers' diff_ids {:?}",
                    layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()
                ),
            });
        }
        let config_digest = self.put_blob(config_json)?;
        let config = descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_json.len() as u64,
        )?;
        let layers = layers
            .iter()
            .map(|l| descriptor(manifest_layer_media_type(&l.media_type), &l.digest, l.size))
            .collect::<Result<Vec<_>, _>>()?;
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(layers);
        if !annotations.is_empty() {
            manifest =
                manifest.annotations(annotations.clone().into_iter().collect::<HashMap<_, _>>());
        }
        let manifest = manifest.build().map_err(|e| CacheError::Corrupt {
            path: self.oci_dir(),
            reason: format!("put_image: cannot make the manifest: {e}"),
        })?;
        let bytes = manifest_json(&manifest);
        let digest = self.put_blob(&bytes)?;
        let mut desc = descriptor(MediaType::ImageManifest, &digest, bytes.len() as u64)?;
        desc.set_platform(config_platform(config_json));
        self.tag_manifest(desc, tags)?;
        Ok(digest)
    }

    /// Stores a manifest byte for byte (a pulled image keeps its registry digest, so a
    /// build pinned to that digest finds it) and points each tag at it. Its config and
    /// layer blobs must be in the store already. Returns the manifest digest.
    pub fn put_manifest(
        &self,
        bytes: &[u8],
        media_type: &MediaType,
        tags: &[String],
    ) -> Result<String, CacheError> {
        for t in tags {
            check_tag(t)?;
        }
        let corrupt = |reason: String| CacheError::Corrupt {
            path: self.oci_dir(),
            reason: format!("put_manifest: {reason}"),
        };
        let m =
            parse_manifest(bytes).map_err(|e| corrupt(format!("invalid image manifest: {e}")))?;
        for d in m.layers().iter().chain([m.config()]) {
            let d = d.digest().as_ref();
            if !self.has_blob(d) {
                return Err(CacheError::MissingBlob {
                    digest: d.to_string(),
                    path: self.blob_path(d),
                });
            }
        }
        let config = self.read_blob(m.config().digest().as_ref())?;
        let ids = config_diff_ids(&config)
            .map_err(|e| corrupt(e.to_string()))?
            .unwrap_or_default();
        if ids.len() != m.layers().len() {
            return Err(corrupt(format!(
                "the manifest has {} layers but its config {} diff_ids",
                m.layers().len(),
                ids.len()
            )));
        }
        let digest = self.put_blob(bytes)?;
        let mut desc = descriptor(media_type.clone(), &digest, bytes.len() as u64)?;
        desc.set_platform(config_platform(&config));
        self.tag_manifest(desc, tags)?;
        Ok(digest)
    }

    /// Loads the image whose manifest is `digest`.
    pub(crate) fn load_image(
        &self,
        digest: &str,
        tags: Vec<String>,
    ) -> Result<StoredImage, CacheError> {
        let mbytes = self.read_blob(digest)?;
        let m = parse_manifest(&mbytes).map_err(|e| CacheError::Corrupt {
            path: self.blob_path(digest),
            reason: format!("invalid image manifest: {e}"),
        })?;
        let config_digest = m.config().digest().to_string();
        let config = self.read_blob(&config_digest)?;
        let diff_ids = config_diff_ids(&config)
            .map_err(|e| CacheError::Corrupt {
                path: self.blob_path(&config_digest),
                reason: e.to_string(),
            })?
            .unwrap_or_default();
        if diff_ids.len() != m.layers().len() {
            return Err(CacheError::Corrupt {
                path: self.blob_path(digest),
                reason: format!(
                    "manifest lists {} layers but its config lists {} diff_ids",
                    m.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let layers = m
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| Layer {
                digest: d.digest().to_string(),
                diff_id,
                size: d.size(),
                media_type: d.media_type().clone(),
            })
            .collect();
        Ok(StoredImage {
            manifest_digest: digest.to_string(),
            config_digest,
            config,
            layers,
            tags,
        })
    }

    /// (manifest digest, tags) of every image manifest in the index, in index order.
    pub(crate) fn index_images(&self) -> Result<Vec<(String, Vec<String>)>, CacheError> {
        let idx = self.read_index()?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in idx.manifests() {
            if is_index(d.media_type()) {
                continue;
            }
            let digest = d.digest().as_ref();
            let pos = match out.iter().position(|(dg, _)| dg == digest) {
                Some(p) => p,
                None => {
                    out.push((digest.to_string(), vec![]));
                    out.len() - 1
                }
            };
            if let Some(n) = ref_name(d) {
                out[pos].1.push(n.to_string());
            }
        }
        Ok(out)
    }

    /// The image tagged `name` (normalised), or whose manifest or config digest starts
    /// with `name` (with or without `sha256:`).
    pub fn image(&self, name_or_digest: &str) -> Result<Option<StoredImage>, CacheError> {
        let all = self.index_images()?;
        let tag = normalize_tag(name_or_digest);
        let key = tag_key(name_or_digest);
        // Exact name first, then docker's equivalences (docker.io/library/x = x).
        let exact = all.iter().find(|(_, t)| t.contains(&tag));
        let equiv = || {
            all.iter()
                .find(|(_, t)| t.iter().any(|n| tag_key(n) == key))
        };
        if let Some((d, tags)) = exact.or_else(equiv) {
            return self.load_image(d, tags.clone()).map(Some);
        }
        // A tag naming an image index: its image for this machine (`image_for` asks for
        // another platform).
        if let Some(index) = self.index(name_or_digest)? {
            let host = rbuild_registry::platform::host();
            return match index.manifest_for(&host) {
                Some(d) => self.load_image(d, index.tags.clone()).map(Some),
                None => Err(CacheError::NoPlatform {
                    name: name_or_digest.to_string(),
                    platform: rbuild_registry::platform::name(&host),
                    available: index.platform_names().join(", "),
                }),
            };
        }
        // A whole manifest digest names its entry: no need to load every image.
        if let Some((d, tags)) = all.iter().find(|(d, _)| d == name_or_digest) {
            return self.load_image(d, tags.clone()).map(Some);
        }
        let prefix = name_or_digest
            .strip_prefix("sha256:")
            .unwrap_or(name_or_digest);
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Ok(None);
        }
        let mut found: Vec<StoredImage> = Vec::new();
        for (d, tags) in &all {
            let img = match self.load_image(d, tags.clone()) {
                Ok(i) => i,
                Err(_) => continue,
            };
            let hit = digest_hex(&img.manifest_digest).is_ok_and(|h| h.starts_with(prefix))
                || digest_hex(&img.config_digest).is_ok_and(|h| h.starts_with(prefix));
            if hit {
                found.push(img);
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(CacheError::Ambiguous {
                name: name_or_digest.to_string(),
                candidates: found
                    .iter()
                    .map(|i| i.manifest_digest.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Every image of the store, one per manifest, with all its tags.
    pub fn images(&self) -> Result<Vec<StoredImage>, CacheError> {
        self.index_images()?
            .into_iter()
            .map(|(d, tags)| self.load_image(&d, tags))
            .collect()
    }

    /// Removes a tag; returns whether it existed. Blobs stay until `prune`.
    pub fn remove_tag(&self, name: &str) -> Result<bool, CacheError> {
        let tag = normalize_tag(name);
        let key = tag_key(name);
        self.update_index(|entries| {
            let before = entries.len();
            let exact = entries.iter().any(|d| ref_name(d) == Some(tag.as_str()));
            entries.retain(|d| match ref_name(d) {
                Some(n) if exact => n != tag,
                Some(n) => tag_key(n) != key,
                None => true,
            });
            entries.len() != before
        })
    }
}

impl Store {
    /// `rbuild rmi`: a tag is untagged (like [`Store::remove_tag`]); a digest (prefix)
    /// removes every entry of that image. Returns the names removed (tags, or the manifest
    /// digest of an untagged image); empty if nothing matched. Blobs stay until `prune`.
    pub fn remove_image(&self, name_or_digest: &str) -> Result<Vec<String>, CacheError> {
        let Some(img) = self.image(name_or_digest)? else {
            return Ok(vec![]);
        };
        let key = tag_key(name_or_digest);
        if let Some(t) = img.tags.iter().find(|t| tag_key(t) == key) {
            let t = t.clone();
            self.remove_tag(&t)?;
            return Ok(vec![t]);
        }
        let digest = img.manifest_digest.clone();
        self.update_index(|entries| entries.retain(|d| d.digest().as_ref() != digest))?;
        Ok(if img.tags.is_empty() {
            vec![digest]
        } else {
            img.tags
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize() {
        assert_eq!(normalize_tag("myapp"), "myapp:latest");
        assert_eq!(normalize_tag("myapp:v1"), "myapp:v1");
        assert_eq!(
            normalize_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalize_tag("localhost:5000/app:2"),
            "localhost:5000/app:2"
        );
        let d = format!("app@sha256:{}", "0".repeat(64));
        assert_eq!(normalize_tag(&d), d);
    }

    #[test]
    fn familiar_names() {
        assert_eq!(familiar_name("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(familiar_name("docker.io/user/app"), "user/app");
        assert_eq!(familiar_name("ghcr.io/x/y"), "ghcr.io/x/y");
        assert_eq!(tag_key("docker.io/library/busybox"), "busybox:latest");
    }

    #[test]
    fn tags_checked() {
        assert!(check_tag("a b").is_err());
        assert!(check_tag("").is_err());
        assert!(check_tag(":x").is_err());
        assert_eq!(check_tag("x").unwrap(), "x:latest");
    }
}
