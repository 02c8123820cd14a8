//! Namespaces: the parent creates the child in the policy's new namespaces with a raw,
//! fork-like `clone`, all but the cgroup namespace, which the child makes once it has
//! joined its cgroup (so that cgroup is the root it sees); inside them the child names
//! its UTS namespace and, when it has a network namespace of its own, brings its
//! loopback interface up.

use super::protocol::{StatusPipe, Step};
use super::syscall::errno;
use std::ffi::CStr;
use std::io;

/// Parent side: forks into new namespaces (`flags` are `CLONE_NEW*`). `Ok(None)` in
/// the child, `Ok(Some(pid))` in the parent.
///
/// # Safety
/// In the child only raw syscalls are allowed until exec (see `syscall`): the caller
/// must hand it straight to code that keeps to that and never returns.
pub(super) unsafe fn clone(flags: libc::c_int) -> io::Result<Option<libc::pid_t>> {
    // SAFETY: no CLONE_VM and no new stack: a fork with namespaces; see the contract.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        0 => Ok(None),
        p if p < 0 => Err(io::Error::last_os_error()),
        p => Ok(Some(p as libc::pid_t)),
    }
}

/// Child side, once in its cgroup: a cgroup namespace rooted there.
///
/// # Safety
/// Child only.
pub(super) unsafe fn unshare_cgroup(st: StatusPipe) {
    // SAFETY: unshare of the caller's own cgroup namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
        st.fail(Step::CgroupNamespace, 0, errno());
    }
}

/// Child side: sets the hostname of the new UTS namespace.
///
/// # Safety
/// Child only.
pub(super) unsafe fn set_hostname(name: &CStr, st: StatusPipe) {
    // SAFETY: a NUL-terminated name and its length.
    if unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) } != 0 {
        st.fail(Step::Hostname, 0, errno());
    }
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Child side: brings `lo` of the new network namespace up.
///
/// # Safety
/// Child only.
pub(super) unsafe fn loopback_up(st: StatusPipe) {
    // SAFETY: see the function's contract; `req` matches struct ifreq's layout.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            st.fail(Step::Loopback, 0, errno());
        }
        let mut req = IfReqFlags {
            name: [0; 16],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) != 0 {
            st.fail(Step::Loopback, 1, errno());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &req) != 0 {
            st.fail(Step::Loopback, 2, errno());
        }
        libc::close(s);
    }
}
