//! Cache keys: a 32-byte blake3 digest per vertex over a canonical encoding of its op and
//! the keys of its inputs. The solver folds facts known only at run time on top of it.

use crate::env::EnvMap;
use crate::op::{ExecOp, Op};
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
    let hashed = match op {
        Op::Exec(exec) if !exec.env.is_empty() => hash_exec(&mut h, exec),
        _ => false,
    };
    if !hashed {
        let encoded = serde_json::to_vec(op).expect("ops always serialize");
        h.update(&(encoded.len() as u64).to_le_bytes());
        h.update(&encoded);
    }
    h.update(&(inputs.len() as u64).to_le_bytes());
    for k in inputs {
        h.update(&k.0);
    }
    CacheKey(*h.finalize().as_bytes())
}

/// Where the environment goes in an Exec op's JSON with an empty one. Quotes inside JSON
/// strings are escaped, so these bytes can only be the `env` field itself.
const EMPTY_ENV: &[u8] = br#","env":{}"#;

/// Bytes hashed per `update`: blake3 is fastest on large inputs.
const STAGE: usize = 64 * 1024;

/// Hashes what `serde_json::to_vec(&Op::Exec(op))` would give, length first, without
/// serializing the environment again: the op is encoded with an empty one and the
/// environment's shared leaf encodings go between its braces. False (nothing hashed) if
/// the encoding does not have the expected shape.
fn hash_exec(h: &mut blake3::Hasher, op: &ExecOp) -> bool {
    let shell = Op::Exec(ExecOp {
        env: EnvMap::new(),
        ..op.clone()
    });
    let shell = serde_json::to_vec(&shell).expect("ops always serialize");
    let Some(at) = shell.windows(EMPTY_ENV.len()).position(|w| w == EMPTY_ENV) else {
        return false;
    };
    let split = at + EMPTY_ENV.len() - 1;
    let len = shell.len() + op.env.json_body_len();
    h.update(&(len as u64).to_le_bytes());
    let mut stage = Vec::with_capacity(STAGE);
    stage.extend_from_slice(&shell[..split]);
    op.env.write_json_body(&mut |bytes| {
        if stage.len() + bytes.len() > STAGE {
            h.update(&stage);
            stage.clear();
        }
        if bytes.len() >= STAGE {
            h.update(bytes);
        } else {
            stage.extend_from_slice(bytes);
        }
    });
    stage.extend_from_slice(&shell[split..]);
    h.update(&stage);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{ExecMount, MountKind, NetworkMode, SecurityMode};

    /// The key as defined: blake3 over the whole serde JSON.
    fn reference_key(op: &Op, inputs: &[CacheKey]) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(KEY_DOMAIN);
        let encoded = serde_json::to_vec(op).unwrap();
        h.update(&(encoded.len() as u64).to_le_bytes());
        h.update(&encoded);
        h.update(&(inputs.len() as u64).to_le_bytes());
        for k in inputs {
            h.update(&k.0);
        }
        CacheKey(*h.finalize().as_bytes())
    }

    #[test]
    fn exec_keys_are_the_keys_of_the_whole_encoding() {
        let input = CacheKey([7; 32]);
        let mut env = EnvMap::new();
        for n in [0usize, 1, 2, 31, 33, 500, 5000] {
            while env.len() < n {
                let i = env.len();
                // Values that need escaping, and ones that look like the marker.
                env.insert(&format!("K{i}"), &format!(r#"v{i} "env":{{}} \ é"#));
            }
            for (args, mounts, security) in [
                (vec!["true".to_string()], vec![], SecurityMode::Sandbox),
                (
                    vec!["/bin/sh".into(), "-c".into(), r#"echo ,"env":{} "#.into()],
                    vec![ExecMount {
                        target: "/t".into(),
                        kind: MountKind::Tmpfs { size: Some(1) },
                    }],
                    SecurityMode::Insecure,
                ),
            ] {
                let op = Op::Exec(ExecOp {
                    args,
                    env: env.clone(),
                    cwd: "/w".into(),
                    user: "1:2".into(),
                    network: NetworkMode::None,
                    mounts,
                    security,
                    settings: Default::default(),
                    platform: None,
                });
                assert_eq!(
                    cache_key(&op, &[input]),
                    reference_key(&op, &[input]),
                    "{n} variables"
                );
            }
        }
    }
}
