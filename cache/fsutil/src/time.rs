//! Access and modification times (`utimensat`), never following a symlink: a layer
//! records a symlink's own mtime, and the link may point anywhere on the host.

use crate::{check, cpath};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A point in time as the kernel stores it: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Whole seconds (negative before 1970).
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nsecs: i64,
}

impl Timestamp {
    /// A whole second.
    pub fn from_secs(secs: i64) -> Self {
        Timestamp { secs, nsecs: 0 }
    }

    fn timespec(self) -> libc::timespec {
        libc::timespec {
            tv_sec: self.secs as libc::time_t,
            tv_nsec: self.nsecs as libc::c_long,
        }
    }
}

/// Sets the access and modification times of `p` itself.
pub fn set_times_nofollow(p: &Path, atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
    let c = cpath(p)?;
    let times = [atime.timespec(), mtime.timespec()];
    // SAFETY: c is NUL-terminated and `times` points at two timespecs, both live for the call.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Sets both times of `p` itself to the whole second `secs` (a tar entry has one mtime).
pub fn set_mtime_nofollow(p: &Path, secs: i64) -> io::Result<()> {
    let t = Timestamp::from_secs(secs);
    set_times_nofollow(p, t, t)
}

/// Gives `p` itself the access and modification times recorded in `m`.
pub fn copy_times_nofollow(p: &Path, m: &std::fs::Metadata) -> io::Result<()> {
    set_times_nofollow(
        p,
        Timestamp {
            secs: m.atime(),
            nsecs: m.atime_nsec(),
        },
        Timestamp {
            secs: m.mtime(),
            nsecs: m.mtime_nsec(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_a_symlink_not_its_target() {
        let d = tempfile::tempdir().unwrap();
        let (f, l) = (d.path().join("f"), d.path().join("l"));
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::symlink("f", &l).unwrap();
        set_mtime_nofollow(&l, 1_000_000).unwrap();
        assert_eq!(std::fs::symlink_metadata(&l).unwrap().mtime(), 1_000_000);
        assert_ne!(std::fs::metadata(&f).unwrap().mtime(), 1_000_000);

        let at = Timestamp {
            secs: 5,
            nsecs: 123,
        };
        let mt = Timestamp {
            secs: 7,
            nsecs: 456,
        };
        set_times_nofollow(&f, at, mt).unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec(), m.atime()), (7, 456, 5));
        copy_times_nofollow(&l, &m).unwrap();
        let lm = std::fs::symlink_metadata(&l).unwrap();
        assert_eq!((lm.mtime(), lm.mtime_nsec()), (7, 456));
    }
}
