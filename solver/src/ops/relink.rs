//! Incremental COPY: a COPY from the context that runs again because some of its files
//! changed links the unchanged ones from its previous layer's snapshot instead of
//! copying them, and gives the same layer, byte for byte, as a copy from scratch.
//!
//! The copy runs exactly as always (through the overlay, every directory, owner, mode,
//! xattr and time set by [`super::place::Placer`]), except that a regular file whose
//! content digest the step's copy record (`rbuild_cache::CopyRecord`) gives for the same
//! path is created empty: a placeholder with the metadata the copy gives it. Once the
//! overlay is unmounted, [`Relink::finish`] replaces each placeholder in the upper dir by
//! a hard link to the snapshot's file when that file has what the placeholder says
//! (owner, mode, mtime as the commit would clamp it, size, xattrs), and copies the
//! content into it otherwise. A linked inode is never modified: it already has every
//! value the commit would write. Directories keep the times the copy gave them.

use crate::context::{ContextError, ContextHasher, Entry};
use rbuild_cache::CopyRecord;
use rbuild_fsutil::{whiteout, xattr};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One COPY's relinking: the previous layer's record, and what this copy places.
pub(crate) struct Relink<'a> {
    hasher: &'a ContextHasher,
    prev: Option<CopyRecord>,
    /// Upper-dir path → the source file whose content a placeholder there stands for.
    placeholders: HashMap<String, PathBuf>,
    /// Upper-dir path → content digest of every regular file placed (the next record).
    placed: HashMap<String, [u8; 32]>,
}

/// What [`Relink::finish`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Relinked {
    pub linked: usize,
    pub copied: usize,
}

impl<'a> Relink<'a> {
    pub(crate) fn new(hasher: &'a ContextHasher, prev: Option<CopyRecord>) -> Self {
        Relink {
            hasher,
            prev,
            placeholders: HashMap::new(),
            placed: HashMap::new(),
        }
    }

    /// Content digests of the regular files among `entries` (from the stat cache the key
    /// just filled).
    pub(crate) fn digests(
        &self,
        ctx: &Path,
        entries: &[Entry],
    ) -> Result<Vec<Option<[u8; 32]>>, ContextError> {
        self.hasher.file_digests(ctx, entries)
    }

    /// Notes a regular file placed at `rel` (upper-dir path) from `src`, with content
    /// `digest`; true when it should be a placeholder (the previous layer has that content
    /// there). A file placed again at the same path replaces what was noted.
    pub(crate) fn note(&mut self, rel: &str, src: &Path, digest: [u8; 32], size: u64) -> bool {
        self.placed.insert(rel.to_string(), digest);
        let reuse = size > 0
            && self
                .prev
                .as_ref()
                .is_some_and(|p| p.files.get(rel) == Some(&digest));
        if reuse {
            self.placeholders.insert(rel.to_string(), src.to_path_buf());
        } else {
            self.placeholders.remove(rel);
        }
        reuse
    }

    /// Forgets a file placed at `rel` without a digest (it will not be in the record).
    pub(crate) fn forget(&mut self, rel: &str) {
        self.placed.remove(rel);
        self.placeholders.remove(rel);
    }

