//! Build-cache export and import (`--cache-to`, `--cache-from`).
//!
//! The exported cache is an OCI artifact: an image manifest whose `artifactType` is
//! [`ARTIFACT_TYPE`], whose config blob ([`MEDIA_TYPE_CACHE_CONFIG`]) is a JSON
//! [`CacheConfig`] (runtime cache key → [`CacheRecord`]), and whose layers are the layer
//! blobs those records name, with their usual layer media types. A plain distribution
//! registry stores it like any image; `type=local` writes it as an OCI image layout.
//! Inline export puts the same JSON under the [`INLINE_KEY`] key of an image's config
//! and adds no blobs: the records then name only the image's own layers.
//!
//! Import is lazy: [`load_local`] / [`load_registry`] read only the manifest and the cache
//! config. [`ImportedCache::ensure_blobs`] brings a layer blob into the store when a step
//! needs its content (a step runs on top of it, or it is part of an exported image), and
//! counts what it fetched.

use crate::error::IoContext;
use crate::explain::ExportedRecord;
use crate::oci::{
    REF_NAME, descriptor, index_json, manifest_json, parse_index, parse_manifest, ref_name,
    with_annotations,
};
use crate::registry::{Reference, RegistryClient, RegistryError, platform};
use crate::{CacheError, CacheRecord, Layer, Store, digest_hex, fsutil};
use oci_spec::image::{
    Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Media type of the cache config blob.
pub const MEDIA_TYPE_CACHE_CONFIG: &str = "application/vnd.rbuild.cache.config.v1+json";
/// `artifactType` of the cache manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
/// Top-level key of an image config holding inline cache records.
pub const INLINE_KEY: &str = "rbuild.cache.v1";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Cache configs are small (a few hundred bytes per record); refuse absurd ones.
const MAX_CONFIG: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RemoteCacheError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] CacheError),
    #[error("cache {source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("cache {source_name}: {source}")]
    Format {
        source_name: String,
        #[source]
        source: CacheFormatError,
    },
}

/// Cache metadata (a cache config blob, or inline records in an image config) that
/// cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheFormatError {
    #[error("invalid cache config: {0}")]
    Json(#[source] serde_json::Error),
    #[error(
        "cache format version {0} is not supported (this rbuild reads version {FORMAT_VERSION})"
    )]
    Version(u32),
    #[error("invalid cache key {0:?}")]
    Key(String),
    #[error(transparent)]
    Digest(CacheError),
    #[error("layer {0} is described in two ways")]
    LayerTwice(String),
    #[error("image config: {0}")]
    ImageConfig(#[source] serde_json::Error),
    #[error("image config is not a JSON object")]
    NotAnObject,
    #[error("image config does not end with '}}'")]
    NoClosingBrace,
    #[error("inline cache metadata: {0}")]
    Inline(#[source] serde_json::Error),
}

fn format_err(source_name: impl Into<String>) -> impl FnOnce(CacheFormatError) -> RemoteCacheError {
    let source_name = source_name.into();
    move |source| RemoteCacheError::Format {
        source_name,
        source,
    }
}

fn invalid(source_name: impl Into<String>, message: impl Into<String>) -> RemoteCacheError {
    RemoteCacheError::Invalid {
        source_name: source_name.into(),
        message: message.into(),
    }
}

/// The cache config blob: which runtime cache keys resolve to which layer chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    /// Runtime cache key (hex) → record. Sorted, so the blob (and its digest) only changes
    /// when the records do.
    pub records: BTreeMap<String, CacheRecord>,
    /// The explanation records of the builds that exported it, by build identity (see
    /// [`crate::explain`]); left out when empty, so caches without them keep their bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub explain: BTreeMap<String, ExportedRecord>,
    /// Runtime cache key → when a build last exported that record (Unix ms), kept by
    /// merged exports so a size bound drops the records unused longest first ([`merge`]).
    /// Left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub touched: BTreeMap<String, u64>,
    /// The per-build tags (see [`shared`]) whose records this config already holds, so an
    /// import reads only the others. Left out when empty.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub merged: BTreeSet<String>,
    /// `RUN --mount=type=cache` contents by cache id, each one layer blob
    /// (`--cache-to …,cache-mounts=true`). Left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, Layer>,
}

