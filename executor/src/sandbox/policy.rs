//! The sandbox policy: what a RUN step may see and do, as data. Today it is always
//! Docker's default for a build step; the concern modules enforce it, and
//! [`Plan::build`](super::plan::Plan::build) is where it is applied to a run.
//!
//! This is the seam for what is still to come: a seccomp profile, resource limits and a
//! cgroup per RUN (issue 9) are more fields here, applied by modules of their own;
//! rootless or chroot isolation (issue 14) is another constructor, with a user
//! namespace among the `namespaces` and host devices bound rather than created.

use crate::spec::Network;
use std::ffi::CStr;

/// A character device the container's /dev gets (created with mknod, or bound from
/// the host's node where mknod is not allowed).
pub(super) struct HostDevice {
    pub name: &'static str,
    pub major: u32,
    pub minor: u32,
}

/// What the sandbox allows.
pub(super) struct Policy {
    /// The namespaces the process gets of its own (`CLONE_NEW*` flags).
    pub namespaces: libc::c_int,
    /// Capabilities kept in the bounding, effective and permitted sets (bit n = cap n);
    /// cut at plan time to those this process holds.
    pub capabilities: u64,
    /// The device nodes of /dev.
    pub devices: &'static [HostDevice],
    /// Kernel paths hidden behind /dev/null or an empty read-only tmpfs.
    pub masked_paths: &'static [&'static CStr],
    /// Kernel paths made read-only.
    pub readonly_paths: &'static [&'static CStr],
}

impl Policy {
    /// Docker's defaults for a RUN step with `network`.
    pub(super) fn docker_default(network: Network) -> Policy {
        let mut namespaces = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP;
        if network == Network::None {
            namespaces |= libc::CLONE_NEWNET;
        }
        Policy {
            namespaces,
            capabilities: DEFAULT_CAPS.iter().fold(0u64, |m, c| m | (1u64 << c)),
            devices: &HOST_DEVICES,
            masked_paths: &MASKED,
            readonly_paths: &READONLY,
        }
    }

    /// Whether the process gets a network namespace of its own (then only `lo`, up).
    pub(super) fn private_network(&self) -> bool {
        self.namespaces & libc::CLONE_NEWNET != 0
    }
}

/// Docker's default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
/// SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
/// Never "all": CAP_SYS_RESOURCE, for one, is not even in some hosts' bounding set.
const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

const HOST_DEVICES: [HostDevice; 6] = [
    dev("null", 1, 3),
    dev("zero", 1, 5),
    dev("full", 1, 7),
    dev("random", 1, 8),
    dev("urandom", 1, 9),
    dev("tty", 5, 0),
];

const fn dev(name: &'static str, major: u32, minor: u32) -> HostDevice {
    HostDevice { name, major, minor }
}

/// Docker's default masked paths.
const MASKED: [&CStr; 11] = [
    c"/proc/asound",
    c"/proc/acpi",
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
    c"/proc/scsi",
    c"/sys/firmware",
    c"/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths: the process runs as real root, so a
/// writable /proc/sys would change the host's kernel settings.
const READONLY: [&CStr; 5] = [
    c"/proc/bus",
    c"/proc/fs",
    c"/proc/irq",
    c"/proc/sys",
    c"/proc/sysrq-trigger",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_mask_is_dockers_default_set() {
        let m = Policy::docker_default(Network::Host).capabilities;
        assert_eq!(m.count_ones(), 14);
        assert_eq!(m & (1 << 21), 0, "no CAP_SYS_ADMIN");
        assert_eq!(m & (1 << 24), 0, "no CAP_SYS_RESOURCE");
        assert_ne!(m & (1 << 0), 0, "CAP_CHOWN");
    }

    #[test]
    fn network_none_is_a_private_namespace() {
        assert!(Policy::docker_default(Network::None).private_network());
        let host = Policy::docker_default(Network::Host);
        assert!(!host.private_network());
        assert_ne!(host.namespaces & libc::CLONE_NEWPID, 0);
    }
}
