//! Overlay upper dir → OCI layer, in one streaming pass:
//! walk → tar (→ sha256 = diff_id) → gzip (→ sha256 = digest) → blob temp file; every
//! file and directory walked is fsynced on other threads meanwhile, so the upper dir is
//! durable by the time it becomes the layer's snapshot.

use crate::durable::SyncPool;
use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, HashWriter};
use crate::pargz::TarSink;
use crate::{Layer, Store, digest_hex};
use oci_spec::image::MediaType;
use rbuild_fsutil::whiteout::{self, is_opaque_xattr, is_overlay_xattr};
use rbuild_fsutil::xattr;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

impl Store {
    /// Turns an overlay upper dir into a layer (see the crate docs). Returns `None` for an
    /// empty upper dir. On success `upper` has become the layer's snapshot.
    pub fn commit_layer(&self, upper: &Path) -> Result<Option<Layer>, CacheError> {
        self.commit_layer_clamped(upper, None)
    }

    /// [`commit_layer`](Self::commit_layer) with every time newer than `epoch` (Unix
    /// seconds, `SOURCE_DATE_EPOCH`) set to it, in the tar and in the snapshot alike, as
    /// BuildKit's `rewrite-timestamp=true`: the same inputs give the same layer bytes
    /// whenever they are built.
    pub fn commit_layer_clamped(
        &self,
        upper: &Path,
        epoch: Option<i64>,
    ) -> Result<Option<Layer>, CacheError> {
        self.commit_layer_linked(upper, epoch, HashSet::new())
    }

    /// [`commit_layer_clamped`](Self::commit_layer_clamped) of an upper dir some of whose
    /// files are hard links to files of other snapshots, by (dev, inode) in `linked`:
    /// their data is on disk already, and the directories' fsyncs commit the links, so
    /// they are not fsynced again (an fsync of each would flush the disk's cache).
    pub fn commit_layer_linked(
        &self,
        upper: &Path,
        epoch: Option<i64>,
        linked: HashSet<(u64, u64)>,
    ) -> Result<Option<Layer>, CacheError> {
        let mut rd = std::fs::read_dir(upper).ctx("read directory", upper)?;
        if rd.next().is_none() {
            return Ok(None);
        }
        // The step's overlay is mounted `volatile` (no sync at unmount): the upper dir's
        // files are fsynced, each once the tar has it, while the rest is archived.
        let mut synced = SyncPool::new().skipping(linked);
        let blob = self.blob_writer()?;
        // ParGz buffers whole blocks itself, and compresses and writes them on other
        // threads while this one walks and hashes the tar.
        // Blocks an earlier layer blob already holds (the same step re-run after a small
        // change) are copied from it, not compressed again.
        let reuse = crate::reuse::Reuse::load(&self.pieces_dir(), &self.blobs_dir());
        let gz = crate::pargz::ParGz::new(blob, self.gzip_level(), reuse.map(Arc::new))
            .ctx("start compressing layer for", upper)?;
        let tar = write_upper_tar(upper, HashWriter::new(gz), Some(&mut synced), false, epoch)?;
        let (gz, diff_id, tar_size) = tar.finish();
        let (blob, pieces) = gz.finish().ctx("compress layer for", upper)?;
        let (digest, size) = blob.commit(None)?;
        if !pieces.is_empty() {
            // Only a hint for later commits: failing to write it loses nothing.
            let _ = crate::reuse::save_index(&self.pieces_dir(), digest_hex(&digest)?, &pieces);
        }
        synced.sync_path(upper).ctx("sync", upper)?;
        synced.finish().ctx("sync the files of", upper)?;
        let layer = Layer {
            digest,
            diff_id,
            size,
            media_type: MediaType::ImageLayerGzip,
        };
        let target = self.snapshot_path(&layer.diff_id)?;
        if target.is_dir() {
            fsutil::remove_dir_all_force(upper).ctx("remove committed upper dir", upper)?;
            return Ok(Some(layer));
        }
        // Leased before it appears, like its blob, so a prune running now leaves it.
        self.lease_layers(std::slice::from_ref(&layer))?;
        match std::fs::rename(upper, &target) {
            Ok(()) => {
                fsutil::fsync_dir(&self.snapshots_dir())?;
                self.count_added(tar_size);
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                // upper lives on another filesystem: extract the blob instead.
                self.snapshot(&layer)?;
            }
            Err(e) if target.is_dir() => {
                let _ = e;
                fsutil::remove_dir_all_force(upper).ctx("remove committed upper dir", upper)?;
            }
            Err(e) => return Err(e).ctx("move upper dir to snapshot", target),
        }
        Ok(Some(layer))
    }
}

