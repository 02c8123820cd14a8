//! A cgroup per RUN step: made by the parent under the configured parent (one leaf
//! for both controllers on cgroup v2, one per hierarchy on v1), bounded in pids,
//! accounting memory; joined by the child itself before it makes its cgroup namespace
//! (it writes `0` to the `cgroup.procs` the parent opened for it); read after the step
//! (peak memory, whether the pids limit was hit) and removed on every path, the run's
//! own or the next run's sweep of leaves whose builder died.
//!
//! Where no controller can be used (none mounted, a read-only cgroupfs, a v2 root
//! with processes of its own that cannot delegate) the step runs without, and the
//! caller gets one line saying what is missing and why.

mod layout;

use crate::error::SpecError;
use crate::spec::CgroupOptions;
use layout::Layout;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Names of this process's leaves: `<pid>-<n>`, so a sweep knows whose they are.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The step's cgroup: its leaf directories, removed when this drops.
pub(super) struct RunCgroup {
    leaves: Vec<Leaf>,
    pids_limit: Option<u64>,
}

/// One leaf directory, with its `cgroup.procs` open for the child.
struct Leaf {
    dir: PathBuf,
    procs: Option<OwnedFd>,
    v2: bool,
    pids: bool,
    memory: bool,
}

/// Why a leaf (or a level above it) could not be made; the step then runs without it
/// and the warning carries this text.
#[derive(Debug, thiserror::Error)]
enum CgroupError {
    #[error("creating {}: {source}", dir.display())]
    Mkdir { dir: PathBuf, source: io::Error },
    #[error("enabling {controllers} in {}: {source}", file.display())]
    Enable {
        controllers: String,
        file: PathBuf,
        source: io::Error,
    },
    #[error("creating cgroups under {}: {source}", parent.display())]
    Leaf { parent: PathBuf, source: io::Error },
    #[error("opening cgroup.procs under {}: {source}", parent.display())]
    Procs { parent: PathBuf, source: io::Error },
    #[error("setting pids.max under {}: {source}", parent.display())]
    PidsMax { parent: PathBuf, source: io::Error },
}

/// What a step's cgroup measured.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub peak_memory: Option<u64>,
    pub pids_limit_reached: Option<u64>,
}

/// The controllers a leaf gets.
#[derive(Clone, Copy)]
struct Want {
    pids: bool,
    memory: bool,
}

impl RunCgroup {
    /// Makes the step's cgroup as `opts` say. Whatever cannot be made is described
    /// in the returned warning; the cgroup is `None` when nothing could.
    pub(super) fn create(
        opts: &CgroupOptions,
    ) -> Result<(Option<RunCgroup>, Option<String>), SpecError> {
        let parent = parent_components(&opts.parent)?;
        if super::userns::rootless() {
            return Ok((None, Some(super::userns::no_cgroup_note(opts.pids_limit))));
        }
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut cg = RunCgroup {
            leaves: Vec::new(),
            pids_limit: opts.pids_limit,
        };
        let (mut no_pids, mut no_memory): (Option<String>, Option<String>) = (None, None);
        match layout::detect() {
            Err(why) => {
                no_pids = Some(why.to_string());
                no_memory = Some(why.to_string());
            }
            Ok(Layout::V2 { root, pids, memory }) => {
                let want = Want { pids, memory };
                match make_v2(&root, &parent, &name, want, opts.pids_limit) {
                    Ok(leaf) => cg.leaves.push(leaf),
                    Err(e) => {
                        no_pids = Some(e.to_string());
                        no_memory = Some(e.to_string());
                    }
                }
                let absent = format!("the cgroup v2 root {} does not offer it", root.display());
                if !pids {
                    no_pids = Some(absent.clone());
                }
                if !memory {
                    no_memory = Some(absent);
                }
            }
            Ok(Layout::V1 { pids, memory }) => {
                let mut hierarchies: Vec<(PathBuf, Want)> = Vec::new();
                if let Some(p) = pids {
                    hierarchies.push((
                        p,
                        Want {
                            pids: true,
                            memory: false,
                        },
                    ));
                }
                match memory {
                    Some(m) => match hierarchies.iter_mut().find(|(p, _)| *p == m) {
                        Some((_, w)) => w.memory = true, // mounted together with pids
                        None => hierarchies.push((
                            m,
                            Want {
                                pids: false,
                                memory: true,
                            },
                        )),
                    },
                    None => no_memory = Some("no cgroup v1 memory hierarchy".into()),
                }
                if !hierarchies.iter().any(|(_, w)| w.pids) {
                    no_pids = Some("no cgroup v1 pids hierarchy".into());
                }
                for (mount, want) in hierarchies {
                    match make_v1(&mount, &parent, &name, want, opts.pids_limit) {
                        Ok(leaf) => cg.leaves.push(leaf),
                        Err(e) => {
                            if want.pids {
                                no_pids = Some(e.to_string());
                            }
                            if want.memory {
                                no_memory = Some(e.to_string());
                            }
                        }
                    }
                }
            }
        }
        let warning = warning(no_pids, no_memory, opts.pids_limit);
        let cg = (!cg.leaves.is_empty()).then_some(cg);
        Ok((cg, warning))
    }

