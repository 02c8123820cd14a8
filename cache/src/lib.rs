//! Content store, OCI image layout, snapshots, layers and cache records.
//!
//! One root holds:
//! - `oci/`: an OCI image layout (blobs shared by images and cache records; tags are
//!   `org.opencontainers.image.ref.name` annotations, so skopeo/umoci read it directly);
//! - `snapshots/<id>/`: each layer extracted once, in overlay form;
//! - `flattened/<chain id>/`: the merged tree of a chain prefix, standing in for its
//!   layers in chains longer than one overlay mount takes (`flatten.rs`);
//! - `records/<key>.json`: cache records;
//! - `explain/<id>/`: per build, what each step's cache key was made of ([`explain`]);
//! - `tmp/`: scratch space on the same filesystem, so results are renamed into place;
//! - `locks/`: file locks shared by every rbuild process using the root (`index.json`
//!   updates, one per cache key being executed, prune);
//! - `leases/`: what each running process uses, so prune can run beside builds.
//!
//! Every write is a temp entry + fsync + rename, so a killed build leaves no half entry
//! behind, and what a record or the index names is durable before it is named.

mod archive;
pub mod attest;
mod chains;
pub mod check;
pub use archive::layout_entry;
mod commit;
pub mod copysnap;
mod durable;
mod error;
pub mod explain;
mod extract;
mod flatten;
mod fsutil;
pub mod gc;
pub mod index;
mod keylock;
mod layout;
mod lease;
mod merge;
pub mod oci;
mod pargz;
pub mod pull;
pub mod push;
mod relink;
pub mod remote_cache;
mod reuse;
mod squash;
mod zstd;

pub use chains::{ChainMemo, SharedRecord};
pub use error::CacheError;
pub use extract::{extract_layer, unpack_tar};
pub use flatten::{FLATTEN_STEP, chain_id, flatten_prefix};
pub use gc::{GcPolicy, PruneOptions, PruneReport};
pub use keylock::KeyLock;
pub use layout::{familiar_name, normalize_tag};
pub use oci::ConfigError;
/// oci-spec's media type, the type of [`Layer::media_type`].
pub use oci_spec::image::MediaType;
/// The registry client, a crate of its own; re-exported because the store's pull, push and
/// cache import/export take its types.
pub use rbuild_registry as registry;
pub use relink::CopyRecord;

use error::IoContext;
use lease::Leased;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One layer blob of an image or cache record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// `sha256:…` of the blob as stored (compressed).
    pub digest: String,
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// As the manifest names it (serialized as the plain string).
    pub media_type: MediaType,
}

/// What a cache key resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The whole layer chain of the vertex's rootfs, bottom first.
    pub layers: Vec<Layer>,
    /// The image config (image sources only).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Unix seconds.
    pub created: u64,
}

/// An image of the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub manifest_digest: String,
    pub config_digest: String,
    /// The raw config JSON.
    pub config: Vec<u8>,
    pub layers: Vec<Layer>,
    /// Every tag pointing at this manifest (normalised names).
    pub tags: Vec<String>,
}