impl Store {
    /// Archives a directory the store keeps (a cache mount's) as a layer blob, leaving the
    /// directory as it is; `None` when it is empty. The same content gives the same bytes
    /// (sorted entries, the blocks of earlier blobs reused), so an unchanged directory is
    /// the blob a destination already has.
    pub fn archive_dir(&self, dir: &Path) -> Result<Option<Layer>, CacheError> {
        let mut rd = std::fs::read_dir(dir).ctx("read directory", dir)?;
        if rd.next().is_none() {
            return Ok(None);
        }
        let blob = self.blob_writer()?;
        let reuse = crate::reuse::Reuse::load(&self.pieces_dir(), &self.blobs_dir());
        let gz = crate::pargz::ParGz::new(blob, self.gzip_level(), reuse.map(Arc::new))
            .ctx("start compressing", dir)?;
        // Read only: the directory stays the cache mount it is (its xattrs untouched).
        let tar = write_upper_tar(dir, HashWriter::new(gz), None, true, None)?;
        let (gz, diff_id, _) = tar.finish();
        let (blob, pieces) = gz.finish().ctx("compress", dir)?;
        let (digest, size) = blob.commit(None)?;
        if !pieces.is_empty() {
            let _ = crate::reuse::save_index(&self.pieces_dir(), digest_hex(&digest)?, &pieces);
        }
        Ok(Some(Layer {
            digest,
            diff_id,
            size,
            media_type: MediaType::ImageLayerGzip,
        }))
    }
}

