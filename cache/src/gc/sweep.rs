//! Removing what prune chose, without a lock that builds would wait on: the victims are
//! first moved into a trash dir under `tmp/` (a rename each), then the leases and the
//! index are read again and anything they now name is put back, then the trash is
//! deleted. A build leases what it uses before it checks that it is there (`lease.rs`):
//! if it leased before the second reading, its things are put back; if after, it finds
//! them gone and treats them as a cache miss. Either way it never uses something prune
//! deletes.

use super::Pins;
use crate::error::{CacheError, IoContext};
use crate::{Store, fsutil, lease};
use std::path::PathBuf;

/// What can be removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Victim {
    Record(String),
    /// By digest.
    Blob(String),
    /// By snapshot id.
    Snapshot(String),
}

/// Bytes and entries a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub bytes: u64,
    pub records: usize,
    pub blobs: usize,
    pub snapshots: usize,
}

impl Store {
    fn victim_path(&self, v: &Victim) -> Result<PathBuf, CacheError> {
        Ok(match v {
            Victim::Record(k) => self.record_path(k)?,
            Victim::Blob(d) => self.blob_path(d),
            Victim::Snapshot(id) => self.snapshots_dir().join(id),
        })
    }

    /// Removes `victims` unless a lease or a tag protects them by the time they are
    /// gone from view (see the module docs). `sizes` gives the bytes of each, where known.
    pub(crate) fn sweep(
        &self,
        victims: Vec<Victim>,
        size_of: impl Fn(&Victim, &std::path::Path) -> u64,
    ) -> Result<Swept, CacheError> {
        let mut out = Swept::default();
        if victims.is_empty() {
            return Ok(out);
        }
        // Leases taken while prune measured and chose: those victims stay, so the only
        // window a build could lease something and still see it vanish for a moment is
        // the renames below.
        let before = self.pins(false)?;
        let victims: Vec<Victim> = victims
            .into_iter()
            .filter(|v| !before.protects(v))
            .collect();
        let trash = self.tmp_dir("trash")?;
        let mut moved: Vec<(Victim, PathBuf, PathBuf)> = Vec::new();
        for (n, v) in victims.into_iter().enumerate() {
            let from = self.victim_path(&v)?;
            let to = trash.path().join(n.to_string());
            match std::fs::rename(&from, &to) {
                Ok(()) => moved.push((v, from, to)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx("move aside for removal", from),
            }
        }
        // What builds leased meanwhile, and what got tagged, goes back.
        let now = self.pins(true)?;
        for (v, from, to) in moved {
            if now.protects(&v) {
                if std::fs::rename(&to, &from).is_err() {
                    // Made again meanwhile (same content, by its name): ours goes.
                    let _ = fsutil::remove_dir_all_force(&to);
                }
                continue;
            }
            out.bytes += size_of(&v, &to);
            match v {
                Victim::Record(_) => out.records += 1,
                Victim::Blob(_) => out.blobs += 1,
                Victim::Snapshot(_) => out.snapshots += 1,
            }
        }
        for dir in [self.records_dir(), self.blobs_dir(), self.snapshots_dir()] {
            fsutil::fsync_dir(&dir)?;
        }
        let path = trash.path().to_path_buf();
        fsutil::remove_dir_all_force(&path).ctx("remove", &path)?;
        Ok(out)
    }

    /// What the leases of running processes and, with `images`, the tagged images
    /// protect right now.
    pub(crate) fn pins(&self, images: bool) -> Result<Pins, CacheError> {
        let scan = lease::scan(&self.leases_dir())?;
        let mut pins = Pins {
            leased: scan.live,
            ..Default::default()
        };
        if images {
            self.pin_images(&mut pins.images)?;
        }
        Ok(pins)
    }
}
