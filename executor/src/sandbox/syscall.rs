//! The child's syscall helpers. Between clone and exec the child is a fork of a
//! multi-threaded process: it may not allocate or touch glibc state (locks, the setxid
//! thread list) another thread may have held at the fork. These are thin wrappers over
//! raw calls that keep to that.

use std::ffi::CStr;
use std::io;

/// The errno of the last failed call (EIO if there is none).
pub(super) fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// mount(2); true on success, errno set otherwise.
///
/// # Safety
/// Changes the calling process's mounts; child side only.
pub(super) unsafe fn mount(
    src: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> bool {
    // SAFETY: every pointer is a NUL-terminated string that lives for the call, or null.
    unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        ) == 0
    }
}

/// move_mount(2) of the detached mount `fd` onto `target`; true on success, errno set
/// otherwise.
///
/// # Safety
/// Changes the calling process's mounts; child side only.
pub(super) unsafe fn move_mount(fd: i32, target: &CStr) -> bool {
    // SAFETY: a descriptor number and NUL-terminated strings that live for the call.
    unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            crate::overlay::MOVE_MOUNT_F_EMPTY_PATH,
        ) == 0
    }
}

/// Moves `fd` to the number `want` (close-on-exec), closing `fd`; true on success.
///
/// # Safety
/// `fd` must be an open descriptor the caller owns; whatever is at `want` is replaced.
pub(super) unsafe fn move_fd(fd: i32, want: i32) -> bool {
    if fd == want {
        return true;
    }
    // SAFETY: both are plain descriptor numbers; see the function's contract.
    unsafe {
        let ok = libc::dup3(fd, want, libc::O_CLOEXEC) >= 0;
        libc::close(fd);
        ok
    }
}

/// Terminates the child at once, running no user-space cleanup.
pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}
