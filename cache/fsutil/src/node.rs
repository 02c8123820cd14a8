//! Device nodes and fifos (`mknod`): layer entries of those types, and overlay whiteouts,
//! which are 0/0 character devices.

use crate::{check, cpath};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Creates a node at `p`: `mode` holds the file type (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`)
/// and the permission bits (the umask applies); `major`/`minor` name the device.
pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let c = cpath(p)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: c is a NUL-terminated path that lives for the call.
    check(unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, dev) })
}

/// Creates at `p` a node of the type, permission bits and device number of `m` (the
/// metadata of an existing device node or fifo).
pub fn mknod_like(p: &Path, m: &std::fs::Metadata) -> io::Result<()> {
    let mode = m.mode() & (libc::S_IFMT | 0o7777);
    let rdev = m.rdev();
    mknod(p, mode, libc::major(rdev), libc::minor(rdev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn fifo_copied_with_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        mknod(&a, libc::S_IFIFO | 0o640, 0, 0).unwrap();
        let m = std::fs::symlink_metadata(&a).unwrap();
        mknod_like(&b, &m).unwrap();
        let n = std::fs::symlink_metadata(&b).unwrap();
        assert!(n.file_type().is_fifo());
        assert_eq!(n.mode(), m.mode());
        assert_eq!(
            mknod(&a, libc::S_IFIFO, 0, 0).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
