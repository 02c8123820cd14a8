//! Deletions and opaque directories, in the two forms a layer takes.
//!
//! **Overlay form** (snapshots, upper dirs): a deleted entry is a 0/0 character device
//! of the same name; a directory that hides everything below it in lower layers carries
//! the xattr `trusted.overlay.opaque=y` (`user.overlay.opaque` when overlay is mounted
//! with `userxattr`). Overlay keeps its other bookkeeping in `*.overlay.*` xattrs too.
//!
//! **OCI tar form** (layer blobs): a deleted `dir/name` is an empty file
//! `dir/.wh.name`; an opaque `dir` holds an empty file `dir/.wh..wh..opq`. Other
//! `.wh..wh.` names are AUFS bookkeeping that carries nothing.

use crate::{node, xattr};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Prefix of a whiteout file's name in a layer tar.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the file that marks its directory opaque in a layer tar.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The xattr rbuild sets to mark a snapshot directory opaque (it runs overlay as root).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Every xattr overlay may have marked an opaque directory with.
const OPAQUE_XATTRS: [&str; 2] = [OPAQUE_XATTR, "user.overlay.opaque"];

// ---- overlay form ------------------------------------------------------------

/// Whether `m` is an overlay whiteout (a 0/0 character device).
pub fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Creates an overlay whiteout at `p` (which must not exist).
pub fn make_whiteout(p: &Path) -> io::Result<()> {
    node::mknod(p, libc::S_IFCHR, 0, 0)
}

/// Whether the directory `dir` is marked opaque (either marker xattr is `y`).
pub fn is_opaque(dir: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|name| matches!(xattr::get(dir, name), Ok(Some(v)) if v == b"y"))
}

/// Marks the directory `dir` opaque: lower layers' entries below it are hidden.
pub fn set_opaque(dir: &Path) -> io::Result<()> {
    xattr::set(dir, OPAQUE_XATTR, b"y")
}

/// Whether xattr `name` is overlay's own (`trusted.overlay.*`, or `user.overlay.*` as
/// with `userxattr`): never part of a layer's content, and never copied.
pub fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// Whether xattr `name` is one of overlay's opaque-directory markers.
pub fn is_opaque_xattr(name: &str) -> bool {
    OPAQUE_XATTRS.contains(&name)
}

// ---- OCI tar form --------------------------------------------------------------

/// The tar name of the whiteout that deletes `rel` (a path relative to the layer root):
/// `a/b/c` → `a/b/.wh.c`.
pub fn tar_whiteout_name(rel: &[u8]) -> Vec<u8> {
    let (dir, base) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    };
    let mut n = dir.to_vec();
    n.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    n.extend_from_slice(base);
    n
}

/// The tar name of the marker that makes directory `dir_rel` opaque:
/// `a/b` → `a/b/.wh..wh..opq`.
pub fn tar_opaque_name(dir_rel: &[u8]) -> Vec<u8> {
    let mut n = dir_rel.to_vec();
    n.push(b'/');
    n.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
    n
}

/// What a tar entry's base name says, when it is one of the whiteout names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarWhiteout<'a> {
    /// `.wh..wh..opq`: the directory holding it is opaque.
    Opaque,
    /// `.wh.NAME`: `NAME`, in the directory holding it, is deleted.
    Deletes(&'a [u8]),
    /// Another `.wh..wh.` name: AUFS bookkeeping, nothing to apply.
    AufsMeta,
    /// `.wh.`, `.wh..` or `.wh...`: names no entry; a layer holding it is malformed.
    Invalid,
}

/// Classifies the base name of a tar entry; `None` for an ordinary entry.
pub fn parse_tar_name(name: &[u8]) -> Option<TarWhiteout<'_>> {
    if name == OPAQUE_WHITEOUT.as_bytes() {
        return Some(TarWhiteout::Opaque);
    }
    let hidden = name.strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    Some(if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        TarWhiteout::AufsMeta
    } else if hidden.is_empty() || hidden == b"." || hidden == b".." {
        TarWhiteout::Invalid
    } else {
        TarWhiteout::Deletes(hidden)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_names() {
        assert_eq!(tar_whiteout_name(b"a/b/c"), b"a/b/.wh.c");
        assert_eq!(tar_whiteout_name(b"top"), b".wh.top");
        assert_eq!(tar_opaque_name(b"a/b"), b"a/b/.wh..wh..opq");
        assert_eq!(parse_tar_name(b".wh..wh..opq"), Some(TarWhiteout::Opaque));
        assert_eq!(parse_tar_name(b".wh.f"), Some(TarWhiteout::Deletes(b"f")));
        assert_eq!(parse_tar_name(b".wh..wh.plnk"), Some(TarWhiteout::AufsMeta));
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert_eq!(parse_tar_name(bad), Some(TarWhiteout::Invalid));
        }
        assert_eq!(parse_tar_name(b"wh.f"), None);
        assert_eq!(parse_tar_name(b"f.wh."), None);
    }

    #[test]
    fn overlay_xattr_names() {
        assert!(is_overlay_xattr("trusted.overlay.redirect"));
        assert!(is_overlay_xattr("user.overlay.opaque"));
        assert!(!is_overlay_xattr("security.capability"));
        assert!(is_opaque_xattr("trusted.overlay.opaque"));
        assert!(is_opaque_xattr("user.overlay.opaque"));
        assert!(!is_opaque_xattr("trusted.overlay.origin"));
    }

    #[test]
    fn overlay_form_on_disk() {
        // Needs root (CAP_MKNOD for the device, CAP_SYS_ADMIN for trusted.* xattrs).
        let d = tempfile::tempdir().unwrap();
        let (w, dir) = (d.path().join("w"), d.path().join("d"));
        make_whiteout(&w).unwrap();
        assert!(is_whiteout(&std::fs::symlink_metadata(&w).unwrap()));
        assert!(!is_whiteout(&std::fs::symlink_metadata(d.path()).unwrap()));
        std::fs::create_dir(&dir).unwrap();
        assert!(!is_opaque(&dir));
        set_opaque(&dir).unwrap();
        assert!(is_opaque(&dir));
        xattr::set(&dir, OPAQUE_XATTR, b"yes").unwrap();
        assert!(!is_opaque(&dir), "only `y` marks a dir opaque");
        assert!(!is_opaque(&d.path().join("gone")));
    }
}
