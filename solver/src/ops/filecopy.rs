//! One file's content and extended attributes copied from a source tree into a rootfs:
//! shared by the placer (`place.rs`), the relinking (`relink.rs`) and ADD's downloads.

use std::io;
use std::path::Path;

/// Copies extended attributes (e.g. `security.capability` of a binary from another stage),
/// after chown, which clears capabilities. Overlay-internal ones are never copied. Best
/// effort: a filesystem without xattr support still gets the file.
pub(crate) fn copy_xattrs(src: &Path, dst: &Path) {
    use rbuild_fsutil::{whiteout, xattr};
    let Ok(names) = xattr::list(src) else {
        return;
    };
    for name in names.iter().filter(|n| !whiteout::is_overlay_xattr(n)) {
        if let Ok(Some(value)) = xattr::get(src, name) {
            let _ = xattr::set(dst, name, &value);
        }
    }
}

/// Copies file content (the kernel's copy_file_range where possible).
pub(crate) fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    io::copy(&mut src, &mut dst)?;
    Ok(())
}
