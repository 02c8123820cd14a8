//! Filesystem primitives shared by the store, the executor and the solver.
//!
//! - [`whiteout`]: how a deletion and an opaque directory are written, in overlay form
//!   (a 0/0 character device; an `overlay.opaque` xattr) and in OCI tar form (`.wh.name`;
//!   `.wh..wh..opq`), and which xattrs are overlay's own. Every crate that reads or
//!   writes either form asks this module, so the two forms cannot drift apart.
//! - [`xattr`]: extended attributes of a path, never following a symlink.
//! - [`time`]: access and modification times, never following a symlink.
//! - [`node`]: device nodes and fifos.
//!
//! A leaf crate: it depends on no other rbuild crate, so the store (`rbuild-cache`), the
//! sandbox (`rbuild-executor`) and the solver can all use it without depending on each
//! other. Failures are plain `io::Error`s; callers add what they were working on.

#![deny(missing_docs)]

pub mod node;
pub mod time;
pub mod whiteout;
pub mod xattr;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `p` as a C string for a syscall; a path with a NUL byte cannot name a file.
fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The outcome of a libc call that returns 0 on success and sets errno otherwise.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
