//! Host objects the child opens by path and keeps at fixed fd numbers: layer dirs,
//! bind-mount sources, host devices, the /etc files. The child opens them itself,
//! inside its new mount namespace (the kernel refuses to bind or stack mounts of
//! another one), and hands them to the kernel as `/proc/self/fd/N`, which stays short
//! whatever the host path looks like.

use super::protocol::{StatusPipe, Step};
use super::syscall::{errno, move_fd};
use crate::cstr::{cpath, cstring};
use crate::error::SpecError;
use std::ffi::CString;
use std::path::Path;

/// The most mount sources a run may have: the child records which ones it could open
/// in a fixed array, since it may not allocate.
pub(super) const MAX_SOURCES: usize = 64;

/// Which of the plan's sources the child could open.
pub(super) type Opened = [bool; MAX_SOURCES];

/// A host path the child opens (O_PATH) and moves to a fixed fd number.
pub(super) struct Source {
    pub path: CString,
    pub dir: bool,
    pub fd: i32,
    /// `/proc/self/fd/<fd>`: how the kernel is handed the opened object.
    pub proc_path: CString,
    /// A fallback that may be missing (host devices, host /sys): failing to open it
    /// is not an error.
    pub optional: bool,
}

/// Hands out the child's fd numbers in planning order and collects the mount sources.
/// 0-2 are stdio and [`StatusPipe::FD`] the status pipe, so numbers start after it. Each
/// open in the child is moved to its number before the next open, which could otherwise
/// land on (and be clobbered at) a planned number.
pub(super) struct SourcePlan {
    next_fd: i32,
    list: Vec<Source>,
}

impl SourcePlan {
    pub(super) fn new() -> SourcePlan {
        SourcePlan {
            next_fd: StatusPipe::FD + 1,
            list: Vec::new(),
        }
    }

    /// The next free fd number.
    pub(super) fn take_fd(&mut self) -> i32 {
        let fd = self.next_fd;
        self.next_fd += 1;
        fd
    }

    /// A source for `path` at the next free number, kept by the caller (layers, which
    /// the child opens before the mount sources).
    pub(super) fn unlisted(&mut self, path: &Path, dir: bool) -> Result<Source, SpecError> {
        let fd = self.take_fd();
        Ok(Source {
            path: cpath(path)?,
            dir,
            fd,
            proc_path: cstring(&format!("/proc/self/fd/{fd}"))?,
            optional: false,
        })
    }

    /// Adds a mount source for `path`; returns its index.
    pub(super) fn add(
        &mut self,
        path: &Path,
        dir: bool,
        optional: bool,
    ) -> Result<usize, SpecError> {
        let mut s = self.unlisted(path, dir)?;
        s.optional = optional;
        self.list.push(s);
        Ok(self.list.len() - 1)
    }

    /// The mount sources, in the order the child opens them.
    pub(super) fn into_list(self) -> Result<Vec<Source>, SpecError> {
        if self.list.len() > MAX_SOURCES {
            return Err(SpecError::TooManyMounts);
        }
        Ok(self.list)
    }
}

/// Child side: opens `s` and moves it to its fd; false (errno set) on failure.
///
/// # Safety
/// Child only, after clone: replaces whatever is at `s.fd`.
pub(super) unsafe fn open(s: &Source) -> bool {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if s.dir {
        flags |= libc::O_DIRECTORY;
    }
    // SAFETY: a NUL-terminated path; the fd it returns is ours to move.
    unsafe {
        let fd = libc::open(s.path.as_ptr(), flags);
        fd >= 0 && move_fd(fd, s.fd)
    }
}

/// Child side: opens every source in order; a required one that fails ends the run.
///
/// # Safety
/// As [`open`].
pub(super) unsafe fn open_all(sources: &[Source], st: StatusPipe) -> Opened {
    let mut opened = [false; MAX_SOURCES];
    for (i, s) in sources.iter().enumerate() {
        // SAFETY: see the function's contract.
        let ok = unsafe { open(s) };
        if i < opened.len() {
            opened[i] = ok;
        }
        if !ok && !s.optional {
            st.fail(Step::OpenSources, i, errno());
        }
    }
    opened
}
