//! Flattened snapshots: the merged tree of a prefix of a layer chain, one directory that
//! stands in for those layers when a chain is longer than one overlay mount takes
//! (`rbuild_executor::max_lower_layers`: 500 with the new mount API, about 200 without).
//!
//! A flattened snapshot lives at `flattened/<chain id>`, named by the OCI chain ID of the
//! layers it merges, so any build whose chain starts with those layers finds it. It is
//! made once (under `locks/flatten.lock`, in `tmp/`, synced, then renamed into place, so
//! nothing names a half-written or not yet durable one) and pruned when no record or
//! image chain starts with it any more. It is a storage detail: cache keys and images
//! never see it.
//!
//! Prefix lengths are multiples of [`FLATTEN_STEP`], so a chain growing one layer at a
//! time reuses one flattened prefix for `FLATTEN_STEP` layers, and the next prefix is made
//! from the previous one plus `FLATTEN_STEP` layers, not from all of them.

use crate::error::{CacheError, IoContext};
use crate::{Layer, Store, digest_hex, fsutil, merge};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Flattened prefixes are multiples of this many layers (fewer when one mount takes
/// fewer).
pub const FLATTEN_STEP: usize = 128;

/// The OCI chain ID of layers with these diff IDs, bottom first: the first diff ID, then
/// `sha256(previous chain ID + " " + diff ID)` for each next one. `None` for no layers.
pub fn chain_id<'a>(
    diff_ids: impl IntoIterator<Item = &'a str>,
) -> Result<Option<String>, CacheError> {
    let mut id: Option<String> = None;
    for d in diff_ids {
        digest_hex(d)?;
        id = Some(match id {
            None => d.to_string(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        });
    }
    Ok(id)
}

/// The chain IDs of every prefix of `diff_ids` (bottom first), shortest first.
fn prefix_chain_ids(diff_ids: &[&str]) -> Result<Vec<String>, CacheError> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last().map(String::as_str).into_iter().chain([*d]))?;
        // `chain_id` of [previous chain ID, d] is exactly the next chain ID.
        out.extend(next);
    }
    Ok(out)
}

/// How many bottom layers of an `n`-layer chain to flatten so that one mount of at most
/// `max` lower dirs holds the rest: 0 when the chain fits, else the smallest multiple of
/// the step (see [`FLATTEN_STEP`]) that leaves at most `max - 1` layers above it.
pub fn flatten_prefix(n: usize, max: usize) -> usize {
    if n <= max {
        return 0;
    }
    let step = flatten_step(max);
    (n + 1 - max).div_ceil(step) * step
}

fn flatten_step(max: usize) -> usize {
    FLATTEN_STEP.min(max.saturating_sub(1)).max(1)
}

impl Store {
    pub(crate) fn flattened_dir(&self) -> PathBuf {
        self.root().join("flattened")
    }

    /// The lower dirs (bottom first) of an overlay of `chain` taking at most `max` of
    /// them: the layers' snapshots, with a flattened snapshot standing in for the bottom
    /// ones when the chain is longer (made now if it is not in the store yet).
    pub fn mount_lowers(&self, chain: &[Layer], max: usize) -> Result<Vec<PathBuf>, CacheError> {
        let prefix = flatten_prefix(chain.len(), max);
        let mut out = Vec::with_capacity(chain.len() - prefix + 1);
        if prefix > 0 {
            out.push(self.flattened(&chain[..prefix], flatten_step(max))?);
        }
        for l in &chain[prefix..] {
            out.push(self.snapshot(l)?);
        }
        Ok(out)
    }

