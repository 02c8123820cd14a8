//! Squashed layers (`rbuild build --squash`): every layer of an image above its base
//! image merged into one, in overlay form resolved against the base (`merge.rs`), then
//! committed like any upper dir, so the bytes depend only on the layers merged.
//!
//! The result is kept as an ordinary cache record under a key of its own
//! (`squash-<sha256 of the chain ID and the base length>`), so a rebuild that squashes
//! the same chain again reuses the layer instead of merging and compressing it again,
//! and prune keeps its blob like any record's.

use crate::error::{CacheError, IoContext};
use crate::flatten::chain_id;
use crate::{CacheRecord, Layer, Store, merge, unix_now};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The record key of `chain` squashed above its first `base` layers.
fn squash_key(chain: &[Layer], base: usize) -> Result<String, CacheError> {
    let id = chain_id(chain.iter().map(|l| l.diff_id.as_str()))?.unwrap_or_default();
    let h = Sha256::digest(format!("{id} {base}").as_bytes());
    Ok(format!("squash-{}", hex::encode(h)))
}

fn refs(v: &[PathBuf]) -> Vec<&Path> {
    v.iter().map(PathBuf::as_path).collect()
}

impl Store {
    /// `chain` with its layers above the first `base` merged into one. A chain with at
    /// most one layer above the base is returned as it is; one whose upper layers leave
    /// no change over the base (everything they made, they deleted) ends at the base.
    pub fn squash(&self, chain: &[Layer], base: usize) -> Result<Vec<Layer>, CacheError> {
        if chain.len() <= base + 1 {
            return Ok(chain.to_vec());
        }
        let key = squash_key(chain, base)?;
        if let Some(rec) = self.record_get(&key)? {
            return Ok(rec.layers);
        }
        let snapshots = |layers: &[Layer]| -> Result<Vec<PathBuf>, CacheError> {
            layers.iter().rev().map(|l| self.snapshot(l)).collect()
        };
        let (upper, below) = (snapshots(&chain[base..])?, snapshots(&chain[..base])?);
        let tmp = self.tmp_dir("squash")?;
        let dest = tmp.path().join("s");
        std::fs::create_dir(&dest).ctx("create directory", &dest)?;
        merge::merge(&refs(&upper), &refs(&below), &dest)?;
        let mut layers = chain[..base].to_vec();
        layers.extend(self.commit_layer(&dest)?);
        self.record_put(
            &key,
            &CacheRecord {
                layers: layers.clone(),
                config: None,
                created: unix_now(),
            },
        )?;
        Ok(layers)
    }
}
