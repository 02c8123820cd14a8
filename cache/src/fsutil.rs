//! The store's own filesystem helpers: atomic writes, temp names owned by a pid, hashing
//! I/O. Primitives shared with the executor and the solver (whiteouts, xattrs, times,
//! device nodes) are in `rbuild-fsutil`.

use crate::error::{CacheError, IoContext};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Prefix of every temporary entry this process creates inside the root, so that a later
/// `Store::open` can tell whose it is (and remove it once that process is gone).
pub(crate) fn temp_prefix() -> String {
    format!(".rb{}-", std::process::id())
}

/// The pid encoded in a temp name made with [`temp_prefix`], if it is one.
pub(crate) fn temp_owner(name: &OsStr) -> Option<u32> {
    let rest = name.as_bytes().strip_prefix(b".rb")?;
    let end = rest.iter().position(|&b| b == b'-')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Removes temp entries in `dir` whose owning process no longer exists.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<(), CacheError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("read directory", dir),
    };
    for ent in rd {
        let ent = ent.ctx("read directory", dir)?;
        let Some(pid) = temp_owner(&ent.file_name()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let p = ent.path();
        let is_dir = ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let r = if is_dir {
            // A killed build can leave a host-side overlay (a COPY's) mounted in its dir:
            // deleting through it would fail on the mountpoint.
            detach_mounts_below(&p);
            remove_dir_all_force(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("remove stale temporary", p),
        }
    }
    Ok(())
}

/// Lazily unmounts every mount at or below `dir` (deepest first), as a killed process
/// may have left them. Best effort: what cannot be unmounted makes the removal fail,
/// which names the path.
pub(crate) fn detach_mounts_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated path for the call.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> std::ffi::OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// `remove_dir_all` that also copes with directories whose mode forbids writing (a layer
/// may contain `chmod 0555` dirs).
pub(crate) fn remove_dir_all_force(p: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            use std::os::unix::fs::PermissionsExt;
            for ent in walkdir::WalkDir::new(p).into_iter().flatten() {
                if ent.file_type().is_dir() {
                    let _ = std::fs::set_permissions(
                        ent.path(),
                        std::fs::Permissions::from_mode(0o700),
                    );
                }
            }
            std::fs::remove_dir_all(p).map_err(|_| first)
        }
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), CacheError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("sync directory", dir)
}

/// Writes `bytes` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempfile_in(dir)
        .ctx("create temporary file in", dir)?;
    tmp.write_all(bytes)
        .ctx("write", tmp.path().to_path_buf())?;
    tmp.as_file()
        .sync_all()
        .ctx("sync", tmp.path().to_path_buf())?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .ctx("rename into place", path)?;
    fsync_dir(dir)
}

/// Writes `bytes` to `path` by a temp file and a rename, without fsync: for hints (block
/// indexes, copy records), which a crash may tear or lose at no cost but time.
pub(crate) fn write_hint(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Removes the entries of `dir` that `orphan` says describe something gone (after a
/// prune), leaving the temp entries of writers alone; a missing `dir` has none.
pub(crate) fn remove_orphans(
    dir: &Path,
    orphan: impl Fn(&std::fs::DirEntry) -> bool,
) -> io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        if temp_owner(&ent.file_name()).is_some() || !orphan(&ent) {
            continue;
        }
        match std::fs::remove_file(ent.path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The inode flag FS_TOPDIR_FL (`chattr +T`), not in the libc crate.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` as a top of directory hierarchies for ext4's Orlov allocator (`chattr +T`):
/// each directory made in it is placed in a block group of its own choosing, with many
/// free inodes and few directories, instead of next to its parent. Returns whether the flag
/// is now set; filesystems without inode flags just say no.
pub(crate) fn set_topdir(dir: &Path) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer, which lives for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Ok(false);
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(true);
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer, which lives for the call.
    Ok(unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } == 0)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A writer that hashes (sha256) and counts everything written through it.
pub(crate) struct HashWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub count: u64,
}

impl<W> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn finish(self) -> (W, String, u64) {
        let d = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, d, self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: crate::pargz::TarSink> crate::pargz::TarSink for HashWriter<W> {
    fn entry_start(&mut self) -> io::Result<()> {
        self.inner.entry_start()
    }
}

/// A reader that hashes (sha256) and counts everything read through it.
pub(crate) struct HashReader<R> {
    pub inner: R,
    hasher: Sha256,
    pub count: u64,
}

impl<R> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Total bytes of regular files under `p` (for reporting what prune frees).
pub(crate) fn du(p: &Path) -> u64 {
    if let Ok(m) = std::fs::symlink_metadata(p)
        && !m.is_dir()
    {
        return m.len();
    }
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }

    #[test]
    fn topdir_flag_is_set_where_the_filesystem_has_inode_flags() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let lsattr = std::process::Command::new("lsattr")
            .arg("-d")
            .arg(&d)
            .output();
        let Ok(before) = lsattr else {
            eprintln!("no lsattr here: skipped");
            return;
        };
        if !before.status.success() {
            // No inode flags on this filesystem (tmpfs, overlayfs): nothing to set.
            assert!(!set_topdir(&d).unwrap());
            return;
        }
        let attrs = |o: &std::process::Output| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        };
        assert!(!attrs(&before).contains('T'));
        assert!(set_topdir(&d).unwrap());
        assert!(set_topdir(&d).unwrap());
        let after = std::process::Command::new("lsattr")
            .arg("-d")
            .arg(&d)
            .output()
            .unwrap();
        assert!(attrs(&after).contains('T'), "{}", attrs(&after));
        assert!(set_topdir(&t.path().join("gone")).is_err());
    }
}
