//! Garbage collection: what prune removes, and the policy applied after each build.
//!
//! Tagged images pin their manifest, config and layers (blobs and snapshots); running
//! processes pin what their leases name (`lease.rs`); cache records pin their layers while
//! they are kept. Prune drops records by the options (every one with `all`, those unused
//! for a while with `until`, the least recently used first until the build cache fits
//! in `keep_storage`), then removes every blob, snapshot and record nothing pins
//! (`sweep.rs`). Prune runs beside builds; two prunes (or a prune and `check`) take turns
//! on `locks/prune.lock`.
//!
//! A record's last use is its file's mtime, moved forward from the use logs of finished
//! processes (their lease files) when prune runs: a cache hit writes no metadata.

mod policy;
mod sweep;
pub mod units;

pub use policy::{GcPolicy, KeepStorage, PolicyError};
pub use sweep::Swept;
pub use units::{UnitError, parse_duration, parse_size};

use crate::error::{CacheError, IoContext};
use crate::lease::{self, Protected};
use crate::oci::{config_diff_ids, parse_manifest};
use crate::{CacheRecord, Layer, Store, digest_hex, fsutil};
use rbuild_registry::media_types::is_index;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::time::{Duration, SystemTime};
pub(crate) use sweep::Victim;

/// What prune drops besides data nothing references (docker's `builder prune` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// `-a`: every cache record may go (with `keep_storage`, only as many as needed).
    pub all: bool,
    /// `--filter until=DURATION`: only records not used for this long may go.
    pub until: Option<Duration>,
    /// `--keep-storage SIZE`: drop records, least recently used first, until the build
    /// cache takes at most this many bytes.
    pub keep_storage: Option<u64>,
}

/// What a prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub swept: Swept,
    /// Bytes the build cache holds afterwards (what no tagged image needs), when prune
    /// had to measure it (`keep_storage`).
    pub cache_bytes: Option<u64>,
}

/// What is protected from prune: by tagged images, and by running processes' leases.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    pub images: Protected,
    pub leased: Protected,
}

impl Pins {
    fn protects(&self, v: &Victim) -> bool {
        let any = |f: &dyn Fn(&Protected) -> bool| f(&self.images) || f(&self.leased);
        match v {
            Victim::Record(k) => self.leased.records.contains(k),
            Victim::Blob(d) => any(&|p| p.blobs.contains(d)),
            Victim::Snapshot(id) => any(&|p| p.snapshots.contains(id)),
        }
    }
}

/// A cache record as prune sees it.
struct RecordInfo {
    key: String,
    /// None: the file does not parse.
    record: Option<CacheRecord>,
    mtime: SystemTime,
    last_use: SystemTime,
    bytes: u64,
}

