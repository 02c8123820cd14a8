//! ADD of a local tar archive (plain, gzip, bzip2 or xz): detected by magic bytes as
//! docker does, extracted into the destination.

use crate::error::StepFailure;
use std::io::{self, Read};
use std::path::Path;

/// Archive formats ADD extracts, detected by magic bytes as docker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    Gzip,
    Bzip2,
    Xz,
}

/// Detects a (possibly compressed) tar archive by magic bytes.
pub fn detect_archive(head: &[u8]) -> Option<ArchiveKind> {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some(ArchiveKind::Gzip);
    }
    if head.starts_with(b"BZh") {
        return Some(ArchiveKind::Bzip2);
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Some(ArchiveKind::Xz);
    }
    if is_tar_header(head) {
        return Some(ArchiveKind::Tar);
    }
    None
}

/// A ustar/GNU tar header block.
fn is_tar_header(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// Reads up to `n` bytes (fewer only at end of stream).
fn read_head(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The tar stream inside `path` when it is a plain or compressed tar archive; None for any
/// other file (ADD then copies it as it is, as docker does for e.g. a lone .gz).
pub(crate) fn open_archive(path: &Path) -> Option<Box<dyn Read>> {
    let mut f = std::fs::File::open(path).ok()?;
    let magic = read_head(&mut f, 512).ok()?;
    let kind = detect_archive(&magic)?;
    let f = std::fs::File::open(path).ok()?;
    let mut decoded: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(io::BufReader::new(f)),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(f))),
        ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(io::BufReader::new(f))),
        ArchiveKind::Xz => {
            // lzma-rs decodes into a writer: spool to an anonymous temp file.
            let mut out = tempfile::tempfile().ok()?;
            lzma_rs::xz_decompress(&mut io::BufReader::new(f), &mut out).ok()?;
            io::Seek::seek(&mut out, io::SeekFrom::Start(0)).ok()?;
            Box::new(io::BufReader::new(out))
        }
    };
    let head = read_head(&mut decoded, 512).ok()?;
    if !is_tar_header(&head) {
        return None;
    }
    Some(Box::new(io::Cursor::new(head).chain(decoded)))
}

/// Extracts a tar stream into `dir` (a host path inside the mounted rootfs) as docker's
/// chrooted unpack does: symlinks in the archive resolve inside `dir`, nothing lands
/// outside it, device nodes, fifos, hardlinks and xattrs stay what they are. Owners come
/// from the archive unless `--chown` was given (`chown`).
pub(crate) fn unpack(
    reader: Box<dyn Read>,
    name: &str,
    dir: &Path,
    chown: Option<(u32, u32)>,
) -> Result<(), StepFailure> {
    rbuild_cache::unpack_tar(reader, Path::new(name), dir, chown).map_err(|e| StepFailure::Action {
        what: format!("extracting {name}"),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_magic() {
        assert_eq!(detect_archive(&[0x1f, 0x8b, 8, 0]), Some(ArchiveKind::Gzip));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect_archive(&tar), Some(ArchiveKind::Tar));
        assert_eq!(detect_archive(b"hello world"), None);
        assert_eq!(detect_archive(b"BZh91AY"), Some(ArchiveKind::Bzip2));
        assert_eq!(
            detect_archive(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Some(ArchiveKind::Xz)
        );
    }
}
