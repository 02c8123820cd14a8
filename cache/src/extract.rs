//! Layer blob → directory in overlay form, and ADD's tar → directory: symlinks resolve
//! inside the directory, nothing lands outside it. The store's extractions are made
//! durable file by file as they go ([`extract_layer_durably`]), before the snapshot is
//! renamed into place.

use crate::durable::SyncPool;
use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, HashReader};
use rbuild_fsutil::whiteout::{self, TarWhiteout};
use rbuild_fsutil::{node, time, xattr};
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Extracts the layer `blob` (gzip or plain tar, detected by magic bytes) into `dest`,
/// converting OCI whiteouts into overlay whiteouts. Refuses (with an error naming the
/// entry) anything that would land outside `dest`; the caller extracts into a scratch dir
/// and only keeps it on success.
pub fn extract_layer(blob: &Path, dest: &Path) -> Result<(), CacheError> {
    extract_layer_diff_id(blob, dest, None).map(|_| ())
}

/// Extracts like [`extract_layer`], fsyncing every file and directory written (on other
/// threads, while extraction goes on); returns the diff_id and the tar's size.
pub(crate) fn extract_layer_durably(blob: &Path, dest: &Path) -> Result<(String, u64), CacheError> {
    let mut pool = SyncPool::new();
    let out = extract_layer_diff_id(blob, dest, Some(&mut pool))?;
    // Directories last: their entries are all made by now. Devices, symlinks and
    // whiteouts live in inodes and entries, which the directories' fsyncs commit.
    for ent in walkdir::WalkDir::new(dest) {
        let ent = ent.map_err(|e| CacheError::Io {
            op: "walk",
            path: dest.to_path_buf(),
            source: e.into(),
        })?;
        if ent.file_type().is_dir() {
            pool.sync_path(ent.path()).ctx("sync", ent.path())?;
        }
    }
    pool.finish().ctx("sync the files of", dest)?;
    Ok(out)
}

/// Compression of a blob, by magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Other(&'static str),
}

pub(crate) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        Compression::Other("bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Other("xz")
    } else {
        Compression::None
    }
}

/// Opens a possibly compressed tar stream.
pub(crate) fn open_decompressed(path: &Path) -> Result<Box<dyn Read + Send>, CacheError> {
    let f = std::fs::File::open(path).ctx("open", path)?;
    decompressed(Box::new(f), path)
}

/// A possibly compressed stream `r` (named `path` in errors), decompressed.
pub(crate) fn decompressed<'a>(
    r: Box<dyn Read + Send + 'a>,
    path: &Path,
) -> Result<Box<dyn Read + Send + 'a>, CacheError> {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let head = r.fill_buf().ctx("read", path)?.to_vec();
    Ok(match detect(&head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(crate::zstd::Frames::new(r)),
        Compression::Other(kind) => {
            return Err(CacheError::Unsupported {
                path: path.to_path_buf(),
                reason: format!("{kind}-compressed layers are not supported; use gzip layers"),
            });
        }
    })
}

/// Extracts like [`extract_layer`]; returns the sha256 of the uncompressed tar (diff_id)
/// and its size. With `sync`, each regular file is queued there once written.
fn extract_layer_diff_id(
    blob: &Path,
    dest: &Path,
    sync: Option<&mut SyncPool>,
) -> Result<(String, u64), CacheError> {
    std::fs::create_dir_all(dest).ctx("create directory", dest)?;
    // Decompression and hashing run on their own thread, file writing on this one.
    let (reader, hashing) = spawn_decoder(open_decompressed(blob)?);
    let mut ar = tar::Archive::new(reader);
    let mut x = Extractor::new(blob, dest, true, None);
    x.sync = sync;
    x.run(&mut ar)?;
    let mut reader = ar.into_inner();
    // Tar readers stop at the end-of-archive blocks; the diff_id covers every byte.
    io::copy(&mut reader, &mut io::sink()).ctx("read layer", blob)?;
    drop(reader);
    hashing.join().map_err(|_| CacheError::Io {
        op: "decompress",
        path: blob.to_path_buf(),
        source: io::Error::other("decompression thread panicked"),
    })
}

