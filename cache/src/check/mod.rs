//! `rbuild check`: is the store consistent, and if not, drop what is broken so that no
//! build ever gets a wrong cache hit from it.
//!
//! In order: leftovers of killed processes (`leftovers.rs`); every blob's digest, and the
//! uncompressed digest of every layer blob (`blobs.rs`); `index.json` and each entry's
//! manifest, config and layers (`index.rs`); each cache record's layers; each snapshot a
//! record or image uses against its layer, and the snapshots nothing names
//! (`snapshots.rs`). Findings are problems (the store is inconsistent: a blob whose bytes
//! do not match its digest, a record or image naming a missing or corrupt blob, an
//! unreadable index, a snapshot that differs from its layer) or notes (nothing is wrong,
//! but there is something to tidy: leftovers of killed processes, unused blobs and
//! snapshots, a snapshot to extract again).
//!
//! Without `repair` nothing changes. With it, problems are repaired by dropping what is
//! broken (a corrupt blob, the records and index entries that name a missing or corrupt
//! blob, a record that does not parse) or by rebuilding what can be rebuilt exactly (a
//! snapshot, extracted again from its verified blob; `index.json`, from the manifests
//! in the store), and notes are tidied. Check runs beside builds: it takes prune's turn
//! (`locks/prune.lock`) and removes unused data through prune's sweep, which leaves
//! what running builds lease.

mod blobs;
mod index;
mod leftovers;
mod snapshots;

use crate::error::CacheError;
use crate::lease::{self, Protected};
use crate::{CacheRecord, Layer, Store};
use std::collections::HashSet;
use std::path::Path;

/// How `check` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Repair what is broken and tidy what is left over.
    pub repair: bool,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The store is inconsistent.
    Problem,
    /// Nothing is wrong; something can be tidied.
    Note,
}

/// One thing `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// What it is about (`blob sha256:…`, `record KEY`, `index.json`, a path).
    pub subject: String,
    /// What is wrong with it.
    pub what: String,
    /// What repair did, or would do.
    pub action: String,
}

/// What a check found and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// Whether the findings were acted on (`repair`).
    pub repaired: bool,
    pub blobs: usize,
    pub records: usize,
    pub images: usize,
    pub snapshots: usize,
}

impl CheckReport {
    /// True when no problem was found (notes do not count).
    pub fn consistent(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| f.severity == Severity::Problem)
    }
}

/// The state of one check run.
struct Checker {
    store: Store,
    repair: bool,
    report: CheckReport,
    /// What every blob hashes to, compressed and uncompressed (see `blobs.rs`).
    blobs: blobs::BlobTable,
    /// Layers ((digest, diff_id)) the kept records and images use.
    used_layers: HashSet<(String, String)>,
    /// Layers the kept index entries use.
    image_layers: HashSet<(String, String)>,
    /// What running processes lease: never reported as unused, never removed.
    leased: Protected,
}

impl Checker {
    fn problem(&mut self, subject: impl Into<String>, what: impl Into<String>, action: &str) {
        self.finding(Severity::Problem, subject.into(), what.into(), action);
    }

    fn note(&mut self, subject: impl Into<String>, what: impl Into<String>, action: &str) {
        self.finding(Severity::Note, subject.into(), what.into(), action);
    }

    fn finding(&mut self, severity: Severity, subject: String, what: String, action: &str) {
        self.report.findings.push(Finding {
            severity,
            subject,
            what,
            action: action.to_string(),
        });
    }

    /// Whether `layer`'s blob is present, matches its digest, and uncompresses to its
    /// diff_id; else why not.
    fn layer_fault(&mut self, l: &Layer) -> Option<String> {
        match self.blobs.status(&self.store, &l.digest) {
            blobs::Status::Missing => Some(format!("layer {} is missing", l.digest)),
            blobs::Status::Corrupt => Some(format!("layer {} is corrupt", l.digest)),
            blobs::Status::Good { content } => match content {
                Some(c) if c != l.diff_id => Some(format!(
                    "layer {} uncompresses to {c}, not its diff_id {}",
                    l.digest, l.diff_id
                )),
                _ => None,
            },
        }
    }