impl CacheConfig {
    pub fn new(records: BTreeMap<String, CacheRecord>) -> Self {
        CacheConfig {
            version: FORMAT_VERSION,
            records,
            explain: BTreeMap::new(),
            touched: BTreeMap::new(),
            merged: BTreeSet::new(),
            mounts: BTreeMap::new(),
        }
    }

    /// The distinct layer blobs the records name, in first-seen order (records sorted by key,
    /// each chain bottom first), then those of the cache mounts.
    pub fn layers(&self) -> Vec<Layer> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let chains = self.records.values().map(|r| r.layers.as_slice());
        for l in chains.flatten().chain(self.mounts.values()) {
            if seen.insert(l.digest.clone()) {
                out.push(l.clone());
            }
        }
        out
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data (strings, numbers, JSON values): encoding cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a cache config: version, key syntax, digests, and that the same
    /// blob is described the same way everywhere.
    pub fn parse(bytes: &[u8]) -> Result<CacheConfig, CacheFormatError> {
        let cfg: CacheConfig = serde_json::from_slice(bytes).map_err(CacheFormatError::Json)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), CacheFormatError> {
        if self.version != FORMAT_VERSION {
            return Err(CacheFormatError::Version(self.version));
        }
        let mut blobs: HashMap<&str, &Layer> = HashMap::new();
        for (id, l) in &self.mounts {
            if id.is_empty() || id.len() > 4096 {
                return Err(CacheFormatError::Key(id.clone()));
            }
            digest_hex(&l.digest).map_err(CacheFormatError::Digest)?;
            digest_hex(&l.diff_id).map_err(CacheFormatError::Digest)?;
            blobs.insert(&l.digest, l);
        }
        for (key, rec) in &self.records {
            let ok = !key.is_empty()
                && key.len() <= 128
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(CacheFormatError::Key(key.clone()));
            }
            for l in &rec.layers {
                digest_hex(&l.digest).map_err(CacheFormatError::Digest)?;
                digest_hex(&l.diff_id).map_err(CacheFormatError::Digest)?;
                if let Some(prev) = blobs.insert(&l.digest, l)
                    && prev != l
                {
                    return Err(CacheFormatError::LayerTwice(l.digest.clone()));
                }
            }
        }
        Ok(())
    }
}

/// The manifest bytes for `cfg` whose config blob is `config_json`: an OCI image manifest
/// with `artifactType` [`ARTIFACT_TYPE`].
fn manifest_bytes(cfg: &CacheConfig, config_json: &[u8]) -> Result<Vec<u8>, CacheError> {
    let config = descriptor(
        MediaType::Other(MEDIA_TYPE_CACHE_CONFIG.to_string()),
        &format!("sha256:{}", fsutil::sha256_hex(config_json)),
        config_json.len() as u64,
    )?;
    let layers = cfg
        .layers()
        .into_iter()
        .map(|l| descriptor(l.media_type, &l.digest, l.size))
        .collect::<Result<Vec<_>, _>>()?;
    let m: ImageManifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(ARTIFACT_TYPE.to_string()))
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| CacheError::Corrupt {
            path: "<cache manifest>".into(),
            reason: e.to_string(),
        })?;
    Ok(manifest_json(&m))
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub manifest_digest: String,
    pub records: usize,
    /// Layer blobs in the artifact.
    pub blobs: usize,
}

fn missing_blob(store: &Store, l: &Layer) -> CacheError {
    CacheError::MissingBlob {
        path: store.blob_path(&l.digest),
        digest: l.digest.clone(),
    }
}

