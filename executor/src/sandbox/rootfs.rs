//! The container's root filesystem: an overlay of the layers with a fresh upper dir
//! (or a plain directory bound in, for the copying snapshotter), attached by the child
//! inside its own mount namespace, entered with chroot while mounts are set up (so
//! image symlinks resolve inside it), then made the root with pivot_root, the host's
//! mounts detached from view.
//!
//! Where the kernel has the new mount API the parent makes the overlay (one `lowerdir+`
//! per layer, up to 500) as a detached mount before the fork, and the child only moves it
//! onto its target. Elsewhere the child opens the layers at fixed fds and mounts them with
//! mount(2), named `/proc/self/fd/N` in one page of options (about 200 layers).

use super::protocol::{StatusPipe, Step};
use super::rundir::RunDir;
use super::sources::{self, Source, SourcePlan};
use super::syscall::{self, errno, move_fd};
use crate::cstr::{cpath, cstring};
use crate::error::{ExecError, SpecError};
use crate::overlay::{self, MAX_OPTIONS, MountApi, VARIANTS, legacy_options};
use crate::spec::RunSpec;
use crate::users::{self, ResolvedUser};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What the rootfs is made of.
pub(super) enum Root<'a> {
    /// An overlay of `lowers` (top first; none is scratch) over `upper`, which then
    /// holds exactly the diff.
    Overlay {
        lowers: Vec<&'a Path>,
        upper: &'a Path,
        work: &'a Path,
    },
    /// A writable directory holding the whole rootfs; changes land in it.
    Dir(&'a Path),
}

impl<'a> Root<'a> {
    /// The root of `spec`: its layers, or `dir` when given.
    pub(super) fn new(spec: &'a RunSpec, dir: Option<&'a Path>) -> Root<'a> {
        match dir {
            Some(dir) => Root::Dir(dir),
            None => Root::Overlay {
                lowers: spec.lowerdirs.iter().rev().map(PathBuf::as_path).collect(),
                upper: &spec.upperdir,
                work: &spec.workdir,
            },
        }
    }

    /// The read-only layers, top first (none for a plain directory).
    pub(super) fn lowers_top_first(&self) -> &[&'a Path] {
        match self {
            Root::Overlay { lowers, .. } => lowers,
            Root::Dir(_) => &[],
        }
    }

    /// Where the run's changes land.
    pub(super) fn upper(&self) -> &'a Path {
        match self {
            Root::Overlay { upper, .. } => upper,
            Root::Dir(dir) => dir,
        }
    }

    /// Resolves USER against the image's /etc/passwd and /etc/group, without mounting.
    pub(super) fn resolve_user(&self, user: &str) -> Result<ResolvedUser, ExecError> {
        Ok(match self {
            Root::Dir(dir) => users::resolve_in_rootfs(user, dir)?,
            Root::Overlay { lowers, .. } => users::resolve_in_layers(user, lowers)?,
        })
    }
}

/// How the child builds and enters the rootfs.
pub(super) struct RootfsPlan {
    /// Opened first: the lower layers top first, then upper and work (mount(2) only); or
    /// the one dir.
    pub layers: Vec<Source>,
    /// mount(2) options to try in turn (see [`VARIANTS`]); empty when the root is a plain
    /// directory, bound from `layers[0]`, or the overlay is `detached`.
    pub overlay_opts: Vec<CString>,
    /// The overlay the parent made with the new mount API, at an fd above the numbers the
    /// child replaces before it attaches it (stdio, the status pipe). The parent drops its
    /// copy once the child is forked.
    pub detached: Option<OwnedFd>,
    /// The mountpoint of the rootfs, in the run dir.
    pub target: CString,
    /// Where the child keeps the host's `/` and the rootfs while it is chrooted.
    pub hostroot_fd: i32,
    pub rootfs_fd: i32,
}

