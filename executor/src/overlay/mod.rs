//! Overlay mounts: which kernel interface takes the layers ([`MountApi`], probed once),
//! how many layers one mount takes there ([`max_lower_layers`]), and host-side mounts
//! ([`OverlayMount`], for COPY and exports). A RUN's rootfs uses the same pieces from
//! `sandbox/rootfs.rs`.
//!
//! - `fsmount`: the new mount API, one `lowerdir+` per layer (Linux 6.8+): up to the
//!   kernel's 500 layers (`OVL_MAX_STACK`).
//! - `options`: the parameters every overlay gets, and the mount(2) option string with
//!   layers as `/proc/self/fd/N` where the new API is missing: about 200 layers in a page.
//!
//! A longer chain is the store's business: it stands a flattened snapshot in for a prefix
//! of the chain (`rbuild_cache`), so callers ask [`max_lower_layers`] first.

mod fsmount;
mod options;

pub(crate) use fsmount::{MOVE_MOUNT_F_EMPTY_PATH, detached};
pub use options::OVL_MAX_STACK;
pub(crate) use options::{MAX_OPTIONS, VARIANTS, legacy_max_lowers, legacy_options};

use crate::cstr::{cpath, cstring};
use crate::error::{ExecError, SpecError};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How this kernel is handed an overlay's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountApi {
    /// fsopen/fsconfig with one `lowerdir+` per layer, fsmount (Linux 6.8+).
    LowerdirPlus,
    /// mount(2) with one page of options, layers as `/proc/self/fd/N`.
    Legacy,
}

impl MountApi {
    /// The interface this kernel has, probed once per process. `RBUILD_OVERLAY_API=legacy`
    /// forces mount(2) (to test the fallback, or to step around a kernel bug).
    pub fn current() -> MountApi {
        static API: OnceLock<MountApi> = OnceLock::new();
        *API.get_or_init(|| {
            let forced = std::env::var_os("RBUILD_OVERLAY_API").is_some_and(|v| v == "legacy");
            if !forced && fsmount::supported() {
                MountApi::LowerdirPlus
            } else {
                MountApi::Legacy
            }
        })
    }

    /// The most lower layers one overlay mount takes through this interface.
    pub fn max_lowers(self) -> usize {
        match self {
            MountApi::LowerdirPlus => OVL_MAX_STACK,
            MountApi::Legacy => legacy_max_lowers(),
        }
    }
}

/// The most lower layers one overlay mount takes on this kernel: 500 with the new mount
/// API, about 200 without it.
pub fn max_lower_layers() -> usize {
    MountApi::current().max_lowers()
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
    /// Mounts `lowerdirs` (bottom first; empty means scratch) over `upper` on `target`,
    /// through the kernel's [`MountApi`]. More layers than [`max_lower_layers`] is a
    /// [`SpecError::TooManyLayers`].
    pub fn mount(
        lowerdirs: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<Self, ExecError> {
        Self::mount_with(MountApi::current(), lowerdirs, upper, work, target)
    }

    /// [`OverlayMount::mount`] through a given interface (the fallback can be tested on a
    /// kernel that has the new one).
    pub fn mount_with(
        api: MountApi,
        lowerdirs: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<Self, ExecError> {
        if lowerdirs.len() > api.max_lowers() {
            return Err(SpecError::TooManyLayers(lowerdirs.len()).into());
        }
        let empty = if lowerdirs.is_empty() {
            Some(tempfile::tempdir().map_err(|e| ExecError::setup("creating scratch layer", e))?)
        } else {
            None
        };
        let lowers: Vec<&Path> = match &empty {
            Some(d) => vec![d.path()],
            None => lowerdirs.iter().rev().map(PathBuf::as_path).collect(),
        };
        match api {
            MountApi::LowerdirPlus => {
                let mnt = fsmount::detached(&lowers, upper, work)?;
                fsmount::attach(mnt.as_fd(), target)?;
            }
            MountApi::Legacy => mount_legacy(&lowers, upper, work, target)?,
        }
        Ok(OverlayMount {
            target: target.to_path_buf(),
            work: work.to_path_buf(),
            _empty: empty,
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

/// mount(2) with the layers as `/proc/self/fd/N`, trying [`VARIANTS`] in turn.
fn mount_legacy(
    lowers_top_first: &[&Path],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), ExecError> {
    let open = |p: &Path| {
        open_path(p).map_err(|e| ExecError::setup(format!("opening {}", p.display()), e))
    };
    let lower_fds = lowers_top_first
        .iter()
        .map(|p| open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let upper_fd = open(upper)?;
    let work_fd = open(work)?;
    let nums: Vec<i32> = lower_fds.iter().map(AsRawFd::as_raw_fd).collect();
    let target_c = cpath(target)?;
    let mut last = None;
    for params in VARIANTS {
        let opts = legacy_options(&nums, upper_fd.as_raw_fd(), work_fd.as_raw_fd(), params);
        if opts.len() > MAX_OPTIONS {
            return Err(SpecError::TooManyLayers(lowers_top_first.len()).into());
        }
        let opts_c = cstring(&opts)?;
        match mount_raw(c"overlay", &target_c, c"overlay", 0, Some(&opts_c)) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(ExecError::setup(
        format!("mounting overlay on {}", target.display()),
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    ))
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
