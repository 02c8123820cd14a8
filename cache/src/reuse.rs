//! Reuse of compressed blocks from earlier layer blobs.
//!
//! [`crate::pargz`] deflates fixed 1 MiB blocks, each primed with the 32 KiB before it,
//! and the bytes it emits for a block depend only on (level, last-block flag, dictionary,
//! data). A layer committed again with mostly the same content (a COPY re-run after one
//! context file changed) therefore repeats most of the pieces of its previous blob. Each
//! layer blob gets a small index under `pieces/` (a hint, never trusted alone): for each
//! block it deflated, the blake3 key of those inputs, where the piece lies in the blob and
//! the blake3 of the piece's bytes. A later commit that computes the same key reads the
//! piece back instead of compressing, after checking the bytes against the recorded hash.
//! The output is byte for byte what compressing would have produced.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Index files read per commit: the most recently written ones (a re-run step's previous
/// layer is among the last few committed).
const RECENT_INDEXES: usize = 8;
/// v1 indexes came from compressors reused across blocks (see pargz.rs): their pieces
/// decode right but are not always the bytes a new commit makes, so they are not used.
const MAGIC: &[u8; 16] = b"rbuild pieces v2";
/// key (32) + offset (8) + len (4) + check (32).
const RECORD: usize = 76;

/// Identifies a block's compressed bytes: everything they depend on.
pub(crate) fn piece_key(level: u32, fin: bool, dict: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[level as u8, u8::from(fin)]);
    h.update(&(dict.len() as u64).to_le_bytes());
    h.update(dict);
    h.update(data);
    *h.finalize().as_bytes()
}

/// One compressed block inside a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub key: [u8; 32],
    pub offset: u64,
    pub len: u32,
    /// blake3 of the piece's bytes.
    pub check: [u8; 32],
}

fn encode(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + pieces.len() * RECORD);
    out.extend_from_slice(MAGIC);
    for p in pieces {
        out.extend_from_slice(&p.key);
        out.extend_from_slice(&p.offset.to_le_bytes());
        out.extend_from_slice(&p.len.to_le_bytes());
        out.extend_from_slice(&p.check);
    }
    out
}

/// The pieces of an index file; None if it is not one (torn, foreign, other version).
fn decode(bytes: &[u8]) -> Option<Vec<Piece>> {
    let body = bytes.strip_prefix(MAGIC)?;
    if body.len() % RECORD != 0 {
        return None;
    }
    let arr = |b: &[u8]| -> Option<[u8; 32]> { b.try_into().ok() };
    body.chunks(RECORD)
        .map(|r| {
            Some(Piece {
                key: arr(&r[..32])?,
                offset: u64::from_le_bytes(r[32..40].try_into().ok()?),
                len: u32::from_le_bytes(r[40..44].try_into().ok()?),
                check: arr(&r[44..76])?,
            })
        })
        .collect()
}

/// Writes the index of the blob `blob_hex` (temp file + rename; it is only a hint, so
/// no fsync: a torn or lost index costs compression time, never correctness).
pub(crate) fn save_index(dir: &Path, blob_hex: &str, pieces: &[Piece]) -> io::Result<()> {
    crate::fsutil::write_hint(&dir.join(blob_hex), &encode(pieces))
}

/// Removes the indexes of blobs that are gone (after a prune).
pub(crate) fn remove_orphans(dir: &Path, blobs_dir: &Path) -> io::Result<()> {
    crate::fsutil::remove_orphans(dir, |e| !blobs_dir.join(e.file_name()).is_file())
}

/// Pieces of recent blobs, by key.
pub(crate) struct Reuse {
    blobs: Vec<File>,
    /// key → (index into `blobs`, piece).
    pieces: HashMap<[u8; 32], (usize, Piece)>,
    /// Pieces handed out so far.
    hits: AtomicU64,
}