impl RootfsPlan {
    /// Plans the layers of `root` (an empty dir of `run_dir` stands in for an empty
    /// chain), the overlay options naming them, and the mount on `run_dir`'s rootfs.
    /// The fds of the host root and the rootfs come last (see
    /// [`RootfsPlan::place_root_fds`]).
    pub(super) fn new(
        root: &Root<'_>,
        run_dir: &RunDir,
        sources: &mut SourcePlan,
    ) -> Result<RootfsPlan, ExecError> {
        let mut layers = Vec::new();
        let mut overlay_opts = Vec::new();
        let mut detached = None;
        match root {
            Root::Dir(dir) => layers.push(sources.unlisted(dir, true)?),
            Root::Overlay {
                lowers,
                upper,
                work,
            } => {
                let scratch;
                let lower_paths = if lowers.is_empty() {
                    scratch = [run_dir.scratch_layer()?];
                    scratch.iter().map(PathBuf::as_path).collect()
                } else {
                    lowers.clone()
                };
                let api = MountApi::current();
                if lower_paths.len() > api.max_lowers() {
                    return Err(SpecError::TooManyLayers(lowers.len()).into());
                }
                match api {
                    MountApi::LowerdirPlus => {
                        let fd = overlay::detached(&lower_paths, upper, work)?;
                        detached =
                            Some(above_stdio(fd).map_err(|e| {
                                ExecError::setup("moving the overlay's descriptor", e)
                            })?);
                    }
                    MountApi::Legacy => {
                        for l in lower_paths.iter().chain([upper, work]) {
                            layers.push(sources.unlisted(l, true)?);
                        }
                        let nums: Vec<i32> = layers.iter().map(|s| s.fd).collect();
                        let (lower_nums, rest) = nums.split_at(nums.len() - 2);
                        for params in VARIANTS {
                            let opts = legacy_options(lower_nums, rest[0], rest[1], params);
                            if opts.len() > MAX_OPTIONS {
                                return Err(SpecError::TooManyLayers(lowers.len()).into());
                            }
                            overlay_opts.push(cstring(&opts)?);
                        }
                    }
                }
            }
        }
        Ok(RootfsPlan {
            layers,
            overlay_opts,
            detached,
            target: cpath(&run_dir.rootfs())?,
            hostroot_fd: -1,
            rootfs_fd: -1,
        })
    }

    /// Takes the fd numbers for the host root and the rootfs, after every source.
    pub(super) fn place_root_fds(&mut self, sources: &mut SourcePlan) {
        self.hostroot_fd = sources.take_fd();
        self.rootfs_fd = sources.take_fd();
    }
}

/// `fd` moved to a number of 10 or more: the child replaces 0-3 (stdio, the status
/// pipe) before it attaches the overlay, and the parent's stdin may be closed.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: duplicating a descriptor we own; the copy is new and ours.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Child side: attaches the overlay the parent made; or opens the layers and mounts the
/// overlay on the target (or binds the plain directory there).
///
/// # Safety
/// Child only, in its own mount namespace.
pub(super) unsafe fn mount(p: &RootfsPlan, st: StatusPipe) {
    // SAFETY: see the function's contract; every string was built by the parent.
    unsafe {
        if let Some(fd) = &p.detached {
            if !syscall::move_mount(fd.as_raw_fd(), &p.target) {
                st.fail(Step::MountOverlay, 0, errno());
            }
            return;
        }
        for (i, s) in p.layers.iter().enumerate() {
            if !sources::open(s) {
                st.fail(Step::OpenLayers, i, errno());
            }
        }
        let mut mounted = p.overlay_opts.is_empty()
            && syscall::mount(
                &p.layers[0].proc_path,
                &p.target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            );
        let mut last = errno();
        for opts in &p.overlay_opts {
            if syscall::mount(c"overlay", &p.target, Some(c"overlay"), 0, Some(opts)) {
                mounted = true;
                break;
            }
            last = errno();
        }
        if !mounted {
            st.fail(Step::MountOverlay, 0, last);
        }
    }
}

/// Child side: keeps fds of the rootfs and of the host's `/`, then chroots into the
/// rootfs, where mountpoints are created and mounts made with image symlinks contained.
///
/// # Safety
/// Child only; call after the sources are open (their numbers come first).
pub(super) unsafe fn enter(p: &RootfsPlan, st: StatusPipe) {
    let dir = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: see the function's contract; the fds opened are ours to move.
    unsafe {
        let root = libc::open(p.target.as_ptr(), dir);
        if root < 0 || !move_fd(root, p.rootfs_fd) {
            st.fail(Step::Chroot, 0, errno());
        }
        let host = libc::open(c"/".as_ptr(), dir);
        if host < 0
            || !move_fd(host, p.hostroot_fd)
            || libc::chroot(p.target.as_ptr()) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            st.fail(Step::Chroot, 0, errno());
        }
        libc::umask(0o022);
    }
}

/// Child side: leaves the chroot for the host root, pivots into the rootfs and drops
/// the host's mounts from view.
///
/// # Safety
/// Child only, after [`enter`].
pub(super) unsafe fn pivot(p: &RootfsPlan, st: StatusPipe) {
    // SAFETY: see the function's contract.
    unsafe {
        if libc::fchdir(p.hostroot_fd) != 0
            || libc::chroot(c".".as_ptr()) != 0
            || libc::fchdir(p.rootfs_fd) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            st.fail(Step::Pivot, 0, errno());
        }
        libc::close(p.hostroot_fd);
        libc::close(p.rootfs_fd);
    }
}
