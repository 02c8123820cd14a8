//! Kernel paths under /proc and /sys the container may not change or see: the policy's
//! read-only paths are bound onto themselves read-only, its masked paths hidden behind
//! /dev/null (files: reading `/proc/kcore` gives nothing) or an empty read-only tmpfs
//! (directories). Paths the kernel does not have are skipped.

use super::protocol::{StatusPipe, Step};
use super::syscall::{self, errno};
use std::ffi::CString;

/// Child side, chrooted, after /proc and /sys are mounted.
///
/// # Safety
/// Child only.
pub(super) unsafe fn protect(readonly: &[CString], masked: &[CString], st: StatusPipe) {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT};
    // SAFETY: see the function's contract.
    unsafe {
        for (i, path) in readonly.iter().enumerate() {
            if !syscall::mount(path, path, None, MS_BIND | MS_REC, None) {
                if errno() == libc::ENOENT {
                    continue;
                }
                st.fail(Step::Protect, i, errno());
            }
            let flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
            if !syscall::mount(c"", path, None, flags, None) {
                st.fail(Step::Protect, i, errno());
            }
        }
        let mut stat: libc::stat = std::mem::zeroed();
        for (i, path) in masked.iter().enumerate() {
            if libc::stat(path.as_ptr(), &mut stat) != 0 {
                continue;
            }
            let ok = if stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
                syscall::mount(c"tmpfs", path, Some(c"tmpfs"), MS_RDONLY, Some(c"size=0"))
            } else {
                syscall::mount(c"/dev/null", path, None, MS_BIND, None)
            };
            if !ok {
                st.fail(Step::Protect, readonly.len() + i, errno());
            }
        }
    }
}