/// Reads `r` to the end on a new thread, in 1 MiB chunks, hashing as it goes; the chunks
/// come out of the returned reader. The thread's result is (sha256 digest, byte count).
fn spawn_decoder(r: Box<dyn Read + Send>) -> (ChunkReader, std::thread::JoinHandle<(String, u64)>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
    let h = std::thread::spawn(move || {
        let mut hr = HashReader::new(r);
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            let mut n = 0;
            let mut failed = None;
            while n < chunk.len() {
                match hr.read(&mut chunk[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            chunk.truncate(n);
            if n > 0 && tx.send(Ok(chunk)).is_err() {
                break; // the extractor gave up
            }
            if let Some(e) = failed {
                let _ = tx.send(Err(e));
                break;
            }
            if n == 0 {
                break;
            }
        }
        hr.finish()
    });
    (
        ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        },
        h,
    )
}

struct ChunkReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // sender done: end of stream
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Unpacks the tar stream `reader` (named `name` in errors) into the directory `dest` as
/// ADD does with a local archive: symlinks resolve inside `dest` (as in docker's chrooted
/// unpack), nothing lands outside it, device nodes, fifos, hardlinks, owners, modes, times
/// and xattrs are kept; `.wh.` entries stay plain files. `chown` replaces every owner.
pub fn unpack_tar(
    reader: impl Read,
    name: &Path,
    dest: &Path,
    chown: Option<(u32, u32)>,
) -> Result<(), CacheError> {
    let mut ar = tar::Archive::new(reader);
    Extractor::new(name, dest, false, chown).run(&mut ar)
}

struct Extractor<'a> {
    blob: &'a Path,
    dest: &'a Path,
    /// A layer: `.wh.` entries become overlay whiteouts. Off for ADD's archives.
    whiteouts: bool,
    /// ADD --chown: every entry gets this owner instead of the archive's.
    chown: Option<(u32, u32)>,
    /// Directories and their (mode, mtime), applied last so children do not disturb them.
    dirs: Vec<(PathBuf, u32, i64)>,
    /// Copy buffer reused across files.
    buf: Vec<u8>,
    /// The last directory resolved (components → path): tar entries come grouped by
    /// directory, so this saves an lstat per path component for most entries.
    last_dir: Option<(Vec<Vec<u8>>, PathBuf)>,
    /// Where written files go to be fsynced, when the extraction must be durable.
    sync: Option<&'a mut SyncPool>,
}

/// Why a path inside a layer or an archive could escape the directory it is extracted
/// into; the text completes "entry \"…\" ".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnsafePath {
    #[error("is an absolute path")]
    Absolute,
    #[error("has a '..' component that would land outside the destination")]
    ParentDir,
}

/// Splits a tar path into normal components, refusing one that could escape.
pub(crate) fn safe_components(path: &[u8]) -> Result<Vec<&[u8]>, UnsafePath> {
    if path.starts_with(b"/") {
        return Err(UnsafePath::Absolute);
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(UnsafePath::ParentDir),
            c => out.push(c),
        }
    }
    Ok(out)
}

const MAX_SYMLINKS: usize = 40;

impl<'a> Extractor<'a> {
    fn new(blob: &'a Path, dest: &'a Path, whiteouts: bool, chown: Option<(u32, u32)>) -> Self {
        Extractor {
            blob,
            dest,
            whiteouts,
            chown,
            dirs: Vec::new(),
            buf: vec![0u8; 256 << 10],
            last_dir: None,
            sync: None,
        }
    }

    fn run<R: Read>(&mut self, ar: &mut tar::Archive<R>) -> Result<(), CacheError> {
        {
            let entries = ar.entries().ctx("read layer", self.blob)?;
            for entry in entries {
                let mut entry = entry.ctx("read layer", self.blob)?;
                self.entry(&mut entry)?;
            }
        }
        self.finish_dirs()
    }

    /// Removes whatever is at `p`; a directory removed may be on the cached resolved path
    /// (through a symlink), so the cache goes too.
    fn remove(&mut self, p: &Path) -> Result<(), CacheError> {
        if remove_existing(p)? {
            self.last_dir = None;
        }
        Ok(())
    }

    fn owner(&self, uid: u64, gid: u64) -> (u64, u64) {
        match self.chown {
            Some((u, g)) => (u64::from(u), u64::from(g)),
            None => (uid, gid),
        }
    }

