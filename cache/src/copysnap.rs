//! The copying snapshotter: where overlayfs cannot be used (a store on overlayfs, as in
//! many CI containers), a step works on a plain copy of its rootfs, and its layer is the
//! difference between that copy and the untouched original, written in overlay form
//! (whiteouts as 0/0 char devices) so [`Store::commit_layer`](crate::Store::commit_layer)
//! treats it like an overlay upper dir.
//!
//! It lives with the store because both of its halves are about the store's snapshot
//! format: [`materialize`] reads snapshots (overlay form) as overlay would stack them,
//! and [`diff`] writes what `commit_layer` reads. The solver only chooses it; the
//! executor only runs a step on the directory it is given (`run_in_dir`).

use rbuild_fsutil::whiteout::{self, is_opaque, is_whiteout};
use rbuild_fsutil::{node, time};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Gives `dst` the owner, mode and times of `m`.
fn copy_meta(dst: &Path, m: &std::fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    // Best effort: times are metadata, the diff still sees content and mode.
    let _ = time::copy_times_nofollow(dst, m);
    Ok(())
}

/// Creates a non-directory entry like `src` at `dst` (hard link or copy for files).
fn place(src: &Path, m: &std::fs::Metadata, dst: &Path, hardlink: bool) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
    } else if ft.is_file() {
        if hardlink {
            return std::fs::hard_link(src, dst);
        }
        let mut from = std::fs::File::open(src)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)?;
        io::copy(&mut from, &mut to)?;
    } else {
        node::mknod_like(dst, m)?;
    }
    copy_meta(dst, m)
}

/// Applies snapshot dirs (bottom first) onto `dest`: whiteouts delete, opaque dirs hide
/// what lower layers put there. With `hardlink`, files are linked, not copied (only for
/// trees nobody writes to).
pub fn materialize(layers: &[&Path], dest: &Path, hardlink: bool) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for layer in layers {
        let mut dirs = Vec::new();
        for entry in walkdir::WalkDir::new(layer)
            .min_depth(1)
            .sort_by_file_name()
        {
            let entry = entry.map_err(io::Error::from)?;
            let rel = entry.path().strip_prefix(layer).unwrap_or(entry.path());
            let dst = dest.join(rel);
            let m = entry.metadata().map_err(io::Error::from)?;
            if is_whiteout(&m) {
                remove_any(&dst)?;
                continue;
            }
            if m.is_dir() {
                match std::fs::symlink_metadata(&dst) {
                    Ok(d) if d.is_dir() => {
                        if is_opaque(entry.path()) {
                            for child in std::fs::read_dir(&dst)? {
                                remove_any(&child?.path())?;
                            }
                        }
                    }
                    Ok(_) => {
                        std::fs::remove_file(&dst)?;
                        std::fs::create_dir(&dst)?;
                    }
                    Err(_) => std::fs::create_dir(&dst)?,
                }
                dirs.push((dst, m));
                continue;
            }
            remove_any(&dst)?;
            place(entry.path(), &m, &dst, hardlink)?;
        }
        for (d, m) in dirs.iter().rev() {
            copy_meta(d, m)?;
        }
    }
    Ok(())
}

/// Whether two non-directory entries differ in anything a layer records.
fn differs(a: &std::fs::Metadata, b: &std::fs::Metadata, pa: &Path, pb: &Path) -> bool {
    if a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.rdev() != b.rdev()
    {
        return true;
    }
    if a.file_type().is_symlink() {
        return std::fs::read_link(pa).ok() != std::fs::read_link(pb).ok();
    }
    a.is_file()
        && (a.size() != b.size() || a.mtime() != b.mtime() || a.mtime_nsec() != b.mtime_nsec())
}

/// Makes sure `upper/rel`'s parent dirs exist, with the metadata they have in `work`.
fn ensure_parents(upper: &Path, work: &Path, rel: &Path) -> io::Result<()> {
    let mut acc = std::path::PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            acc.push(c);
            let u = upper.join(&acc);
            if std::fs::symlink_metadata(&u).is_err() {
                std::fs::create_dir(&u)?;
                copy_meta(&u, &std::fs::symlink_metadata(work.join(&acc))?)?;
            }
        }
    }
    Ok(())
}

