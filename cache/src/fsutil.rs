//! The store's own filesystem helpers: atomic writes, temp names owned by a pid, hashing
//! I/O. Primitives shared with the executor and the solver (whiteouts, xattrs, times,
//! device nodes) are in `rbuild-fsutil`.

use crate::error::{CacheError, IoContext};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
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

/// Starts writing out everything dirty on the filesystem that holds `dir` (syncfs), on a
/// thread of its own; join the handle to wait for it.
pub(crate) fn syncfs_in_background(
    dir: &Path,
) -> io::Result<std::thread::JoinHandle<io::Result<()>>> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir)?;
    std::thread::Builder::new()
        .name("rbuild-syncfs".into())
        .spawn(move || {
            // SAFETY: `f` is an open descriptor for the whole call.
            if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
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

    #[test]
    fn syncfs_in_background_reports_its_outcome() {
        let t = tempfile::tempdir().unwrap();
        let h = syncfs_in_background(t.path()).unwrap();
        h.join().unwrap().unwrap();
        let gone = t.path().join("gone");
        assert_eq!(
            syncfs_in_background(&gone).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
