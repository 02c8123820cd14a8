//! The container's /dev: a small tmpfs with the policy's device nodes (created with
//! mknod, or bound from the host's node where that is not allowed, as in nested
//! containers), a private devpts instance, /dev/shm and the usual symlinks.

use super::policy::HostDevice;
use super::protocol::{StatusPipe, Step};
use super::sources::{Opened, Source, SourcePlan};
use super::syscall::{self, errno};
use crate::cstr::cstring;
use crate::error::SpecError;
use std::ffi::CString;
use std::path::Path;

/// A node of /dev, with the host's node of the same name as fallback source.
pub(super) struct Device {
    path: CString,
    major: u32,
    minor: u32,
    /// Index of the host node among the mount sources.
    host: usize,
}

/// Plans `devices`, adding each host node as an optional source.
pub(super) fn plan(
    devices: &[HostDevice],
    sources: &mut SourcePlan,
) -> Result<Vec<Device>, SpecError> {
    devices
        .iter()
        .map(|d| {
            let host = sources.add(&Path::new("/dev").join(d.name), false, true)?;
            Ok(Device {
                path: cstring(&format!("/dev/{}", d.name))?,
                major: d.major,
                minor: d.minor,
                host,
            })
        })
        .collect()
}

/// The /dev/shm tmpfs's options for a size in bytes (docker's 64 MiB when none), in KiB
/// rounded up as tmpfs takes them.
pub(super) fn shm_options(size: Option<u64>) -> Result<CString, SpecError> {
    let kib = size.unwrap_or(crate::spec::DEFAULT_SHM_SIZE).div_ceil(1024);
    cstring(&format!("mode=1777,size={kib}k"))
}

/// Child side, chrooted, right after the tmpfs is mounted on /dev: fills it.
///
/// # Safety
/// Child only.
pub(super) unsafe fn populate(
    devices: &[Device],
    shm_options: &CString,
    sources: &[Source],
    opened: &Opened,
    st: StatusPipe,
) {
    // SAFETY: see the function's contract; the paths were built by the parent.
    unsafe {
        let old = libc::umask(0);
        for (i, d) in devices.iter().enumerate() {
            let dev = libc::makedev(d.major, d.minor);
            if libc::mknod(d.path.as_ptr(), libc::S_IFCHR | 0o666, dev) == 0 {
                continue;
            }
            // No CAP_MKNOD or a device cgroup (nested containers): bind the
            // host's node instead.
            let fd = libc::open(
                d.path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            if !(opened[d.host]
                && syscall::mount(
                    &sources[d.host].proc_path,
                    &d.path,
                    None,
                    libc::MS_BIND,
                    None,
                ))
            {
                st.fail(Step::Devices, i, errno());
            }
        }
        let devpts = |options: &std::ffi::CStr| {
            syscall::mount(
                c"devpts",
                c"/dev/pts",
                Some(c"devpts"),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some(options),
            )
        };
        if libc::mkdir(c"/dev/pts".as_ptr(), 0o755) != 0
            // The tty group, unless it is not mapped (rootless with only the user's IDs).
            || !(devpts(c"newinstance,ptmxmode=0666,mode=0620,gid=5")
                || devpts(c"newinstance,ptmxmode=0666,mode=0620"))
            || libc::symlink(c"pts/ptmx".as_ptr(), c"/dev/ptmx".as_ptr()) != 0
        {
            st.fail(Step::Devpts, 0, errno());
        }
        if libc::mkdir(c"/dev/shm".as_ptr(), 0o1777) != 0
            || !syscall::mount(
                c"shm",
                c"/dev/shm",
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(shm_options.as_c_str()),
            )
        {
            st.fail(Step::Shm, 0, errno());
        }
        for (target, link) in [
            (c"/proc/self/fd", c"/dev/fd"),
            (c"/proc/self/fd/0", c"/dev/stdin"),
            (c"/proc/self/fd/1", c"/dev/stdout"),
            (c"/proc/self/fd/2", c"/dev/stderr"),
            (c"/proc/kcore", c"/dev/core"),
        ] {
            libc::symlink(target.as_ptr(), link.as_ptr());
        }
        libc::umask(old);
    }
}
