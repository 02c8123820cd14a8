//! Extended attributes of a path itself (the `l*xattr` calls): a symlink's own
//! attributes, never its target's.

use crate::{check, cpath};
use std::ffi::CString;
use std::io;
use std::path::Path;

fn cname(n: &str) -> io::Result<CString> {
    CString::new(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The attribute names of `p` that are UTF-8 (a layer's PAX records carry names as
/// strings); none on a filesystem without xattr support.
pub fn list(p: &Path) -> io::Result<Vec<String>> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buf is valid for buf.len() bytes; c is NUL-terminated.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(vec![]),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| std::str::from_utf8(s).ok().map(str::to_owned))
        .collect())
}

/// The value of attribute `name` of `p`; `None` when it has none (or the filesystem
/// has no xattrs).
pub fn get(p: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c = cpath(p)?;
    let n = cname(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buffers valid for their lengths; strings NUL-terminated.
        let r =
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Sets attribute `name` of `p` to `value` (created or replaced).
pub fn set(p: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cpath(p)?;
    let n = cname(name)?;
    // SAFETY: buffers valid for their lengths; strings NUL-terminated.
    check(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// Removes attribute `name` of `p`.
pub fn remove(p: &Path, name: &str) -> io::Result<()> {
    let c = cpath(p)?;
    let n = cname(name)?;
    // SAFETY: strings NUL-terminated.
    check(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        if set(&f, "user.rbuild.test", b"v").is_err() {
            eprintln!("no user xattrs on this filesystem: skipped");
            return;
        }
        let long = vec![b'x'; 1000];
        set(&f, "user.rbuild.long", &long).unwrap();
        assert_eq!(
            get(&f, "user.rbuild.test").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(get(&f, "user.rbuild.long").unwrap(), Some(long));
        assert_eq!(get(&f, "user.rbuild.none").unwrap(), None);
        let names = list(&f).unwrap();
        assert!(names.iter().any(|n| n == "user.rbuild.test"), "{names:?}");
        remove(&f, "user.rbuild.test").unwrap();
        assert_eq!(get(&f, "user.rbuild.test").unwrap(), None);
        assert!(get(&d.path().join("gone"), "user.x").is_err());
    }
}
