//! Path resolution inside a root directory (or a stack of overlay layers)
//! without ever leaving it: symlinks are followed as the container would see
//! them, with `/` meaning the root. Whiteouts and opaque dirs of the layers are
//! read by `rbuild_fsutil::whiteout`'s rules.

use rbuild_fsutil::whiteout::{is_opaque, is_whiteout};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Same limit as the kernel's.
const MAX_SYMLINKS: usize = 40;

/// Splits a (container) path into normal components, keeping `..` for the
/// resolver to apply against what it has resolved so far.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Normalises a container path to its components, lexically ("/a/./b/../c" → [a, c];
/// `..` stops at the root).
pub(crate) fn normalize(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Resolves `path` inside `root` as if `root` were `/`. Symlinks (absolute or
/// relative, with `..`) are followed but never leave `root`; a missing tail is
/// appended lexically, so the result may not exist (COPY destinations).
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<OsString> = components(Path::new(path));
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&comp);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved.push(comp),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                resolved.push(comp)
            }
            Err(e) => return Err(e),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// Finds the host path that `path` names in the merged view of overlay
/// `layers` (top first), following symlinks inside the merged root. Returns
/// None when it does not exist (or is whited out).
pub(crate) fn lookup_in_layers(layers: &[&Path], path: &str) -> io::Result<Option<PathBuf>> {
    let mut pending: Vec<OsString> = components(Path::new(path));
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    'next: while let Some(comp) = pending.pop() {
        if comp == ".." {
            resolved.pop();
            continue;
        }
        resolved.push(comp);
        // Which layers contribute to the directory holding this component:
        // every layer down to (and including) the first where a prefix is opaque,
        // stopping at a whiteout or a non-directory.
        let mut hit: Option<PathBuf> = None;
        'layers: for layer in layers {
            let mut p = layer.to_path_buf();
            for (i, c) in resolved.iter().enumerate() {
                p.push(c);
                let last = i + 1 == resolved.len();
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if is_whiteout(&m) => break 'layers,
                    Ok(m) if last => {
                        hit = Some(p.clone());
                        let _ = m;
                        break 'layers;
                    }
                    Ok(m) if m.is_dir() => {
                        if is_opaque(&p) && i + 1 < resolved.len() {
                            // Lower layers are hidden below this dir; keep looking
                            // in this layer only.
                            let mut q = p.clone();
                            q.extend(&resolved[i + 1..]);
                            hit = match std::fs::symlink_metadata(&q) {
                                Ok(m) if !is_whiteout(&m) => Some(q),
                                _ => None,
                            };
                            break 'layers;
                        }
                    }
                    Ok(_) => break 'layers, // a file hides lower dirs
                    Err(_) => continue 'layers,
                }
            }
        }
        let Some(hit) = hit else {
            return Ok(None);
        };
        let m = std::fs::symlink_metadata(&hit)?;
        if m.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            resolved.pop();
            let target = std::fs::read_link(&hit)?;
            if target.is_absolute() {
                resolved.clear();
            }
            let mut more = components(&target);
            more.reverse();
            pending.extend(more);
            continue 'next;
        }
        if pending.is_empty() {
            return Ok(Some(hit));
        }
    }
    // The root itself.
    Ok(layers.first().map(|l| l.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_links_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/a", r.join("abs")).unwrap();
        symlink("../../../..", r.join("a/up")).unwrap();
        symlink("b", r.join("a/rel")).unwrap();
        assert_eq!(resolve_in_root(r, "/abs/b").unwrap(), r.join("a/b"));
        assert_eq!(resolve_in_root(r, "a/up/etc").unwrap(), r.join("etc"));
        assert_eq!(
            resolve_in_root(r, "/a/rel/new/x").unwrap(),
            r.join("a/b/new/x")
        );
        assert_eq!(resolve_in_root(r, "/../../a").unwrap(), r.join("a"));
        assert_eq!(resolve_in_root(r, "/").unwrap(), r.to_path_buf());
    }

    #[test]
    fn container_paths_normalise() {
        assert_eq!(normalize("/a/./b/../c/"), vec!["a", "c"]);
        assert!(normalize("/../").is_empty());
    }

    #[test]
    fn symlink_loop_is_eloop() {
        let d = tempfile::tempdir().unwrap();
        symlink("/l2", d.path().join("l1")).unwrap();
        symlink("/l1", d.path().join("l2")).unwrap();
        let e = resolve_in_root(d.path(), "/l1/x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn layered_lookup_honours_whiteouts_opaque_and_links() {
        let d = tempfile::tempdir().unwrap();
        let (low, mid, top) = (
            d.path().join("low"),
            d.path().join("mid"),
            d.path().join("top"),
        );
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(low.join("real")).unwrap();
        fs::write(low.join("etc/passwd"), "low").unwrap();
        fs::write(low.join("etc/group"), "low").unwrap();
        fs::write(low.join("real/f"), "f").unwrap();
        fs::create_dir_all(mid.join("etc")).unwrap();
        fs::write(mid.join("etc/passwd"), "mid").unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        symlink("/real", top.join("link")).unwrap();
        // whiteout for etc/group in top (needs CAP_MKNOD: tests run as root)
        rbuild_fsutil::whiteout::make_whiteout(&top.join("etc/group")).unwrap();
        let layers = [top.as_path(), mid.as_path(), low.as_path()];
        assert_eq!(
            lookup_in_layers(&layers, "/etc/passwd").unwrap(),
            Some(mid.join("etc/passwd"))
        );
        assert_eq!(lookup_in_layers(&layers, "/etc/group").unwrap(), None);
        assert_eq!(
            lookup_in_layers(&layers, "/link/f").unwrap(),
            Some(low.join("real/f"))
        );
        assert_eq!(lookup_in_layers(&layers, "/nope").unwrap(), None);
    }
}
