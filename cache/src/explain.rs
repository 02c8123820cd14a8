//! Explanation records: what the last build of a Dockerfile and target put into each step's
//! cache key, kept so that the next build can say why a step ran instead of coming from the
//! cache. The solver (`rbuild_solver::explain`) decides what goes in; this module stores it.
//!
//! Per build, one directory `explain/<id>/` (the id is a hash the caller derives from the
//! build's identity): `record.json` (a [`BuildRecord`]: per step, a 16-hex digest of each
//! named input of its key, and the few values that are never secret in clear) and one
//! `<digest>.files` per context selection a COPY read (a compact list of per-file
//! fingerprints, opaque here, named by the 16-hex digest of the selection). Nothing in a
//! record is a value of a build arg or a file's content. Every write is atomic.

use crate::error::{CacheError, IoContext};
use crate::{Store, fsutil};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Directory of the explanation records under the store root.
pub const EXPLAIN_DIR: &str = "explain";
/// The record format this code reads and writes (2: a RUN's environment as a delta, and
/// the op digest without it; a record of another version reads as none).
pub const RECORD_VERSION: u32 = 2;
const RECORD_FILE: &str = "record.json";
const LIST_EXT: &str = "files";

/// One build's record: per step (by slot, the step's place in its stage), what its key
/// was made of.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuildRecord {
    pub version: u32,
    /// The build's identity without the context's location (`Dockerfile path, target`): what
    /// an imported record is found by.
    pub build: String,
    /// Slot → step.
    pub steps: BTreeMap<String, StepRecord>,
}

/// One step of a [`BuildRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// The op's kind (`exec`, `file`, `image`, …).
    pub kind: String,
    /// 16 hex digits of the op's own encoding (its inputs left out): finds the same
    /// instruction when steps were inserted before it.
    pub op: String,
    /// The first 16 hex digits of the runtime key.
    pub key: String,
    /// The same of each input's runtime key, in input order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Named input of the key → 16 hex digits of its bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
    /// Named inputs kept in clear: only values that are never secret (image references
    /// and digests, the platform, network and security modes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// For a RUN: the step (its key in [`BuildRecord::steps`]) whose environment this
    /// one's `env:NAME` digests are a delta from, None when they hold the whole
    /// environment. A removed variable's digest is [`ENV_REMOVED`]. Kept as a delta, a
    /// Dockerfile of n steps with a growing environment has a record of size O(n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<String>,
}

/// The digest of a variable a RUN's environment no longer has (see
/// [`StepRecord::env_from`]).
pub const ENV_REMOVED: &str = "-";

/// A record as a cache export carries it: the record and its file lists (base64).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExportedRecord {
    pub record: BuildRecord,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lists: BTreeMap<String, String>,
}

impl ExportedRecord {
    /// Adds a file list (kept as base64 in the cache config).
    pub fn add_list(&mut self, digest: &str, bytes: &[u8]) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.lists.insert(digest.to_string(), b64);
    }

    /// The file list `digest`, if the record carries one that decodes.
    pub fn list(&self, digest: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let b64 = self.lists.get(digest)?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// Whether `id` can name a record directory or a list (hex digits only, so no path tricks).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn invalid(id: &str) -> CacheError {
    CacheError::InvalidKey(id.to_string())
}

/// The directory of the record `id`.
fn dir(store: &Store, id: &str) -> Result<PathBuf, CacheError> {
    if !valid_id(id) {
        return Err(invalid(id));
    }
    Ok(store.root().join(EXPLAIN_DIR).join(id))
}

/// The record `id`, if there is one this version can read. A record that does not parse
/// is no record (the next build writes a good one): explanations never fail a build.
pub fn load(store: &Store, id: &str) -> Result<Option<BuildRecord>, CacheError> {
    let p = dir(store, id)?.join(RECORD_FILE);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("read explanation record", p),
    };
    Ok(serde_json::from_slice::<BuildRecord>(&bytes)
        .ok()
        .filter(|r| r.version == RECORD_VERSION))
}

/// The file list `digest` of the record `id`, if it was kept.
pub fn load_list(store: &Store, id: &str, digest: &str) -> Result<Option<Vec<u8>>, CacheError> {
    if !valid_id(digest) {
        return Err(invalid(digest));
    }
    let p = dir(store, id)?.join(format!("{digest}.{LIST_EXT}"));
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("read file list", p),
    }
}

/// Whether the record `id` keeps the file list `digest`.
pub fn has_list(store: &Store, id: &str, digest: &str) -> bool {
    valid_id(digest)
        && dir(store, id)
            .map(|d| d.join(format!("{digest}.{LIST_EXT}")).is_file())
            .unwrap_or(false)
}

