//! Merging a stack of snapshot dirs (overlay form) into one directory, as overlay shows
//! them: walked top layer first, so each entry is copied once, from the layer that wins
//! (a file overwritten ten times is not copied ten times). A whiteout hides the name in
//! every layer below it; an opaque directory hides what layers below it put there; a
//! non-directory hides a directory below it and the other way round. The topmost layer's
//! directory gives a directory its owner, mode, times and xattrs.
//!
//! Two uses, one walk:
//! - a flattened snapshot (`flatten.rs`, no base): the merged tree, with no whiteouts or
//!   opaque marks, since nothing lies below it;
//! - a squashed layer (`squash.rs`, over a base stack): the merged upper layers in
//!   overlay form, resolved against the base: a deletion is kept as a whiteout only where
//!   the base shows something at that path, and a directory that hid lower content is
//!   marked opaque only where the base shows a directory there.
//!
//! Copies keep owner, mode, times and xattrs (overlay's own xattrs left out); files that
//! are one inode under several visible names stay hard links of each other; file data
//! goes through `copy_file_range` (shared extents where the filesystem can).

use crate::error::{CacheError, IoContext};
use rbuild_fsutil::whiteout::{self, is_opaque, is_overlay_xattr, is_whiteout};
use rbuild_fsutil::{node, time, xattr};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the merged view holds at one name of a directory.
enum Entry {
    /// Deleted by a whiteout in this layer (index into the upper stack).
    Gone(usize),
    /// A non-directory from this layer.
    Leaf(usize),
    /// A directory made of these layers (top first); `closed` when something in the
    /// stack (an opaque mark, a whiteout, a non-directory) hides what lies below them.
    Dir { layers: Vec<usize>, closed: bool },
}

/// Where a name of a base directory leads.
enum Found {
    Nothing,
    Leaf,
    /// A directory, present in these layers of the base (top first).
    Dir(Vec<usize>),
}

/// Merges `upper` (snapshot dirs, top first) into `dest` (an existing, empty dir),
/// resolved against `base` (top first; empty for a flattened snapshot).
pub(crate) fn merge(upper: &[&Path], base: &[&Path], dest: &Path) -> Result<(), CacheError> {
    let mut m = Merger {
        upper,
        base,
        links: HashMap::new(),
    };
    let root = Path::new("");
    let (upper_root, _) = m.dir_layers(upper, (0..upper.len()).collect(), root)?;
    let base_root = (!base.is_empty())
        .then(|| m.dir_layers(base, (0..base.len()).collect(), root))
        .transpose()?
        .map(|(l, _)| l);
    m.merge_dir(root, &upper_root, base_root.as_deref(), dest)?;
    if let Some(&top) = upper_root.first() {
        let top = upper[top];
        let meta = std::fs::symlink_metadata(top).ctx("stat", top)?;
        copy_meta(top, &meta, dest, false)?;
    }
    Ok(())
}

