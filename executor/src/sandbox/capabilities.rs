//! Capabilities: the child keeps the policy's set in its bounding, effective and
//! permitted sets, and none inheritable or ambient (as moby does since CVE-2022-24769).
//! The set is first cut to what this process holds: in a restricted CI container some
//! of Docker's defaults (e.g. NET_RAW, MKNOD) may be missing, and asking for them would
//! fail the run.

use super::protocol::{StatusPipe, Step};
use super::syscall::errno;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two [`CapData`].
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Every capability's name, at its number.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of the capability called `name` (`CAP_SYS_ADMIN`).
pub(super) fn by_name(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// Parent side: this process's permitted capabilities (all bits when unknown).
pub(super) fn permitted() -> u64 {
    let hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget fills two CapData entries for the v3 header.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return u64::MAX;
    }
    u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32)
}

/// Child side: bounding set and effective/permitted to `mask`; inheritable and
/// ambient empty.
///
/// # Safety
/// Child only.
pub(super) unsafe fn apply(mask: u64, st: StatusPipe) {
    // SAFETY: see the function's contract; the structs match the v3 ABI.
    unsafe {
        for cap in 0..64u32 {
            if mask & (1u64 << cap) != 0 {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                if errno() == libc::EINVAL {
                    break; // past the kernel's last capability
                }
                st.fail(Step::Capabilities, cap as usize, errno());
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let hdr = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let lo = mask as u32;
        let hi = (mask >> 32) as u32;
        let data = [
            CapData {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            CapData {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
            st.fail(Step::Capabilities, 64, errno());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_at_their_numbers() {
        assert_eq!(by_name("CAP_CHOWN"), Some(0));
        assert_eq!(by_name("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(by_name("CAP_SYSLOG"), Some(34));
        assert_eq!(by_name("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(by_name("CAP_NOPE"), None);
    }

    #[test]
    fn permitted_caps_match_proc_status() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let prm = status
            .lines()
            .find_map(|l| l.strip_prefix("CapPrm:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(permitted(), prm);
    }
}