    fn refuse(&self, entry: &[u8], reason: impl Into<String>) -> CacheError {
        CacheError::UnsafeEntry {
            blob: self.blob.to_path_buf(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    /// Resolves `comps` (a directory path) inside dest, following symlinks within it and
    /// creating missing directories.
    fn resolve_dir(&mut self, entry: &[u8], comps: &[&[u8]]) -> Result<PathBuf, CacheError> {
        if let Some((c, p)) = &self.last_dir
            && c.len() == comps.len()
            && c.iter().zip(comps).all(|(a, b)| a.as_slice() == *b)
        {
            return Ok(p.clone());
        }
        let p = self.resolve_dir_uncached(entry, comps)?;
        self.last_dir = Some((comps.iter().map(|c| c.to_vec()).collect(), p.clone()));
        Ok(p)
    }

    /// Resolves like the kernel would inside a chroot at dest: an absolute symlink target
    /// starts again at dest, and `..` stops at dest (as containerd's RootPath and docker's
    /// chrooted unpack do), so nothing resolves outside it. Debian's `var/run -> /run`
    /// makes `var/run/x` land at `run/x`.
    fn resolve_dir_uncached(&self, entry: &[u8], comps: &[&[u8]]) -> Result<PathBuf, CacheError> {
        let mut todo: Vec<Vec<u8>> = comps.iter().rev().map(|c| c.to_vec()).collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == b".." {
                done.pop();
                continue;
            }
            if c.is_empty() || c == b"." {
                continue;
            }
            let mut p = self.dest.to_path_buf();
            for d in &done {
                p.push(OsStr::from_bytes(d));
            }
            p.push(OsStr::from_bytes(&c));
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => done.push(c),
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(self.refuse(entry, "goes through too many symlinks"));
                    }
                    let target = std::fs::read_link(&p).ctx("read symlink", &p)?;
                    let t = target.as_os_str().as_bytes();
                    if t.starts_with(b"/") {
                        done.clear();
                    }
                    for tc in t.split(|&b| b == b'/').rev() {
                        todo.push(tc.to_vec());
                    }
                }
                Ok(_) => {
                    return Err(self.refuse(
                        entry,
                        format!("has a parent {} that is not a directory", p.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Implicit parents get docker's 0755, whatever the umask.
                    std::fs::create_dir(&p).ctx("create directory", &p)?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                        .ctx("set permissions of", &p)?;
                    done.push(c);
                }
                Err(e) => return Err(e).ctx("stat", p),
            }
        }
        let mut p = self.dest.to_path_buf();
        for d in &done {
            p.push(OsStr::from_bytes(d));
        }
        Ok(p)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), CacheError> {
        let raw = entry.path_bytes().into_owned();
        let comps = safe_components(&raw).map_err(|r| self.refuse(&raw, r.to_string()))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            return Ok(());
        }
        // This entry may replace a directory on the cached path (say, by a symlink).
        if let Some((c, _)) = &self.last_dir
            && c.len() >= comps.len()
            && c.iter().zip(&comps).all(|(a, b)| a.as_slice() == *b)
        {
            self.last_dir = None;
        }
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // the root itself
        };
        let name = name.to_vec();
        let parent = self.resolve_dir(&raw, parents)?;

        let wh = if self.whiteouts {
            whiteout::parse_tar_name(&name)
        } else {
            None
        };
        match wh {
            None => {}
            Some(TarWhiteout::Opaque) => {
                whiteout::set_opaque(&parent).ctx("set opaque xattr on", &parent)?;
                return Ok(());
            }
            Some(TarWhiteout::AufsMeta) => return Ok(()), // .wh..wh.plnk etc.
            Some(TarWhiteout::Invalid) => {
                return Err(self.refuse(&raw, "is a whiteout of an invalid name"));
            }
            Some(TarWhiteout::Deletes(hidden)) => {
                let p = parent.join(OsStr::from_bytes(hidden));
                self.last_dir = None;
                self.remove(&p)?;
                whiteout::make_whiteout(&p).ctx("create whiteout", &p)?;
                return Ok(());
            }
        }

        let path = parent.join(OsStr::from_bytes(&name));
        let h = entry.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = self.owner(h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let mtime = h.mtime().unwrap_or(0) as i64;
        let xattrs = pax_xattrs(entry).ctx("read layer", self.blob)?;

        match kind {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) => {
                        self.remove(&path)?;
                        std::fs::create_dir(&path).ctx("create directory", &path)?;
                        // `.wh.d` then `d/` in one layer: a new directory replacing the
                        // lower one, which overlay expresses as an opaque directory.
                        if self.whiteouts && whiteout::is_whiteout(&m) {
                            whiteout::set_opaque(&path).ctx("set opaque xattr on", &path)?;
                        }
                    }
                    Err(_) => std::fs::create_dir(&path).ctx("create directory", &path)?,
                }
                lchown(&path, uid, gid)?;
                apply_xattrs(&path, &xattrs)?;
                self.dirs.push((path, mode, mtime));
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove(&path)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .ctx("create file", &path)?;
                copy_big(entry, &mut f, &mut self.buf).ctx("write file", &path)?;
                if let Some(s) = self.sync.as_deref_mut() {
                    s.sync(f).ctx("sync", &path)?;
                }
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.remove(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .ctx("create symlink", &path)?;
                lchown(&path, uid, gid)?;
                apply_xattrs(&path, &xattrs)?;
                time::set_mtime_nofollow(&path, mtime).ctx("set mtime of", &path)?;
                return Ok(());
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let tcomps = safe_components(&target)
                    .map_err(|r| self.refuse(&raw, format!("is a hardlink whose target {r}")))?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(self.refuse(&raw, "is a hardlink to the root directory"));
                };
                let tparent = self.resolve_dir(&raw, tparents)?;
                let tpath = tparent.join(OsStr::from_bytes(tname));
                match std::fs::symlink_metadata(&tpath) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(self.refuse(
                            &raw,
                            format!(
                                "is a hardlink to {}, which is not a file earlier in the layer",
                                String::from_utf8_lossy(&target)
                            ),
                        ));
                    }
                }
                if tpath == path {
                    return Ok(());
                }
                self.remove(&path)?;
                std::fs::hard_link(&tpath, &path).ctx("create hardlink", &path)?;
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (fmt, major, minor) = match kind {
                    tar::EntryType::Char => (
                        libc::S_IFCHR,
                        dev_num(h.device_major()),
                        dev_num(h.device_minor()),
                    ),
                    tar::EntryType::Block => (
                        libc::S_IFBLK,
                        dev_num(h.device_major()),
                        dev_num(h.device_minor()),
                    ),
                    _ => (libc::S_IFIFO, 0, 0),
                };
                self.remove(&path)?;
                node::mknod(&path, fmt | (mode & 0o777), major, minor)
                    .ctx("create device node", &path)?;
            }
            _ => return Ok(()), // unknown or metadata-only types carry nothing to extract
        }
        lchown(&path, uid, gid)?;
        // chmod after chown: chown clears setuid/setgid bits.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .ctx("set permissions of", &path)?;
        apply_xattrs(&path, &xattrs)?;
        time::set_mtime_nofollow(&path, mtime).ctx("set mtime of", &path)?;
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), CacheError> {
        // Deepest last-created first, so setting a parent's mtime comes after its children.
        for (p, mode, mtime) in self.dirs.drain(..).rev() {
            // A later entry may have replaced the directory (by a symlink, say): chmod
            // follows symlinks, so only a directory still there gets its mode.
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .ctx("set permissions of", &p)?;
            time::set_mtime_nofollow(&p, mtime).ctx("set mtime of", &p)?;
        }
        Ok(())
    }
}