    /// Replaces the placeholders in `upper` (the overlay unmounted): a link to the
    /// previous snapshot's file when it matches, else the source's content. `epoch` is the
    /// `SOURCE_DATE_EPOCH` the commit will clamp times to.
    pub(crate) fn finish(&mut self, upper: &Path, epoch: Option<i64>) -> io::Result<Relinked> {
        let mut done = Relinked::default();
        let Some(prev) = &self.prev else {
            return Ok(done);
        };
        let mut used: HashSet<(u64, u64)> = HashSet::new();
        let mut dir_times: HashMap<PathBuf, std::fs::Metadata> = HashMap::new();
        let mut todo: Vec<(&String, &PathBuf)> = self.placeholders.iter().collect();
        todo.sort();
        for (rel, src) in todo {
            let up = upper.join(rel);
            let placeholder = std::fs::symlink_metadata(&up)?;
            if !placeholder.is_file() || placeholder.len() != 0 {
                continue; // something else took the path after the placeholder
            }
            if let Some(dir) = up.parent()
                && !dir_times.contains_key(dir)
            {
                dir_times.insert(dir.to_path_buf(), std::fs::symlink_metadata(dir)?);
            }
            let old = prev.snapshot.join(rel);
            let size = std::fs::metadata(src)?.len();
            if let Some(id) = same_file(&placeholder, &up, &old, size, epoch)
                && used.insert(id)
            {
                // Linked beside it, then over it: the placeholder stays if linking fails.
                let beside = up.with_file_name(".rbuild-relink");
                if std::fs::hard_link(&old, &beside).is_ok() {
                    std::fs::rename(&beside, &up)?;
                    done.linked += 1;
                    continue;
                }
            }
            copy_into(src, &up, &placeholder)?;
            done.copied += 1;
        }
        for (dir, meta) in &dir_times {
            rbuild_fsutil::time::copy_times_nofollow(dir, meta)?;
        }
        Ok(done)
    }

    /// The record of this copy's files, for [`rbuild_cache::Store::put_copy_record`].
    pub(crate) fn record(&self) -> Vec<(String, [u8; 32])> {
        let mut files: Vec<(String, [u8; 32])> =
            self.placed.iter().map(|(p, d)| (p.clone(), *d)).collect();
        files.sort();
        files
    }
}

/// When the file `old` (of the previous snapshot) has everything the placeholder `up`
/// (metadata `ph`) says and `size` bytes: its (dev, inode).
fn same_file(
    ph: &std::fs::Metadata,
    up: &Path,
    old: &Path,
    size: u64,
    epoch: Option<i64>,
) -> Option<(u64, u64)> {
    let m = std::fs::symlink_metadata(old).ok()?;
    let time = clamped(ph.mtime(), ph.mtime_nsec(), epoch);
    let same = m.is_file()
        && m.len() == size
        && (m.uid(), m.gid()) == (ph.uid(), ph.gid())
        && m.mode() == ph.mode()
        && (m.mtime(), m.mtime_nsec()) == time
        && xattrs(old).ok()? == xattrs(up).ok()?;
    same.then_some((m.dev(), m.ino()))
}

/// An mtime as the commit writes it: never later than `SOURCE_DATE_EPOCH`.
fn clamped(secs: i64, nsec: i64, epoch: Option<i64>) -> (i64, i64) {
    match epoch {
        Some(e) if secs > e => (e, 0),
        _ => (secs, nsec),
    }
}

/// The xattrs a layer keeps (not overlay's own), sorted.
fn xattrs(p: &Path) -> io::Result<Vec<(String, Option<Vec<u8>>)>> {
    let mut out = Vec::new();
    for name in xattr::list(p)? {
        if !whiteout::is_overlay_xattr(&name) {
            let v = xattr::get(p, &name)?;
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `src`'s content into the placeholder `up`, which keeps the owner the copy gave
/// it; its mode, xattrs and times (`ph`) are set again, as a write may clear set-id bits
/// and file capabilities, and changes the mtime.
fn copy_into(src: &Path, up: &Path, ph: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut from = std::fs::File::open(src)?;
    let mut to = std::fs::OpenOptions::new().write(true).open(up)?;
    io::copy(&mut from, &mut to)?;
    drop(to);
    std::fs::set_permissions(up, std::fs::Permissions::from_mode(ph.mode() & 0o7777))?;
    super::place::copy_xattrs(src, up);
    rbuild_fsutil::time::copy_times_nofollow(up, ph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_compared_as_the_commit_writes_them() {
        assert_eq!(clamped(100, 5, None), (100, 5));
        assert_eq!(clamped(100, 5, Some(50)), (50, 0));
        assert_eq!(clamped(50, 5, Some(50)), (50, 5));
    }
}
