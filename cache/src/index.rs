//! Image indexes in the store: what a build for several platforms makes. The index is a
//! blob like a manifest, and `index.json` names it under the build's tags; each of its
//! platform manifests has an entry without a name (so it stays listed, and prune keeps
//! it). A tag naming an index gives, where one image is wanted, the manifest of the
//! platform asked for (the machine's unless said otherwise).
//!
//! Pushing an index (`push.rs`, `push_index`) sends each platform's image by digest, then
//! the index under the tag: one reference for every platform.

use crate::attest::is_attestation;
use crate::error::CacheError;
use crate::layout::{check_tag, normalize_tag, tag_key};
use crate::oci::{config_platform, descriptor, index_json, parse_index, ref_name};
use crate::registry::{Platform, platform};
use crate::{Store, StoredImage};
use oci_spec::image::{ImageIndex, MediaType, SCHEMA_VERSION};
use rbuild_registry::media_types::is_index;
use std::io::Write;

/// An image index of the store.
#[derive(Debug, Clone)]
pub struct StoredIndex {
    /// `sha256:…` of the index document.
    pub digest: String,
    /// The names `index.json` gives it.
    pub tags: Vec<String>,
    /// (manifest digest, platform) of each image entry, in order.
    pub manifests: Vec<(String, Platform)>,
    /// The manifest digests of its attestation manifests (`attest.rs`).
    pub attestations: Vec<String>,
    /// The document itself.
    pub bytes: Vec<u8>,
}

impl StoredIndex {
    /// The entry for `want`, if any.
    pub fn manifest_for(&self, want: &Platform) -> Option<&str> {
        self.manifests
            .iter()
            .find(|(_, p)| platform::matches(want, p))
            .map(|(d, _)| d.as_str())
    }

    /// The platforms of its entries (`linux/amd64`, `linux/arm64/v8`).
    pub fn platform_names(&self) -> Vec<String> {
        self.manifests
            .iter()
            .map(|(_, p)| platform::name(p))
            .collect()
    }
}

impl Store {
    /// Writes an OCI image index of the stored images `manifests` (each entry with its
    /// config's platform) and points each tag at it. Returns the index digest.
    pub fn put_index(&self, manifests: &[String], tags: &[String]) -> Result<String, CacheError> {
        self.put_index_with(manifests, &[], tags)
    }

    /// [`Store::put_index`] with attestation manifests (`Store::put_attestation`'s entries)
    /// after the images, as buildx orders them. They are not entries of `index.json`.
    pub fn put_index_with(
        &self,
        manifests: &[String],
        attestations: &[oci_spec::image::Descriptor],
        tags: &[String],
    ) -> Result<String, CacheError> {
        let corrupt = |reason: String| CacheError::Corrupt {
            path: self.oci_dir(),
            reason: format!("put_index: {reason}"),
        };
        let mut entries = Vec::new();
        for digest in manifests {
            let image = self
                .load_image(digest, vec![])
                .map_err(|e| corrupt(format!("{digest}: {e}")))?;
            let bytes = self.read_blob(digest)?;
            let mut d = descriptor(MediaType::ImageManifest, digest, bytes.len() as u64)?;
            let p = config_platform(&image.config)
                .ok_or_else(|| corrupt(format!("the config of {digest} names no platform")))?;
            d.set_platform(Some(p));
            entries.push(d);
        }
        self.put_index_entries(entries, attestations, tags)
    }

    /// Writes an OCI image index of `entries` (stored manifests, each with its platform as
    /// given: an imported index keeps what its own entries said) and `attestations`, and
    /// points each tag at it. Returns the index digest.
    pub(crate) fn put_index_entries(
        &self,
        entries: Vec<oci_spec::image::Descriptor>,
        attestations: &[oci_spec::image::Descriptor],
        tags: &[String],
    ) -> Result<String, CacheError> {
        for t in tags {
            check_tag(t)?;
        }
        let mut index = ImageIndex::default();
        index.set_schema_version(SCHEMA_VERSION);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(entries.iter().chain(attestations).cloned().collect());
        let bytes = index_json(&index);
        let digest = self.put_blob(&bytes)?;
        let desc = descriptor(MediaType::ImageIndex, &digest, bytes.len() as u64)?;
        // The platform manifests stay listed (and kept by prune) as unnamed entries.
        for d in entries {
            self.tag_manifest(d, &[])?;
        }
        self.tag_manifest(desc, tags)?;
        Ok(digest)
    }

