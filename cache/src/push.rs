//! Push: an image of the store to a registry, and `tag` (a new name for a
//! stored image).
//!
//! The store's exact manifest and config bytes are sent, so the registry's
//! manifest digest is the local one. Blobs go first, a few at a time: a blob
//! the repository has is skipped (HEAD), a blob known to be in another
//! repository of the same registry is cross-mounted, the rest is uploaded; the
//! manifest goes last, so a push that stops half way leaves no tag pointing at
//! missing blobs, and running it again completes it.
//!
//! Where a blob is known to be: `ROOT/sources/<digest hex>` lists
//! `registry/repository` lines, written when a blob is pulled from or pushed
//! to a repository. It is a hint only: a stale line costs one declined mount.

use crate::error::IoContext;
use crate::index::StoredIndex;
use crate::registry::media_types::is_image_manifest;
use crate::registry::{PushStatus, Reference, RegistryClient, RegistryError, declared_media_type};
use crate::{CacheError, Store, StoredImage, digest_hex, fsutil};
use oci_spec::image::MediaType;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Blobs sent at the same time.
const PARALLEL_PUSHES: usize = 4;
/// Repositories remembered per blob (the newest are kept).
const MAX_SOURCES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] CacheError),
    #[error(
        "no image {0:?} in the local store; `rbuild images` lists them, `rbuild tag` names one"
    )]
    NoSuchImage(String),
    #[error("{reference}: {message}")]
    Invalid { reference: String, message: String },
    #[error("{reference}: {source}")]
    Manifest {
        reference: String,
        #[source]
        source: ManifestTypeError,
    },
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest, the same in the registry as in the store.
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// Blobs (layers and config) uploaded.
    pub pushed: usize,
    /// Blobs the repository already had.
    pub skipped: usize,
    /// Blobs mounted from another repository of the same registry.
    pub mounted: usize,
    /// Bytes of blobs uploaded.
    pub bytes: u64,
}

/// Progress of a push, in the order things happen for each blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// A blob is being checked, mounted or uploaded.
    BlobStarted { digest: String, size: u64 },
    BlobDone {
        digest: String,
        size: u64,
        status: PushStatus,
    },
    /// Every blob is there; the manifest is going up.
    Manifest { digest: String, size: u64 },
}

/// Receives [`PushEvent`]s; called from several tasks.
pub type PushProgress = Arc<dyn Fn(PushEvent) + Send + Sync>;

/// Pushes the stored image `local_name` (a tag or digest) to `target`.
pub async fn push(
    store: &Store,
    client: &RegistryClient,
    local_name: &str,
    target: &str,
) -> Result<PushReport, PushError> {
    push_with_progress(store, client, local_name, target, Arc::new(|_| {})).await
}

/// A blob to send: digest, size, and where it is on disk.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
    path: PathBuf,
}

/// [`push`], reporting each blob and the manifest to `progress`.
pub async fn push_with_progress(
    store: &Store,
    client: &RegistryClient,
    local_name: &str,
    target: &str,
    progress: PushProgress,
) -> Result<PushReport, PushError> {
    let invalid = |message: String| PushError::Invalid {
        reference: target.to_string(),
        message,
    };
    let r = Reference::parse(target).map_err(RegistryError::from)?;
    if r.digest.is_some() {
        return Err(invalid(
            "cannot push to a digest; name a tag (the registry computes the digest)".into(),
        ));
    }
    // An index goes up with every platform's image, under one reference.
    if let Some(index) = store.index(local_name)? {
        return push_index(store, client, &index, target, progress).await;
    }
    let image = store
        .image(local_name)?
        .ok_or_else(|| PushError::NoSuchImage(local_name.to_string()))?;
    push_stored(store, client, &image, &r, target, progress).await
}