/// The layers of `cfg` that an export to the layout `dest` needs from the store but the
/// store lacks (still remote after a lazy import): fetch these first. Blobs the layout
/// already has are not needed.
pub fn needed_for_local(store: &Store, cfg: &CacheConfig, dest: &Path) -> Vec<Layer> {
    cfg.layers()
        .into_iter()
        .filter(|l| {
            !store.has_blob(&l.digest)
                && !digest_hex(&l.digest)
                    .map(|hex| dest.join("blobs/sha256").join(hex).is_file())
                    .unwrap_or(false)
        })
        .collect()
}

/// Like [`needed_for_local`] for a push to `reference`: blobs the repository already has
/// are not needed.
pub async fn needed_for_registry(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    cfg: &CacheConfig,
) -> Result<Vec<Layer>, RemoteCacheError> {
    let mut out = Vec::new();
    for l in cfg.layers() {
        if !store.has_blob(&l.digest) && !client.blob_exists(reference, &l.digest).await? {
            out.push(l);
        }
    }
    Ok(out)
}

/// Writes the cache as an OCI image layout at `dest` (created if needed), tagged `tag`.
/// Blobs already there are kept (the store need not have those); index.json is replaced
/// atomically, last, so a reader sees the old cache or the new one.
pub fn export_local(
    store: &Store,
    cfg: &CacheConfig,
    dest: &Path,
    tag: &str,
) -> Result<ExportSummary, RemoteCacheError> {
    let blobs = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).ctx("create directory", &blobs)?;
    let layout = dest.join("oci-layout");
    if !layout.is_file() {
        fsutil::atomic_write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    let layers = cfg.layers();
    for l in &layers {
        let hex = digest_hex(&l.digest)?;
        let target = blobs.join(hex);
        if target.is_file() {
            continue;
        }
        if !store.has_blob(&l.digest) {
            return Err(missing_blob(store, l).into());
        }
        copy_blob(&store.blob_path(&l.digest), &target)?;
    }
    let config_json = cfg.to_json();
    let manifest = manifest_bytes(cfg, &config_json)?;
    let manifest_digest = format!("sha256:{}", fsutil::sha256_hex(&manifest));
    for bytes in [&config_json, &manifest] {
        let target = blobs.join(fsutil::sha256_hex(bytes));
        if !target.is_file() {
            fsutil::atomic_write(&target, bytes)?;
        }
    }

    // Keep other tags of an existing layout; replace ours.
    let index_path = dest.join("index.json");
    let mut manifests: Vec<Descriptor> = std::fs::read(&index_path)
        .ok()
        .and_then(|b| parse_index(&b).ok())
        .map(|i| i.manifests().clone())
        .unwrap_or_default();
    manifests.retain(|d| ref_name(d) != Some(tag));
    let desc = descriptor(
        MediaType::ImageManifest,
        &manifest_digest,
        manifest.len() as u64,
    )?;
    manifests.push(with_annotations(desc, &[(REF_NAME, tag)]));
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(manifests);
    fsutil::atomic_write(&index_path, &index_json(&index))?;
    Ok(ExportSummary {
        manifest_digest,
        records: cfg.records.len(),
        blobs: layers.len(),
    })
}

/// Copies a blob file: a hard link when both are on one filesystem, else a copy into a
/// temp file beside `target`, renamed into place.
fn copy_blob(src: &Path, target: &Path) -> Result<(), CacheError> {
    if std::fs::hard_link(src, target).is_ok() {
        return Ok(());
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&fsutil::temp_prefix())
        .tempfile_in(dir)
        .ctx("create temporary file in", dir)?;
    let mut from = std::fs::File::open(src).ctx("open", src)?;
    std::io::copy(&mut from, tmp.as_file_mut()).ctx("copy blob to", target)?;
    tmp.as_file().sync_all().ctx("sync", target)?;
    tmp.persist(target)
        .map_err(|e| e.error)
        .ctx("rename blob into place at", target)?;
    fsutil::fsync_dir(dir)
}

