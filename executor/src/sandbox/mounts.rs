//! The container's mounts, made by the child while chrooted in the rootfs (so image
//! symlinks cannot point them at the host): /proc, /dev, /sys read-only with a
//! read-only cgroup2 tree (both writable for an insecure step), the run's /etc files,
//! then the caller's binds and tmpfs mounts, parents before children as docker sorts
//! them.

use super::mountpoints::Mountpoints;
use super::protocol::{StatusPipe, Step};
use super::secrets::SecretFiles;
use super::sources::{Opened, Source, SourcePlan};
use super::syscall::{self, errno};
use crate::cstr::cstring;
use crate::error::{ExecError, SpecError};
use crate::rootpath::normalize;
use crate::spec::{Mount, MountSource};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

/// What a mount is.
pub(super) enum MountKind {
    Proc,
    /// A tmpfs, filled with devices next (see `devices`).
    Dev,
    /// sysfs, or the host's /sys (source `host`) bound where sysfs cannot be;
    /// read-only unless `writable`.
    Sys {
        host: usize,
        writable: bool,
    },
    /// One of the run's /etc files (source `src`); skipped when the image has no place
    /// for it.
    EtcFile {
        src: usize,
    },
    Bind {
        src: usize,
        readonly: bool,
    },
    /// A secret file (source `src`, on the child's private tmpfs): read-only, nosuid,
    /// nodev, noexec, as BuildKit binds secrets.
    Secret {
        src: usize,
    },
    Tmpfs {
        data: CString,
    },
}

impl MountKind {
    /// Mounts the image may have no place for: skipped rather than failing the run.
    pub(super) fn optional(&self) -> bool {
        matches!(self, MountKind::EtcFile { .. } | MountKind::Sys { .. })
    }
}

/// One mount, in order.
pub(super) struct MountStep {
    pub target: CString,
    pub kind: MountKind,
    /// The mountpoint components of `target`, outermost first.
    pub mountpoints: Vec<usize>,
}

/// Plans the mounts every run gets: /proc, /dev and /sys (`writable_sys`: read-write).
pub(super) fn plan_system(
    sources: &mut SourcePlan,
    mountpoints: &mut Mountpoints,
    writable_sys: bool,
) -> Result<Vec<MountStep>, SpecError> {
    let host = sources.add(Path::new("/sys"), true, true)?;
    [
        ("/proc", MountKind::Proc),
        ("/dev", MountKind::Dev),
        (
            "/sys",
            MountKind::Sys {
                host,
                writable: writable_sys,
            },
        ),
    ]
    .into_iter()
    .map(|(target, kind)| {
        Ok(MountStep {
            target: cstring(target)?,
            kind,
            mountpoints: mountpoints.add(target, false)?,
        })
    })
    .collect()
}

/// Plans the bind of each `(name, host file)` onto `/etc/<name>`.
pub(super) fn plan_etc_files(
    files: &[(&str, PathBuf)],
    sources: &mut SourcePlan,
    mountpoints: &mut Mountpoints,
) -> Result<Vec<MountStep>, SpecError> {
    files
        .iter()
        .map(|(name, host)| {
            let src = sources.add(host, false, false)?;
            let target = format!("/etc/{name}");
            Ok(MountStep {
                target: cstring(&target)?,
                kind: MountKind::EtcFile { src },
                mountpoints: mountpoints.add(&target, true)?,
            })
        })
        .collect()
}

/// Plans the caller's mounts, parents before children; secret files go to `secrets`.
pub(super) fn plan_user(
    mounts: &[Mount],
    sources: &mut SourcePlan,
    mountpoints: &mut Mountpoints,
    secrets: &mut SecretFiles,
) -> Result<Vec<MountStep>, ExecError> {
    let mut sorted: Vec<&Mount> = mounts.iter().collect();
    sorted.sort_by_key(|m| normalize(&m.target).len());
    let mut steps = Vec::new();
    for m in sorted {
        let comps = normalize(&m.target);
        if !m.target.starts_with('/') || comps.is_empty() {
            return Err(SpecError::MountTarget(m.target.clone()).into());
        }
        let target = format!("/{}", comps.join("/"));
        let (kind, file) = match &m.source {
            MountSource::Bind { source, readonly } => {
                let host = std::fs::canonicalize(source).map_err(|e| {
                    ExecError::setup(format!("bind source {}", source.display()), e)
                })?;
                let is_dir = host.is_dir();
                let src = sources.add(&host, is_dir, false)?;
                let readonly = *readonly;
                (MountKind::Bind { src, readonly }, !is_dir)
            }
            MountSource::Secret {
                value,
                mode,
                uid,
                gid,
            } => {
                let file = secrets.add(value, *mode, *uid, *gid)?;
                let src = sources.add(&file, false, false)?;
                (MountKind::Secret { src }, true)
            }
            MountSource::Tmpfs { size } => {
                let data = match size {
                    Some(s) => format!("mode=1777,size={s}"),
                    None => "mode=1777".to_string(),
                };
                (
                    MountKind::Tmpfs {
                        data: cstring(&data)?,
                    },
                    false,
                )
            }
        };
        steps.push(MountStep {
            target: cstring(&target)?,
            kind,
            mountpoints: mountpoints.add(&target, file)?,
        });
    }
    Ok(steps)
}

