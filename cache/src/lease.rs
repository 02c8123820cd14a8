//! Leases: what a running rbuild process uses, written where prune can read it, so a
//! prune running beside a build never takes what that build reads or writes.
//!
//! Each process that uses the store appends to a file of its own,
//! `leases/<pid>-<nanos>.lease`, and holds it locked (`flock`) while it lives. A line
//! names a record (`r KEY`), a layer (`l DIGEST DIFF_ID`: its blob and its snapshot) or a
//! plain blob (`b DIGEST`). The line is written before the thing is used or published:
//! prune reads the leases again after moving its victims aside and puts back anything a
//! lease names (see `gc/sweep.rs`), and a build that finds something missing treats it
//! as a cache miss. When the process ends the kernel drops the lock and the file becomes
//! a use log: prune dates the records it names by the file's mtime (their last use) and
//! deletes it. So a cache hit costs one short `write`, and no-op rebuilds write no
//! record's metadata.

use crate::error::{CacheError, IoContext};
use crate::fsutil;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Something a lease protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leased<'a> {
    /// A cache record, by key.
    Record(&'a str),
    /// A layer: its blob and the snapshot of its diff_id.
    Layer { digest: &'a str, diff_id: &'a str },
    /// A blob that is not a layer (config, manifest) or whose diff_id is not known yet.
    Blob(&'a str),
}

impl Leased<'_> {
    fn line(&self) -> String {
        match self {
            Leased::Record(k) => format!("r {k}\n"),
            Leased::Layer { digest, diff_id } => format!("l {digest} {diff_id}\n"),
            Leased::Blob(d) => format!("b {d}\n"),
        }
    }
}

/// This process's lease file, created on first use.
#[derive(Default)]
pub(crate) struct Lease {
    state: Mutex<LeaseState>,
}

#[derive(Default)]
struct LeaseState {
    file: Option<File>,
    /// Lines already written: each is written once per process.
    written: HashSet<String>,
}

/// Suffix of lease files (temp names of half-made ones never have it).
const SUFFIX: &str = ".lease";

impl Lease {
    /// Appends what `items` name to this process's lease, in one write, before the
    /// caller uses them. Items leased before are skipped.
    pub(crate) fn add(&self, dir: &Path, items: &[Leased<'_>]) -> Result<(), CacheError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut new = Vec::new();
        for it in items {
            let line = it.line();
            if !st.written.contains(&line) && !new.contains(&line) {
                out.push_str(&line);
                new.push(line);
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        if st.file.is_none() {
            st.file = Some(create(dir)?);
        }
        let Some(f) = st.file.as_mut() else {
            return Ok(());
        };
        f.write_all(out.as_bytes()).ctx("write lease in", dir)?;
        st.written.extend(new);
        Ok(())
    }
}

/// Creates and locks a new lease file. It is made under a temp name and renamed once
/// locked, so prune never mistakes a lease being born for a finished one.
fn create(dir: &Path) -> Result<File, CacheError> {
    std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(&fsutil::temp_prefix())
        .tempfile_in(dir)
        .ctx("create lease in", dir)?;
    tmp.as_file().lock().ctx("lock lease in", dir)?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("{}-{nanos}{SUFFIX}", std::process::id()));
    // Only this process writes it, always at its end: no O_APPEND needed.
    tmp.persist_noclobber(&path)
        .map_err(|e| e.error)
        .ctx("create lease", &path)
}

/// What the leases of a store say at one moment.
#[derive(Debug, Default)]
pub(crate) struct LeaseScan {
    /// Named by the leases of running processes.
    pub live: Protected,
    /// Last use of records, from the use logs of finished processes.
    pub logged: HashMap<String, SystemTime>,
    /// Use logs of finished processes, to delete once their dates are folded in.
    pub finished: Vec<PathBuf>,
}

/// Records, blobs and snapshots something protects.
#[derive(Debug, Default, Clone)]
pub(crate) struct Protected {
    pub records: HashSet<String>,
    pub blobs: HashSet<String>,
    /// Snapshot ids (see `Store::snapshot_id`).
    pub snapshots: HashSet<String>,
}

impl Protected {
    pub(crate) fn layer(&mut self, digest: &str, diff_id: &str) {
        self.blobs.insert(digest.to_string());
        if let Ok(id) = crate::Store::snapshot_id(diff_id) {
            self.snapshots.insert(id);
        }
    }
}

/// Reads every lease file in `dir`. A file whose lock is held belongs to a running
/// process; one that can be locked is finished (its process ended or was killed).
pub(crate) fn scan(dir: &Path) -> Result<LeaseScan, CacheError> {
    let mut out = LeaseScan::default();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx("read directory", dir),
    };
    for ent in rd {
        let ent = ent.ctx("read directory", dir)?;
        let path = ent.path();
        if !ent.file_name().to_string_lossy().ends_with(SUFFIX) {
            continue;
        }
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("open lease", &path),
        };
        let live = match f.try_lock_shared() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock lease", &path),
        };
        let mut text = String::new();
        f.read_to_string(&mut text).ctx("read lease", &path)?;
        let when = f
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // A line still being written (no newline yet) is ignored: its writer checks
        // what it names only after the write, and then finds it moved aside.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        for line in complete.lines() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("r"), Some(key), None) if live => {
                    out.live.records.insert(key.to_string());
                }
                (Some("r"), Some(key), None) => {
                    let e = out
                        .logged
                        .entry(key.to_string())
                        .or_insert(SystemTime::UNIX_EPOCH);
                    *e = (*e).max(when);
                }
                (Some("l"), Some(digest), Some(diff_id)) if live => {
                    out.live.layer(digest, diff_id);
                }
                (Some("b"), Some(digest), None) if live => {
                    out.live.blobs.insert(digest.to_string());
                }
                _ => {}
            }
        }
        if !live {
            out.finished.push(path);
        }
    }
    Ok(out)
}

/// Deletes finished use logs (their dates were folded into the records). A log that a
/// process somehow still holds is left alone.
pub(crate) fn remove_finished(logs: &[PathBuf]) {
    for p in logs {
        if let Ok(f) = File::open(p)
            && f.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// How many finished use logs wait to be folded (read without opening them).
pub(crate) fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_lease_protects_and_a_finished_one_dates_records() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("leases");
        let lease = Lease::default();
        let d = format!("sha256:{}", "a".repeat(64));
        let id = format!("sha256:{}", "b".repeat(64));
        lease
            .add(
                &dir,
                &[
                    Leased::Record("k1"),
                    Leased::Layer {
                        digest: &d,
                        diff_id: &id,
                    },
                    Leased::Record("k1"),
                ],
            )
            .unwrap();
        lease.add(&dir, &[Leased::Record("k1")]).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        assert_eq!(text, format!("r k1\nl {d} {id}\n"));

        let s = scan(&dir).unwrap();
        assert!(s.live.records.contains("k1"));
        assert!(s.live.blobs.contains(&d));
        assert!(s.live.snapshots.contains(&"b".repeat(20)));
        assert!(s.finished.is_empty());

        drop(lease);
        let s = scan(&dir).unwrap();
        assert!(s.live.records.is_empty() && s.live.blobs.is_empty());
        assert!(s.logged.contains_key("k1"));
        assert_eq!(s.finished.len(), 1);
        remove_finished(&s.finished);
        assert_eq!(count(&dir), 0);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("1-2.lease"), "r done\nr hal").unwrap();
        let s = scan(t.path()).unwrap();
        assert!(s.logged.contains_key("done"));
        assert!(!s.logged.contains_key("hal"));
    }
}
