//! Incremental COPY: a COPY from the context that runs again because some of its files
//! changed links the unchanged ones from its previous layer's snapshot instead of
//! copying them, and gives the same layer, byte for byte, as a copy from scratch.
//!
//! The copy runs as always (through the overlay, every directory, owner, mode, xattr and
//! time set by [`super::place::Placer`]), except for a regular file whose content digest
//! the step's copy record (`rbuild_cache::CopyRecord`) gives for the same path, where
//! nothing is yet and whose directory is already in the upper dir: it is left out, with
//! the owner, mode and times the copy would give it. Once the overlay is unmounted,
//! [`Relink::finish`] puts each such file into the upper dir: a hard link to the
//! snapshot's file when that file has exactly those (its mtime as the commit clamps it,
//! its size, the source's xattrs), else a copy made as the placer makes one. A linked
//! inode is never modified: it already has every value the commit would write.
//! Directories keep the times the copy gave them.

use super::filecopy::{copy_file, copy_xattrs};
use crate::context::{ContextError, ContextHasher, Entry};
use rayon::prelude::*;
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
    /// The overlay's upper dir.
    upper: PathBuf,
    /// Upper-dir path → a file left out of the copy, for [`Relink::finish`].
    deferred: HashMap<String, Deferred>,
    /// Upper-dir path → content digest of every regular file placed (the next record).
    placed: HashMap<String, [u8; 32]>,
    /// Directories found to be real directories in the upper dir.
    upper_dirs: HashSet<String>,
}

/// A regular file left out of the copy: where it comes from and what the placer would
/// have given it.
struct Deferred {
    src: Box<Path>,
    size: u64,
    atime: (i64, i64),
    mtime: (i64, i64),
    owner: (u32, u32),
    mode: u32,
}

/// What [`Relink::finish`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Relinked {
    /// The files linked, by (dev, inode).
    pub linked: HashSet<(u64, u64)>,
    pub copied: usize,
}