    /// The `cgroup.procs` descriptors the child writes itself into.
    pub(super) fn procs_fds(&self) -> Vec<i32> {
        self.leaves
            .iter()
            .filter_map(|l| l.procs.as_ref().map(AsRawFd::as_raw_fd))
            .collect()
    }

    /// What the step used; read once it is gone.
    pub(super) fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for l in &self.leaves {
            if l.memory {
                let file = if l.v2 {
                    "memory.peak"
                } else {
                    "memory.max_usage_in_bytes"
                };
                u.peak_memory = read_u64(&l.dir.join(file));
            }
            if l.pids && self.pids_limit.is_some() {
                let events = std::fs::read_to_string(l.dir.join("pids.events")).unwrap_or_default();
                let hit = events
                    .lines()
                    .filter_map(|line| line.strip_prefix("max "))
                    .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0));
                if hit {
                    u.pids_limit_reached = self.pids_limit;
                }
            }
        }
        u
    }
}

/// The warning for what is missing, or none.
fn warning(
    no_pids: Option<String>,
    no_memory: Option<String>,
    limit: Option<u64>,
) -> Option<String> {
    let pids_what = match limit {
        Some(n) => format!("not limited to {n} processes"),
        None => "not counted".to_string(),
    };
    match (no_pids, no_memory) {
        (None, None) => None,
        (Some(p), Some(m)) if p == m => Some(format!(
            "RUN steps get no cgroup ({p}): their processes are {pids_what} and their memory is not measured"
        )),
        (Some(p), Some(m)) => Some(format!(
            "RUN steps get no cgroup (pids: {p}; memory: {m}): their processes are {pids_what} and their memory is not measured"
        )),
        (Some(p), None) => Some(format!(
            "RUN steps get no pids cgroup ({p}): their processes are {pids_what}"
        )),
        (None, Some(m)) => Some(format!(
            "RUN steps get no memory cgroup ({m}): their peak memory is not measured"
        )),
    }
}

/// The configured parent as path components: relative to each hierarchy's root, a
/// leading `/` allowed, nothing that climbs out.
fn parent_components(parent: &str) -> Result<Vec<String>, SpecError> {
    let comps: Vec<String> = parent
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    if comps.iter().any(|c| c == ".." || c.contains('\0')) {
        return Err(SpecError::CgroupParent(parent.to_string()));
    }
    Ok(comps)
}

/// A v2 leaf: the controllers enabled for the children of the root and of each
/// parent level, then the leaf itself.
fn make_v2(
    root: &Path,
    parent: &[String],
    name: &str,
    want: Want,
    pids_limit: Option<u64>,
) -> Result<Leaf, CgroupError> {
    let controllers: Vec<&str> = [("pids", want.pids), ("memory", want.memory)]
        .into_iter()
        .filter_map(|(c, w)| w.then_some(c))
        .collect();
    let mut dir = root.to_path_buf();
    enable(&dir, &controllers)?;
    for c in parent {
        dir.push(c);
        mkdir(&dir)?;
        enable(&dir, &controllers)?;
    }
    sweep(&dir);
    Leaf::make(&dir, name, true, want, pids_limit)
}

/// A v1 leaf in the hierarchy mounted at `mount`.
fn make_v1(
    mount: &Path,
    parent: &[String],
    name: &str,
    want: Want,
    pids_limit: Option<u64>,
) -> Result<Leaf, CgroupError> {
    let mut dir = mount.to_path_buf();
    for c in parent {
        dir.push(c);
        mkdir(&dir)?;
    }
    sweep(&dir);
    Leaf::make(&dir, name, false, want, pids_limit)
}

