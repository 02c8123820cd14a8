//! Overlay mounts. Layers are passed to the kernel as `/proc/self/fd/N` of
//! O_PATH descriptors: every path is ~17 bytes whatever the host path looks
//! like (no escaping of `:` or `,`), so 200+ layers fit in the one-page limit
//! of mount options without changing the (process-wide) cwd.

use crate::cstr::{cpath, cstring};
use crate::error::{ExecError, SpecError};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The kernel copies at most one page of mount options.
pub(crate) const MAX_OPTIONS: usize = 4095;

/// Options that keep the upper dir in plain overlay form (no redirect or
/// metacopy xattrs a layer differ would have to understand).
const STRICT: &str = ",index=off,redirect_dir=off,metacopy=off";

/// The extra options tried in turn, until the kernel takes one. `volatile`
/// (Linux 5.10+) skips the sync of the whole upper filesystem at unmount, which
/// held up every step by the time it took to write its upper dir (and anything
/// else dirty on that filesystem) to disk; the layer commit makes the upper dir
/// durable instead, in the background (`Store::commit_layer`).
pub(crate) const OPTION_VARIANTS: [&str; 3] = [
    ",index=off,redirect_dir=off,metacopy=off,volatile",
    STRICT,
    "",
];

/// Builds the overlay option string. `lower_top_first` are fd numbers; `extra`
/// is one of [`OPTION_VARIANTS`].
pub(crate) fn overlay_options(
    lower_top_first: &[i32],
    upper: i32,
    work: i32,
    extra: &str,
) -> String {
    let lowers: Vec<String> = lower_top_first
        .iter()
        .map(|fd| format!("/proc/self/fd/{fd}"))
        .collect();
    let mut s = format!(
        "lowerdir={},upperdir=/proc/self/fd/{upper},workdir=/proc/self/fd/{work}",
        lowers.join(":")
    );
    s.push_str(extra);
    s
}

/// A `volatile` overlay leaves `work/incompat/volatile` in its workdir, and the kernel
/// then refuses to mount that upper/work pair again: the mark of a mount that may have
/// lost writes in a crash. Removed once the mount has ended normally, so the pair can be
/// mounted again (the mark stays after a crash). Best effort.
pub(crate) fn clear_volatile_marker(workdir: &Path) {
    let incompat = workdir.join("work/incompat");
    let volatile = incompat.join("volatile");
    let _ = std::fs::remove_file(volatile.join("dirty"));
    let _ = std::fs::remove_dir(&volatile);
    let _ = std::fs::remove_dir(&incompat);
}

fn open_path(p: &Path) -> io::Result<OwnedFd> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(p)?;
    Ok(f.into())
}

fn mount_raw(
    source: &std::ffi::CStr,
    target: &std::ffi::CStr,
    fstype: &std::ffi::CStr,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A host-side overlay mount (for COPY into a rootfs). Unmounted on drop,
/// with a lazy detach when something still holds it busy.
#[derive(Debug)]
pub struct OverlayMount {
    target: PathBuf,
    work: PathBuf,
    // Scratch lower layer for an empty chain; removed after unmount.
    _empty: Option<tempfile::TempDir>,
}

impl OverlayMount {
    /// `lowerdirs` bottom first; empty means scratch.
    pub fn mount(
        lowerdirs: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<Self, ExecError> {
        let empty = if lowerdirs.is_empty() {
            Some(tempfile::tempdir().map_err(|e| ExecError::setup("creating scratch layer", e))?)
        } else {
            None
        };
        let lowers: Vec<&Path> = match &empty {
            Some(d) => vec![d.path()],
            None => lowerdirs.iter().rev().map(PathBuf::as_path).collect(),
        };
        let open = |p: &Path| {
            open_path(p).map_err(|e| ExecError::setup(format!("opening {}", p.display()), e))
        };
        let lower_fds = lowers
            .iter()
            .map(|p| open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let upper_fd = open(upper)?;
        let work_fd = open(work)?;
        let nums: Vec<i32> = lower_fds.iter().map(AsRawFd::as_raw_fd).collect();
        let target_c = cpath(target)?;
        let mut last = None;
        for extra in OPTION_VARIANTS {
            let opts = overlay_options(&nums, upper_fd.as_raw_fd(), work_fd.as_raw_fd(), extra);
            if opts.len() > MAX_OPTIONS {
                return Err(SpecError::TooManyLayers(lowers.len()).into());
            }
            let opts_c = cstring(&opts)?;
            match mount_raw(c"overlay", &target_c, c"overlay", 0, Some(&opts_c)) {
                Ok(()) => {
                    return Ok(OverlayMount {
                        target: target.to_path_buf(),
                        work: work.to_path_buf(),
                        _empty: empty,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ExecError::setup(
            format!("mounting overlay on {}", target.display()),
            last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let Ok(t) = CString::new(self.target.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: valid NUL-terminated path.
        unsafe {
            if libc::umount2(t.as_ptr(), 0) != 0 {
                libc::umount2(t.as_ptr(), libc::MNT_DETACH);
            }
        }
        clear_volatile_marker(&self.work);
    }
}

/// True when an overlay with its upper dir under `dir` can be mounted here
/// (false e.g. when `dir` is itself on overlayfs, as in many CI containers).
pub fn overlay_supported(dir: &Path) -> bool {
    let probe = || -> Result<bool, ExecError> {
        let io = |e| ExecError::setup("overlay probe", e);
        let d = tempfile::Builder::new()
            .prefix(".overlay-probe")
            .tempdir_in(dir)
            .map_err(io)?;
        let (l, u, w, m) = (
            d.path().join("l"),
            d.path().join("u"),
            d.path().join("w"),
            d.path().join("m"),
        );
        for p in [&l, &u, &w, &m] {
            std::fs::create_dir(p).map_err(io)?;
        }
        std::fs::write(l.join("f"), b"x").map_err(io)?;
        let ok = {
            let mnt = OverlayMount::mount(std::slice::from_ref(&l), &u, &w, &m)?;
            std::fs::write(mnt.path().join("g"), b"y").map_err(io)?;
            std::fs::remove_file(mnt.path().join("f")).map_err(io)?;
            std::fs::read(mnt.path().join("g")).map_err(io)? == b"y"
        };
        Ok(ok && u.join("g").exists() && std::fs::symlink_metadata(u.join("f")).is_ok())
    };
    probe().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_lowers_top_first_with_fd_paths() {
        assert_eq!(
            overlay_options(&[7, 5], 9, 10, ""),
            "lowerdir=/proc/self/fd/7:/proc/self/fd/5,upperdir=/proc/self/fd/9,workdir=/proc/self/fd/10"
        );
        assert!(overlay_options(&[3], 4, 5, STRICT).ends_with(",metacopy=off"));
        // Strict first, with volatile, then without it, then plain.
        assert!(
            OPTION_VARIANTS[0].starts_with(STRICT) && OPTION_VARIANTS[0].ends_with(",volatile")
        );
        assert_eq!(OPTION_VARIANTS[1..], [STRICT, ""]);
    }

    #[test]
    fn two_hundred_layers_fit_in_a_page() {
        let fds: Vec<i32> = (1000..1200).collect();
        assert!(overlay_options(&fds, 1200, 1201, OPTION_VARIANTS[0]).len() <= MAX_OPTIONS);
    }
}