/// Removes the records (and their file lists) last written at least `until` ago, or
/// every one when `until` is None: what `prune --all` and `--filter until=` clear beside
/// the build cache. A build running meanwhile writes its record again when it ends.
/// Returns the bytes freed.
pub(crate) fn prune(store: &Store, until: Option<std::time::Duration>) -> u64 {
    let Ok(entries) = std::fs::read_dir(store.root().join(EXPLAIN_DIR)) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut freed = 0;
    for e in entries.flatten() {
        let written = std::fs::metadata(e.path().join(RECORD_FILE)).and_then(|m| m.modified());
        let old_enough = match (until, written) {
            (None, _) => true,
            (Some(d), Ok(t)) => now.duration_since(t).unwrap_or_default() >= d,
            // No record in it: a half-written directory of a build that died.
            (Some(_), Err(_)) => true,
        };
        if old_enough {
            let bytes = fsutil::du(&e.path());
            if std::fs::remove_dir_all(e.path()).is_ok() {
                freed += bytes;
            }
        }
    }
    freed
}

/// Writes `record` as the record `id` with the file lists `lists` (digest → bytes), then
/// removes the lists no step of it names any more. Lists are written before the record,
/// so a record never names a list that a crash left unwritten.
pub fn save(
    store: &Store,
    id: &str,
    record: &BuildRecord,
    lists: &BTreeMap<String, Vec<u8>>,
) -> Result<(), CacheError> {
    let d = dir(store, id)?;
    std::fs::create_dir_all(&d).ctx("create directory", &d)?;
    for (digest, bytes) in lists {
        if !valid_id(digest) {
            return Err(invalid(digest));
        }
        let p = d.join(format!("{digest}.{LIST_EXT}"));
        if !p.is_file() {
            fsutil::atomic_write(&p, bytes)?;
        }
    }
    let p = d.join(RECORD_FILE);
    let bytes = serde_json::to_vec(record).map_err(|e| CacheError::Corrupt {
        path: p.clone(),
        reason: format!("cannot encode explanation record: {e}"),
    })?;
    fsutil::atomic_write(&p, &bytes)?;
    let named: std::collections::HashSet<&String> = record
        .steps
        .values()
        .flat_map(|s| s.digests.values())
        .collect();
    let rd = std::fs::read_dir(&d).ctx("read directory", &d)?;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(digest) = name
            .to_str()
            .and_then(|n| n.strip_suffix(&format!(".{LIST_EXT}")))
        else {
            continue;
        };
        if !named.contains(&digest.to_string()) {
            let _ = std::fs::remove_file(ent.path());
        }
    }
    Ok(())
}

/// The bytes `load`/`save` keep for the record `id` (record and lists), for reports.
pub fn size(store: &Store, id: &str) -> u64 {
    let Ok(d) = dir(store, id) else { return 0 };
    std::fs::read_dir(&d)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(key: &str, content: &str) -> StepRecord {
        StepRecord {
            kind: "file".into(),
            op: "00".repeat(8),
            key: key.into(),
            inputs: vec![],
            digests: BTreeMap::from([("a0:content".to_string(), content.to_string())]),
            values: BTreeMap::new(),
            env_from: None,
        }
    }

    #[test]
    fn records_round_trip_and_unnamed_lists_go() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let id = "ab".repeat(16);
        assert_eq!(load(&store, &id).unwrap(), None);
        let mut rec = BuildRecord {
            version: RECORD_VERSION,
            build: "Dockerfile, default target".into(),
            steps: BTreeMap::from([("s/1".to_string(), step("k1", "1111111111111111"))]),
        };
        let lists = BTreeMap::from([("1111111111111111".to_string(), b"one".to_vec())]);
        save(&store, &id, &rec, &lists).unwrap();
        assert_eq!(load(&store, &id).unwrap().as_ref(), Some(&rec));
        assert!(has_list(&store, &id, "1111111111111111"));
        assert_eq!(
            load_list(&store, &id, "1111111111111111").unwrap(),
            Some(b"one".to_vec())
        );
        // The next build's content differs: its list is added, the old one removed.
        rec.steps
            .insert("s/1".into(), step("k2", "2222222222222222"));
        let lists = BTreeMap::from([("2222222222222222".to_string(), b"two".to_vec())]);
        save(&store, &id, &rec, &lists).unwrap();
        assert!(!has_list(&store, &id, "1111111111111111"));
        assert!(has_list(&store, &id, "2222222222222222"));
        assert!(size(&store, &id) > 3);
        // Prune by age keeps a fresh record; prune of everything removes it.
        assert_eq!(prune(&store, Some(std::time::Duration::from_secs(3600))), 0);
        assert!(load(&store, &id).unwrap().is_some());
        assert!(prune(&store, None) > 3);
        assert_eq!(load(&store, &id).unwrap(), None);
        save(&store, &id, &rec, &lists).unwrap();
        // Names that could leave the directory are refused.
        assert!(load(&store, "../x").is_err());
        assert!(load_list(&store, &id, "../../x").is_err());
        // A record that does not parse is no record.
        let p = store.root().join(EXPLAIN_DIR).join(&id).join(RECORD_FILE);
        std::fs::write(&p, b"{oops").unwrap();
        assert_eq!(load(&store, &id).unwrap(), None);
    }
}
