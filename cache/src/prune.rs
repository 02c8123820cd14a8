//! Garbage collection of blobs, snapshots (flattened ones too) and records nothing
//! references.

use crate::error::{CacheError, IoContext};
use crate::{CacheRecord, Store, digest_hex, fsutil, unix_now};
use std::collections::HashSet;

/// What [`Store::prune_with`] drops besides unreferenced data.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Drop every cache record first.
    pub all_records: bool,
    /// Drop records not used for this many seconds first.
    pub keep_records_secs: Option<u64>,
}

impl Store {
    /// Removes blobs, snapshots and records no image or record references (every record
    /// first, with `all_records`). Returns bytes freed.
    pub fn prune(&self, all_records: bool) -> Result<u64, CacheError> {
        self.prune_with(PruneOptions {
            all_records,
            keep_records_secs: None,
        })
    }

    pub fn prune_with(&self, opts: PruneOptions) -> Result<u64, CacheError> {
        // Every open Store holds the gc lock shared; prune needs it alone.
        let lock_path = self.locks_dir().join("gc.lock");
        self.inner.gc_lock.unlock().ctx("unlock", &lock_path)?;
        let result = (|| {
            let excl = std::fs::File::options()
                .read(true)
                .write(true)
                .open(&lock_path)
                .ctx("open lock file", &lock_path)?;
            match excl.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(CacheError::Busy {
                        root: self.root().to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock", &lock_path),
            }
            self.prune_locked(opts)
        })();
        self.inner.gc_lock.lock_shared().ctx("lock", &lock_path)?;
        result
    }

    fn prune_locked(&self, opts: PruneOptions) -> Result<u64, CacheError> {
        let mut freed = 0u64;
        let now = unix_now();
        let mut blobs: HashSet<String> = HashSet::new();
        let mut snaps: HashSet<String> = HashSet::new();
        // Diff IDs of every chain kept: flattened snapshots of their prefixes stay.
        let mut chains: Vec<Vec<String>> = Vec::new();
        let rdir = self.records_dir();
        for ent in std::fs::read_dir(&rdir).ctx("read directory", &rdir)? {
            let ent = ent.ctx("read directory", &rdir)?;
            let p = ent.path();
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let meta = ent.metadata().ctx("stat", &p)?;
            let age = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let _ = now;
            let drop_it = opts.all_records || opts.keep_records_secs.is_some_and(|k| age > k);
            let rec: Option<CacheRecord> = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match rec {
                Some(r) if !drop_it => {
                    chains.push(r.layers.iter().map(|l| l.diff_id.clone()).collect());
                    for l in r.layers {
                        if let Ok(id) = Store::snapshot_id(&l.diff_id) {
                            snaps.insert(id);
                        }
                        blobs.insert(l.digest);
                    }
                }
                _ => {
                    freed += meta.len();
                    std::fs::remove_file(&p).ctx("remove cache record", &p)?;
                }
            }
        }
        for (digest, _) in self.index_images()? {
            blobs.insert(digest.clone());
            if let Ok(img) = self.load_image(&digest, vec![]) {
                blobs.insert(img.config_digest);
                chains.push(img.layers.iter().map(|l| l.diff_id.clone()).collect());
                for l in img.layers {
                    if let Ok(id) = Store::snapshot_id(&l.diff_id) {
                        snaps.insert(id);
                    }
                    blobs.insert(l.digest);
                }
            }
        }
        let bdir = self.blobs_dir();
        for ent in std::fs::read_dir(&bdir).ctx("read directory", &bdir)? {
            let ent = ent.ctx("read directory", &bdir)?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if digest_hex(&digest).is_err() || blobs.contains(&digest) {
                continue;
            }
            let p = ent.path();
            freed += ent.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&p).ctx("remove blob", &p)?;
        }
        let sdir = self.snapshots_dir();
        for ent in std::fs::read_dir(&sdir).ctx("read directory", &sdir)? {
            let ent = ent.ctx("read directory", &sdir)?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if snaps.contains(&name) || fsutil::temp_owner(&ent.file_name()).is_some() {
                continue;
            }
            let p = ent.path();
            freed += fsutil::du(&p);
            fsutil::remove_dir_all_force(&p).ctx("remove snapshot", &p)?;
        }
        freed += self.prune_flattened(&chains)?;
        let pdir = self.pieces_dir();
        crate::reuse::remove_orphans(&pdir, &bdir)
            .ctx("remove block indexes of pruned blobs in", &pdir)?;
        Ok(freed)
    }
}
