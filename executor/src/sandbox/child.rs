//! The child, from clone to exec: pid 1 of its new namespaces, walking the plan in
//! order. It makes only raw syscalls (no allocation, no glibc state such as locks or
//! the setxid thread list, which a fork of a multi-threaded process inherits in an
//! undefined state), reports on the status pipe, and exits 127 at the first failure.

use super::mounts::MountKind;
use super::plan::Plan;
use super::process::{self, ChildFds};
use super::protocol::Step;
use super::syscall::errno;
use super::{capabilities, cgroup, devices, kernel_paths, mountpoints, mounts, namespaces};
use super::{rlimits, rootfs, seccomp, secrets, sources};

/// Sets the container up as `p` says and execs its process.
///
/// # Safety
/// Must only be called in the child of a raw clone (`namespaces::clone`); uses only
/// async-signal-safe syscalls and the parent's pre-built plan.
pub(super) unsafe fn main(p: &Plan, fds: &ChildFds) -> ! {
    // SAFETY: the contract above is every step's contract.
    unsafe {
        process::reset_signals();
        process::watch_parent(fds);
        // Into the run's cgroup before anything else runs (or forks), then a cgroup
        // namespace rooted there.
        let joined = cgroup::join(&p.cgroup_procs);
        let st = process::setup_stdio(&p.process, fds);
        if let Err((i, e)) = joined {
            st.fail(Step::Cgroup, i, e);
        }
        if p.cgroup_namespace {
            namespaces::unshare_cgroup(st);
        }

        mounts::make_private(st);
        if p.private_network {
            namespaces::loopback_up(st);
        }
        namespaces::set_hostname(&p.hostname, st);

        // Layers and mount sources are opened inside the new mount namespace.
        rootfs::mount(&p.rootfs, st);
        secrets::write_all(&p.secrets, st);
        let opened = sources::open_all(&p.sources, st);
        rootfs::enter(&p.rootfs, st);
        process::make_workdir(&p.process, st);

        for (i, m) in p.mounts.iter().enumerate() {
            if !mountpoints::ensure(&p.mountpoints, &m.mountpoints, st) {
                if m.kind.optional() {
                    continue;
                }
                st.fail(Step::Mountpoint, i, errno());
            }
            mounts::mount(i, m, &p.sources, &opened, st);
            if matches!(m.kind, MountKind::Dev) {
                devices::populate(&p.devices, &p.shm_options, &p.sources, &opened, st);
            }
        }
        kernel_paths::protect(&p.readonly_paths, &p.masked_paths, st);

        rootfs::pivot(&p.rootfs, st);
        process::enter_workdir(&p.process, st);
        rlimits::apply(&p.rlimits, st);
        capabilities::apply(p.capabilities, st);
        process::set_user(&p.process, st);
        // Last, so no setup step is filtered; from here on only the exec.
        seccomp::install(p.no_new_privs, p.seccomp.as_ref(), st);
        process::exec(&p.process, st)
    }
}
