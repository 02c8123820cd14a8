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
