//! [`EnvMap`]: a RUN's environment as a persistent sorted map, so that thousands of RUN
//! vertices share what did not change between them instead of each owning a copy.
//!
//! A Dockerfile's environment only grows (ENV and ARG set, nothing unsets), and every RUN
//! carries a snapshot of it. A plain `BTreeMap` per vertex made a 10,000-instruction
//! Dockerfile with a growing environment cost gigabytes. Here a snapshot is a pointer: the
//! map is a B+tree whose nodes are shared (`Arc`) and copied only along the path an insert
//! changes (a few hundred bytes), so n snapshots of a map that grew by one entry each cost
//! O(n log n), not O(n²).
//!
//! The cache key of an ExecOp is blake3 over its serde JSON, which spells out every entry
//! (`"env":{"K":"V",…}`); that encoding must stay byte for byte what it was. Each leaf
//! keeps its entries' JSON once made ([`EnvMap::write_json_body`]), so the key of a RUN
//! hashes the shared leaves' bytes instead of re-serializing every string of the
//! environment for every vertex. Persistent-map crates (`im`, `imbl`, `rpds`) give the
//! sharing but no place to keep such a per-leaf encoding, hence this small tree.

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// Most entries in a leaf and children of an inner node; a full node splits in two.
const MAX: usize = 32;

type Entry = (Arc<str>, Arc<str>);

/// A sorted map of environment variables whose clones share their storage.
#[derive(Clone, Default)]
pub struct EnvMap {
    root: Option<Arc<Node>>,
    len: usize,
}

enum Node {
    Leaf(Leaf),
    Inner(Inner),
}

struct Leaf {
    /// Sorted by key, keys unique.
    entries: Vec<Entry>,
    /// `"K":"V","K2":"V2"`: the entries as serde_json writes them in a map, made on first
    /// use and then shared by every snapshot holding this leaf.
    json: OnceLock<Box<[u8]>>,
}

struct Inner {
    /// The smallest key under each child (the first one is never compared).
    firsts: Vec<Arc<str>>,
    children: Vec<Arc<Node>>,
}

/// What inserting below a node gave: its replacement, maybe a right sibling split off.
struct Inserted {
    node: Arc<Node>,
    split: Option<(Arc<str>, Arc<Node>)>,
    added: bool,
}

impl Leaf {
    fn node(entries: Vec<Entry>) -> Node {
        Node::Leaf(Leaf {
            entries,
            json: OnceLock::new(),
        })
    }

    fn json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            let mut out = Vec::new();
            for (i, (k, v)) in self.entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(&mut out, k);
                out.push(b':');
                write_json_str(&mut out, v);
            }
            out.into_boxed_slice()
        })
    }
}

