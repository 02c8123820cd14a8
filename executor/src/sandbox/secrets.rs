//! Secret files ([`MountSource::Secret`](crate::MountSource::Secret)). The parent plans
//! a path for each under the run dir's `secrets/` (an empty dir on the host); the child,
//! in its own mount namespace once its mounts are private and before it opens the mount
//! sources, mounts a tmpfs there, writes each value with its owner and mode, and the
//! mount step binds the file read-only, nosuid, nodev, noexec at its target. The tmpfs
//! is in no other mount namespace, never touches a disk, and goes with the container:
//! nothing is left to clean up on any path out.

use super::protocol::{StatusPipe, Step};
use super::syscall::{self, errno};
use crate::cstr::cpath;
use crate::error::{ExecError, SpecError};
use crate::spec::SecretValue;
use std::ffi::CString;
use std::path::PathBuf;

/// One file to write.
struct SecretFile {
    path: CString,
    value: SecretValue,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The run's secret files and where their tmpfs goes.
pub(super) struct SecretFiles {
    /// The tmpfs mountpoint on the host (created with the first file).
    dir: PathBuf,
    dir_c: Option<CString>,
    files: Vec<SecretFile>,
}

impl SecretFiles {
    /// No files yet; their tmpfs will be mounted on `dir`.
    pub(super) fn new(dir: PathBuf) -> SecretFiles {
        SecretFiles {
            dir,
            dir_c: None,
            files: Vec::new(),
        }
    }

    /// Plans a file holding `value`; returns its path (valid in the child only).
    pub(super) fn add(
        &mut self,
        value: &SecretValue,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<PathBuf, ExecError> {
        if self.dir_c.is_none() {
            std::fs::create_dir(&self.dir)
                .map_err(|e| ExecError::setup("creating the secrets mountpoint", e))?;
            self.dir_c = Some(cpath(&self.dir)?);
        }
        let path = self.dir.join(self.files.len().to_string());
        self.files.push(SecretFile {
            path: cpath(&path)?,
            value: value.clone(),
            // Permission bits only, as BuildKit applies them.
            mode: mode & 0o777,
            uid,
            gid,
        });
        Ok(path)
    }
}

/// The `NAME=value` entries for `secret_env`, as C strings (a value may be any bytes
/// but NUL, which no environment can hold).
pub(super) fn env_entries(secret_env: &[(String, SecretValue)]) -> Result<Vec<CString>, SpecError> {
    secret_env
        .iter()
        .map(|(name, value)| {
            let mut bytes = Vec::with_capacity(name.len() + 1 + value.as_bytes().len());
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            CString::new(bytes).map_err(|_| SpecError::SecretNul(name.clone()))
        })
        .collect()
}

/// Child side: mounts the private tmpfs and writes every file (failure index 0 is the
/// tmpfs, `i + 1` file `i`).
///
/// # Safety
/// Child only, in its own mount namespace with private mounts.
pub(super) unsafe fn write_all(s: &SecretFiles, st: StatusPipe) {
    let Some(dir) = &s.dir_c else {
        return;
    };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: see the function's contract; the strings were built by the parent and the
    // buffers written from live for the calls.
    unsafe {
        if !syscall::mount(c"tmpfs", dir, Some(c"tmpfs"), flags, Some(c"mode=700")) {
            st.fail(Step::Secrets, 0, errno());
        }
        for (i, f) in s.files.iter().enumerate() {
            let open = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            let fd = libc::open(f.path.as_ptr(), open | libc::O_CLOEXEC, 0o600);
            let ok = fd >= 0
                && write_fully(fd, f.value.as_bytes())
                // Owner first: chown clears set-id bits a mode may ask for.
                && libc::fchown(fd, f.uid, f.gid) == 0
                && libc::fchmod(fd, f.mode) == 0;
            if !ok {
                st.fail(Step::Secrets, i + 1, errno());
            }
            libc::close(fd);
        }
    }
}

/// Writes all of `data` to `fd`; false (errno set) on failure.
///
/// # Safety
/// Child only; `fd` is an open descriptor.
unsafe fn write_fully(fd: i32, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: the pointer and length describe `data`.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}
