//! Every blob of the store, read once: the sha256 of its bytes against its name, and
//! for a compressed blob the sha256 of what it uncompresses to, which a layer's diff_id
//! must equal. Blobs are read on a few threads; a blob that appears later (a build
//! running beside the check) is read when something names it.

use super::Checker;
use crate::Store;
use crate::error::CacheError;
use crate::extract::decompressed;
use crate::fsutil::HashReader;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// What one blob turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    Missing,
    /// Its bytes do not hash to its name.
    Corrupt,
    /// `content`: the digest of the uncompressed bytes (of the bytes themselves when not
    /// compressed: `decompressed` hands those on as they are); None when the
    /// compression is one rbuild does not read.
    Good {
        content: Option<String>,
    },
}

/// The status and size of every blob read so far.
#[derive(Debug, Default)]
pub(super) struct BlobTable {
    map: HashMap<String, (Status, u64)>,
}

impl BlobTable {
    /// The status of `digest`, reading the blob now if it was not read yet.
    pub(super) fn status(&mut self, store: &Store, digest: &str) -> Status {
        if let Some((s, _)) = self.map.get(digest) {
            return s.clone();
        }
        let (s, size) = read_blob(&store.blob_path(digest), digest);
        self.map.insert(digest.to_string(), (s.clone(), size));
        s
    }

    pub(super) fn is_good(&self, digest: &str) -> bool {
        matches!(self.map.get(digest), Some((Status::Good { .. }, _)))
    }

    pub(super) fn size(&self, digest: &str) -> u64 {
        self.map.get(digest).map_or(0, |(_, s)| *s)
    }
}

/// Reads the blob at `path`, which should be `digest`.
fn read_blob(path: &Path, digest: &str) -> (Status, u64) {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return (Status::Missing, 0),
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut raw = HashReader::new(f);
    let content = match decompressed(Box::new(&mut raw), path) {
        Ok(mut plain) => {
            let mut h = HashReader::new(&mut plain);
            match io::copy(&mut h, &mut io::sink()) {
                Ok(_) => Some(h.finish().0),
                Err(e) => Some(format!("(unreadable: {e})")),
            }
        }
        Err(_) => None,
    };
    // The decompressor may stop before trailing bytes: the digest covers them all.
    if io::copy(&mut raw, &mut io::sink()).is_err() {
        return (Status::Corrupt, size);
    }
    let (actual, _) = raw.finish();
    if actual != digest {
        return (Status::Corrupt, size);
    }
    (Status::Good { content }, size)
}

impl Checker {
    /// Reads every blob (see the module docs); a corrupt one is a problem, removed on
    /// repair (whatever names it is then dropped as naming a missing blob).
    pub(super) fn verify_blobs(&mut self) -> Result<(), CacheError> {
        let mut digests = self.store.blob_digests()?;
        digests.sort();
        let next = Mutex::new(digests.iter());
        let results = Mutex::new(Vec::new());
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let d = match next.lock() {
                            Ok(mut it) => it.next().cloned(),
                            Err(_) => None,
                        };
                        let Some(d) = d else { break };
                        let r = read_blob(&self.store.blob_path(&d), &d);
                        if let Ok(mut out) = results.lock() {
                            out.push((d, r));
                        }
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_default();
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (d, (status, size)) in results {
            self.report.blobs += 1;
            if status == Status::Corrupt {
                if self.repair {
                    super::remove_file(&self.store.blob_path(&d))?;
                }
                self.problem(
                    format!("blob {d}"),
                    "its content does not match its digest",
                    "blob removed (what names it is dropped; pull or build it again)",
                );
            }
            self.blobs.map.insert(d, (status, size));
        }
        Ok(())
    }
}