/// Child side: makes every mount private, so nothing the child mounts reaches the host.
///
/// # Safety
/// Child only, in its own mount namespace.
pub(super) unsafe fn make_private(st: StatusPipe) {
    // SAFETY: see the function's contract.
    let ok = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
    };
    if !ok {
        st.fail(Step::MakePrivate, 0, errno());
    }
}

/// Child side, chrooted: makes mount `index` (its mountpoint exists).
///
/// # Safety
/// Child only.
pub(super) unsafe fn mount(
    index: usize,
    m: &MountStep,
    sources: &[Source],
    opened: &Opened,
    st: StatusPipe,
) {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC};
    let t = m.target.as_c_str();
    // SAFETY: see the function's contract; every string was built by the parent.
    unsafe {
        match &m.kind {
            MountKind::Proc => {
                let flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
                if !syscall::mount(c"proc", t, Some(c"proc"), flags, None) {
                    st.fail(Step::MountProc, 0, errno());
                }
            }
            MountKind::Dev => {
                let flags = MS_NOSUID | libc::MS_STRICTATIME;
                let data = Some(c"mode=755,size=65536k");
                if !syscall::mount(c"tmpfs", t, Some(c"tmpfs"), flags, data) {
                    st.fail(Step::MountDev, 0, errno());
                }
            }
            MountKind::Sys { host, writable } => {
                let ro = if *writable { 0 } else { MS_RDONLY };
                let flags = ro | MS_NOSUID | MS_NODEV | MS_NOEXEC;
                if syscall::mount(c"sysfs", t, Some(c"sysfs"), flags, None) {
                    // Our own cgroup as the root of a read-only cgroup2 tree,
                    // as docker's private cgroupns does; absent on v1-only hosts.
                    let cgroup = c"/sys/fs/cgroup";
                    syscall::mount(c"cgroup2", cgroup, Some(c"cgroup2"), flags, None);
                } else if opened[*host]
                    && syscall::mount(&sources[*host].proc_path, t, None, MS_BIND | MS_REC, None)
                    && !*writable
                {
                    // sysfs needs a network namespace we own; with the host's
                    // in a restricted container, bind the host /sys read-only.
                    make_readonly_recursive(t);
                }
            }
            MountKind::EtcFile { src } => {
                // A dangling symlink or a directory in the image: skip it.
                syscall::mount(&sources[*src].proc_path, t, None, MS_BIND, None);
            }
            MountKind::Bind { src, readonly } => {
                if !syscall::mount(&sources[*src].proc_path, t, None, MS_BIND | MS_REC, None) {
                    st.fail(Step::Mount, index, errno());
                }
                if *readonly && !make_readonly_recursive(t) {
                    st.fail(Step::Mount, index, errno());
                }
            }
            MountKind::Secret { src } => {
                const HARDENED: u64 =
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
                let fallback = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
                if !syscall::mount(&sources[*src].proc_path, t, None, MS_BIND, None)
                    || !set_attrs_recursive(t, HARDENED, fallback)
                {
                    st.fail(Step::Mount, index, errno());
                }
            }
            MountKind::Tmpfs { data } => {
                let flags = MS_NOSUID | MS_NODEV;
                if !syscall::mount(c"tmpfs", t, Some(c"tmpfs"), flags, Some(data)) {
                    st.fail(Step::Mount, index, errno());
                }
            }
        }
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Read-only for the bind and every mount below it (a plain remount would leave
/// submounts of the source writable); remount on pre-5.12 kernels.
///
/// # Safety
/// Child only.
unsafe fn make_readonly_recursive(target: &CStr) -> bool {
    // SAFETY: as this function's.
    unsafe { set_attrs_recursive(target, MOUNT_ATTR_RDONLY, libc::MS_RDONLY) }
}

/// Sets the mount attributes `attrs` on the bind at `target` and every mount below it;
/// on pre-5.12 kernels a bind remount with `fallback` flags.
///
/// # Safety
/// Child only.
unsafe fn set_attrs_recursive(target: &CStr, attrs: u64, fallback: libc::c_ulong) -> bool {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr of the size passed.
    unsafe {
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            AT_RECURSIVE,
            &attr,
            std::mem::size_of::<MountAttr>(),
        );
        rc == 0
            || (errno() == libc::ENOSYS
                && syscall::mount(
                    c"",
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | fallback,
                    None,
                ))
    }
}