    /// The flattened snapshot of all of `chain`, made from the one of `chain` minus its
    /// last `step` layers when that is a prefix the store flattens too.
    fn flattened(&self, chain: &[Layer], step: usize) -> Result<PathBuf, CacheError> {
        let id = chain_id(chain.iter().map(|l| l.diff_id.as_str()))?.unwrap_or_default();
        let target = self.flattened_dir().join(digest_hex(&id)?);
        if target.is_dir() {
            return Ok(target);
        }
        let mut lowers = Vec::with_capacity(step + 1);
        let rest = if chain.len() > step && chain.len().is_multiple_of(step) {
            lowers.push(self.flattened(&chain[..chain.len() - step], step)?);
            &chain[chain.len() - step..]
        } else {
            chain
        };
        for l in rest {
            lowers.push(self.snapshot(l)?);
        }
        // One flattening at a time, across processes: it is rare and large, and two
        // builds wanting the same prefix should make it once.
        let lock_path = self.locks_dir().join("flatten.lock");
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx("open lock file", &lock_path)?;
        lock.lock().ctx("lock", &lock_path)?;
        if target.is_dir() {
            return Ok(target);
        }
        let tmp = self.tmp_dir("flatten")?;
        let dest = tmp.path().join("s");
        std::fs::create_dir(&dest).ctx("create directory", &dest)?;
        let top_first: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
        merge::merge(&top_first, &[], &dest)?;
        // Durable before anything names it: a crash must not leave a flattened snapshot
        // whose files are missing or empty.
        crate::durable::sync_tree(&dest).ctx("sync the files of", &dest)?;
        let dir = self.flattened_dir();
        std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        std::fs::rename(&dest, &target).ctx("move flattened snapshot into place at", &target)?;
        fsutil::fsync_dir(&dir)?;
        Ok(target)
    }

    /// Removes the flattened snapshots no chain in `chains` (diff IDs, bottom first)
    /// starts with; returns the bytes freed.
    pub(crate) fn prune_flattened(&self, chains: &[Vec<String>]) -> Result<u64, CacheError> {
        let dir = self.flattened_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).ctx("read directory", &dir),
        };
        let mut keep: HashSet<String> = HashSet::new();
        for chain in chains {
            let ids: Vec<&str> = chain.iter().map(String::as_str).collect();
            // A bad diff ID in a record keeps nothing of its chain; it is a miss anyway.
            if let Ok(prefixes) = prefix_chain_ids(&ids) {
                keep.extend(
                    prefixes
                        .into_iter()
                        .filter_map(|id| id.strip_prefix("sha256:").map(str::to_string)),
                );
            }
        }
        let mut freed = 0;
        for ent in entries {
            let ent = ent.ctx("read directory", &dir)?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let p = ent.path();
            freed += fsutil::du(&p);
            fsutil::remove_dir_all_force(&p).ctx("remove flattened snapshot", &p)?;
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let (a, b, c) = (d('a'), d('b'), d('c'));
        assert_eq!(chain_id([]).unwrap(), None);
        assert_eq!(chain_id([a.as_str()]).unwrap(), Some(a.clone()));
        let ab = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(
            chain_id([a.as_str(), b.as_str()]).unwrap(),
            Some(ab.clone())
        );
        let abc = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{ab} {c}").as_bytes()))
        );
        assert_eq!(
            chain_id([a.as_str(), b.as_str(), c.as_str()]).unwrap(),
            Some(abc.clone())
        );
        assert_eq!(
            prefix_chain_ids(&[a.as_str(), b.as_str(), c.as_str()]).unwrap(),
            [a.clone(), ab, abc]
        );
        assert!(chain_id(["sha256:short"]).is_err());
    }

    #[test]
    fn known_chain_id() {
        // Worked out with `printf '%s %s' A B | sha256sum`: the digests keep their
        // `sha256:` prefix and one space joins them.
        let a = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
        let b = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";
        assert_eq!(
            chain_id([a, b]).unwrap().unwrap(),
            "sha256:be4f95a8aeb2031aac7c2c325e9e0fa1bc655214723f0aae68df5922df54b646"
        );
    }

    #[test]
    fn prefixes_are_steps_that_leave_room() {
        assert_eq!(flatten_prefix(500, 500), 0);
        assert_eq!(flatten_prefix(501, 500), 128);
        assert_eq!(flatten_prefix(600, 500), 128);
        assert_eq!(flatten_prefix(627, 500), 128);
        assert_eq!(flatten_prefix(628, 500), 256);
        assert_eq!(flatten_prefix(230, 209), 128);
        for max in [2, 3, 50, 209, 500] {
            for n in 1..2000 {
                let p = flatten_prefix(n, max);
                let lowers = if p > 0 { n - p + 1 } else { n };
                assert!(lowers <= max, "n={n} max={max} p={p}");
                assert!(p <= n);
                assert!(p.is_multiple_of(flatten_step(max)));
            }
        }
    }
}