impl Store {
    /// Removes what nothing needs: records as `opts` says, then every blob, snapshot and
    /// record no tagged image, kept record or running build needs. Waits for another
    /// prune or check of this root to finish first.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, CacheError> {
        let _turn = self.lock_prune(true)?;
        self.prune_locked(opts)
    }

    /// The prune lock (`locks/prune.lock`): `wait` for it, or `None` if it is taken.
    pub(crate) fn lock_prune(&self, wait: bool) -> Result<Option<File>, CacheError> {
        let p = self.locks_dir().join("prune.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .ctx("open lock file", &p)?;
        if wait {
            f.lock().ctx("lock", &p)?;
            return Ok(Some(f));
        }
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).ctx("lock", &p),
        }
    }

    pub(crate) fn prune_locked(&self, opts: &PruneOptions) -> Result<PruneReport, CacheError> {
        let scan = lease::scan(&self.leases_dir())?;
        let mut pins = Pins {
            leased: scan.live.clone(),
            ..Default::default()
        };
        self.pin_images(&mut pins.images)?;
        let records = self.read_records(&scan.logged)?;

        let mut dropped: HashSet<String> = HashSet::new();
        for r in &records {
            let broken = match &r.record {
                None => true,
                Some(rec) => rec.layers.iter().any(|l| !self.has_blob(&l.digest)),
            };
            if broken && !pins.leased.records.contains(&r.key) {
                dropped.insert(r.key.clone());
            }
        }
        let now = SystemTime::now();
        let mut candidates: Vec<&RecordInfo> = records
            .iter()
            .filter(|r| !dropped.contains(&r.key) && !pins.leased.records.contains(&r.key))
            .filter(|r| match opts.until {
                Some(d) => now.duration_since(r.last_use).unwrap_or_default() >= d,
                None => true,
            })
            .collect();
        candidates.sort_by_key(|r| (r.last_use, r.key.clone()));

        let mut cache_bytes = None;
        if let Some(keep) = opts.keep_storage {
            let mut usage = Usage::new(self, &pins, &records, &dropped);
            for r in candidates {
                if usage.total <= keep {
                    break;
                }
                usage.drop_record(r);
                dropped.insert(r.key.clone());
            }
            cache_bytes = Some(usage.total);
        } else if opts.all || opts.until.is_some() {
            dropped.extend(candidates.iter().map(|r| r.key.clone()));
        }

        // Everything the kept records, the images and the leases need stays.
        let mut keep = Protected::default();
        for r in records.iter().filter(|r| !dropped.contains(&r.key)) {
            if let Some(rec) = &r.record {
                for l in &rec.layers {
                    keep.layer(&l.digest, &l.diff_id);
                }
            }
        }
        let mut victims: Vec<Victim> = dropped.iter().cloned().map(Victim::Record).collect();
        victims.extend(
            self.blob_digests()?
                .into_iter()
                .filter(|d| !keep.blobs.contains(d) && !pins.protects(&Victim::Blob(d.clone())))
                .map(Victim::Blob),
        );
        victims.extend(
            self.snapshot_ids()?
                .into_iter()
                .filter(|id| {
                    !keep.snapshots.contains(id) && !pins.protects(&Victim::Snapshot(id.clone()))
                })
                .map(Victim::Snapshot),
        );
        let swept = self.sweep(victims, |v, p| match v {
            Victim::Snapshot(_) => fsutil::du(p),
            _ => std::fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0),
        })?;

        // Fold the use logs of finished processes into the records' mtimes, then drop
        // the logs: the next prune reads fewer files.
        for r in records.iter().filter(|r| !dropped.contains(&r.key)) {
            if r.last_use > r.mtime {
                self.set_last_use(&r.key, r.last_use);
            }
        }
        lease::remove_finished(&scan.finished);
        // Flattened prefixes of every chain still kept (kept records, among them those
        // running builds lease, and images) stay.
        let mut chains: Vec<Vec<String>> = records
            .iter()
            .filter(|r| !dropped.contains(&r.key))
            .filter_map(|r| r.record.as_ref())
            .map(|rec| rec.layers.iter().map(|l| l.diff_id.clone()).collect())
            .collect();
        for (digest, _) in self.index_images()? {
            if let Ok(img) = self.load_image(&digest, vec![]) {
                chains.push(img.layers.iter().map(|l| l.diff_id.clone()).collect());
            }
        }
        let flattened = self.prune_flattened(&chains)?;
        // The records that explain cache misses go with everything (`all`) or by age.
        let explained = match (opts.all, opts.until, opts.keep_storage) {
            (_, Some(d), None) => crate::explain::prune(self, Some(d)),
            (true, None, None) => crate::explain::prune(self, None),
            _ => 0,
        };
        let swept = Swept {
            bytes: swept.bytes + flattened + explained,
            ..swept
        };
        let pdir = self.pieces_dir();
        crate::reuse::remove_orphans(&pdir, &self.blobs_dir())
            .ctx("remove block indexes of pruned blobs in", &pdir)?;
        self.remove_orphan_copy_records()?;
        self.remove_stale_key_locks()?;
        if let Some(bytes) = cache_bytes {
            policy::save_estimate(self, bytes);
        }
        Ok(PruneReport { swept, cache_bytes })
    }

    /// Moves the last use of records forward from the use logs of finished processes and
    /// removes the logs (what prune does too, without looking at anything else).
    pub(crate) fn fold_use_logs(&self) -> Result<(), CacheError> {
        let scan = lease::scan(&self.leases_dir())?;
        for (key, when) in &scan.logged {
            let older = self
                .record_path(key)
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .and_then(|m| m.modified().ok())
                .is_some_and(|m| m < *when);
            if older {
                self.set_last_use(key, *when);
            }
        }
        lease::remove_finished(&scan.finished);
        Ok(())
    }

    /// Best effort: a record removed meanwhile has no last use to keep.
    fn set_last_use(&self, key: &str, when: SystemTime) {
        if let Ok(p) = self.record_path(key)
            && let Ok(f) = File::options().write(true).open(&p)
        {
            let _ = f.set_modified(when);
        }
    }

    /// Pins the manifest, config and layers of every entry of `index.json`. An index that
    /// cannot be read stops prune: it could not tell what images need.
    pub(crate) fn pin_images(&self, pins: &mut Protected) -> Result<(), CacheError> {
        let idx = self.read_index()?;
        for d in idx.manifests() {
            let digest = d.digest().to_string();
            pins.blobs.insert(digest.clone());
            if is_index(d.media_type()) {
                // Its attestation manifests are no entries of index.json: pinned here.
                if let Ok(index) = self.load_index(&digest, Vec::new()) {
                    for a in &index.attestations {
                        pins.blobs.insert(a.clone());
                        if let Ok(img) = self.load_image(a, vec![]) {
                            pins.blobs.insert(img.config_digest);
                            pins.blobs.extend(img.layers.into_iter().map(|l| l.digest));
                        }
                    }
                }
                continue;
            }
            let Ok(bytes) = self.read_blob(&digest) else {
                continue;
            };
            let Ok(m) = parse_manifest(&bytes) else {
                continue;
            };
            let config = m.config().digest().to_string();
            pins.blobs.insert(config.clone());
            let ids = self
                .read_blob(&config)
                .ok()
                .and_then(|c| config_diff_ids(&c).ok().flatten())
                .unwrap_or_default();
            for (i, l) in m.layers().iter().enumerate() {
                match ids.get(i) {
                    Some(id) => pins.layer(l.digest().as_ref(), id),
                    None => {
                        pins.blobs.insert(l.digest().to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Every record file, parsed when it parses, with its last use.
    fn read_records(
        &self,
        logged: &HashMap<String, SystemTime>,
    ) -> Result<Vec<RecordInfo>, CacheError> {
        let dir = self.records_dir();
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
            let ent = ent.ctx("read directory", &dir)?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if fsutil::temp_owner(&ent.file_name()).is_some() || self.record_path(key).is_err() {
                continue;
            }
            let p = ent.path();
            let meta = match ent.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("stat", &p),
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let record = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<CacheRecord>(&b).ok());
            let last_use = logged.get(key).map_or(mtime, |t| mtime.max(*t));
            out.push(RecordInfo {
                key: key.to_string(),
                record,
                mtime,
                last_use,
                bytes: meta.len(),
            });
        }
        Ok(out)
    }

    /// Digests of the blobs in the store (temp files left aside).
    pub(crate) fn blob_digests(&self) -> Result<Vec<String>, CacheError> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
            let ent = ent.ctx("read directory", &dir)?;
            let digest = format!("sha256:{}", ent.file_name().to_string_lossy());
            if digest_hex(&digest).is_ok() {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// Names of the snapshot dirs (temp entries left aside).
    pub(crate) fn snapshot_ids(&self) -> Result<Vec<String>, CacheError> {
        let dir = self.snapshots_dir();
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
            let ent = ent.ctx("read directory", &dir)?;
            if fsutil::temp_owner(&ent.file_name()).is_none() {
                out.push(ent.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }
}

/// The bytes the build cache holds, kept up to date as records are dropped: blobs and
/// snapshots that kept records reference and no image needs, plus the records' files.
/// A blob or snapshot a running build leases stays counted until that build ends.
struct Usage<'a> {
    store: &'a Store,
    pins: &'a Pins,
    blob_refs: HashMap<String, usize>,
    snap_refs: HashMap<String, usize>,
    sizes: HashMap<String, u64>,
    total: u64,
}

impl<'a> Usage<'a> {
    fn new(
        store: &'a Store,
        pins: &'a Pins,
        records: &[RecordInfo],
        dropped: &HashSet<String>,
    ) -> Usage<'a> {
        let mut u = Usage {
            store,
            pins,
            blob_refs: HashMap::new(),
            snap_refs: HashMap::new(),
            sizes: HashMap::new(),
            total: 0,
        };
        for r in records.iter().filter(|r| !dropped.contains(&r.key)) {
            u.total += r.bytes;
            let Some(rec) = &r.record else { continue };
            for (blob, snap) in unique_parts(&rec.layers) {
                let n = u.blob_refs.entry(blob.clone()).or_insert(0);
                *n += 1;
                if *n == 1 && !pins.images.blobs.contains(&blob) {
                    u.total += u.size(&blob, false);
                }
                if let Some(snap) = snap {
                    let n = u.snap_refs.entry(snap.clone()).or_insert(0);
                    *n += 1;
                    if *n == 1 && !pins.images.snapshots.contains(&snap) {
                        u.total += u.size(&snap, true);
                    }
                }
            }
        }
        u
    }

    fn size(&mut self, name: &str, snapshot: bool) -> u64 {
        if let Some(s) = self.sizes.get(name) {
            return *s;
        }
        let s = if snapshot {
            fsutil::du(&self.store.snapshots_dir().join(name))
        } else {
            std::fs::metadata(self.store.blob_path(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        self.sizes.insert(name.to_string(), s);
        s
    }

    fn drop_record(&mut self, r: &RecordInfo) {
        self.total = self.total.saturating_sub(r.bytes);
        let Some(rec) = &r.record else { return };
        for (blob, snap) in unique_parts(&rec.layers) {
            if let Some(n) = self.blob_refs.get_mut(&blob) {
                *n -= 1;
                let free = *n == 0
                    && !self.pins.images.blobs.contains(&blob)
                    && !self.pins.leased.blobs.contains(&blob);
                if free {
                    let s = self.size(&blob, false);
                    self.total = self.total.saturating_sub(s);
                }
            }
            let Some(snap) = snap else { continue };
            if let Some(n) = self.snap_refs.get_mut(&snap) {
                *n -= 1;
                let free = *n == 0
                    && !self.pins.images.snapshots.contains(&snap)
                    && !self.pins.leased.snapshots.contains(&snap);
                if free {
                    let s = self.size(&snap, true);
                    self.total = self.total.saturating_sub(s);
                }
            }
        }
    }
}

/// The distinct blobs and snapshot ids of a layer chain.
fn unique_parts(layers: &[Layer]) -> Vec<(String, Option<String>)> {
    let mut seen = HashSet::new();
    layers
        .iter()
        .filter(|l| seen.insert(l.digest.clone()))
        .map(|l| (l.digest.clone(), Store::snapshot_id(&l.diff_id).ok()))
        .collect()
}
