//! The sandbox policy: what a RUN step may see and do, as data: Docker's default for a
//! build step, or buildx's insecure entitlement (`RUN --security=insecure`). The
//! concern modules enforce it, and [`Plan::build`](super::plan::Plan::build) is where it
//! is applied to a run. Resource limits and the cgroup are not a matter of policy:
//! every run gets them, from its [`RunSpec`](crate::RunSpec).
//!
//! Rootless or chroot isolation (issue 14) would be another constructor, with a user
//! namespace among the `namespaces` and host devices bound rather than created.

use crate::spec::{Network, Security};
use std::ffi::{CStr, CString};
use std::sync::OnceLock;

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
    pub masked_paths: Vec<CString>,
    /// Kernel paths made read-only.
    pub readonly_paths: Vec<CString>,
    /// Docker's seccomp profile, compiled for the step's capabilities.
    pub seccomp: bool,
    /// `no_new_privs`: setuid binaries and file capabilities give nothing more.
    pub no_new_privs: bool,
    /// /sys (and the cgroup2 tree in it) writable.
    pub writable_sys: bool,
}

impl Policy {
    /// The policy for a RUN step with `network` and `security`.
    pub(super) fn for_run(network: Network, security: Security) -> Policy {
        match security {
            Security::Sandbox => Policy::docker_default(network),
            Security::Insecure => Policy::insecure(network),
        }
    }

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
            masked_paths: masked_paths(),
            readonly_paths: READONLY.iter().map(|p| CString::from(*p)).collect(),
            seccomp: true,
            no_new_privs: true,
            writable_sys: false,
        }
    }

    /// buildx's insecure entitlement: the same namespaces, every capability rbuild
    /// holds, no seccomp filter and no `no_new_privs`, nothing masked or read-only,
    /// /sys writable.
    pub(super) fn insecure(network: Network) -> Policy {
        Policy {
            capabilities: u64::MAX,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            seccomp: false,
            no_new_privs: false,
            writable_sys: true,
            ..Policy::docker_default(network)
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

/// Docker's default masked paths: kernel memory, keyrings, timing and interrupt
/// counters that leak what other tenants do, firmware tables, power meters
/// (GHSA-jq35-85cj-fj4p) — plus, per CPU, [`thermal_throttle`].
const MASKED: [&CStr; 12] = [
    c"/proc/acpi",
    c"/proc/asound",
    c"/proc/interrupts",
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/sched_debug",
    c"/proc/scsi",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/sys/devices/virtual/powercap",
    c"/sys/firmware",
];

/// Docker's masked paths, with the thermal-throttle counters of this machine's CPUs
/// (they leak what other tenants run, GHSA-6fw5-f8r9-fgfm); found once.
fn masked_paths() -> Vec<CString> {
    static THERMAL: OnceLock<Vec<CString>> = OnceLock::new();
    let thermal = THERMAL.get_or_init(|| {
        let possible =
            std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
        cpu_list(&possible)
            .into_iter()
            .map(|cpu| format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"))
            .filter(|p| std::path::Path::new(p).exists())
            .filter_map(|p| CString::new(p).ok())
            .collect()
    });
    MASKED
        .iter()
        .map(|p| CString::from(*p))
        .chain(thermal.iter().cloned())
        .collect()
}

/// The CPUs of a kernel CPU list (`0-3,8,10-11`).
fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            // A bound on a list the kernel wrote, so a bad file cannot make a huge one.
            out.extend(a..=b.min(a.saturating_add(4096)));
        }
    }
    out
}

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
    fn insecure_lifts_the_filter_and_the_masks() {
        let sandbox = Policy::for_run(Network::Host, Security::Sandbox);
        assert!(sandbox.seccomp && sandbox.no_new_privs && !sandbox.writable_sys);
        let masked: Vec<_> = sandbox
            .masked_paths
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect();
        for p in ["/proc/kcore", "/proc/interrupts", "/sys/firmware"] {
            assert!(masked.contains(&p), "{p}");
        }
        assert_eq!(sandbox.readonly_paths.len(), 5);
        let insecure = Policy::for_run(Network::Host, Security::Insecure);
        assert!(!insecure.seccomp && !insecure.no_new_privs && insecure.writable_sys);
        assert!(insecure.masked_paths.is_empty() && insecure.readonly_paths.is_empty());
        assert_eq!(insecure.capabilities, u64::MAX);
        assert_eq!(insecure.namespaces, sandbox.namespaces);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(cpu_list("0\n"), vec![0]);
        assert!(cpu_list("").is_empty());
    }

    #[test]
    fn network_none_is_a_private_namespace() {
        assert!(Policy::docker_default(Network::None).private_network());
        let host = Policy::docker_default(Network::Host);
        assert!(!host.private_network());
        assert_ne!(host.namespaces & libc::CLONE_NEWPID, 0);
    }
}
