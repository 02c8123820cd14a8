//! Overlays made with the new mount API: `fsopen("overlay")`, one
//! `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", …)` per layer (Linux 6.8+), `fsmount`.
//! Each call carries one path, so the one page of mount(2) options stops being the limit;
//! the kernel's own (`OVL_MAX_STACK`, 500 layers) is what is left.
//!
//! The result is a detached mount, an fd. The host side moves it onto its target here
//! ([`attach`]); a RUN's parent makes it before the fork and the child only moves it into
//! its own mount namespace (a detached mount may be attached in any namespace), so the
//! child keeps to one raw syscall.
//!
//! Every path is handed over as `/proc/self/fd/N` of an O_PATH descriptor opened just
//! before the call and closed after it: fsconfig copies at most 256 bytes of a string,
//! and a store root may be deeper than that.

use super::open_path;
use super::options::{Param, VARIANTS};
use crate::cstr::{cpath, cstring};
use crate::error::ExecError;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

// From <linux/mount.h>.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// An overlay filesystem context being configured.
struct Context(OwnedFd);

impl Context {
    fn open() -> io::Result<Context> {
        // SAFETY: a NUL-terminated name; returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Context(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&CStr>,
        value: Option<&CStr>,
    ) -> io::Result<()> {
        // SAFETY: our fs fd; key and value are NUL-terminated strings or null.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                cmd,
                key.map_or(std::ptr::null(), CStr::as_ptr),
                value.map_or(std::ptr::null(), CStr::as_ptr),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(self.explain(io::Error::last_os_error()))
        }
    }

    fn set(&self, key: &CStr, value: &CStr) -> io::Result<()> {
        self.config(FSCONFIG_SET_STRING, Some(key), Some(value))
    }

    /// Sets the path parameter `key` to `path` (through an O_PATH descriptor).
    fn set_path(&self, key: &CStr, path: &Path) -> Result<(), ExecError> {
        let fd = open_path(path)
            .map_err(|e| ExecError::setup(format!("opening {}", path.display()), e))?;
        let proc = cstring(&format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        self.set(key, &proc).map_err(|e| {
            let key = key.to_string_lossy();
            ExecError::setup(format!("overlay {key} {}", path.display()), e)
        })
    }

    /// `err` with the kernel's own words for it, from the context's message log.
    fn explain(&self, err: io::Error) -> io::Error {
        let mut buf = [0u8; 512];
        let mut said = Vec::new();
        loop {
            // SAFETY: reading into a buffer we own; the fs fd logs one message per read.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            // Messages are "e overlay: …", "w …", "i …".
            let msg = String::from_utf8_lossy(&buf[..n]);
            said.push(msg.get(2..).unwrap_or(&msg).trim().to_string());
        }
        if said.is_empty() {
            err
        } else {
            io::Error::new(err.kind(), format!("{err} ({})", said.join("; ")))
        }
    }
}

/// Whether this kernel takes overlay layers one by one (`lowerdir+`, Linux 6.8+).
pub(crate) fn supported() -> bool {
    let Ok(ctx) = Context::open() else {
        return false;
    };
    ctx.set(c"lowerdir+", c"/").is_ok()
}

/// Makes a detached overlay mount of `lowers_top_first` (at least one) over `upper` and
/// `work`, trying the parameter sets of [`VARIANTS`] in turn.
pub(crate) fn detached(
    lowers_top_first: &[&Path],
    upper: &Path,
    work: &Path,
) -> Result<OwnedFd, ExecError> {
    let mut last = None;
    for params in VARIANTS {
        match try_detached(lowers_top_first, upper, work, params)? {
            Ok(fd) => return Ok(fd),
            Err(e) => last = Some(e),
        }
    }
    Err(ExecError::setup(
        format!("creating an overlay of {} layers", lowers_top_first.len()),
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    ))
}

/// One attempt: the outer error is a layer that cannot be used (no use trying other
/// parameters), the inner one the kernel refusing to create the overlay with `params`.
fn try_detached(
    lowers_top_first: &[&Path],
    upper: &Path,
    work: &Path,
    params: &[Param],
) -> Result<io::Result<OwnedFd>, ExecError> {
    let ctx = Context::open().map_err(|e| ExecError::setup("fsopen(overlay)", e))?;
    for l in lowers_top_first {
        ctx.set_path(c"lowerdir+", l)?;
    }
    ctx.set_path(c"upperdir", upper)?;
    ctx.set_path(c"workdir", work)?;
    for (key, value) in params {
        let key = cstring(key)?;
        let set = match value {
            Some(v) => ctx.set(&key, &cstring(v)?),
            None => ctx.config(FSCONFIG_SET_FLAG, Some(&key), None),
        };
        if let Err(e) = set {
            return Ok(Err(e));
        }
    }
    if let Err(e) = ctx.config(FSCONFIG_CMD_CREATE, None, None) {
        return Ok(Err(e));
    }
    // SAFETY: our configured fs fd; returns a new mount fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, ctx.0.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if fd < 0 {
        return Ok(Err(ctx.explain(io::Error::last_os_error())));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Attaches the detached mount `mnt` on `target`.
pub(crate) fn attach(mnt: BorrowedFd<'_>, target: &Path) -> Result<(), ExecError> {
    let t = cpath(target)?;
    // SAFETY: a mount fd we hold and a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ExecError::setup(
            format!("mounting overlay on {}", target.display()),
            io::Error::last_os_error(),
        ))
    }
}