/// A string as serde_json writes it (map keys and values are escaped alike).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Node {
    fn insert(&self, key: &str, value: &str) -> Inserted {
        match self {
            Node::Leaf(leaf) => {
                let mut entries = leaf.entries.clone();
                let added = match entries.binary_search_by(|(k, _)| (**k).cmp(key)) {
                    Ok(i) => {
                        entries[i].1 = Arc::from(value);
                        false
                    }
                    Err(i) => {
                        entries.insert(i, (Arc::from(key), Arc::from(value)));
                        true
                    }
                };
                if entries.len() <= MAX {
                    return Inserted {
                        node: Arc::new(Leaf::node(entries)),
                        split: None,
                        added,
                    };
                }
                let right = entries.split_off(entries.len() / 2);
                let first = right[0].0.clone();
                Inserted {
                    node: Arc::new(Leaf::node(entries)),
                    split: Some((first, Arc::new(Leaf::node(right)))),
                    added,
                }
            }
            Node::Inner(inner) => {
                let i = child_for(&inner.firsts, key);
                let below = inner.children[i].insert(key, value);
                let mut firsts = inner.firsts.clone();
                let mut children = inner.children.clone();
                children[i] = below.node;
                if i == 0 && key < &*firsts[0] {
                    firsts[0] = Arc::from(key);
                }
                if let Some((first, right)) = below.split {
                    firsts.insert(i + 1, first);
                    children.insert(i + 1, right);
                }
                if children.len() <= MAX {
                    return Inserted {
                        node: Arc::new(Node::Inner(Inner { firsts, children })),
                        split: None,
                        added: below.added,
                    };
                }
                let half = children.len() / 2;
                let right_children = children.split_off(half);
                let right_firsts = firsts.split_off(half);
                let first = right_firsts[0].clone();
                Inserted {
                    node: Arc::new(Node::Inner(Inner { firsts, children })),
                    split: Some((
                        first,
                        Arc::new(Node::Inner(Inner {
                            firsts: right_firsts,
                            children: right_children,
                        })),
                    )),
                    added: below.added,
                }
            }
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        let mut node = self;
        loop {
            match node {
                Node::Leaf(leaf) => {
                    return leaf
                        .entries
                        .binary_search_by(|(k, _)| (**k).cmp(key))
                        .ok()
                        .map(|i| &*leaf.entries[i].1);
                }
                Node::Inner(inner) => node = &inner.children[child_for(&inner.firsts, key)],
            }
        }
    }

    fn leaves<'a>(&'a self, out: &mut Vec<&'a Leaf>) {
        match self {
            Node::Leaf(leaf) => out.push(leaf),
            Node::Inner(inner) => inner.children.iter().for_each(|c| c.leaves(out)),
        }
    }
}

/// The leaves of `m` that are not in a subtree `other` holds too, in key order. A key in
/// a shared subtree is in both maps with the same value, so only these can differ.
fn unshared_leaves<'a>(m: &'a EnvMap, other: &EnvMap) -> Vec<&'a Leaf> {
    fn mark(node: &Arc<Node>, seen: &mut HashSet<*const Node>) {
        seen.insert(Arc::as_ptr(node));
        if let Node::Inner(inner) = &**node {
            inner.children.iter().for_each(|c| mark(c, seen));
        }
    }
    fn collect<'a>(node: &'a Arc<Node>, shared: &HashSet<*const Node>, out: &mut Vec<&'a Leaf>) {
        if shared.contains(&Arc::as_ptr(node)) {
            return;
        }
        match &**node {
            Node::Leaf(leaf) => out.push(leaf),
            Node::Inner(inner) => inner.children.iter().for_each(|c| collect(c, shared, out)),
        }
    }
    let mut shared = HashSet::new();
    if let Some(root) = &other.root {
        mark(root, &mut shared);
    }
    let mut out = Vec::new();
    if let Some(root) = &m.root {
        collect(root, &shared, &mut out);
    }
    out
}

/// The child of an inner node whose range holds `key`: the last one whose first key is
/// not above it (the first child takes everything below).
fn child_for(firsts: &[Arc<str>], key: &str) -> usize {
    firsts[1..].partition_point(|f| &**f <= key)
}