/// Handle on one store root. Cheap to clone; usable from many threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// What this process uses, so a prune running meanwhile leaves it alone.
    lease: lease::Lease,
    /// Bytes of blobs and snapshots this process added (for the size policy after a build).
    added: AtomicU64,
    gzip_level: AtomicU32,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Default gzip level for new layers. Measured with `examples/bench_layer.rs` (128 MiB
/// file, zlib-rs, parallel blocks, MB/s per CPU-second; ratio compressed/raw):
/// text-like L1 232 (0.289), L2 202 (0.178), L3 167 (0.160), L6 54 (0.121); random data is
/// detected and stored at ≈320 whatever the level. L2 is nearly as fast as L1 with a much
/// smaller blob. The cache is keyed on diff_ids, so the level never changes cache hits.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes temporaries left by
    /// processes that no longer exist.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .ctx("get current directory for", root)?
                .join(root)
        };
        let store = Self::open_unchecked(&root)?;
        store.init_layout()?;
        // Every step builds its tree (upper dir, extracted layer) under tmp/. Spread them
        // over the filesystem: ext4 without a journal refuses, one candidate at a time, to
        // reuse inodes freed in the last minutes, so creating files next to a tree just
        // deleted (a pruned store, a previous build's root) scanned whole block groups per
        // file (20,000 files: 3 s became 10-15 s of system time). Best effort.
        let _ = fsutil::set_topdir(&store.tmp_root());
        for dir in store.temp_dirs() {
            fsutil::remove_stale_temps(&dir)?;
        }
        Ok(store)
    }

    /// The store at an absolute `root`, its directories made, nothing cleaned or read:
    /// `check` looks at what killed processes left before anything removes it.
    pub(crate) fn open_unchecked(root: &Path) -> Result<Store, CacheError> {
        for sub in [
            "oci/blobs/sha256",
            "snapshots",
            "records",
            "tmp",
            "locks",
            "leases",
        ] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).ctx("create directory", &p)?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                lease: lease::Lease::default(),
                added: AtomicU64::new(0),
                gzip_level: AtomicU32::new(DEFAULT_GZIP_LEVEL),
            }),
        })
    }

    /// The directories where temp entries (`.rb<pid>-…`) are made.
    pub(crate) fn temp_dirs(&self) -> [PathBuf; 8] {
        [
            self.tmp_root(),
            self.blobs_dir(),
            self.records_dir(),
            self.oci_dir(),
            self.snapshots_dir(),
            self.pieces_dir(),
            self.leases_dir(),
            self.relink_dir(),
        ]
    }

    /// Writes what `items` name into this process's lease before they are used or made
    /// visible (see `lease.rs`).
    pub(crate) fn lease(&self, items: &[Leased<'_>]) -> Result<(), CacheError> {
        self.inner.lease.add(&self.leases_dir(), items)
    }

    /// Leases the blobs and snapshots of `layers` for the life of this process (a build
    /// about to use them, a push about to send them): prune leaves them alone.
    pub fn lease_layers(&self, layers: &[Layer]) -> Result<(), CacheError> {
        let items: Vec<Leased<'_>> = layers
            .iter()
            .map(|l| Leased::Layer {
                digest: &l.digest,
                diff_id: &l.diff_id,
            })
            .collect();
        self.lease(&items)
    }

    /// Leases the blob `digest` (about to be written into the store, or read from it).
    pub fn lease_blob(&self, digest: &str) -> Result<(), CacheError> {
        self.lease(&[Leased::Blob(digest)])
    }

    /// Bytes of blobs and snapshots this handle added to the store so far.
    pub fn bytes_added(&self) -> u64 {
        self.inner.added.load(Ordering::Relaxed)
    }

    pub(crate) fn count_added(&self, bytes: u64) {
        self.inner.added.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// gzip level (0..=9) used by [`Store::commit_layer`].
    pub fn set_gzip_level(&self, level: u32) {
        self.inner.gzip_level.store(level.min(9), Ordering::Relaxed);
    }

    pub(crate) fn gzip_level(&self) -> u32 {
        self.inner.gzip_level.load(Ordering::Relaxed)
    }

    pub(crate) fn oci_dir(&self) -> PathBuf {
        self.inner.root.join("oci")
    }
    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.inner.root.join("oci/blobs/sha256")
    }
    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.inner.root.join("snapshots")
    }
    pub(crate) fn records_dir(&self) -> PathBuf {
        self.inner.root.join("records")
    }
    /// Indexes of the compressed blocks of layer blobs (see `reuse.rs`).
    pub(crate) fn pieces_dir(&self) -> PathBuf {
        self.inner.root.join("pieces")
    }
    pub(crate) fn tmp_root(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }
    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.inner.root.join("locks")
    }
    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.inner.root.join("leases")
    }

    /// A scratch directory under `root/tmp` (same filesystem as the store, so its contents
    /// can be renamed into place). Removed on drop; removed at the next `open` if this
    /// process is killed.
    pub fn tmp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, CacheError> {
        let clean: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(32)
            .collect();
        let dir = self.tmp_root();
        tempfile::Builder::new()
            .prefix(&format!("{}{}-", fsutil::temp_prefix(), clean))
            .tempdir_in(&dir)
            .ctx("create temporary directory in", dir)
    }

    /// Where the blob `digest` lives (whether or not it exists). An invalid digest maps to
    /// a path that never exists.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        match digest_hex(digest) {
            Ok(hex) => self.blobs_dir().join(hex),
            Err(_) => self.oci_dir().join("blobs/invalid-digest"),
        }
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        digest_hex(digest).is_ok() && self.blob_path(digest).is_file()
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, CacheError> {
        let digest = format!("sha256:{}", fsutil::sha256_hex(bytes));
        self.lease_blob(&digest)?;
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).ctx("write blob", self.blobs_dir())?;
        let (d, _) = w.commit(Some(&digest))?;
        Ok(d)
    }

    pub(crate) fn blob_writer(&self) -> Result<BlobWriter, CacheError> {
        let dir = self.blobs_dir();
        let tmp = tempfile::Builder::new()
            .prefix(&fsutil::temp_prefix())
            .tempfile_in(&dir)
            .ctx("create temporary blob in", &dir)?;
        Ok(BlobWriter {
            w: fsutil::HashWriter::new(std::io::BufWriter::with_capacity(1 << 20, tmp)),
            dir,
            store: self.clone(),
        })
    }

    /// Reads a small blob (manifest, config) fully.
    /// Moves a verified, synced blob file (a registry fetch's, made in a temp dir of this
    /// process, so a killed fetch leaves nothing behind) into the store as `digest`,
    /// leased before it appears.
    pub fn install_fetched_blob(&self, file: &Path, digest: &str) -> Result<(), CacheError> {
        let target = self.blob_path(digest);
        digest_hex(digest)?;
        self.lease_blob(digest)?;
        if !target.is_file() {
            self.count_added(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
        }
        std::fs::rename(file, &target).ctx("move blob into place at", &target)?;
        fsutil::fsync_dir(&self.blobs_dir())
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, CacheError> {
        digest_hex(digest)?;
        let p = self.blob_path(digest);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CacheError::MissingBlob {
                digest: digest.to_string(),
                path: p,
            }),
            Err(e) => Err(e).ctx("read blob", p),
        }
    }

    /// The short snapshot id of a layer: 20 hex chars of its diff_id (overlay mount
    /// options are limited to a page, so a long chain needs short paths).
    pub fn snapshot_id(diff_id: &str) -> Result<String, CacheError> {
        Ok(digest_hex(diff_id)?[..20].to_string())
    }

    /// Path of the snapshot of the layer with `diff_id` (whether or not it exists).
    pub fn snapshot_path(&self, diff_id: &str) -> Result<PathBuf, CacheError> {
        Ok(self.snapshots_dir().join(Self::snapshot_id(diff_id)?))
    }

    /// The extracted snapshot dir for a layer, extracting the blob once if needed.
    /// Concurrent callers each extract into tmp/; the first rename wins, others discard.
    pub fn snapshot(&self, layer: &Layer) -> Result<PathBuf, CacheError> {
        let target = self.snapshot_path(&layer.diff_id)?;
        self.lease_layers(std::slice::from_ref(layer))?;
        if target.is_dir() {
            return Ok(target);
        }
        let blob = self.blob_path(&layer.digest);
        if !blob.is_file() {
            return Err(CacheError::MissingBlob {
                digest: layer.digest.clone(),
                path: blob,
            });
        }
        let tmp = self.tmp_dir("extract")?;
        let dest = tmp.path().join("s");
        std::fs::create_dir(&dest).ctx("create directory", &dest)?;
        let (diff_id, size) = extract::extract_layer_durably(&blob, &dest)?;
        if diff_id != layer.diff_id {
            return Err(CacheError::DigestMismatch {
                what: format!("uncompressed content (diff_id) of layer {}", layer.digest),
                expected: layer.diff_id.clone(),
                actual: diff_id,
            });
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .ctx("set permissions of", &dest)?;
        }
        if self.install_snapshot(&dest, &target)? {
            self.count_added(size);
        }
        Ok(target)
    }

    /// Renames a finished (synced) snapshot dir into place; if another process won the
    /// race, ours is discarded. Returns whether ours was installed.
    pub(crate) fn install_snapshot(&self, src: &Path, target: &Path) -> Result<bool, CacheError> {
        match std::fs::rename(src, target) {
            Ok(()) => fsutil::fsync_dir(&self.snapshots_dir()).map(|()| true),
            Err(e)
                if target.is_dir()
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) =>
            {
                fsutil::remove_dir_all_force(src).ctx("remove duplicate snapshot", src)?;
                Ok(false)
            }
            Err(e) => Err(e).ctx("move snapshot into place at", target),
        }
    }

    pub(crate) fn record_path(&self, key: &str) -> Result<PathBuf, CacheError> {
        let ok = !key.is_empty()
            && key.len() <= 128
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(CacheError::InvalidKey(key.to_string()));
        }
        Ok(self.records_dir().join(format!("{key}.json")))
    }

    /// The record for `key`. A record whose blobs have gone, or that cannot be parsed (then
    /// it is removed), is a miss, never an error: the cache can always rebuild. A hit is
    /// leased (its layers too) for the life of this process, which also notes its use.
    pub fn record_get(&self, key: &str) -> Result<Option<CacheRecord>, CacheError> {
        let p = self.record_path(key)?;
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("read cache record", p),
        };
        let rec: CacheRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(_) => {
                let _ = std::fs::remove_file(&p);
                return Ok(None);
            }
        };
        // Leased before its blobs are looked at: a prune that moved them aside meanwhile
        // makes this a miss, never a hit on something about to disappear.
        self.lease_record(key, &rec)?;
        // A record whose blobs are gone is left for prune to remove: a prune running now
        // may only have moved them aside, and put them back.
        if rec.layers.iter().any(|l| !self.has_blob(&l.digest)) {
            return Ok(None);
        }
        Ok(Some(rec))
    }

    fn lease_record(&self, key: &str, rec: &CacheRecord) -> Result<(), CacheError> {
        let mut items = Vec::with_capacity(rec.layers.len() + 1);
        items.push(Leased::Record(key));
        items.extend(rec.layers.iter().map(|l| Leased::Layer {
            digest: &l.digest,
            diff_id: &l.diff_id,
        }));
        self.lease(&items)
    }

    pub fn record_put(&self, key: &str, rec: &CacheRecord) -> Result<(), CacheError> {
        let p = self.record_path(key)?;
        self.lease_record(key, rec)?;
        let bytes = serde_json::to_vec(rec).map_err(|e| CacheError::Corrupt {
            path: p.clone(),
            reason: format!("cannot encode cache record: {e}"),
        })?;
        fsutil::atomic_write(&p, &bytes)
    }

    fn init_layout(&self) -> Result<(), CacheError> {
        let layout = self.oci_dir().join("oci-layout");
        if !layout.is_file() {
            fsutil::atomic_write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = self.oci_dir().join("index.json");
        if !index.is_file() {
            let _g = self.lock_index()?;
            if !index.is_file() {
                fsutil::atomic_write(
                    &index,
                    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                )?;
            }
        }
        Ok(())
    }

    /// Exclusive lock for read-modify-write of index.json (across processes).
    pub(crate) fn lock_index(&self) -> Result<File, CacheError> {
        let p = self.locks_dir().join("index.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .ctx("open lock file", &p)?;
        f.lock().ctx("lock", &p)?;
        Ok(f)
    }
}

/// A blob being written: hashed as it goes, renamed into place by `commit`.
pub(crate) struct BlobWriter {
    w: fsutil::HashWriter<std::io::BufWriter<tempfile::NamedTempFile>>,
    dir: PathBuf,
    store: Store,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

impl BlobWriter {
    /// Syncs and renames the blob to its digest. With `expect`, a different digest is an
    /// error and nothing is stored. Returns (digest, size).
    pub(crate) fn commit(self, expect: Option<&str>) -> Result<(String, u64), CacheError> {
        let (buf, digest, size) = self.w.finish();
        if let Some(exp) = expect
            && exp != digest
        {
            return Err(CacheError::DigestMismatch {
                what: "blob content".into(),
                expected: exp.to_string(),
                actual: digest,
            });
        }
        let tmp = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx("write blob", &self.dir)?;
        tmp.as_file()
            .sync_all()
            .ctx("sync blob", tmp.path().to_path_buf())?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = tmp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        let target = self.dir.join(&digest["sha256:".len()..]);
        // Leased before it appears, so a prune running now cannot take it.
        self.store.lease_blob(&digest)?;
        if !target.is_file() {
            self.store.count_added(size);
        }
        tmp.persist(&target)
            .map_err(|e| e.error)
            .ctx("rename blob into place at", &target)?;
        fsutil::fsync_dir(&self.dir)?;
        Ok((digest, size))
    }
}

/// The 64 hex digits of a `sha256:` digest.
pub(crate) fn digest_hex(d: &str) -> Result<&str, CacheError> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| CacheError::InvalidDigest(d.to_string()))?;
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(hex)
    } else {
        Err(CacheError::InvalidDigest(d.to_string()))
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_validates() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_hex(&good).unwrap(), "a".repeat(64));
        assert!(digest_hex("sha256:abc").is_err());
        assert!(digest_hex(&format!("sha512:{}", "a".repeat(64))).is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(digest_hex(&format!("sha256:../{}", "a".repeat(61))).is_err());
    }

    #[test]
    fn temp_owner_parses_pid() {
        assert_eq!(
            fsutil::temp_owner(std::ffi::OsStr::new(".rb123-extract-xyz")),
            Some(123)
        );
        assert_eq!(fsutil::temp_owner(std::ffi::OsStr::new("abc")), None);
        assert_eq!(fsutil::temp_owner(std::ffi::OsStr::new(".rbx-")), None);
    }
}
