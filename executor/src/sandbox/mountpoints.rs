//! Mountpoints the image lacks. Before a mount the child creates each missing
//! component of its target (a directory, or an empty file for a file bind) and reports
//! it; after the run the parent removes those it created from the upper dir, and the
//! parents copied up only to hold them, so they never become part of the layer.

use super::protocol::{Message, StatusPipe};
use super::syscall::errno;
use crate::cstr::cstring;
use crate::error::SpecError;
use crate::rootpath::{lookup_in_layers, normalize};
use rbuild_fsutil::whiteout::is_opaque;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One component of a mount target, created when missing.
pub(super) struct Mountpoint {
    /// Absolute container path.
    path: CString,
    /// Relative form, for the cleanup in the upper dir.
    rel: String,
    dir: bool,
}

/// Every mountpoint component of a run's mounts, each once (mounts share parents).
#[derive(Default)]
pub(super) struct Mountpoints(Vec<Mountpoint>);

impl Mountpoints {
    /// Registers the components of `target`, the last one a file when `file` is set;
    /// returns their indices, outermost first.
    pub(super) fn add(&mut self, target: &str, file: bool) -> Result<Vec<usize>, SpecError> {
        let comps = normalize(target);
        let mut out = Vec::new();
        for i in 0..comps.len() {
            let rel = comps[..=i].join("/");
            let dir = !(file && i + 1 == comps.len());
            let idx = match self.0.iter().position(|c| c.rel == rel) {
                Some(idx) => idx,
                None => {
                    self.0.push(Mountpoint {
                        path: cstring(&format!("/{rel}"))?,
                        rel,
                        dir,
                    });
                    self.0.len() - 1
                }
            };
            out.push(idx);
        }
        Ok(out)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Child side, chrooted in the rootfs: creates the missing mountpoints `indices` and
/// reports each one created. False (errno set) when one cannot be created.
///
/// # Safety
/// Child only.
pub(super) unsafe fn ensure(all: &Mountpoints, indices: &[usize], st: StatusPipe) -> bool {
    // SAFETY: see the function's contract; the paths were built by the parent.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        for &i in indices {
            let c = &all.0[i];
            if libc::lstat(c.path.as_ptr(), &mut stat) == 0 {
                continue;
            }
            if errno() != libc::ENOENT {
                return false;
            }
            let ok = if c.dir {
                libc::mkdir(c.path.as_ptr(), 0o755) == 0
            } else {
                let fd = libc::open(
                    c.path.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd >= 0
            };
            if !ok {
                return false;
            }
            st.send(Message::Created { index: i as u32 });
        }
        true
    }
}

/// Where a mountpoint at container path `rel` lives in the upper dir: its parent is
/// resolved in the merged view, since the image may route it through a symlink
/// (e.g. `/etc -> /private/etc`).
fn upper_path(upper: &Path, lowers_top_first: &[&Path], rel: &str) -> PathBuf {
    let Some((parent, name)) = rel.rsplit_once('/') else {
        return upper.join(rel);
    };
    let mut layers = vec![upper];
    layers.extend_from_slice(lowers_top_first);
    match lookup_in_layers(&layers, parent) {
        Ok(Some(p)) if p.starts_with(upper) => p.join(name),
        _ => upper.join(rel),
    }
}

/// Parent side, after the run: removes from `upper` the mountpoints the child
/// `created` (still empty), and the parents that were only copied up because of them.
pub(super) fn cleanup(
    upper: &Path,
    lowers_top_first: &[&Path],
    all: &Mountpoints,
    created: &[bool],
) {
    let empty_dir = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
            && std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
            && !is_opaque(p)
    };
    let mut order: Vec<usize> = (0..all.0.len())
        .filter(|&i| created.get(i).copied().unwrap_or(false))
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(all.0[i].rel.matches('/').count()));
    for i in order {
        let Mountpoint { rel, dir, .. } = &all.0[i];
        let p = upper_path(upper, lowers_top_first, rel);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let removed = if *dir {
            empty_dir(&p) && std::fs::remove_dir(&p).is_ok()
        } else {
            m.is_file() && m.len() == 0 && std::fs::remove_file(&p).is_ok()
        };
        if !removed {
            continue;
        }
        // Parents that exist below were only copied up to hold the mountpoint: drop
        // them while they are empty and still look like the lower dir.
        let mut d = p.parent();
        while let Some(dir) = d.filter(|d| *d != upper && d.starts_with(upper)) {
            let Ok(rel) = dir.strip_prefix(upper) else {
                break;
            };
            let copied_up = lookup_in_layers(lowers_top_first, &rel.to_string_lossy())
                .ok()
                .flatten()
                .and_then(|l| std::fs::symlink_metadata(l).ok())
                .zip(std::fs::symlink_metadata(dir).ok())
                .is_some_and(|(l, m)| {
                    l.is_dir() && l.mode() == m.mode() && l.uid() == m.uid() && l.gid() == m.gid()
                });
            if !(copied_up && empty_dir(dir) && std::fs::remove_dir(dir).is_ok()) {
                break;
            }
            d = dir.parent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountpoints_are_shared_between_targets() {
        let mut m = Mountpoints::default();
        let a = m.add("/etc/hosts", true).unwrap();
        let b = m.add("/etc/hostname", true).unwrap();
        assert_eq!(a[0], b[0]);
        assert_eq!(m.len(), 3);
        assert!(m.0[0].dir && !m.0[1].dir);
        assert_eq!(m.0[1].path.as_bytes(), b"/etc/hosts");
    }

    #[test]
    fn cleanup_removes_only_what_was_created() {
        let d = tempfile::tempdir().unwrap();
        let (upper, lower) = (d.path().join("u"), d.path().join("l"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("proc")).unwrap();
        std::fs::create_dir_all(upper.join("dev")).unwrap();
        std::fs::write(upper.join("dev/kept"), "").unwrap();
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        std::fs::write(upper.join("etc/hostname"), "user wrote this").unwrap();
        let perm = std::fs::metadata(lower.join("etc")).unwrap().permissions();
        std::fs::set_permissions(upper.join("etc"), perm).unwrap();
        // proc, dev, etc, etc/hosts, etc/hostname
        let mut all = Mountpoints::default();
        all.add("/proc", false).unwrap();
        all.add("/dev", false).unwrap();
        all.add("/etc/hosts", true).unwrap();
        all.add("/etc/hostname", true).unwrap();
        let created = [true, true, false, true, true];
        cleanup(&upper, &[lower.as_path()], &all, &created);
        assert!(!upper.join("proc").exists());
        assert!(upper.join("dev/kept").exists(), "non-empty dir stays");
        assert!(!upper.join("etc/hosts").exists());
        assert!(upper.join("etc/hostname").exists(), "non-empty file stays");
        std::fs::remove_file(upper.join("etc/hostname")).unwrap();
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        cleanup(&upper, &[lower.as_path()], &all, &created);
        assert!(
            !upper.join("etc").exists(),
            "copied-up parent with lower's metadata goes"
        );
    }
}