impl<'a> Relink<'a> {
    pub(crate) fn new(hasher: &'a ContextHasher, prev: Option<CopyRecord>, upper: &Path) -> Self {
        Relink {
            hasher,
            prev,
            upper: upper.to_path_buf(),
            deferred: HashMap::new(),
            placed: HashMap::new(),
            upper_dirs: HashSet::new(),
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

    /// Notes the regular file `e` about to be placed at `rel` (its path in the rootfs, no
    /// leading `/`) with content `digest`, owner and mode; true when it is left for
    /// [`finish`](Self::finish): the previous layer has that content there, the directories
    /// on the way are real directories in the upper dir (so `rel` is where it lands), and
    /// nothing is at `rel` in `root` (the mounted rootfs) for the placer to replace. A file
    /// placed again at the same path replaces what was noted.
    pub(crate) fn defer(
        &mut self,
        root: &Path,
        rel: &str,
        e: &Entry,
        digest: [u8; 32],
        owner: (u32, u32),
        mode: u32,
    ) -> bool {
        self.placed.insert(rel.to_string(), digest);
        let wanted = e.meta.len() > 0
            && self
                .prev
                .as_ref()
                .is_some_and(|p| p.files.get(rel) == Some(&digest))
            && self.upper_dirs(rel.rsplit_once('/').map_or("", |(d, _)| d))
            && std::fs::symlink_metadata(root.join(rel))
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
        if wanted {
            let m = &e.meta;
            let d = Deferred {
                src: e.path.clone().into_boxed_path(),
                size: m.len(),
                atime: (m.atime(), m.atime_nsec()),
                mtime: (m.mtime(), m.mtime_nsec()),
                owner,
                mode,
            };
            self.deferred.insert(rel.to_string(), d);
        } else {
            self.deferred.remove(rel);
        }
        wanted
    }

    /// Whether every component of `dir` is a directory (not a symlink) in the upper dir.
    fn upper_dirs(&mut self, dir: &str) -> bool {
        if dir.is_empty() || self.upper_dirs.contains(dir) {
            return true;
        }
        let (up, _) = dir.rsplit_once('/').unwrap_or(("", dir));
        let ok = self.upper_dirs(up)
            && std::fs::symlink_metadata(self.upper.join(dir)).is_ok_and(|m| m.is_dir());
        if ok {
            self.upper_dirs.insert(dir.to_string());
        }
        ok
    }

    /// Forgets a file placed at `rel` without a digest (it will not be in the record).
    pub(crate) fn forget(&mut self, rel: &str) {
        self.placed.remove(rel);
        self.deferred.remove(rel);
    }

    /// Puts the files left out into the upper dir (the overlay unmounted): a link to the
    /// previous snapshot's file when it matches, else a copy. `epoch` is the
    /// `SOURCE_DATE_EPOCH` the commit will clamp times to.
    pub(crate) fn finish(&mut self, epoch: Option<i64>) -> io::Result<Relinked> {
        let mut done = Relinked::default();
        let Some(prev) = &self.prev else {
            return Ok(done);
        };
        let mut todo: Vec<(&String, &Deferred)> = self.deferred.iter().collect();
        todo.sort_by(|a, b| a.0.cmp(b.0));
        // Directories first, to give them their times back at the end.
        let mut dir_times: HashMap<&Path, std::fs::Metadata> = HashMap::new();
        let ups: Vec<PathBuf> = todo.iter().map(|(rel, _)| self.upper.join(rel)).collect();
        for dir in ups.iter().filter_map(|up| up.parent()) {
            // A directory a later source of the copy replaced is not there to restore.
            if !dir_times.contains_key(dir)
                && let Ok(m) = std::fs::symlink_metadata(dir)
            {
                dir_times.insert(dir, m);
            }
        }
        // Which snapshot file each matches (in parallel: a few syscalls each), then each
        // inode linked once (a snapshot's hard links stay files of their own here).
        let matched: Vec<Option<(u64, u64)>> = todo
            .par_iter()
            .map(|(rel, d)| same_file(d, &prev.snapshot.join(rel), epoch))
            .collect();
        let mut seen = HashSet::new();
        let link: Vec<bool> = matched
            .iter()
            .map(|m| m.is_some_and(|id| seen.insert(id)))
            .collect();
        let results: Vec<io::Result<Placed>> = (0..todo.len())
            .into_par_iter()
            .map(|i| {
                let (rel, d) = todo[i];
                let in_dir = ups[i]
                    .parent()
                    .is_some_and(|p| dir_times.get(p).is_some_and(|m| m.is_dir()));
                if !in_dir {
                    // A later source of the copy put a file where its directory was.
                    return Ok(Placed::Skipped);
                }
                if link[i] {
                    match std::fs::hard_link(prev.snapshot.join(rel), &ups[i]) {
                        Ok(()) => return Ok(Placed::Linked),
                        // A directory the copy placed there afterwards.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            return Ok(Placed::Skipped);
                        }
                        Err(_) => {} // gone meanwhile (a prune): copied after all
                    }
                }
                place_copy(d, &ups[i])
            })
            .collect();
        for (r, m) in results.into_iter().zip(&matched) {
            match r? {
                Placed::Linked => {
                    done.linked.extend(*m);
                }
                Placed::Copied => done.copied += 1,
                Placed::Skipped => {}
            }
        }
        for (dir, meta) in &dir_times {
            rbuild_fsutil::time::copy_times_nofollow(dir, meta)?;
        }
        // Only the record is needed from here: the commit's buffers take the room.
        self.deferred = HashMap::new();
        self.prev = None;
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

/// What became of a file left out of the copy.
enum Placed {
    Linked,
    Copied,
    /// Something else took its path later in the copy.
    Skipped,
}

/// Copies `d` to `up` as the placer copies: content, owner, then mode (chown clears
/// set-id bits), xattrs, times.
fn place_copy(d: &Deferred, up: &Path) -> io::Result<Placed> {
    match copy_file(&d.src, up) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Placed::Skipped),
        r => r?,
    }
    std::os::unix::fs::lchown(up, Some(d.owner.0), Some(d.owner.1))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(up, std::fs::Permissions::from_mode(d.mode))?;
    copy_xattrs(&d.src, up);
    let t = |(secs, nsecs)| rbuild_fsutil::time::Timestamp { secs, nsecs };
    rbuild_fsutil::time::set_times_nofollow(up, t(d.atime), t(d.mtime))?;
    Ok(Placed::Copied)
}

/// When the file `old` (of the previous snapshot) is what the placer would make of `d`
/// (after the commit's clamping): its (dev, inode).
fn same_file(d: &Deferred, old: &Path, epoch: Option<i64>) -> Option<(u64, u64)> {
    let m = std::fs::symlink_metadata(old).ok()?;
    let time = clamped(d.mtime.0, d.mtime.1, epoch);
    let same = m.is_file()
        && m.len() == d.size
        && (m.uid(), m.gid()) == d.owner
        && m.mode() & 0o7777 == d.mode & 0o7777
        && (m.mtime(), m.mtime_nsec()) == time
        && xattrs(old).ok()? == xattrs(&d.src).ok()?;
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