impl EnvMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.root.as_ref()?.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`. Copies only the nodes on the way to the key: every other
    /// node stays shared with the clones taken before.
    pub fn insert(&mut self, key: &str, value: &str) {
        let Some(root) = &self.root else {
            self.root = Some(Arc::new(Leaf::node(vec![(key.into(), value.into())])));
            self.len = 1;
            return;
        };
        if root.get(key) == Some(value) {
            return;
        }
        let ins = root.insert(key, value);
        self.len += usize::from(ins.added);
        self.root = Some(match ins.split {
            None => ins.node,
            Some((first, right)) => {
                let left_first = self.first_key_of(&ins.node);
                Arc::new(Node::Inner(Inner {
                    firsts: vec![left_first, first],
                    children: vec![ins.node, right],
                }))
            }
        });
    }

    fn first_key_of(&self, mut node: &Arc<Node>) -> Arc<str> {
        loop {
            match &**node {
                Node::Leaf(leaf) => return leaf.entries[0].0.clone(),
                Node::Inner(inner) => node = &inner.children[0],
            }
        }
    }

    fn leaves(&self) -> Vec<&Leaf> {
        let mut out = Vec::with_capacity(self.len / (MAX / 2) + 1);
        if let Some(root) = &self.root {
            root.leaves(&mut out);
        }
        out
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.leaves()
            .into_iter()
            .flat_map(|leaf| leaf.entries.iter().map(|(k, v)| (&**k, &**v)))
    }

    /// Whether both are the same snapshot (no entry compared).
    pub fn ptr_eq(&self, other: &EnvMap) -> bool {
        match (&self.root, &other.root) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Where `self` differs from `base`, in key order: each key whose value is not the
    /// same, with its value in `self` (None: `self` lacks a key `base` has). Subtrees the
    /// two share are skipped, so a snapshot against the one it grew from costs about the
    /// nodes its inserts copied, not the whole environment.
    pub fn diff_from<'a>(&'a self, base: &'a EnvMap) -> Vec<(&'a str, Option<&'a str>)> {
        if self.ptr_eq(base) {
            return Vec::new();
        }
        let mine = unshared_leaves(self, base);
        let theirs = unshared_leaves(base, self);
        let mut a = mine.iter().flat_map(|l| l.entries.iter()).peekable();
        let mut b = theirs.iter().flat_map(|l| l.entries.iter()).peekable();
        let mut out = Vec::new();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((k, v)), None) => {
                    out.push((&**k, Some(&**v)));
                    a.next();
                }
                (None, Some((k, _))) => {
                    out.push((&**k, None));
                    b.next();
                }
                (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => {
                        out.push((&**ka, Some(&**va)));
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        out.push((&**kb, None));
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if va != vb {
                            out.push((&**ka, Some(&**va)));
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
        out
    }

    /// The length of [`write_json_body`](Self::write_json_body)'s bytes.
    pub fn json_body_len(&self) -> usize {
        let leaves = self.leaves();
        let commas = leaves.len().saturating_sub(1);
        leaves.iter().map(|l| l.json().len()).sum::<usize>() + commas
    }

    /// Hands `sink` the map's JSON between its braces, exactly as serde_json writes it
    /// (`"K":"V","K2":"V2"`), in pieces: each leaf's bytes are made once and shared.
    pub fn write_json_body(&self, sink: &mut dyn FnMut(&[u8])) {
        for (i, leaf) in self.leaves().into_iter().enumerate() {
            if i > 0 {
                sink(b",");
            }
            sink(leaf.json());
        }
    }

    /// How many distinct nodes the given snapshots hold between them: what they cost
    /// together, for tests that check sharing.
    pub fn distinct_nodes<'a>(maps: impl IntoIterator<Item = &'a EnvMap>) -> usize {
        fn walk(node: &Arc<Node>, seen: &mut HashSet<*const Node>) {
            if !seen.insert(Arc::as_ptr(node)) {
                return;
            }
            if let Node::Inner(inner) = &**node {
                inner.children.iter().for_each(|c| walk(c, seen));
            }
        }
        let mut seen = HashSet::new();
        for m in maps {
            if let Some(root) = &m.root {
                walk(root, &mut seen);
            }
        }
        seen.len()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for EnvMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = EnvMap::new();
        for (k, v) in iter {
            m.insert(k.as_ref(), v.as_ref());
        }
        m
    }
}

impl From<BTreeMap<String, String>> for EnvMap {
    fn from(m: BTreeMap<String, String>) -> Self {
        m.iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for EnvMap {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl PartialEq for EnvMap {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || (self.len == other.len && self.iter().eq(other.iter()))
    }
}

impl Eq for EnvMap {}

impl Hash for EnvMap {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len);
        for (k, v) in self.iter() {
            k.hash(state);
            v.hash(state);
        }
    }
}

impl fmt::Debug for EnvMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// As a map, like the `BTreeMap<String, String>` it replaced (same JSON, same keys).
impl Serialize for EnvMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for EnvMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(d)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(m: &EnvMap) -> Vec<u8> {
        let mut out = Vec::new();
        m.write_json_body(&mut |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn a_diff_names_what_was_set_changed_or_is_missing() {
        let mut base = EnvMap::new();
        for i in 0..500u32 {
            base.insert(&format!("K{i:03}"), "v");
        }
        let mut grown = base.clone();
        grown.insert("K100", "changed");
        grown.insert("NEW", "n");
        grown.insert("K250", "v"); // the same value: no change
        assert_eq!(
            grown.diff_from(&base),
            vec![("K100", Some("changed")), ("NEW", Some("n"))]
        );
        assert_eq!(
            base.diff_from(&grown),
            vec![("K100", Some("v")), ("NEW", None)]
        );
        assert!(grown.diff_from(&grown.clone()).is_empty());
        // Two maps built apart (nothing shared) compare entry by entry.
        let apart: EnvMap = base.iter().filter(|(k, _)| *k != "K007").collect();
        assert_eq!(base.diff_from(&apart), vec![("K007", Some("v"))]);
        assert_eq!(apart.diff_from(&EnvMap::new()).len(), 499);
    }

    #[test]
    fn behaves_like_a_btreemap_and_encodes_like_one() {
        let mut want = BTreeMap::new();
        let mut m = EnvMap::new();
        // Keys in an order that splits leaves and inner nodes on both sides.
        for i in 0..3000u32 {
            let k = format!("K{}", i.wrapping_mul(7919) % 3001);
            let v = format!("v{i}\"\\\n\u{1}é");
            want.insert(k.clone(), v.clone());
            m.insert(&k, &v);
            if i % 3 == 0 {
                // Replacing keeps the length.
                want.insert(k.clone(), "again".into());
                m.insert(&k, "again");
            }
        }
        assert_eq!(m.len(), want.len());
        let got: Vec<(String, String)> = m.iter().map(|(k, v)| (k.into(), v.into())).collect();
        let exp: Vec<(String, String)> = want.clone().into_iter().collect();
        assert_eq!(got, exp);
        for (k, v) in &want {
            assert_eq!(m.get(k), Some(v.as_str()));
        }
        assert_eq!(m.get("nope"), None);
        assert_eq!(m.get(""), None);
        let json = serde_json::to_vec(&want).unwrap();
        assert_eq!(serde_json::to_vec(&m).unwrap(), json);
        assert_eq!(body(&m), json[1..json.len() - 1]);
        assert_eq!(m.json_body_len(), json.len() - 2);
        let back: EnvMap = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn empty_and_single() {
        let mut m = EnvMap::new();
        assert_eq!(serde_json::to_string(&m).unwrap(), "{}");
        assert_eq!(m.json_body_len(), 0);
        m.insert("A", "1");
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"A":"1"}"#);
        assert_eq!(body(&m), br#""A":"1""#);
        m.insert("", "x");
        assert_eq!(m.iter().next(), Some(("", "x")));
    }

    #[test]
    fn snapshots_are_independent_and_share_nodes() {
        let mut m = EnvMap::new();
        let mut snaps = Vec::new();
        for i in 0..2000 {
            m.insert(&format!("V{i}_A"), "a");
            snaps.push(m.clone());
        }
        assert_eq!(snaps[0].len(), 1);
        assert_eq!(snaps[999].len(), 1000);
        assert_eq!(snaps[999].get("V1500_A"), None);
        assert_eq!(snaps[1999].get("V1500_A"), Some("a"));
        // Each snapshot added a path (a leaf and its ancestors), not a copy of everything.
        let nodes = EnvMap::distinct_nodes(&snaps);
        assert!(nodes < 2000 * 5, "{nodes} nodes for 2000 snapshots");
        // Setting a key to the value it has changes nothing.
        let before = m.clone();
        m.insert("V3_A", "a");
        assert!(m.ptr_eq(&before));
    }
}
