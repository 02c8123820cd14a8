//! Merging cache configs, for builders that export to one destination, and the size bound
//! of a merged cache (`--cache-to …,max-size=`): the records unused longest are dropped
//! first.

use super::CacheConfig;
use std::collections::HashMap;

/// How an export treats what its destination already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Keep the destination's records and add this build's (`merge=true`, the default);
    /// false replaces them, as BuildKit does.
    pub merge: bool,
    /// The most bytes of layer blobs a merged cache may name (`max-size=`); `None` is no
    /// bound.
    pub max_size: Option<u64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            merge: true,
            max_size: None,
        }
    }
}

/// Now, in Unix milliseconds (0 if the clock is before 1970): builds exported one after
/// the other on one machine get stamps in that order.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl CacheConfig {
    /// Marks every record as exported at `when` (Unix ms).
    pub fn touch_all(&mut self, when: u64) {
        for key in self.records.keys() {
            let t = self.touched.entry(key.clone()).or_insert(when);
            *t = (*t).max(when);
        }
    }

    /// When a record was last exported (Unix ms): its stamp, else (a cache written before
    /// stamps) when its result was made.
    fn last_used(&self, key: &str) -> u64 {
        self.touched
            .get(key)
            .copied()
            .or_else(|| {
                self.records
                    .get(key)
                    .map(|r| r.created.saturating_mul(1000))
            })
            .unwrap_or(0)
    }

    /// Adds `other`'s records. A key both hold keeps this config's record (the newer
    /// build's, when this one is the exporter's) and the later stamp; a record whose
    /// layers `other` describes differently from this config is left out, so the result
    /// still passes [`CacheConfig::parse`].
    pub fn absorb(&mut self, other: CacheConfig) {
        let mut blobs: HashMap<String, super::Layer> = HashMap::new();
        for l in self.layers() {
            blobs.insert(l.digest.clone(), l);
        }
        for (key, rec) in other.records {
            let stamp = other
                .touched
                .get(&key)
                .copied()
                .unwrap_or(rec.created.saturating_mul(1000))
                .max(self.last_used(&key));
            if !self.records.contains_key(&key) {
                let agrees = rec
                    .layers
                    .iter()
                    .all(|l| blobs.get(&l.digest).is_none_or(|b| b == l));
                if !agrees {
                    continue;
                }
                for l in &rec.layers {
                    blobs.insert(l.digest.clone(), l.clone());
                }
                self.records.insert(key.clone(), rec);
            }
            self.touched.insert(key, stamp);
        }
        for (build, rec) in other.explain {
            self.explain.entry(build).or_insert(rec);
        }
        self.merged.extend(other.merged);
        for (id, l) in other.mounts {
            let agrees = blobs.get(&l.digest).is_none_or(|b| *b == l);
            if agrees {
                self.mounts.entry(id).or_insert(l);
            }
        }
    }

    /// Bytes of the distinct layer blobs the records name.
    pub fn blob_bytes(&self) -> u64 {
        self.layers().iter().map(|l| l.size).sum()
    }

    /// Drops records, the one exported longest ago first, until the distinct blobs the
    /// rest name add up to at most `max` bytes. A record whose layers other records name
    /// as well frees nothing and is passed over (it goes once those are gone). Returns how
    /// many records were dropped.
    pub fn bound(&mut self, max: u64) -> usize {
        let mut refs: HashMap<String, (u64, usize)> = HashMap::new();
        for rec in self.records.values() {
            for l in &rec.layers {
                refs.entry(l.digest.clone()).or_insert((l.size, 0)).1 += 1;
            }
        }
        let mut total: u64 = refs.values().map(|(s, _)| s).sum();
        let mut order: Vec<(u64, u64, String)> = self
            .records
            .iter()
            .map(|(k, r)| (self.last_used(k), r.created, k.clone()))
            .collect();
        order.sort();
        let mut dropped = 0;
        // Each round drops the oldest record that frees a blob, then looks again from the
        // oldest: a record passed over may free one now.
        while total > max {
            let victim = order.iter().position(|(_, _, key)| {
                let Some(rec) = self.records.get(key) else {
                    return false;
                };
                let own = blob_counts(&rec.layers);
                own.iter()
                    .any(|(d, n)| refs.get(*d).is_some_and(|e| e.1 == *n))
            });
            let Some(i) = victim else { break };
            let (_, _, key) = order.remove(i);
            let Some(rec) = self.records.remove(&key) else {
                continue;
            };
            for (d, n) in blob_counts(&rec.layers) {
                if let Some(e) = refs.get_mut(d) {
                    e.1 -= n;
                    if e.1 == 0 {
                        total -= e.0;
                    }
                }
            }
            self.touched.remove(&key);
            dropped += 1;
        }
        dropped
    }
}

