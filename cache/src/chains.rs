//! Cache records read with their layer chains shared: every record lists the whole chain
//! of its step, so the records of a long build repeat the same chains step after step.
//! Read through one [`ChainMemo`], a chain already seen is neither parsed nor checked
//! again, and the records that list it hold one `Arc` of it: a no-op rebuild of n steps
//! over L layers parses and keeps each distinct chain once instead of n·L layers.

use crate::error::IoContext;
use crate::{CacheError, Layer, Leased, Store};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A cache record whose layer chain may be shared with other records.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedRecord {
    /// The whole layer chain of the vertex's rootfs, bottom first.
    pub layers: Arc<[Layer]>,
    /// The image config (image sources only).
    pub config: Option<serde_json::Value>,
    /// Unix seconds.
    pub created: u64,
}

/// The chains read so far, by the blake3 of their JSON in the record. A chain is here only
/// once its blobs were all found (blobs go only by prune, which no build runs).
#[derive(Default)]
pub struct ChainMemo(Mutex<HashMap<[u8; 32], Arc<[Layer]>>>);

/// A record as stored, its chain left unparsed.
#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow)]
    layers: &'a RawValue,
    #[serde(default)]
    config: Option<serde_json::Value>,
    created: u64,
}

impl Store {
    /// [`record_get`](Self::record_get), sharing chains through `memo` and asking
    /// `has_blob` (a caller's memo of blobs seen) whether a blob is here: a record that
    /// cannot be parsed (then removed) or whose blobs have gone is a miss; a hit is leased
    /// with its layers, as `record_get` leases it.
    pub fn record_get_shared(
        &self,
        key: &str,
        has_blob: &dyn Fn(&str) -> bool,
        memo: &ChainMemo,
    ) -> Result<Option<SharedRecord>, CacheError> {
        let p = self.record_path(key)?;
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("read cache record", p),
        };
        let miss = || {
            let _ = std::fs::remove_file(&p);
            Ok(None)
        };
        let Ok(raw) = serde_json::from_slice::<RawRecord>(&bytes) else {
            return miss();
        };
        self.lease(&[Leased::Record(key)])?;
        let id = *blake3::hash(raw.layers.get().as_bytes()).as_bytes();
        let known = memo
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        let layers = match known {
            Some(chain) => chain,
            None => {
                let Ok(chain) = serde_json::from_str::<Vec<Layer>>(raw.layers.get()) else {
                    return miss();
                };
                // Leased before its blobs are looked at (as record_get does); a record
                // whose blobs are gone is left for prune.
                self.lease_layers(&chain)?;
                if chain.iter().any(|l| !has_blob(&l.digest)) {
                    return Ok(None);
                }
                let chain: Arc<[Layer]> = chain.into();
                memo.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, chain.clone());
                chain
            }
        };
        Ok(Some(SharedRecord {
            layers,
            config: raw.config,
            created: raw.created,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheRecord;

    fn layer(n: u8) -> Layer {
        Layer {
            digest: format!("sha256:{n:064x}"),
            diff_id: format!("sha256:{:064x}", n + 100),
            size: n.into(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    #[test]
    fn records_with_the_same_chain_share_it_and_read_like_record_get() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let chain = vec![layer(1), layer(2)];
        for (key, created) in [("a", 1), ("b", 2)] {
            let rec = CacheRecord {
                layers: chain.clone(),
                config: None,
                created,
            };
            store.record_put(key, &rec).unwrap();
        }
        let other = CacheRecord {
            layers: vec![layer(1)],
            config: Some(serde_json::json!({"os": "linux"})),
            created: 3,
        };
        store.record_put("c", &other).unwrap();
        let memo = ChainMemo::default();
        let checked = std::cell::Cell::new(0);
        let present = |_: &str| {
            checked.set(checked.get() + 1);
            true
        };
        let a = store
            .record_get_shared("a", &present, &memo)
            .unwrap()
            .unwrap();
        let b = store
            .record_get_shared("b", &present, &memo)
            .unwrap()
            .unwrap();
        let c = store
            .record_get_shared("c", &present, &memo)
            .unwrap()
            .unwrap();
        assert_eq!(*a.layers, chain[..]);
        assert_eq!((a.created, b.created), (1, 2));
        assert!(Arc::ptr_eq(&a.layers, &b.layers), "one chain, read once");
        assert_eq!(checked.get(), 3, "the blobs of a chain are checked once");
        assert_eq!(*c.layers, other.layers[..]);
        assert_eq!((c.config, c.created), (other.config, 3));
        assert_eq!(
            store.record_get_shared("nope", &present, &memo).unwrap(),
            None
        );

        // A record whose blob is gone is a miss, left for prune as record_get leaves it.
        let fresh = ChainMemo::default();
        assert_eq!(
            store.record_get_shared("a", &|_| false, &fresh).unwrap(),
            None
        );
        assert!(store.record_path("a").unwrap().exists());
        // One that does not parse is a miss and is removed.
        std::fs::write(store.record_path("b").unwrap(), b"{not json").unwrap();
        assert_eq!(store.record_get_shared("b", &present, &memo).unwrap(), None);
        assert!(!store.record_path("b").unwrap().exists());
    }
}