/// Pushes the stored `image` to `r` (its tag, or by digest when it has none); `target`
/// names it in errors.
pub(crate) async fn push_stored(
    store: &Store,
    client: &RegistryClient,
    image: &StoredImage,
    r: &Reference,
    target: &str,
    progress: PushProgress,
) -> Result<PushReport, PushError> {
    let invalid = |message: String| PushError::Invalid {
        reference: target.to_string(),
        message,
    };
    // Leased for the push: an `rbuild rmi` and `prune` meanwhile leave its blobs.
    store.lease_layers(&image.layers)?;
    store.lease_blob(&image.manifest_digest)?;
    store.lease_blob(&image.config_digest)?;
    let manifest = store.read_blob(&image.manifest_digest)?;
    let media_type = manifest_media_type(&manifest).map_err(|source| PushError::Manifest {
        reference: target.to_string(),
        source,
    })?;
    let mut blobs = vec![Blob {
        digest: image.config_digest.clone(),
        size: image.config.len() as u64,
        path: store.blob_path(&image.config_digest),
    }];
    for l in &image.layers {
        if blobs.iter().any(|b| b.digest == l.digest) {
            continue; // the same layer twice in one image goes up once
        }
        if !store.has_blob(&l.digest) {
            return Err(CacheError::MissingBlob {
                digest: l.digest.clone(),
                path: store.blob_path(&l.digest),
            }
            .into());
        }
        blobs.push(Blob {
            digest: l.digest.clone(),
            size: l.size,
            path: store.blob_path(&l.digest),
        });
    }

    let limit = Arc::new(Semaphore::new(PARALLEL_PUSHES));
    let mut tasks = tokio::task::JoinSet::new();
    for blob in blobs {
        let (store, client, r, limit, progress) = (
            store.clone(),
            client.clone(),
            r.clone(),
            limit.clone(),
            progress.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            progress(PushEvent::BlobStarted {
                digest: blob.digest.clone(),
                size: blob.size,
            });
            let status = push_one(&store, &client, &r, &blob).await?;
            // A hint for later mounts; failing to write it must not fail the push.
            let _ = record_source(&store, &blob.digest, &r.registry, &r.repository);
            progress(PushEvent::BlobDone {
                digest: blob.digest.clone(),
                size: blob.size,
                status,
            });
            Ok::<_, PushError>((status, blob.size))
        });
    }
    let mut report = PushReport::default();
    while let Some(done) = tasks.join_next().await {
        let (status, size) = match done {
            Ok(result) => result?,
            Err(e) => return Err(invalid(format!("a blob upload stopped: {e}"))),
        };
        match status {
            PushStatus::AlreadyExists => report.skipped += 1,
            PushStatus::Mounted => report.mounted += 1,
            PushStatus::Uploaded => {
                report.pushed += 1;
                report.bytes += size;
            }
        }
    }

    progress(PushEvent::Manifest {
        digest: image.manifest_digest.clone(),
        size: manifest.len() as u64,
    });
    let digest = client.push_manifest(r, &media_type, &manifest).await?;
    if digest != image.manifest_digest {
        return Err(invalid(format!(
            "the registry stored manifest {digest}, not the local {}",
            image.manifest_digest
        )));
    }
    report.manifest_digest = digest;
    report.manifest_size = manifest.len() as u64;
    Ok(report)
}

/// Pushes the stored index `index` to `target` (a tag): each platform's image by digest,
/// then the index under the tag. The report counts every blob; its manifest digest is the
/// index's.
pub async fn push_index(
    store: &Store,
    client: &RegistryClient,
    index: &StoredIndex,
    target: &str,
    progress: PushProgress,
) -> Result<PushReport, PushError> {
    let r = Reference::parse(target).map_err(RegistryError::from)?;
    store.lease_blob(&index.digest)?;
    let mut report = PushReport::default();
    // The images, then their attestation manifests: the index names them all.
    let attestations = index.attestations.iter();
    for digest in index.manifests.iter().map(|(d, _)| d).chain(attestations) {
        let image = store.load_image(digest, vec![])?;
        let by_digest = Reference {
            tag: None,
            digest: None,
            ..r.clone()
        };
        let one = push_stored(store, client, &image, &by_digest, target, progress.clone()).await?;
        report.pushed += one.pushed;
        report.skipped += one.skipped;
        report.mounted += one.mounted;
        report.bytes += one.bytes;
    }
    let digest = client
        .push_manifest(&r, &MediaType::ImageIndex, &index.bytes)
        .await?;
    if digest != index.digest {
        return Err(PushError::Invalid {
            reference: target.to_string(),
            message: format!(
                "the registry stored index {digest}, not the local {}",
                index.digest
            ),
        });
    }
    report.manifest_digest = digest;
    report.manifest_size = index.bytes.len() as u64;
    Ok(report)
}

/// Make one blob present in `r`'s repository: skip, mount, or upload.
async fn push_one(
    store: &Store,
    client: &RegistryClient,
    r: &Reference,
    blob: &Blob,
) -> Result<PushStatus, PushError> {
    let sources = read_sources(store, &blob.digest);
    let from = mount_candidate(&sources, &r.registry, &r.repository);
    Ok(client
        .mount_or_push_blob(r, from.as_deref(), &blob.digest, blob.size, &blob.path)
        .await?)
}

/// Why a stored manifest cannot be pushed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestTypeError {
    #[error("the stored manifest is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("cannot push a manifest of media type {0:?}; only image manifests")]
    NotAnImage(String),
}

/// The manifest's media type as it says itself; the store writes OCI manifests.
fn manifest_media_type(manifest: &[u8]) -> Result<MediaType, ManifestTypeError> {
    match declared_media_type(manifest).map_err(ManifestTypeError::NotJson)? {
        Some(t) if is_image_manifest(&t) => Ok(t),
        Some(other) => Err(ManifestTypeError::NotAnImage(other.to_string())),
        None => Ok(MediaType::ImageManifest),
    }
}

/// The newest repository of `registry` other than `repository` the blob is in.
pub fn mount_candidate(sources: &[String], registry: &str, repository: &str) -> Option<String> {
    sources.iter().rev().find_map(|line| {
        let (reg, repo) = line.split_once('/')?;
        (reg == registry && repo != repository && !repo.is_empty()).then(|| repo.to_string())
    })
}