/// How often a chain names each blob.
fn blob_counts(layers: &[super::Layer]) -> HashMap<&str, usize> {
    let mut own: HashMap<&str, usize> = HashMap::new();
    for l in layers {
        *own.entry(l.digest.as_str()).or_default() += 1;
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheRecord, Layer};
    use oci_spec::image::MediaType;
    use std::collections::BTreeMap;

    fn layer(n: u8, size: u64) -> Layer {
        Layer {
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            diff_id: format!("sha256:{}", format!("{:02x}", n + 100).repeat(32)),
            size,
            media_type: MediaType::ImageLayerGzip,
        }
    }

    fn cfg(recs: &[(&str, &[Layer], u64)]) -> CacheConfig {
        let mut c = CacheConfig::new(
            recs.iter()
                .map(|(k, ls, _)| {
                    let r = CacheRecord {
                        layers: ls.to_vec(),
                        config: None,
                        created: 1,
                    };
                    (k.to_string(), r)
                })
                .collect::<BTreeMap<_, _>>(),
        );
        for (k, _, t) in recs {
            c.touched.insert(k.to_string(), *t);
        }
        c
    }

    #[test]
    fn absorb_keeps_both_builds_and_the_later_stamp() {
        let base = layer(1, 100);
        let mut a = cfg(&[
            ("base", std::slice::from_ref(&base), 10),
            ("a", &[base.clone(), layer(2, 5)], 10),
        ]);
        a.merged.insert("x.rb-a".into());
        let mut b = cfg(&[
            ("base", std::slice::from_ref(&base), 20),
            ("b", &[base.clone(), layer(3, 7)], 20),
        ]);
        b.merged.insert("x.rb-b".into());
        a.absorb(b);
        assert_eq!(a.records.keys().collect::<Vec<_>>(), ["a", "b", "base"]);
        assert_eq!(a.touched["base"], 20);
        assert_eq!(a.touched["a"], 10);
        assert_eq!(a.merged.len(), 2);
        assert!(CacheConfig::parse(&a.to_json()).is_ok());

        // A record describing a known blob another way is left out.
        let mut odd = layer(2, 5);
        odd.size = 6;
        a.absorb(cfg(&[("c", &[odd], 30)]));
        assert!(!a.records.contains_key("c"));
        assert!(CacheConfig::parse(&a.to_json()).is_ok());
    }

    #[test]
    fn bound_drops_the_least_recently_exported_first() {
        let base = layer(1, 100);
        let mut c = cfg(&[
            ("base", std::slice::from_ref(&base), 5),
            ("old", &[base.clone(), layer(2, 50)], 10),
            ("mid", &[base.clone(), layer(3, 50)], 20),
            ("new", &[base.clone(), layer(4, 50)], 30),
        ]);
        assert_eq!(c.blob_bytes(), 250);
        assert_eq!(c.bound(250), 0);
        // "base" is the oldest but frees nothing while the others name its layer.
        assert_eq!(c.bound(200), 1);
        assert_eq!(c.records.keys().collect::<Vec<_>>(), ["base", "mid", "new"]);
        assert!(!c.touched.contains_key("old"));
        assert_eq!(c.blob_bytes(), 200);
        assert_eq!(c.bound(120), 2);
        assert_eq!(c.records.keys().collect::<Vec<_>>(), ["base"]);
        assert_eq!(c.bound(0), 1);
        assert!(c.records.is_empty());
    }
}