impl Leaf {
    /// Creates `parent/name` and opens its `cgroup.procs`; sets the pids limit.
    fn make(
        parent: &Path,
        name: &str,
        v2: bool,
        want: Want,
        pids_limit: Option<u64>,
    ) -> Result<Leaf, CgroupError> {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|source| CgroupError::Leaf {
            parent: parent.to_path_buf(),
            source,
        })?;
        // From here on the leaf is removed when dropped, whatever fails next.
        let mut leaf = Leaf {
            dir,
            procs: None,
            v2,
            pids: want.pids,
            memory: want.memory,
        };
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(leaf.dir.join("cgroup.procs"))
            .map_err(|source| CgroupError::Procs {
                parent: parent.to_path_buf(),
                source,
            })?;
        leaf.procs = Some(procs.into());
        if let (true, Some(n)) = (want.pids, pids_limit) {
            std::fs::write(leaf.dir.join("pids.max"), n.to_string()).map_err(|source| {
                CgroupError::PidsMax {
                    parent: parent.to_path_buf(),
                    source,
                }
            })?;
        }
        Ok(leaf)
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        self.procs = None;
        remove(&self.dir);
    }
}

/// Removes a leaf. Its processes are gone once the step's pid 1 is reaped (the kernel
/// reaps the rest of the pid namespace before that), but the cgroup may report busy
/// for a moment while their exit is accounted.
fn remove(dir: &Path) {
    for _ in 0..200 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => return, // gone, or not ours to fix: the next sweep tries again
        }
    }
}

/// Removes the leaves under `dir` left by builders that died (killed before they
/// could clean up); a leaf still in use cannot be removed and stays.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((pid, n)) = name.to_str().and_then(|s| s.split_once('-')) else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else {
            continue;
        };
        if pid != me && !alive(pid) {
            // Its processes may still be exiting (killed with their builder): the same
            // short wait as for our own leaves.
            remove(&e.path());
        }
    }
}

/// Whether a process `pid` exists.
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    unsafe {
        libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Err(source) if source.kind() != io::ErrorKind::AlreadyExists => Err(CgroupError::Mkdir {
            dir: dir.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// Makes `controllers` available to the children of `dir` (v2's
/// `cgroup.subtree_control`), writing only those not already there.
fn enable(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    let add: Vec<String> = controllers
        .iter()
        .filter(|c| !have.split_whitespace().any(|h| h == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if add.is_empty() {
        return Ok(());
    }
    std::fs::write(&file, add.join(" ")).map_err(|source| CgroupError::Enable {
        controllers: controllers.join(" and "),
        file: file.clone(),
        source,
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Child side, first thing after the clone: moves itself into each leaf. Returns the
/// index and errno of a write that failed, to be reported once the status pipe is
/// in place: this runs before stdio is set up, so that setting it up cannot clobber a
/// descriptor of ours.
///
/// # Safety
/// Child only.
pub(super) unsafe fn join(procs: &[i32]) -> Result<(), (usize, i32)> {
    for (i, fd) in procs.iter().enumerate() {
        // SAFETY: writing a static byte to a descriptor the parent opened.
        if unsafe { libc::write(*fd, c"0".as_ptr().cast(), 1) } != 1 {
            return Err((i, super::syscall::errno()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_stay_inside_the_hierarchy() {
        assert_eq!(parent_components("rbuild").unwrap(), vec!["rbuild"]);
        assert_eq!(
            parent_components("/ci/rbuild/").unwrap(),
            vec!["ci", "rbuild"]
        );
        assert!(parent_components("").unwrap().is_empty());
        assert!(parent_components("../escape").is_err());
        assert!(parent_components("a/../../b").is_err());
    }

    #[test]
    fn warnings_say_what_is_missing() {
        assert_eq!(warning(None, None, Some(10)), None);
        let w = warning(Some("x".into()), Some("x".into()), Some(10)).unwrap();
        assert_eq!(
            w,
            "RUN steps get no cgroup (x): their processes are not limited to 10 processes and their memory is not measured"
        );
        let w = warning(None, Some("no cgroup v1 memory hierarchy".into()), Some(1)).unwrap();
        assert!(w.starts_with("RUN steps get no memory cgroup"), "{w}");
    }
}