/// `lines` with `entry` moved (or added) to the end, at most [`MAX_SOURCES`] kept.
pub fn add_source(lines: &[String], entry: &str) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .filter(|l| l.as_str() != entry && !l.is_empty())
        .cloned()
        .collect();
    out.push(entry.to_string());
    let extra = out.len().saturating_sub(MAX_SOURCES);
    out.drain(..extra);
    out
}

fn sources_path(store: &Store, digest: &str) -> Result<PathBuf, CacheError> {
    Ok(store.root().join("sources").join(digest_hex(digest)?))
}

/// The `registry/repository` lines recorded for a blob (empty if none).
pub fn read_sources(store: &Store, digest: &str) -> Vec<String> {
    sources_path(store, digest)
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// Remember that `digest` is in `registry/repository` (atomic rewrite).
pub fn record_source(
    store: &Store,
    digest: &str,
    registry: &str,
    repository: &str,
) -> Result<(), CacheError> {
    let path = sources_path(store, digest)?;
    let entry = format!("{registry}/{repository}");
    let lines = read_sources(store, digest);
    if lines.last() == Some(&entry) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    }
    let mut text = add_source(&lines, &entry).join("\n");
    text.push('\n');
    fsutil::atomic_write(&path, text.as_bytes())
}

impl Store {
    /// Names the stored image `source` (a tag or digest) also `target`, as
    /// `docker tag` does; `target` moves if it named another image.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<(), PushError> {
        // An image index is named whole, every platform with it.
        if let Some(index) = self.index(source)? {
            let desc = crate::oci::descriptor(
                MediaType::ImageIndex,
                &index.digest,
                index.bytes.len() as u64,
            )?;
            self.tag_manifest(desc, &[target.to_string()])?;
            return Ok(());
        }
        let image = self
            .image(source)?
            .ok_or_else(|| PushError::NoSuchImage(source.to_string()))?;
        let index = self.read_index()?;
        let desc = index
            .manifests()
            .iter()
            .find(|d| d.digest().as_ref() == image.manifest_digest)
            .cloned()
            .ok_or_else(|| PushError::NoSuchImage(source.to_string()))?;
        self.tag_manifest(desc, &[target.to_string()])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mounts_come_from_another_repo_of_the_same_registry() {
        let s = lines(&["r1:5000/a", "r2/b", "r1:5000/c", "r1:5000/target"]);
        assert_eq!(
            mount_candidate(&s, "r1:5000", "target").as_deref(),
            Some("c")
        );
        assert_eq!(mount_candidate(&s, "r2", "x").as_deref(), Some("b"));
        assert_eq!(mount_candidate(&s, "r2", "b"), None);
        assert_eq!(mount_candidate(&s, "r3", "a"), None);
        assert_eq!(mount_candidate(&lines(&["garbage"]), "garbage", "x"), None);
    }

    #[test]
    fn sources_keep_the_newest_once() {
        let s = add_source(&lines(&["a/x", "b/y"]), "a/x");
        assert_eq!(s, lines(&["b/y", "a/x"]));
        let many: Vec<String> = (0..MAX_SOURCES).map(|i| format!("r/{i}")).collect();
        let s = add_source(&many, "r/new");
        assert_eq!(s.len(), MAX_SOURCES);
        assert_eq!(s.first().map(String::as_str), Some("r/1"));
        assert_eq!(s.last().map(String::as_str), Some("r/new"));
    }

    #[test]
    fn manifest_media_types() {
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2}"#).unwrap(),
            MediaType::ImageManifest
        );
        let docker = crate::registry::media_types::DOCKER_MANIFEST;
        assert_eq!(
            manifest_media_type(format!(r#"{{"mediaType":"{docker}"}}"#).as_bytes()).unwrap(),
            MediaType::from(docker)
        );
        assert!(
            manifest_media_type(
                format!(r#"{{"mediaType":"{}"}}"#, MediaType::ImageIndex).as_bytes()
            )
            .is_err()
        );
        assert!(manifest_media_type(b"nope").is_err());
    }

    #[test]
    fn sources_are_recorded_atomically_per_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = format!("sha256:{}", "ab".repeat(32));
        assert!(read_sources(&store, &d).is_empty());
        record_source(&store, &d, "127.0.0.1:5000", "app").unwrap();
        record_source(&store, &d, "127.0.0.1:5000", "other/app").unwrap();
        record_source(&store, &d, "127.0.0.1:5000", "app").unwrap();
        assert_eq!(
            read_sources(&store, &d),
            lines(&["127.0.0.1:5000/other/app", "127.0.0.1:5000/app"])
        );
        assert!(record_source(&store, "sha256:../x", "r", "a").is_err());
    }

    #[test]
    fn tag_image_adds_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let digest = store.put_image(config, &[], &["a:1".into()]).unwrap();
        store.tag_image("a:1", "reg:5000/b").unwrap();
        let img = store.image("reg:5000/b:latest").unwrap().unwrap();
        assert_eq!(img.manifest_digest, digest);
        let mut tags = img.tags.clone();
        tags.sort();
        assert_eq!(tags, ["a:1", "reg:5000/b:latest"]);
        assert!(matches!(
            store.tag_image("missing", "x"),
            Err(PushError::NoSuchImage(_))
        ));
    }
}