    fn records(&mut self) -> Result<(), CacheError> {
        let dir = self.store.records_dir();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| CacheError::Io {
                op: "read directory",
                path: dir.clone(),
                source: e,
            })?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".rb"))
            .collect();
        names.sort();
        for name in names {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(path) = self.store.record_path(key) else {
                continue;
            };
            self.report.records += 1;
            let subject = format!("record {key}");
            let rec = match std::fs::read(&path) {
                Ok(b) => serde_json::from_slice::<CacheRecord>(&b).map_err(|e| e.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => Err(e.to_string()),
            };
            let fault = match &rec {
                Err(e) => Some(format!("does not parse: {e}")),
                Ok(r) => r.layers.iter().find_map(|l| self.layer_fault(l)),
            };
            match (fault, rec) {
                (None, Ok(r)) => {
                    for l in &r.layers {
                        self.used_layers
                            .insert((l.digest.clone(), l.diff_id.clone()));
                    }
                }
                (Some(what), _) => {
                    if self.repair {
                        remove_file(&path)?;
                    }
                    self.problem(subject, what, "record removed (the step runs again)");
                }
                (None, Err(_)) => {}
            }
        }
        Ok(())
    }

    /// Removes every blob and snapshot nothing uses any more (what broken records and
    /// entries used, and what was unused before), through prune's sweep.
    fn sweep_unused(&mut self) -> Result<(), CacheError> {
        let mut keep = Protected::default();
        for (d, id) in self.used_layers.iter().chain(&self.image_layers) {
            keep.layer(d, id);
        }
        let mut images = Protected::default();
        if self.store.read_index().is_ok() {
            self.store.pin_images(&mut images)?;
        }
        let unused_blobs: Vec<String> = self
            .store
            .blob_digests()?
            .into_iter()
            .filter(|d| {
                !keep.blobs.contains(d)
                    && !images.blobs.contains(d)
                    && !self.leased.blobs.contains(d)
            })
            .filter(|d| self.blobs.is_good(d))
            .collect();
        let unused_snaps: Vec<String> = self
            .store
            .snapshot_ids()?
            .into_iter()
            .filter(|id| {
                !keep.snapshots.contains(id)
                    && !images.snapshots.contains(id)
                    && !self.leased.snapshots.contains(id)
            })
            .collect();
        if unused_blobs.is_empty() && unused_snaps.is_empty() {
            return Ok(());
        }
        let bytes: u64 = unused_blobs.iter().map(|d| self.blobs.size(d)).sum::<u64>();
        let what = format!(
            "{} blobs ({}) and {} snapshots that no image or cache record uses (left by killed or removed builds, or images untagged since)",
            unused_blobs.len(),
            crate::gc::units::human(bytes),
            unused_snaps.len()
        );
        if self.repair {
            let victims = unused_blobs
                .into_iter()
                .map(crate::gc::Victim::Blob)
                .chain(unused_snaps.into_iter().map(crate::gc::Victim::Snapshot))
                .collect();
            self.store.sweep(victims, |_, _| 0)?;
        }
        self.note(
            "unused data",
            what,
            "removed (`rbuild prune` does the same)",
        );
        Ok(())
    }
}

fn remove_file(p: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CacheError::Io {
            op: "remove",
            path: p.to_path_buf(),
            source: e,
        }),
    }
}

impl Store {
    /// Checks the store at `root` (see the module docs), repairing with `opts.repair`.
    /// Leftovers of killed processes are looked at before anything removes them, so
    /// the store is opened without the usual cleanup.
    pub fn check(root: &Path, opts: &CheckOptions) -> Result<CheckReport, CacheError> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| CacheError::Io {
                    op: "get current directory for",
                    path: root.to_path_buf(),
                    source: e,
                })?
                .join(root)
        };
        let store = Store::open_unchecked(&root)?;
        let _turn = store.lock_prune(true)?;
        let leased = lease::scan(&store.leases_dir())?.live;
        let mut c = Checker {
            store,
            repair: opts.repair,
            report: CheckReport {
                repaired: opts.repair,
                ..Default::default()
            },
            blobs: blobs::BlobTable::default(),
            used_layers: HashSet::new(),
            image_layers: HashSet::new(),
            leased,
        };
        c.leftovers()?;
        c.verify_blobs()?;
        c.index()?;
        c.records()?;
        c.snapshots()?;
        c.sweep_unused()?;
        Ok(c.report)
    }
}
