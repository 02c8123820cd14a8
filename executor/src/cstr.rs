//! C strings made in the parent, before the fork: the child may not allocate, so every
//! path, option string and argv/envp array it hands the kernel is built here, checked
//! for NUL bytes on the way.

use crate::error::SpecError;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `s` as a C string.
pub(crate) fn cstring(s: &str) -> Result<CString, SpecError> {
    CString::new(s).map_err(|_| SpecError::Nul(s.to_string()))
}

/// The path `p` as a C string.
pub(crate) fn cpath(p: &Path) -> Result<CString, SpecError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SpecError::NulPath(p.to_path_buf()))
}

/// A NULL-terminated array of C strings (argv, envp), ready for `execve`.
pub(crate) struct CStringArray {
    // Owns the bytes `ptrs` points into; never changed after `new`, and a CString's
    // buffer does not move when the CString does.
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStringArray {
    pub(crate) fn new<S: AsRef<str>>(items: &[S]) -> Result<Self, SpecError> {
        let strings = items
            .iter()
            .map(|s| cstring(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_cstrings(strings))
    }

    /// The array of `strings`, made already (values that need not be UTF-8).
    pub(crate) fn from_cstrings(strings: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray {
            _strings: strings,
            ptrs,
        }
    }

    /// The array, for `execve`; valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn array_is_null_terminated_and_points_at_its_strings() {
        let a = CStringArray::new(&["sh", "-c"]).unwrap();
        // SAFETY: `a` holds two valid C strings and a NULL, and lives for the block.
        unsafe {
            assert_eq!(CStr::from_ptr(*a.as_ptr()).to_bytes(), b"sh");
            assert_eq!(CStr::from_ptr(*a.as_ptr().add(1)).to_bytes(), b"-c");
            assert!((*a.as_ptr().add(2)).is_null());
        }
        assert!(matches!(
            CStringArray::new(&["a\0b"]),
            Err(SpecError::Nul(_))
        ));
    }
}