/// Pushes the cache to `reference`: layer blobs the registry lacks, the cache config,
/// then the manifest under the reference's tag. A blob the store lacks is fine when the
/// repository has it. Returns what was pushed.
pub async fn export_registry(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    cfg: &CacheConfig,
) -> Result<ExportSummary, RemoteCacheError> {
    let layers = cfg.layers();
    for l in &layers {
        if !store.has_blob(&l.digest) {
            if client.blob_exists(reference, &l.digest).await? {
                continue;
            }
            return Err(missing_blob(store, l).into());
        }
        client
            .push_blob(reference, &l.digest, l.size, &store.blob_path(&l.digest))
            .await?;
    }
    push_config_and_manifest(store, client, reference, cfg).await
}

/// Pushes the config blob of `cfg` and its manifest under the reference's tag (the layer
/// blobs must be there already).
async fn push_config_and_manifest(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    cfg: &CacheConfig,
) -> Result<ExportSummary, RemoteCacheError> {
    let config_json = cfg.to_json();
    let config_digest = format!("sha256:{}", fsutil::sha256_hex(&config_json));
    let tmp = store.tmp_dir("cache-config")?;
    let path = tmp.path().join("config.json");
    std::fs::write(&path, &config_json).ctx("write", &path)?;
    client
        .push_blob(reference, &config_digest, config_json.len() as u64, &path)
        .await?;
    let manifest = manifest_bytes(cfg, &config_json)?;
    let manifest_digest = client
        .push_manifest(reference, &MediaType::ImageManifest, &manifest)
        .await?;
    Ok(ExportSummary {
        manifest_digest,
        records: cfg.records.len(),
        blobs: cfg.layers().len(),
    })
}

/// `config_json` (an image config object) with the records added under [`INLINE_KEY`].
/// The existing bytes are kept as they are (field order included) and the key appended.
pub fn add_inline(config_json: &[u8], cfg: &CacheConfig) -> Result<Vec<u8>, CacheFormatError> {
    let v: serde_json::Value =
        serde_json::from_slice(config_json).map_err(CacheFormatError::ImageConfig)?;
    let obj = v.as_object().ok_or(CacheFormatError::NotAnObject)?;
    let mut out = if obj.contains_key(INLINE_KEY) {
        // Rebuilt without the old records (key order then follows serde_json's map).
        let mut o = obj.clone();
        o.remove(INLINE_KEY);
        serde_json::to_vec(&o).map_err(CacheFormatError::ImageConfig)?
    } else {
        config_json.to_vec()
    };
    while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
        out.pop();
    }
    if out.pop() != Some(b'}') {
        return Err(CacheFormatError::NoClosingBrace);
    }
    let empty = out.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&serde_json::to_vec(INLINE_KEY).unwrap_or_default());
    out.push(b':');
    out.extend_from_slice(&cfg.to_json());
    out.push(b'}');
    Ok(out)
}

/// The inline cache records of an image config, if it has any.
pub fn read_inline(config_json: &[u8]) -> Result<Option<CacheConfig>, CacheFormatError> {
    let v: serde_json::Value =
        serde_json::from_slice(config_json).map_err(CacheFormatError::ImageConfig)?;
    let Some(inline) = v.get(INLINE_KEY) else {
        return Ok(None);
    };
    let cfg: CacheConfig =
        serde_json::from_value(inline.clone()).map_err(CacheFormatError::Inline)?;
    cfg.check()?;
    Ok(Some(cfg))
}

/// Reads a blob of an OCI layout, checking its digest.
fn read_layout_blob(dir: &Path, digest: &str, limit: u64) -> Result<Vec<u8>, RemoteCacheError> {
    let name = dir.display().to_string();
    let hex = digest_hex(digest).map_err(|e| invalid(&name, e.to_string()))?;
    let p = dir.join("blobs/sha256").join(hex);
    let meta = std::fs::metadata(&p).ctx("read", &p)?;
    if meta.len() > limit {
        return Err(invalid(&name, format!("blob {digest} is too large")));
    }
    let bytes = std::fs::read(&p).ctx("read", &p)?;
    let actual = format!("sha256:{}", fsutil::sha256_hex(&bytes));
    if actual != digest {
        return Err(invalid(
            &name,
            format!("blob {digest} is corrupt (its content hashes to {actual})"),
        ));
    }
    Ok(bytes)
}