/// Writes the tar stream of `upper` (overlay form → OCI whiteouts) into `out`, with the
/// end-of-archive blocks. Also strips overlay-private xattrs (other than opaque) from
/// `upper`, which is about to become a lower dir, unless `read_only` (`check` reading a
/// snapshot), and clamps its times to `epoch`. With `sync`, every regular file and
/// directory is queued there to be fsynced once archived (the rest lives in inodes and
/// directory entries, which the directories' fsyncs commit).
pub(crate) fn write_upper_tar<W: TarSink>(
    upper: &Path,
    mut out: W,
    mut sync: Option<&mut SyncPool>,
    read_only: bool,
    epoch: Option<i64>,
) -> Result<W, CacheError> {
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let walk = walkdir::WalkDir::new(upper)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for ent in walk {
        let ent = ent.map_err(|e| {
            let p = e.path().unwrap_or(upper).to_path_buf();
            CacheError::Io {
                op: "walk",
                path: p,
                source: e.into(),
            }
        })?;
        out.entry_start().ctx("write layer entry", ent.path())?;
        let path = ent.path();
        let rel = path
            .strip_prefix(upper)
            .map_err(|_| CacheError::Corrupt {
                path: path.to_path_buf(),
                reason: "walked outside the upper dir".into(),
            })?
            .as_os_str()
            .as_bytes()
            .to_vec();
        let meta = std::fs::symlink_metadata(path).ctx("stat", path)?;
        let ft = meta.file_type();
        let mut h = EntryHeader::from_meta(&meta);
        if let Some(e) = epoch.filter(|e| h.mtime > *e) {
            // The snapshot keeps what the tar says, so a later extraction of this blob
            // (an imported cache) gives the same tree.
            h.mtime = e;
            rbuild_fsutil::time::set_mtime_nofollow(path, e).ctx("set the time of", path)?;
        }

        if whiteout::is_whiteout(&meta) {
            h.name = whiteout::tar_whiteout_name(&rel);
            h.kind = tar::EntryType::Regular;
            h.mode = 0o600;
            write_entry(&mut out, &h, None::<&mut io::Empty>, &mut buf)
                .ctx("write layer entry", path)?;
            continue;
        }
        let xattrs = read_xattrs(path)?;
        h.xattrs = xattrs
            .iter()
            .filter(|(k, _)| !is_overlay_xattr(k))
            .cloned()
            .collect();
        for (k, _) in &xattrs {
            if k.ends_with(".overlay.redirect") || k.ends_with(".overlay.metacopy") {
                // The upper entry then holds only part of the change; the diff would be wrong.
                return Err(CacheError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!(
                        "has overlay attribute {k}; mount overlay with redirect_dir=off,metacopy=off"
                    ),
                });
            }
            if !read_only && is_overlay_xattr(k) && !is_opaque_xattr(k) {
                let _ = xattr::remove(path, k);
            }
        }
        if ft.is_dir() {
            h.name = rel.clone();
            h.name.push(b'/');
            h.kind = tar::EntryType::Directory;
            write_entry(&mut out, &h, None::<&mut io::Empty>, &mut buf)
                .ctx("write layer entry", path)?;
            if let Some(s) = sync.as_deref_mut() {
                s.sync_path(path).ctx("sync", path)?;
            }
            let opaque = xattrs
                .iter()
                .any(|(k, v)| is_opaque_xattr(k) && v.as_slice() == b"y");
            if opaque {
                let mut o = EntryHeader::from_meta(&meta);
                o.mtime = h.mtime;
                o.name = whiteout::tar_opaque_name(&rel);
                o.kind = tar::EntryType::Regular;
                o.mode = meta.mode() & 0o777;
                write_entry(&mut out, &o, None::<&mut io::Empty>, &mut buf)
                    .ctx("write layer entry", path)?;
            }
            continue;
        }
        h.name = rel.clone();
        if ft.is_symlink() {
            h.kind = tar::EntryType::Symlink;
            h.link = std::fs::read_link(path)
                .ctx("read symlink", path)?
                .as_os_str()
                .as_bytes()
                .to_vec();
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.kind = tar::EntryType::Link;
                    h.link = first.clone();
                    h.xattrs.clear();
                    write_entry(&mut out, &h, None::<&mut io::Empty>, &mut buf)
                        .ctx("write layer entry", path)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            h.kind = tar::EntryType::Regular;
            h.size = meta.len();
            let mut f = std::fs::File::open(path).ctx("open", path)?;
            write_entry(&mut out, &h, Some(&mut f), &mut buf).ctx("write layer entry", path)?;
            if let Some(s) = sync.as_deref_mut()
                && !s.is_durable(meta.dev(), meta.ino())
            {
                s.sync(f).ctx("sync", path)?;
            }
            continue;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            h.dev = Some((libc::major(meta.rdev()), libc::minor(meta.rdev())));
        } else if ft.is_fifo() {
            h.kind = tar::EntryType::Fifo;
        } else {
            // Sockets are not part of an image (docker skips them too).
            continue;
        }
        write_entry(&mut out, &h, None::<&mut io::Empty>, &mut buf)
            .ctx("write layer entry", path)?;
    }
    out.write_all(&[0u8; 1024])
        .ctx("write layer end for", upper)?;
    Ok(out)
}

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
    let mut out = Vec::new();
    for name in xattr::list(path).ctx("list xattrs of", path)? {
        if let Some(v) = xattr::get(path, &name).ctx("read xattr of", path)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

/// What one tar entry says, before encoding.
pub(crate) struct EntryHeader {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub size: u64,
    pub dev: Option<(u32, u32)>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryHeader {
    fn from_meta(meta: &std::fs::Metadata) -> Self {
        EntryHeader {
            name: vec![],
            link: vec![],
            kind: tar::EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime(),
            size: 0,
            dev: None,
            xattrs: vec![],
        }
    }

    pub(crate) fn plain_file(name: &str, size: u64) -> Self {
        EntryHeader {
            name: name.as_bytes().to_vec(),
            link: vec![],
            kind: tar::EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size,
            dev: None,
            xattrs: vec![],
        }
    }
}

const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // The length prefix counts itself.
    let rest = 3 + key.len() + value.len();
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Writes one entry (PAX extended header first when needed) and `size` bytes of `data`.
pub(crate) fn write_entry<W: Write, R: Read>(
    out: &mut W,
    h: &EntryHeader,
    data: Option<&mut R>,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut pax = Vec::new();
    if h.name.len() > 100 {
        pax_record(&mut pax, "path", &h.name);
    }
    if h.link.len() > 100 {
        pax_record(&mut pax, "linkpath", &h.link);
    }
    if h.uid > USTAR_MAX_ID {
        pax_record(&mut pax, "uid", h.uid.to_string().as_bytes());
    }
    if h.gid > USTAR_MAX_ID {
        pax_record(&mut pax, "gid", h.gid.to_string().as_bytes());
    }
    if h.size > USTAR_MAX_SIZE {
        pax_record(&mut pax, "size", h.size.to_string().as_bytes());
    }
    for (k, v) in &h.xattrs {
        pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
    }
    if !pax.is_empty() {
        let mut x = tar::Header::new_ustar();
        let mut xname = b"PaxHeaders/".to_vec();
        xname.extend_from_slice(&h.name[..h.name.len().min(80)]);
        set_bytes(&mut x, &xname, false);
        x.set_mode(0o644);
        x.set_mtime(0);
        x.set_size(pax.len() as u64);
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_cksum();
        out.write_all(x.as_bytes())?;
        out.write_all(&pax)?;
        pad(out, pax.len() as u64)?;
    }
    let mut t = tar::Header::new_ustar();
    set_bytes(&mut t, &h.name, false);
    if !h.link.is_empty() {
        set_bytes(&mut t, &h.link, true);
    }
    t.set_entry_type(h.kind);
    t.set_mode(h.mode);
    t.set_uid(h.uid.min(USTAR_MAX_ID));
    t.set_gid(h.gid.min(USTAR_MAX_ID));
    t.set_mtime(h.mtime.max(0) as u64);
    t.set_size(h.size.min(USTAR_MAX_SIZE));
    if let Some((ma, mi)) = h.dev {
        t.set_device_major(ma)?;
        t.set_device_minor(mi)?;
    }
    t.set_cksum();
    out.write_all(t.as_bytes())?;
    if h.size > 0 {
        let Some(data) = data else {
            return Err(io::Error::other("entry has a size but no data"));
        };
        let mut left = h.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = data.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being archived",
                ));
            }
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        pad(out, h.size)?;
    }
    Ok(())
}

fn pad<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    let rem = (len % 512) as usize;
    if rem != 0 {
        out.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

/// Puts a name (or link name) in the ustar header, truncated if long (a PAX record then
/// holds the full value).
fn set_bytes(h: &mut tar::Header, v: &[u8], link: bool) {
    if let Some(u) = h.as_ustar_mut() {
        let field: &mut [u8; 100] = if link { &mut u.linkname } else { &mut u.name };
        let n = v.len().min(100);
        field[..n].copy_from_slice(&v[..n]);
        field[n..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for vlen in [0, 1, 5, 6, 7, 90, 91, 92, 995, 996, 997, 1000] {
            let mut out = Vec::new();
            let v = vec![b'x'; vlen];
            pax_record(&mut out, "path", &v);
            let sp = out.iter().position(|&b| b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(n, out.len(), "value len {vlen}");
        }
    }
}
