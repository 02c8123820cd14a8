//! The container: one RUN step in new namespaces over its rootfs, a module per
//! kernel concern.
//!
//! How [`run`] works, in order:
//! 1. The parent resolves USER against the layer stack without mounting it (overlay
//!    lookup emulated: whiteouts, opaque dirs, symlinks inside the root), writes
//!    hosts/resolv.conf/hostname into a private run dir (`rundir`) and builds the
//!    [`Plan`](plan::Plan): every string, path and fd number the child will need, with
//!    the sandbox [`Policy`](policy::Policy) applied.
//! 2. A raw `clone` (fork-like) creates the child in new mount, pid, ipc, uts, cgroup
//!    (and net for [`Network::None`](crate::Network::None)) namespaces (`namespaces`).
//!    Until `execve` the child runs only raw syscalls (`child`, `syscall`), so forking
//!    from a multi-threaded tokio process is safe; it reports on a status pipe
//!    (`protocol`).
//! 3. The child makes `/` private, mounts the overlay *inside its own mount namespace*
//!    (layers passed as `/proc/self/fd/N`, so 200+ layers fit in the one-page option
//!    limit; `rootfs`, `sources`), chroots into it to create missing mountpoints
//!    (`mountpoints`) and mount /proc, /dev (`devices`), /sys (ro), the /etc files and
//!    the caller's mounts with image symlinks contained (`mounts`), masks kernel paths
//!    as Docker does (`kernel_paths`), then pivot_roots and drops the host's mounts.
//! 4. Capabilities are cut to Docker's default set (`capabilities`), groups/gid/uid
//!    set, and the command becomes pid 1 (`process`). When it exits the kernel kills
//!    everything else in its pid namespace and the mount namespace (overlay included)
//!    goes with it; nothing needs unmounting on the host.
//! 5. The parent streams stdout/stderr, SIGKILLs pid 1 on cancel, reaps it (`parent`),
//!    and removes from the upper dir the empty mountpoints the child had to create (and
//!    parents copied up only for them), so the upper dir is the diff.

mod capabilities;
mod child;
mod devices;
mod kernel_paths;
mod mountpoints;
mod mounts;
mod namespaces;
mod parent;
mod plan;
mod policy;
mod process;
mod protocol;
mod rootfs;
mod rundir;
mod sources;
mod syscall;

use crate::error::{ExecError, SpecError};
use crate::overlay::clear_volatile_marker;
use crate::spec::{CancelToken, RunSpec, Stream};
use plan::{Inputs, Plan};
use policy::Policy;
use protocol::Report;
use rootfs::Root;
use rundir::RunDir;
use std::path::Path;

/// Runs the command and returns its exit code (128+signal when killed by a
/// signal). Blocking; output is delivered as it comes.
pub fn run(
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<i32, ExecError> {
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
) -> Result<i32, ExecError> {
    run_impl(spec, Some(rootfs), cancel, output)
}

fn run_impl(
    spec: &RunSpec,
    dir: Option<&Path>,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<i32, ExecError> {
    if spec.args.first().is_none_or(String::is_empty) {
        return Err(SpecError::NoCommand.into());
    }
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let root = Root::new(spec, dir);
    let user = root.resolve_user(&spec.user)?;
    let hostname = hostname(spec)?;
    let run_dir = RunDir::create(hostname)?;
    let inputs = Inputs {
        spec,
        root: &root,
        user: &user,
        hostname,
        run_dir: &run_dir,
    };
    // Where a per-run policy (seccomp, rlimits, cgroup, rootless) would be chosen.
    let policy = Policy::docker_default(spec.network);
    let plan = Plan::build(&inputs, &policy)?;

    let running = parent::spawn(&plan, policy.namespaces)?;
    let exited = parent::supervise(running, cancel, output)?;
    let report = Report::read(&exited.status_bytes, plan.mountpoints.len());
    mountpoints::cleanup(
        root.upper(),
        root.lowers_top_first(),
        &plan.mountpoints,
        &report.created,
    );
    parent::outcome(spec, &plan, &exited, &report)
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