impl Reuse {
    /// Loads the newest indexes in `dir` whose blobs (in `blobs_dir`) can be opened.
    /// Anything unreadable is skipped: None when nothing is usable.
    pub(crate) fn load(dir: &Path, blobs_dir: &Path) -> Option<Reuse> {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| crate::fsutil::temp_owner(&e.file_name()).is_none())
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        // Newest first; the name breaks ties, so the choice does not depend on read order.
        found.sort_by(|a, b| b.cmp(a));
        let mut r = Reuse {
            blobs: Vec::new(),
            pieces: HashMap::new(),
            hits: AtomicU64::new(0),
        };
        for (_, path) in found.into_iter().take(RECENT_INDEXES) {
            let Some(name) = path.file_name() else {
                continue;
            };
            let Some(pieces) = std::fs::read(&path).ok().and_then(|b| decode(&b)) else {
                continue;
            };
            let Ok(blob) = File::open(blobs_dir.join(name)) else {
                continue;
            };
            let idx = r.blobs.len();
            r.blobs.push(blob);
            for p in pieces {
                r.pieces.entry(p.key).or_insert((idx, p));
            }
        }
        if r.pieces.is_empty() { None } else { Some(r) }
    }

    /// The compressed bytes recorded for `key`, if they can be read and match their hash.
    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let (idx, p) = self.pieces.get(key)?;
        let mut buf = vec![0u8; usize::try_from(p.len).ok()?];
        self.blobs
            .get(*idx)?
            .read_exact_at(&mut buf, p.offset)
            .ok()?;
        if blake3::hash(&buf).as_bytes() != &p.check {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(buf)
    }

    #[cfg(test)]
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(n: u8, offset: u64, bytes: &[u8]) -> Piece {
        Piece {
            key: [n; 32],
            offset,
            len: bytes.len() as u32,
            check: *blake3::hash(bytes).as_bytes(),
        }
    }

    #[test]
    fn index_round_trips_and_rejects_torn_files() {
        let ps = vec![piece(1, 10, b"abc"), piece(2, 13, b"defg")];
        let enc = encode(&ps);
        assert_eq!(decode(&enc), Some(ps));
        assert_eq!(decode(&enc[..enc.len() - 1]), None);
        assert_eq!(decode(b"something else"), None);
        assert_eq!(decode(MAGIC), Some(vec![]));
    }

    #[test]
    fn key_covers_every_input() {
        let k = piece_key(2, false, b"dict", b"data");
        assert_ne!(k, piece_key(1, false, b"dict", b"data"));
        assert_ne!(k, piece_key(2, true, b"dict", b"data"));
        assert_ne!(k, piece_key(2, false, b"dic", b"tdata"));
        assert_ne!(k, piece_key(2, false, b"dict", b"datb"));
        assert_eq!(k, piece_key(2, false, b"dict", b"data"));
    }

    #[test]
    fn pieces_are_read_back_only_when_they_match() {
        let t = tempfile::tempdir().unwrap();
        let (idx, blobs) = (t.path().join("pieces"), t.path().join("blobs"));
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join("b1"), b"HEADERabcdefg").unwrap();
        let good = piece(1, 6, b"abc");
        let mut bad = piece(2, 9, b"defg");
        bad.check[0] ^= 1;
        let past_end = piece(3, 12, b"gh");
        save_index(&idx, "b1", &[good, bad, past_end]).unwrap();
        // An index whose blob is gone is skipped, and removed as an orphan.
        save_index(&idx, "gone", &[piece(4, 0, b"x")]).unwrap();
        let r = Reuse::load(&idx, &blobs).unwrap();
        assert_eq!(r.get(&[1; 32]).as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.get(&[2; 32]), None);
        assert_eq!(r.get(&[3; 32]), None);
        assert_eq!(r.get(&[4; 32]), None);
        assert_eq!(r.hits(), 1);
        remove_orphans(&idx, &blobs).unwrap();
        assert!(idx.join("b1").is_file());
        assert!(!idx.join("gone").exists());
        assert!(Reuse::load(&t.path().join("none"), &blobs).is_none());
    }
}