fn dev_num(r: io::Result<Option<u32>>) -> u32 {
    r.ok().flatten().unwrap_or(0)
}

fn lchown(p: &Path, uid: u64, gid: u64) -> Result<(), CacheError> {
    let uid = u32::try_from(uid).unwrap_or(u32::MAX - 1);
    let gid = u32::try_from(gid).unwrap_or(u32::MAX - 1);
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).ctx("change owner of", p)
}

fn apply_xattrs(p: &Path, xattrs: &[(String, Vec<u8>)]) -> Result<(), CacheError> {
    for (k, v) in xattrs {
        // Overlay-private attributes would change how the snapshot is interpreted.
        if whiteout::is_overlay_xattr(k) {
            continue;
        }
        match xattr::set(p, k, v) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(e).ctx("set xattr on", p),
        }
    }
    Ok(())
}

fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(k) = ext.key()
                && let Some(name) = k.strip_prefix("SCHILY.xattr.")
            {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Removes whatever is at `p` (never following a symlink); true when it was a directory.
fn remove_existing(p: &Path) -> Result<bool, CacheError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fsutil::remove_dir_all_force(p)
            .ctx("remove", p)
            .map(|_| true),
        Ok(_) => std::fs::remove_file(p).ctx("remove", p).map(|_| false),
        Err(_) => Ok(false),
    }
}

fn copy_big<R: Read, W: io::Write>(r: &mut R, w: &mut W, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert_eq!(safe_components(b"./a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert_eq!(safe_components(b"/etc/passwd"), Err(UnsafePath::Absolute));
        assert_eq!(safe_components(b"a/../../x"), Err(UnsafePath::ParentDir));
        assert_eq!(safe_components(b".."), Err(UnsafePath::ParentDir));
        assert!(safe_components(b"./").unwrap().is_empty());
    }

    #[test]
    fn magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(b"usr/"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }
}
