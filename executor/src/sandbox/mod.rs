//! The container: one RUN step in new namespaces over its rootfs, a module per
//! kernel concern.
//!
//! How [`run`] works, in order:
//! 1. The parent resolves USER against the layer stack without mounting it (overlay
//!    lookup emulated: whiteouts, opaque dirs, symlinks inside the root), writes
//!    hosts/resolv.conf/hostname into a private run dir (`rundir`), makes the run's
//!    cgroup with its pids limit (`cgroup`; v2, or v1 pids and memory hierarchies, or
//!    none with a warning) and builds the [`Plan`](plan::Plan): every string, path, fd
//!    number, rlimit and seccomp program (`seccomp`, compiled from the profile in
//!    `executor/seccomp/`) the child will need, with the sandbox
//!    [`Policy`](policy::Policy) applied.
//! 2. A raw `clone` (fork-like) creates the child in new mount, pid, ipc, uts (and net
//!    for [`Network::None`](crate::Network::None)) namespaces (`namespaces`). Until
//!    `execve` the child runs only raw syscalls (`child`, `syscall`), so forking from a
//!    multi-threaded tokio process is safe; it reports on a status pipe (`protocol`).
//! 3. The child writes itself into its cgroup and makes a cgroup namespace rooted there,
//!    makes `/` private, attaches the overlay *inside its own mount namespace* (made by
//!    the parent with one `lowerdir+` per layer, up to 500; or, on kernels before 6.8,
//!    mounted by the child with layers passed as `/proc/self/fd/N`, about 200 in the
//!    one-page option limit; `rootfs`, `sources`), writes secret files on a tmpfs of its
//!    own (`secrets`), chroots into it to create missing mountpoints
//!    (`mountpoints`) and mount /proc, /dev (`devices`), /sys (ro), the /etc files and
//!    the caller's mounts with image symlinks contained (`mounts`), masks kernel paths
//!    as Docker does (`kernel_paths`), then pivot_roots and drops the host's mounts.
//! 4. It sets its rlimits (`rlimits`), cuts its capabilities to Docker's default set
//!    (`capabilities`), sets groups/gid/uid, then `no_new_privs` and the seccomp filter,
//!    last, and the command becomes pid 1 (`process`). When it exits the kernel kills
//!    everything else in its pid namespace and the mount namespace (overlay included)
//!    goes with it; nothing needs unmounting on the host.
//! 5. The parent streams stdout/stderr, SIGKILLs pid 1 on cancel, reaps it (`parent`),
//!    reads the cgroup's peak memory and pids events and removes it, and removes from
//!    the upper dir the empty mountpoints the child had to create (and parents copied
//!    up only for them), so the upper dir is the diff.
//!
//! A command for another platform ([`RunSpec::platform`](crate::RunSpec)) runs the same
//! way: the kernel hands its binaries to the emulator registered with binfmt_misc;
//! `emulation` checks, before anything is made, that one is there.
//!
//! `RUN --security=insecure` ([`Security::Insecure`](crate::Security::Insecure)) skips
//! the seccomp filter, `no_new_privs` and the masked paths and keeps every capability;
//! namespaces, rlimits and the cgroup stay.

mod capabilities;
mod cgroup;
mod child;
mod chroot;
mod devices;
pub mod emulation;
pub use chroot::{chroot_isolation, use_chroot_isolation};
mod kernel_paths;
mod mountpoints;
mod mounts;
mod namespaces;
mod parent;
mod plan;
mod policy;
mod process;
mod protocol;
mod rlimits;
mod rootfs;
mod rundir;
mod seccomp;
mod secrets;
mod sources;
mod syscall;
mod userns;

use crate::error::{ExecError, SpecError};
use crate::overlay::clear_volatile_marker;
use crate::spec::{CancelToken, RunExit, RunSpec, Stream};
use cgroup::RunCgroup;
use plan::{Inputs, Plan};
use policy::Policy;
use protocol::Report;
use rootfs::Root;
use rundir::RunDir;
use std::path::Path;

/// Runs the command and returns how it exited (128+signal when killed by a signal)
/// and what its cgroup measured. Blocking; output is delivered as it comes.
pub fn run(
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunExit, ExecError> {
    let r = run_impl(spec, None, cancel, output);
    // The container (and with it its mount namespace) is gone.
    clear_volatile_marker(&spec.workdir);
    r
}

/// Like [`run`], but over a plain writable directory holding the whole
/// rootfs (the copying-snapshotter fallback where overlayfs cannot be used):
/// `spec.lowerdirs`, `upperdir` and `workdir` are ignored and changes land in
/// `rootfs` itself. Mountpoints created for the run are removed again.
pub fn run_in_dir(
    rootfs: &Path,
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunExit, ExecError> {
    if chroot_isolation() {
        return chroot::run(rootfs, spec, cancel, output);
    }
    run_impl(spec, Some(rootfs), cancel, output)
}

fn run_impl(
    spec: &RunSpec,
    dir: Option<&Path>,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunExit, ExecError> {
    if spec.args.first().is_none_or(String::is_empty) {
        return Err(SpecError::NoCommand.into());
    }
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    if let Some(p) = &spec.platform {
        emulation::emulator_for(p)?;
    }
    let root = Root::new(spec, dir);
    let user = root.resolve_user(&spec.user)?;
    let hostname = hostname(spec)?;
    let run_dir = RunDir::create(hostname, &spec.extra_hosts)?;
    // Removed when it drops, on every path out of here (after the child is reaped).
    let (cgroup, warning) = RunCgroup::create(&spec.cgroup)?;
    let inputs = Inputs {
        spec,
        root: &root,
        user: &user,
        hostname,
        run_dir: &run_dir,
        cgroup_procs: cgroup
            .as_ref()
            .map(RunCgroup::procs_fds)
            .unwrap_or_default(),
    };
    let policy = Policy::for_run(spec.network, spec.security);
    let mut plan = Plan::build(&inputs, &policy)?;

    // The cgroup namespace is the child's to make, once it is in its cgroup.
    let running = parent::spawn(&plan, policy.namespaces & !libc::CLONE_NEWCGROUP)?;
    // The child has its own copy of the overlay's fd; ours would keep the overlay (and its
    // upper dir) alive after the child's mount namespace is gone.
    drop(plan.rootfs.detached.take());
    let exited = parent::supervise(running, cancel, output)?;
    let usage = cgroup.as_ref().map(RunCgroup::usage).unwrap_or_default();
    drop(cgroup);
    let report = Report::read(&exited.status_bytes, plan.mountpoints.len());
    mountpoints::cleanup(
        root.upper(),
        root.lowers_top_first(),
        &plan.mountpoints,
        &report.created,
    );
    let code = parent::outcome(spec, &plan, &exited, &report)?;
    Ok(RunExit {
        code,
        peak_memory: usage.peak_memory,
        pids_limit_reached: usage.pids_limit_reached,
        warning,
        own_ids_only: userns::setgroups_denied(),
    })
}

/// The container's hostname: the spec's, or `rbuild`.
fn hostname(spec: &RunSpec) -> Result<&str, SpecError> {
    let hostname = if spec.hostname.is_empty() {
        "rbuild"
    } else {
        spec.hostname.as_str()
    };
    if hostname.len() > 64 {
        return Err(SpecError::HostnameTooLong(hostname.to_string()));
    }
    Ok(hostname)
}
