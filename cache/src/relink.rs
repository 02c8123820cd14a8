//! Copy records: for a COPY step, what the regular files of its last layer hold, by path
//! in that layer, so that the step's next run (some context files changed) can link the
//! unchanged ones from that layer's snapshot instead of copying them
//! (`rbuild_solver`'s `ops/relink.rs`). A record is a hint, never trusted alone: each file
//! is compared with its snapshot before it is linked, and a torn or foreign record reads
//! as none.
//!
//! One file per step identity under `relink/`: a magic line, the layer's digest and
//! diff_id, then per file its path (relative to the layer's root) and the blake3 digest
//! of its content as the context hasher computed it.

use crate::error::{CacheError, IoContext};
use crate::lease::Leased;
use crate::{Store, fsutil};
use std::collections::HashMap;
use std::path::PathBuf;

const MAGIC: &[u8; 16] = b"rbuild relink v1";

/// A COPY step's last layer, as [`Store::copy_record`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRecord {
    /// The layer's snapshot directory (it exists, and this process leased it).
    pub snapshot: PathBuf,
    /// Path in the layer → content digest.
    pub files: HashMap<String, [u8; 32]>,
}

fn encode(digest: &str, diff_id: &str, files: &[(String, [u8; 32])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + files.len() * 64);
    out.extend_from_slice(MAGIC);
    for s in [digest, diff_id] {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    for (path, d) in files {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(d);
    }
    out
}

/// Reads `n` bytes at `*at`, moving past them.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let s = bytes.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s)
}

/// (digest, diff_id, files) of a record; None if it is not one.
type Decoded = (String, String, HashMap<String, [u8; 32]>);

fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut at = 0;
    if take(bytes, &mut at, MAGIC.len())? != MAGIC {
        return None;
    }
    let text = |at: &mut usize| -> Option<String> {
        let n = u16::from_le_bytes(take(bytes, at, 2)?.try_into().ok()?);
        String::from_utf8(take(bytes, at, n.into())?.to_vec()).ok()
    };
    let digest = text(&mut at)?;
    let diff_id = text(&mut at)?;
    let mut files = HashMap::new();
    while at < bytes.len() {
        let n = u32::from_le_bytes(take(bytes, &mut at, 4)?.try_into().ok()?);
        let path = String::from_utf8(take(bytes, &mut at, n as usize)?.to_vec()).ok()?;
        let d: [u8; 32] = take(bytes, &mut at, 32)?.try_into().ok()?;
        files.insert(path, d);
    }
    Some((digest, diff_id, files))
}

impl Store {
    /// The copy records (see the module docs).
    pub(crate) fn relink_dir(&self) -> PathBuf {
        self.root().join("relink")
    }

    fn copy_record_path(&self, identity: &[u8; 32]) -> PathBuf {
        let hex: String = identity.iter().map(|b| format!("{b:02x}")).collect();
        self.relink_dir().join(hex)
    }

    /// The last layer the COPY step `identity` made, when its record reads and its
    /// snapshot is still in the store; the snapshot is leased (prune leaves it).
    pub fn copy_record(&self, identity: &[u8; 32]) -> Option<CopyRecord> {
        let bytes = std::fs::read(self.copy_record_path(identity)).ok()?;
        let (digest, diff_id, files) = decode(&bytes)?;
        self.lease(&[Leased::Layer {
            digest: &digest,
            diff_id: &diff_id,
        }])
        .ok()?;
        let snapshot = self.snapshot_path(&diff_id).ok()?;
        snapshot.is_dir().then_some(CopyRecord { snapshot, files })
    }

    /// Records what the layer (`digest`, `diff_id`) that the COPY step `identity` just
    /// made holds (see the module docs); replaces the step's earlier record. A hint: not
    /// fsynced.
    pub fn put_copy_record(
        &self,
        identity: &[u8; 32],
        digest: &str,
        diff_id: &str,
        files: &[(String, [u8; 32])],
    ) -> Result<(), CacheError> {
        let path = self.copy_record_path(identity);
        fsutil::write_hint(&path, &encode(digest, diff_id, files)).ctx("write", &path)
    }

    /// Removes the copy records whose layer has no snapshot any more (after a prune).
    pub(crate) fn remove_orphan_copy_records(&self) -> Result<(), CacheError> {
        let dir = self.relink_dir();
        let has_snapshot = |e: &std::fs::DirEntry| {
            std::fs::read(e.path())
                .ok()
                .and_then(|b| decode(&b))
                .and_then(|(_, diff_id, _)| self.snapshot_path(&diff_id).ok())
                .is_some_and(|s| s.is_dir())
        };
        fsutil::remove_orphans(&dir, |e| !has_snapshot(e))
            .ctx("remove copy records of pruned layers in", &dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_anything_else_reads_as_none() {
        let files = vec![
            ("app/a".to_string(), [1u8; 32]),
            ("app/b c".into(), [2; 32]),
        ];
        let bytes = encode("sha256:aa", "sha256:bb", &files);
        let (digest, diff_id, read) = decode(&bytes).unwrap();
        assert_eq!(
            (digest.as_str(), diff_id.as_str()),
            ("sha256:aa", "sha256:bb")
        );
        assert_eq!(read.len(), 2);
        assert_eq!(read["app/b c"], [2; 32]);
        // Cut anywhere: none, or (at an entry's end) fewer files, never a wrong one.
        for cut in 0..bytes.len() {
            if let Some((_, _, some)) = decode(&bytes[..cut]) {
                assert!(some.len() < 2 && some.iter().all(|(p, d)| read[p] == *d));
            }
        }
        assert!(decode(b"rbuild relink v0xxxx").is_none());
    }

    #[test]
    fn a_record_lives_as_long_as_its_snapshot() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let diff_id = format!("sha256:{}", "ab".repeat(32));
        let (kept, gone) = ([1u8; 32], [2u8; 32]);
        let files = [("app/a".to_string(), [7u8; 32])];
        for id in [&kept, &gone] {
            store
                .put_copy_record(id, "sha256:00", &diff_id, &files)
                .unwrap();
        }
        // No snapshot yet: neither record is usable, and prune removes both.
        assert!(store.copy_record(&kept).is_none());
        store.remove_orphan_copy_records().unwrap();
        assert_eq!(std::fs::read_dir(store.relink_dir()).unwrap().count(), 0);

        std::fs::create_dir_all(store.snapshot_path(&diff_id).unwrap()).unwrap();
        store
            .put_copy_record(&kept, "sha256:00", &diff_id, &files)
            .unwrap();
        store.remove_orphan_copy_records().unwrap();
        let r = store
            .copy_record(&kept)
            .expect("record of an existing snapshot");
        assert_eq!(r.snapshot, store.snapshot_path(&diff_id).unwrap());
        assert_eq!(r.files["app/a"], [7; 32]);
        assert!(store.copy_record(&gone).is_none());
    }
}