/// Reads the cache metadata of the OCI layout `dir`: the manifest tagged `tag`, or the only
/// manifest there is. No layer blob is read.
pub fn load_local(dir: &Path, tag: &str) -> Result<CacheConfig, RemoteCacheError> {
    let name = dir.display().to_string();
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).ctx("read", &index_path)?;
    let index = parse_index(&bytes)
        .map_err(|e| invalid(&name, format!("index.json is not a valid OCI index: {e}")))?;
    let desc = index
        .manifests()
        .iter()
        .find(|d| ref_name(d) == Some(tag))
        .or(match index.manifests().as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| invalid(&name, format!("no cache tagged {tag:?} in index.json")))?;
    let manifest = read_layout_blob(dir, desc.digest().as_ref(), MAX_CONFIG)?;
    let m = parse_manifest(&manifest)
        .map_err(|e| invalid(&name, format!("manifest {}: {e}", desc.digest())))?;
    let config = read_layout_blob(dir, m.config().digest().as_ref(), MAX_CONFIG)?;
    if m.config().media_type().as_ref() == MEDIA_TYPE_CACHE_CONFIG {
        return CacheConfig::parse(&config).map_err(format_err(&name));
    }
    // An image layout whose image carries inline cache metadata works too.
    read_inline(&config)
        .map_err(format_err(&name))?
        .ok_or_else(|| {
            invalid(
                &name,
                "not an rbuild cache (no cache config, no inline cache)",
            )
        })
}

/// Reads the cache metadata at `reference`: a cache artifact (its config blob), or an
/// image with inline cache metadata (its config). No layer blob is fetched.
pub async fn load_registry(
    client: &RegistryClient,
    reference: &Reference,
) -> Result<CacheConfig, RemoteCacheError> {
    let name = reference.to_string();
    let resolved = client.resolve(reference, &platform::host()).await?;
    if resolved.config.size() > MAX_CONFIG {
        return Err(invalid(&name, "cache config is too large"));
    }
    let config = client
        .fetch_config(reference, resolved.config.digest().as_ref())
        .await?;
    if resolved.config.media_type().as_ref() == MEDIA_TYPE_CACHE_CONFIG {
        return CacheConfig::parse(&config).map_err(format_err(&name));
    }
    read_inline(&config).map_err(format_err(&name))?.ok_or_else(|| {
        invalid(
            &name,
            "not an rbuild cache: neither a cache manifest nor an image with inline cache metadata",
        )
    })
}

/// Where imported records' blobs come from.
#[derive(Clone)]
pub enum CacheSource {
    /// An OCI layout directory (`type=local,src=DIR`).
    Local(PathBuf),
    /// A registry repository (`type=registry,ref=REF`, or an image with inline cache).
    Registry {
        client: RegistryClient,
        reference: Reference,
    },
}

impl std::fmt::Debug for CacheSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheSource::Local(p) => write!(f, "Local({})", p.display()),
            CacheSource::Registry { reference, .. } => write!(f, "Registry({reference})"),
        }
    }
}

/// Imported cache records and the sources of their blobs. Blobs are fetched only when
/// asked for; fetched blobs and bytes are counted.
#[derive(Debug, Default)]
pub struct ImportedCache {
    sources: Vec<CacheSource>,
    records: HashMap<String, CacheRecord>,
    /// Explanation records by build identity (the first source's wins).
    explain: HashMap<String, ExportedRecord>,
    /// Blob digest → index in `sources` of the first source that names it.
    blob_source: HashMap<String, usize>,
    /// Cache mount contents by id (the first source's wins).
    mounts: HashMap<String, Layer>,
    fetch_lock: tokio::sync::Mutex<()>,
    blobs_fetched: AtomicU64,
    bytes_fetched: AtomicU64,
}