    /// The index named `name` (a tag, or the index digest), if `index.json` has one.
    pub fn index(&self, name: &str) -> Result<Option<StoredIndex>, CacheError> {
        let idx = self.read_index()?;
        let tag = normalize_tag(name);
        let key = tag_key(name);
        let named = |exact: bool| {
            idx.manifests().iter().find(|d| {
                is_index(d.media_type())
                    && ref_name(d).is_some_and(|n| if exact { n == tag } else { tag_key(n) == key })
            })
        };
        let by_digest = || {
            idx.manifests()
                .iter()
                .find(|d| is_index(d.media_type()) && d.digest().as_ref() == name)
        };
        let Some(d) = named(true).or_else(|| named(false)).or_else(by_digest) else {
            return Ok(None);
        };
        // A tag naming a single image later than the index wins (`index.json` order).
        let digest = d.digest().to_string();
        let tags: Vec<String> = idx
            .manifests()
            .iter()
            .filter(|e| e.digest().as_ref() == digest)
            .filter_map(|e| ref_name(e).map(str::to_string))
            .collect();
        self.load_index(&digest, tags).map(Some)
    }

    /// Every image index `index.json` names.
    pub fn indexes(&self) -> Result<Vec<StoredIndex>, CacheError> {
        let idx = self.read_index()?;
        let mut out: Vec<StoredIndex> = Vec::new();
        for d in idx.manifests().iter().filter(|d| is_index(d.media_type())) {
            let digest = d.digest().to_string();
            let tag = ref_name(d).map(str::to_string);
            match out.iter_mut().find(|i| i.digest == digest) {
                Some(i) => i.tags.extend(tag),
                None => out.push(self.load_index(&digest, tag.into_iter().collect())?),
            }
        }
        Ok(out)
    }

    pub(crate) fn load_index(
        &self,
        digest: &str,
        tags: Vec<String>,
    ) -> Result<StoredIndex, CacheError> {
        let bytes = self.read_blob(digest)?;
        let idx = parse_index(&bytes).map_err(|e| CacheError::Corrupt {
            path: self.blob_path(digest),
            reason: format!("invalid image index: {e}"),
        })?;
        let manifests = idx
            .manifests()
            .iter()
            .filter(|d| !is_index(d.media_type()) && !is_attestation(d))
            .filter_map(|d| Some((d.digest().to_string(), d.platform().clone()?)))
            .collect();
        let attestations = idx
            .manifests()
            .iter()
            .filter(|d| is_attestation(d))
            .map(|d| d.digest().to_string())
            .collect();
        Ok(StoredIndex {
            digest: digest.to_string(),
            tags,
            manifests,
            attestations,
            bytes,
        })
    }

    /// The image `name` names for `want`: through an index, its entry for that platform
    /// (an error naming the platforms it has when there is none); a single image as
    /// [`Store::image`] finds it.
    pub fn image_for(
        &self,
        name: &str,
        want: &Platform,
    ) -> Result<Option<StoredImage>, CacheError> {
        let Some(index) = self.index(name)? else {
            return self.image(name);
        };
        match index.manifest_for(want) {
            Some(d) => self.load_image(d, index.tags.clone()).map(Some),
            None => Err(CacheError::NoPlatform {
                name: name.to_string(),
                platform: platform::name(want),
                available: index.platform_names().join(", "),
            }),
        }
    }

    /// Writes the index `index` with every image of it as a tar of an OCI layout whose
    /// index.json names it `tags`.
    pub fn write_oci_index_archive(
        &self,
        index: &StoredIndex,
        tags: &[String],
        out: &mut dyn Write,
    ) -> Result<(), CacheError> {
        let tags: Vec<String> = tags
            .iter()
            .map(|t| check_tag(t))
            .collect::<Result<_, _>>()?;
        let base = descriptor(
            MediaType::ImageIndex,
            &index.digest,
            index.bytes.len() as u64,
        )?;
        let mut blobs = vec![index.digest.clone()];
        let attestations = index.attestations.iter();
        for d in index.manifests.iter().map(|(d, _)| d).chain(attestations) {
            let img = self.load_image(d, vec![])?;
            blobs.push(img.manifest_digest.clone());
            blobs.push(img.config_digest.clone());
            blobs.extend(img.layers.iter().map(|l| l.digest.clone()));
        }
        self.write_layout_tar(base, blobs, &tags, out)
    }
}
