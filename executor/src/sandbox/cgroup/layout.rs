//! Where this machine keeps the pids and memory controllers, read from
//! `/proc/self/mountinfo`: a cgroup v2 mount whose root offers both (most CI runners
//! today), else the v1 hierarchies they are mounted on (a legacy or hybrid host, whose
//! cgroup2 mount has no controllers), else a v2 mount offering one of them.

use std::path::{Path, PathBuf};

/// The cgroup controllers a run's cgroup uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Layout {
    /// cgroup v2 mounted at `root`, and which of the two it offers.
    V2 {
        root: PathBuf,
        pids: bool,
        memory: bool,
    },
    /// cgroup v1: the mountpoints of the pids and of the memory hierarchy (the same
    /// path when they are mounted together).
    V1 {
        pids: Option<PathBuf>,
        memory: Option<PathBuf>,
    },
}

/// A cgroup filesystem mount.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    path: PathBuf,
    /// `cgroup2`, or `cgroup` with its controllers (v1).
    v2: bool,
    controllers: Vec<String>,
}

/// Why this machine has no cgroup layout to use.
#[derive(Debug, thiserror::Error)]
pub(super) enum LayoutError {
    #[error("reading /proc/self/mountinfo: {0}")]
    Mountinfo(#[source] std::io::Error),
    #[error(
        "no cgroup v2 mount offers the pids or memory controller, and no v1 hierarchy has them"
    )]
    NoControllers,
}

/// This machine's layout, or why there is none to use.
pub(super) fn detect() -> Result<Layout, LayoutError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(LayoutError::Mountinfo)?;
    choose(&cgroup_mounts(&text), |root| {
        std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default()
    })
    .ok_or(LayoutError::NoControllers)
}

/// The layout `mounts` give, with `controllers(root)` reading a v2 root's
/// `cgroup.controllers`; none when they offer neither controller.
fn choose(mounts: &[CgroupMount], controllers: impl Fn(&Path) -> String) -> Option<Layout> {
    let v2: Vec<(PathBuf, bool, bool)> = mounts
        .iter()
        .filter(|m| m.v2)
        .map(|m| {
            let offered = controllers(&m.path);
            let has = |c: &str| offered.split_whitespace().any(|o| o == c);
            (m.path.clone(), has("pids"), has("memory"))
        })
        .collect();
    if let Some((root, ..)) = v2.iter().find(|(_, p, m)| *p && *m) {
        return Some(Layout::V2 {
            root: root.clone(),
            pids: true,
            memory: true,
        });
    }
    let v1 = |c: &str| {
        mounts
            .iter()
            .find(|m| !m.v2 && m.controllers.iter().any(|x| x == c))
            .map(|m| m.path.clone())
    };
    let (pids, memory) = (v1("pids"), v1("memory"));
    if pids.is_some() || memory.is_some() {
        return Some(Layout::V1 { pids, memory });
    }
    v2.into_iter()
        .find(|(_, p, m)| *p || *m)
        .map(|(root, pids, memory)| Layout::V2 { root, pids, memory })
}

/// The cgroup mounts in a mountinfo text, in its order.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent maj:min root mountpoint options [optional…] - fstype source super
            let fields: Vec<&str> = line.split(' ').collect();
            let mountpoint = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let super_options = fields.get(dash + 3).copied().unwrap_or("");
            let v2 = match *fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                path: PathBuf::from(unescape(mountpoint)),
                v2,
                controllers: if v2 {
                    Vec::new()
                } else {
                    super_options.split(',').map(String::from).collect()
                },
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |c: &u8| (b'0'..=b'7').contains(c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(octal) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This project's machines: v1 pids and memory, a cgroup2 mount without controllers.
    const HYBRID: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
42 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A CI runner: cgroup v2 only.
    const UNIFIED: &str = "\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn controllers(root: &Path) -> String {
        match root.to_str() {
            Some("/sys/fs/cgroup") => "cpuset cpu io memory hugetlb pids rdma misc\n".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn hybrid_hosts_use_v1() {
        assert_eq!(
            choose(&cgroup_mounts(HYBRID), controllers),
            Some(Layout::V1 {
                pids: Some("/sys/fs/cgroup/pids".into()),
                memory: Some("/sys/fs/cgroup/memory".into()),
            })
        );
    }

    #[test]
    fn unified_hosts_use_v2() {
        assert_eq!(
            choose(&cgroup_mounts(UNIFIED), controllers),
            Some(Layout::V2 {
                root: "/sys/fs/cgroup".into(),
                pids: true,
                memory: true,
            })
        );
    }

    #[test]
    fn co_mounted_and_partial_and_missing_controllers() {
        let co = "1 0 0:1 / /cg rw - cgroup cgroup rw,memory,pids\n";
        assert_eq!(
            choose(&cgroup_mounts(co), controllers),
            Some(Layout::V1 {
                pids: Some("/cg".into()),
                memory: Some("/cg".into()),
            })
        );
        let none = "1 0 0:1 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(choose(&cgroup_mounts(none), controllers).is_none());
        let only_pids = |_: &Path| "cpu pids\n".to_string();
        assert_eq!(
            choose(&cgroup_mounts(UNIFIED), only_pids),
            Some(Layout::V2 {
                root: "/sys/fs/cgroup".into(),
                pids: true,
                memory: false,
            })
        );
    }

    #[test]
    fn mountpoints_are_unescaped() {
        let line = "1 0 0:1 / /my\\040cgroups rw - cgroup cgroup rw,pids\n";
        assert_eq!(cgroup_mounts(line)[0].path, PathBuf::from("/my cgroups"));
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("end\\04"), "end\\04");
    }
}
