//! Cache keys: a 32-byte blake3 digest per vertex over a canonical encoding of its op and
//! the keys of its inputs. The solver folds facts known only at run time on top of it.

use crate::op::Op;
use serde::Serialize;
use std::fmt;

/// A 32-byte blake3 digest identifying a vertex's result.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

impl Serialize for CacheKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Domain separation for cache keys; bump when the encoding changes.
const KEY_DOMAIN: &[u8] = b"rbuild cache key v1\0";

/// The static cache key of `op` over inputs with keys `inputs`.
pub fn cache_key(op: &Op, inputs: &[CacheKey]) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(KEY_DOMAIN);
    // serde_json over structs and BTreeMaps is a canonical encoding: field
    // order is fixed by the type, map keys are sorted.
    let encoded = serde_json::to_vec(op).expect("ops always serialize");
    h.update(&(encoded.len() as u64).to_le_bytes());
    h.update(&encoded);
    h.update(&(inputs.len() as u64).to_le_bytes());
    for k in inputs {
        h.update(&k.0);
    }
    CacheKey(*h.finalize().as_bytes())
}