/// Writes into `upper` what changed from `base` to `work`: new and changed entries are
/// moved from `work`, deleted ones become whiteouts. `work` is consumed.
pub fn diff(base: &Path, work: &Path, upper: &Path) -> io::Result<()> {
    diff_dir(base, work, upper, Path::new(""))
}

fn diff_dir(base: &Path, work: &Path, upper: &Path, rel: &Path) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(work.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in &names {
        let r = rel.join(name);
        let (w, b) = (work.join(&r), base.join(&r));
        let wm = std::fs::symlink_metadata(&w)?;
        let bm = std::fs::symlink_metadata(&b).ok();
        match (&bm, wm.is_dir()) {
            (Some(bm), true) if bm.is_dir() => {
                if bm.mode() != wm.mode() || bm.uid() != wm.uid() || bm.gid() != wm.gid() {
                    ensure_parents(upper, work, &r)?;
                    let u = upper.join(&r);
                    if std::fs::symlink_metadata(&u).is_err() {
                        std::fs::create_dir(&u)?;
                    }
                    copy_meta(&u, &wm)?;
                }
                diff_dir(base, work, upper, &r)?;
                if let Ok(u) = std::fs::symlink_metadata(upper.join(&r))
                    && u.is_dir()
                {
                    copy_meta(&upper.join(&r), &wm)?;
                }
            }
            (Some(bm), false) if !differs(bm, &wm, &b, &w) => {}
            _ => {
                // New, replaced, or changed: the whole entry (a new dir with its tree).
                ensure_parents(upper, work, &r)?;
                std::fs::rename(&w, upper.join(&r))?;
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(base.join(rel)) {
        for e in rd {
            let name = e?.file_name();
            let r = rel.join(&name);
            if std::fs::symlink_metadata(work.join(&r)).is_err()
                && std::fs::symlink_metadata(upper.join(&r)).is_err()
            {
                ensure_parents(upper, work, &r)?;
                whiteout::make_whiteout(&upper.join(&r))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn materialize_applies_whiteouts_and_diff_finds_changes() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("l1"), t.path().join("l2"));
        std::fs::create_dir_all(l1.join("etc")).unwrap();
        std::fs::write(l1.join("etc/keep"), "k").unwrap();
        std::fs::write(l1.join("etc/gone"), "g").unwrap();
        std::fs::write(l1.join("etc/edit"), "e1").unwrap();
        std::fs::create_dir_all(l2.join("etc")).unwrap();
        whiteout::make_whiteout(&l2.join("etc/gone")).unwrap();
        let base = t.path().join("base");
        materialize(&[&l1, &l2], &base, true).unwrap();
        assert_eq!(names(&base), ["etc", "etc/edit", "etc/keep"]);

        let work = t.path().join("work");
        materialize(&[&base], &work, false).unwrap();
        std::fs::write(work.join("etc/edit"), "e2 longer").unwrap();
        std::fs::remove_file(work.join("etc/keep")).unwrap();
        std::fs::create_dir_all(work.join("new/dir")).unwrap();
        std::fs::write(work.join("new/dir/f"), "f").unwrap();
        // the hard-linked base is untouched by writes to the copy
        assert_eq!(std::fs::read_to_string(l1.join("etc/edit")).unwrap(), "e1");

        let upper = t.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        diff(&base, &work, &upper).unwrap();
        assert_eq!(
            names(&upper),
            ["etc", "etc/edit", "etc/keep", "new", "new/dir", "new/dir/f"]
        );
        let wh = std::fs::symlink_metadata(upper.join("etc/keep")).unwrap();
        assert!(is_whiteout(&wh));
        assert_eq!(
            std::fs::read_to_string(upper.join("etc/edit")).unwrap(),
            "e2 longer"
        );
    }

    #[test]
    fn unchanged_tree_has_empty_diff() {
        let t = tempfile::tempdir().unwrap();
        let l = t.path().join("l");
        std::fs::create_dir_all(l.join("a/b")).unwrap();
        std::fs::write(l.join("a/b/c"), "c").unwrap();
        std::os::unix::fs::symlink("b/c", l.join("a/link")).unwrap();
        let base = t.path().join("base");
        materialize(&[&l], &base, true).unwrap();
        let work = t.path().join("work");
        materialize(&[&base], &work, false).unwrap();
        let upper = t.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        diff(&base, &work, &upper).unwrap();
        assert!(names(&upper).is_empty(), "{:?}", names(&upper));
    }
}