struct Merger<'a> {
    upper: &'a [&'a Path],
    base: &'a [&'a Path],
    /// Files seen with more than one link: (dev, inode) → where the first copy went.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Merger<'_> {
    /// The layers of `candidates` (top first) in which `rel` is a directory that shows,
    /// cut after the first opaque one; and whether that cut happened.
    fn dir_layers(
        &self,
        stack: &[&Path],
        candidates: Vec<usize>,
        rel: &Path,
    ) -> Result<(Vec<usize>, bool), CacheError> {
        let mut out = Vec::with_capacity(candidates.len());
        for i in candidates {
            let p = stack[i].join(rel);
            out.push(i);
            if is_opaque(&p) {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    fn merge_dir(
        &mut self,
        rel: &Path,
        layers: &[usize],
        base: Option<&[usize]>,
        dest: &Path,
    ) -> Result<(), CacheError> {
        let entries = self.entries(rel, layers)?;
        for (name, entry) in entries {
            let rel_child = rel.join(&name);
            let dst = dest.join(&name);
            match entry {
                Entry::Gone(i) => {
                    let shows = match base {
                        Some(b) => !matches!(self.lookup(b, &rel_child)?, Found::Nothing),
                        None => false,
                    };
                    if shows {
                        let src = self.upper[i].join(&rel_child);
                        let meta = std::fs::symlink_metadata(&src).ctx("stat", &src)?;
                        whiteout::make_whiteout(&dst).ctx("create whiteout", &dst)?;
                        copy_meta(&src, &meta, &dst, false)?;
                    }
                }
                Entry::Leaf(i) => {
                    let src = self.upper[i].join(&rel_child);
                    self.place(&src, &dst)?;
                }
                Entry::Dir { layers, closed } => {
                    let below = match base {
                        Some(b) => match self.lookup(b, &rel_child)? {
                            Found::Dir(l) => Some(l),
                            _ => None,
                        },
                        None => None,
                    };
                    let opaque = closed && below.is_some();
                    std::fs::create_dir(&dst).ctx("create directory", &dst)?;
                    let below = if opaque { None } else { below };
                    self.merge_dir(&rel_child, &layers, below.as_deref(), &dst)?;
                    let src = self.upper[layers[0]].join(&rel_child);
                    let meta = std::fs::symlink_metadata(&src).ctx("stat", &src)?;
                    copy_meta(&src, &meta, &dst, opaque)?;
                }
            }
        }
        Ok(())
    }

    /// The merged entries of directory `rel` of the upper layers `layers` (top first).
    fn entries(
        &self,
        rel: &Path,
        layers: &[usize],
    ) -> Result<BTreeMap<OsString, Entry>, CacheError> {
        let mut out: BTreeMap<OsString, Entry> = BTreeMap::new();
        for &i in layers {
            let dir = self.upper[i].join(rel);
            for ent in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
                let ent = ent.ctx("read directory", &dir)?;
                let name = ent.file_name();
                let p = ent.path();
                match out.get_mut(&name) {
                    None => {
                        let m = std::fs::symlink_metadata(&p).ctx("stat", &p)?;
                        let e = if is_whiteout(&m) {
                            Entry::Gone(i)
                        } else if m.is_dir() {
                            Entry::Dir {
                                layers: vec![i],
                                closed: is_opaque(&p),
                            }
                        } else {
                            Entry::Leaf(i)
                        };
                        out.insert(name, e);
                    }
                    Some(Entry::Dir {
                        layers,
                        closed: closed @ false,
                    }) => {
                        let m = std::fs::symlink_metadata(&p).ctx("stat", &p)?;
                        if m.is_dir() {
                            layers.push(i);
                            *closed = is_opaque(&p);
                        } else {
                            *closed = true;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(out)
    }

    /// What the base shows at `rel`, given the base layers in which its parent is a
    /// directory that shows (top first).
    fn lookup(&self, parent: &[usize], rel: &Path) -> Result<Found, CacheError> {
        let mut dirs = Vec::new();
        for &i in parent {
            let p = self.base[i].join(rel);
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("stat", &p),
            };
            if !m.is_dir() {
                if !dirs.is_empty() {
                    break;
                }
                return Ok(if is_whiteout(&m) {
                    Found::Nothing
                } else {
                    Found::Leaf
                });
            }
            dirs.push(i);
            if is_opaque(&p) {
                break;
            }
        }
        Ok(if dirs.is_empty() {
            Found::Nothing
        } else {
            Found::Dir(dirs)
        })
    }

    /// Copies the non-directory `src` to `dst`, or links it to an earlier copy of the
    /// same inode.
    fn place(&mut self, src: &Path, dst: &Path) -> Result<(), CacheError> {
        let m = std::fs::symlink_metadata(src).ctx("stat", src)?;
        let ft = m.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(src).ctx("read symlink", src)?;
            std::os::unix::fs::symlink(target, dst).ctx("create symlink", dst)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                let key = (m.dev(), m.ino());
                if let Some(first) = self.links.get(&key) {
                    return std::fs::hard_link(first, dst).ctx("link", dst);
                }
                self.links.insert(key, dst.to_path_buf());
            }
            std::fs::copy(src, dst).ctx("copy file to", dst)?;
        } else {
            node::mknod_like(dst, &m).ctx("create node", dst)?;
        }
        copy_meta(src, &m, dst, false)
    }
}

/// Gives `dst` the owner, mode, xattrs (not overlay's own) and times of `src` (whose
/// metadata is `m`); with `opaque`, marks the directory `dst` opaque. Owner first, since
/// chown clears set-id bits and file capabilities.
fn copy_meta(src: &Path, m: &Metadata, dst: &Path, opaque: bool) -> Result<(), CacheError> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).ctx("change owner of", dst)?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx("change mode of", dst)?;
    }
    for name in xattr::list(src).ctx("list xattrs of", src)? {
        if is_overlay_xattr(&name) {
            continue;
        }
        if let Some(v) = xattr::get(src, &name).ctx("read xattr of", src)? {
            xattr::set(dst, &name, &v).ctx("set xattr of", dst)?;
        }
    }
    if opaque {
        whiteout::set_opaque(dst).ctx("mark opaque", dst)?;
    }
    time::copy_times_nofollow(dst, m).ctx("set times of", dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Every entry under `dir` as `path kind`, sorted: `f:content`, `d`, `l:target`, `w`
    /// (whiteout), `d opaque`.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let what = if is_whiteout(&m) {
                "w".to_string()
            } else if m.is_dir() {
                if is_opaque(e.path()) { "d opaque" } else { "d" }.to_string()
            } else if m.file_type().is_symlink() {
                format!("l:{}", std::fs::read_link(e.path()).unwrap().display())
            } else {
                format!("f:{}", std::fs::read_to_string(e.path()).unwrap())
            };
            out.push(format!("{rel} {what}"));
        }
        out
    }

    fn layer(root: &Path, name: &str, entries: &[(&str, &str)]) -> PathBuf {
        let l = root.join(name);
        std::fs::create_dir_all(&l).unwrap();
        for (path, what) in entries {
            let p = l.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match *what {
                "dir" => std::fs::create_dir_all(&p).unwrap(),
                "opaque" => {
                    std::fs::create_dir_all(&p).unwrap();
                    // user.overlay.opaque, so the test needs no CAP_SYS_ADMIN.
                    xattr::set(&p, "user.overlay.opaque", b"y").unwrap();
                }
                "wh" => whiteout::make_whiteout(&p).unwrap(),
                s if s.starts_with("->") => std::os::unix::fs::symlink(&s[2..], &p).unwrap(),
                s => std::fs::write(&p, s).unwrap(),
            }
        }
        l
    }

    /// Layers 1-4 bottom first, exercising every rule.
    fn stack(t: &Path) -> Vec<PathBuf> {
        vec![
            layer(
                t,
                "l1",
                &[
                    ("a/keep", "1"),
                    ("a/gone", "1"),
                    ("a/edit", "1"),
                    ("o/old", "1"),
                    ("x", "file"),
                    ("d/sub/deep", "1"),
                ],
            ),
            layer(
                t,
                "l2",
                &[("a/edit", "2"), ("n/new", "2"), ("x", "wh"), ("d", "wh")],
            ),
            layer(
                t,
                "l3",
                &[
                    ("a/gone", "wh"),
                    ("o", "opaque"),
                    ("o/new", "3"),
                    ("x/in", "3"),
                    ("n/tmp", "3"),
                ],
            ),
            layer(
                t,
                "l4",
                &[("n/tmp", "wh"), ("a/link", "->keep"), ("d/again", "4")],
            ),
        ]
    }

    fn top_first(layers: &[PathBuf]) -> Vec<&Path> {
        layers.iter().rev().map(PathBuf::as_path).collect()
    }

    #[test]
    fn flattening_applies_whiteouts_and_opaque_dirs() {
        let t = tempfile::tempdir().unwrap();
        let layers = stack(t.path());
        let dest = t.path().join("flat");
        std::fs::create_dir(&dest).unwrap();
        merge(&top_first(&layers), &[], &dest).unwrap();
        assert_eq!(
            tree(&dest),
            [
                "a d",
                "a/edit f:2",
                "a/keep f:1",
                "a/link l:keep",
                "d d",
                "d/again f:4",
                "n d",
                "n/new f:2",
                "o d",
                "o/new f:3",
                "x d",
                "x/in f:3",
            ]
        );
    }

    #[test]
    fn squash_keeps_only_what_the_base_needs() {
        // Needs root: the opaque marks it writes are trusted.overlay.opaque.
        let t = tempfile::tempdir().unwrap();
        let layers = stack(t.path());
        let dest = t.path().join("squashed");
        std::fs::create_dir(&dest).unwrap();
        // l1 is the base; l2-l4 are squashed over it.
        merge(&top_first(&layers[1..]), &top_first(&layers[..1]), &dest).unwrap();
        assert_eq!(
            tree(&dest),
            [
                "a d",
                "a/edit f:2",
                "a/gone w",
                "a/link l:keep",
                // d was deleted then made again: its old content must stay hidden.
                "d d opaque",
                "d/again f:4",
                // n/tmp was made and deleted above the base: no whiteout.
                "n d",
                "n/new f:2",
                "o d opaque",
                "o/new f:3",
                // x was a file in the base, now a dir: the dir replaces it.
                "x d",
                "x/in f:3",
            ]
        );
    }

    #[test]
    fn metadata_comes_from_the_top_layer_and_links_stay_links() {
        let t = tempfile::tempdir().unwrap();
        let l1 = layer(t.path(), "l1", &[("d/f", "1"), ("d/g", "1")]);
        let l2 = layer(t.path(), "l2", &[("d/h", "2")]);
        std::fs::hard_link(l1.join("d/f"), l1.join("d/f2")).unwrap();
        std::fs::set_permissions(l2.join("d"), std::fs::Permissions::from_mode(0o750)).unwrap();
        time::set_mtime_nofollow(&l2.join("d"), 1_000_000).unwrap();
        time::set_mtime_nofollow(&l1.join("d/g"), 2_000_000).unwrap();
        let dest = t.path().join("flat");
        std::fs::create_dir(&dest).unwrap();
        merge(&[&l2, &l1], &[], &dest).unwrap();
        let d = std::fs::symlink_metadata(dest.join("d")).unwrap();
        assert_eq!((d.mode() & 0o7777, d.mtime()), (0o750, 1_000_000));
        assert_eq!(
            std::fs::symlink_metadata(dest.join("d/g")).unwrap().mtime(),
            2_000_000
        );
        let (f, f2) = (
            std::fs::symlink_metadata(dest.join("d/f")).unwrap(),
            std::fs::symlink_metadata(dest.join("d/f2")).unwrap(),
        );
        assert_eq!(f.ino(), f2.ino());
        assert_ne!(
            f.ino(),
            std::fs::symlink_metadata(l1.join("d/f")).unwrap().ino(),
            "a copy, never the layer's own inode"
        );
    }
}