impl ImportedCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the records of one source. A key already imported from an earlier source keeps
    /// that source's record (sources are consulted in the order given).
    pub fn add(&mut self, source: CacheSource, cfg: CacheConfig) {
        let idx = self.sources.len();
        self.sources.push(source);
        for (key, rec) in cfg.records {
            for l in &rec.layers {
                self.blob_source.entry(l.digest.clone()).or_insert(idx);
            }
            self.records.entry(key).or_insert(rec);
        }
        for (build, rec) in cfg.explain {
            self.explain.entry(build).or_insert(rec);
        }
        for (id, l) in cfg.mounts {
            self.blob_source.entry(l.digest.clone()).or_insert(idx);
            self.mounts.entry(id).or_insert(l);
        }
    }

    /// The imported content of the cache mount `id`, if a source carried it.
    pub fn mount_layer(&self, id: &str) -> Option<&Layer> {
        self.mounts.get(id)
    }

    /// The imported explanation record of the build `build`, if a source carried one.
    pub fn explain_record(&self, build: &str) -> Option<&ExportedRecord> {
        self.explain.get(build)
    }

    /// How many records were imported.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The imported record of a runtime cache key (its blobs may not be local yet).
    pub fn record(&self, key: &str) -> Option<&CacheRecord> {
        self.records.get(key)
    }

    /// (blobs, bytes) fetched so far.
    pub fn fetched(&self) -> (u64, u64) {
        (
            self.blobs_fetched.load(Ordering::Relaxed),
            self.bytes_fetched.load(Ordering::Relaxed),
        )
    }

    /// Makes every blob of `layers` present in `store`, fetching the missing ones from the
    /// source that listed them (verified against their digests).
    pub async fn ensure_blobs(
        &self,
        store: &Store,
        layers: &[Layer],
    ) -> Result<(), RemoteCacheError> {
        // One fetch at a time: two steps needing the same blob fetch it once.
        let _guard = self.fetch_lock.lock().await;
        for l in layers {
            store.lease_layers(std::slice::from_ref(l))?;
            if store.has_blob(&l.digest) {
                continue;
            }
            let Some(&idx) = self.blob_source.get(&l.digest) else {
                return Err(missing_blob(store, l).into());
            };
            let size = match &self.sources[idx] {
                CacheSource::Local(dir) => {
                    let (store, dir, digest) = (store.clone(), dir.clone(), l.digest.clone());
                    tokio::task::spawn_blocking(move || copy_into_store(&store, &dir, &digest))
                        .await
                        .map_err(|e| invalid("import", format!("blob copy stopped: {e}")))??
                }
                CacheSource::Registry { client, reference } => {
                    crate::pull::fetch_into::<RemoteCacheError>(store, client, reference, &l.digest)
                        .await?
                }
            };
            self.blobs_fetched.fetch_add(1, Ordering::Relaxed);
            self.bytes_fetched.fetch_add(size, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Copies blob `digest` of the layout `dir` into the store, verifying it. Returns its size.
fn copy_into_store(store: &Store, dir: &Path, digest: &str) -> Result<u64, RemoteCacheError> {
    let name = dir.display().to_string();
    let hex = digest_hex(digest).map_err(|e| invalid(&name, e.to_string()))?;
    let src = dir.join("blobs/sha256").join(hex);
    let mut from = std::fs::File::open(&src).ctx("open", &src)?;
    let mut w = store.blob_writer()?;
    std::io::copy(&mut from, &mut w).ctx("copy blob from", &src)?;
    w.flush().ctx("copy blob from", &src)?;
    let (_, size) = w.commit(Some(digest))?;
    Ok(size)
}

pub mod local_merge;
pub mod merge;
pub mod shared;

pub use local_merge::export_local_merged;
pub use merge::ExportOptions;
pub use shared::{export_registry_shared, load_registry_shared};

#[cfg(test)]
mod tests;
