//! Explaining cache misses: when a step runs instead of coming from the cache, which input
//! of its key changed since the last build of the same Dockerfile and target.
//!
//! - [`BuildHistory`] (this module): per target of a build, the record of its last build
//!   (this store's, else one the imported cache carried), what this build's steps were
//!   made of, the explanation of each miss, and the new record written after the solve;
//! - `parts`: a step's key split into named parts (op fields, env entries by name, COPY
//!   fields, the facts ops add while solving) kept as short digests;
//! - `files`: the per-file fingerprints that name the files a COPY saw change;
//! - `slots`: which step of the last build a step is compared with;
//! - `env`: a RUN's environment kept as a delta from the RUN before it;
//! - `compare`: a step against its record; `cause`: what a miss says.
//!
//! A build is identified by its context directory, its Dockerfile (relative to the
//! context) and its target ([`BuildIdent`]): two checkouts of one repository keep their
//! own histories, and the record an exported cache carries is found again on another
//! machine by the Dockerfile and target alone.
//!
//! Runtime keys are untouched: naming a fact hashes the same bytes as before.

mod cause;
mod compare;
mod env;
mod files;
mod parts;
mod slots;

pub use cause::{Cause, Change, Miss};
pub(crate) use parts::mount_part;
pub use parts::{Facts, looks_secret};

use crate::context::Selected;
use compare::{Current, compare};
use env::{DiffMemo, EnvDiff, Link};
use files::FileList;
use parts::{Part, env_part, op_digest, static_parts};
use rbuild_cache::explain::{self as store_explain, BuildRecord, ExportedRecord, StepRecord};
use rbuild_cache::remote_cache::ImportedCache;
use rbuild_cache::{CacheError, Store};
use rbuild_graph::{BuildGraph, CacheKey, VertexId};
use slots::Slot;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Which build a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildIdent {
    /// The record's id in this store: a hash of the context's location, the Dockerfile
    /// and the target.
    pub id: String,
    /// The Dockerfile and target alone: how a record in an exported cache is found.
    pub build: String,
}

impl BuildIdent {
    /// `context`: where the context is (an absolute path); `dockerfile`: the Dockerfile's
    /// path relative to the context (or absolute when outside it, `-` for stdin);
    /// `target`: the `--target` (empty: the last stage).
    pub fn new(context: &str, dockerfile: &str, target: &str) -> BuildIdent {
        let mut h = blake3::Hasher::new();
        for part in ["rbuild build identity v1", context, dockerfile, target] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        let target = if target.is_empty() {
            "(last stage)"
        } else {
            target
        };
        BuildIdent {
            id: h.finalize().to_hex()[..32].to_string(),
            build: format!("{dockerfile} --target {target}"),
        }
    }
}

/// A record this build compares with.
struct Baseline {
    record: BuildRecord,
    /// Stage → op digest → (depth, step key) of the record's steps, in key order: finds
    /// an instruction again without a walk over every step.
    by_op: HashMap<String, HashMap<String, Vec<(usize, String)>>>,
    /// The imported record with its file lists; None for a local one (its lists are in
    /// the store).
    imported: Option<ExportedRecord>,
}

impl Baseline {
    fn new(record: BuildRecord, imported: Option<ExportedRecord>) -> Baseline {
        let mut by_op: HashMap<String, HashMap<String, Vec<(usize, String)>>> = HashMap::new();
        for (k, s) in &record.steps {
            if let Some((stage, depth)) = slots::parse(k) {
                by_op
                    .entry(stage.to_string())
                    .or_default()
                    .entry(s.op.clone())
                    .or_default()
                    .push((depth, k.clone()));
            }
        }
        Baseline {
            record,
            by_op,
            imported,
        }
    }
}

struct Target {
    ident: BuildIdent,
    /// The cacheable vertices the target needs, inputs first.
    vertices: Vec<VertexId>,
    baseline: Option<Baseline>,
}

/// What the solve learnt of one step.
struct Solved {
    entry: StepRecord,
    /// New file lists (digest → list) of its selections.
    lists: BTreeMap<String, FileList>,
}

#[derive(Default)]
struct State {
    solved: HashMap<VertexId, Solved>,
    misses: BTreeMap<VertexId, Miss>,
    /// Per target, the record as saved.
    saved: Vec<Option<BuildRecord>>,
}

/// The explanation side of one build: its targets' last records, and what this build
/// learns. Given to the solve in [`SolveOptions::history`](crate::SolveOptions).
pub struct BuildHistory {
    graph: Arc<BuildGraph>,
    targets: Vec<Target>,
    /// The first target needing each vertex (its record is the one a step is compared with).
    owner: HashMap<VertexId, usize>,
    slots: HashMap<VertexId, Slot>,
    /// Per RUN, the RUN its environment is a delta from (one with a slot).
    env_parents: HashMap<VertexId, VertexId>,
    /// Per RUN compared, the variables that differ from the last build.
    env_diffs: Mutex<DiffMemo>,
    /// `--cache-from` was given (a first build says the import had no record either).
    imported: bool,
    state: Mutex<State>,
}

impl std::fmt::Debug for BuildHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let builds: Vec<&str> = self
            .targets
            .iter()
            .map(|t| t.ident.build.as_str())
            .collect();
        f.debug_struct("BuildHistory")
            .field("builds", &builds)
            .finish()
    }
}

impl BuildHistory {
    /// The history of `targets` (root vertex, identity) of `graph`: each target's record in
    /// `store`, else the one `imported` carries for its Dockerfile and target.
    pub fn load(
        store: &Store,
        graph: Arc<BuildGraph>,
        targets: &[(VertexId, BuildIdent)],
        imported: Option<&ImportedCache>,
    ) -> Result<BuildHistory, CacheError> {
        let order = graph.reachable(&targets.iter().map(|(r, _)| *r).collect::<Vec<_>>());
        let slots = slots::slots(&graph, &order);
        let mut owner = HashMap::new();
        let mut out = Vec::new();
        for (i, (root, ident)) in targets.iter().enumerate() {
            let vertices: Vec<VertexId> = graph
                .reachable(&[*root])
                .into_iter()
                .filter(|v| !graph.vertex(*v).op.is_action())
                .collect();
            for v in &vertices {
                owner.entry(*v).or_insert(i);
            }
            let baseline = match store_explain::load(store, &ident.id)? {
                Some(record) => Some(Baseline::new(record, None)),
                None => imported
                    .and_then(|imp| imp.explain_record(&ident.build))
                    .map(|e| Baseline::new(e.record.clone(), Some(e.clone()))),
            };
            out.push(Target {
                ident: ident.clone(),
                vertices,
                baseline,
            });
        }
        let env_parents = owner
            .keys()
            .filter_map(|v| {
                let p = env::env_parent(&graph, *v)?;
                (env::exec_env(&graph, *v).is_some() && slots.contains_key(&p)).then_some((*v, p))
            })
            .collect();
        Ok(BuildHistory {
            graph,
            targets: out,
            owner,
            slots,
            env_parents,
            env_diffs: Mutex::new(DiffMemo::default()),
            imported: imported.is_some(),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target_of(&self, v: VertexId) -> Option<&Target> {
        self.owner.get(&v).map(|i| &self.targets[*i])
    }

    /// The step of the last build `v` is compared with: in the same stage, the one with
    /// the same instruction (nearest in depth), else the one at the same place.
    fn baseline_step(&self, v: VertexId, op: &str) -> Option<&StepRecord> {
        self.baseline_entry(v, op).map(|(_, s)| s)
    }

    /// [`baseline_step`](Self::baseline_step) with its key in the record.
    fn baseline_entry(&self, v: VertexId, op: &str) -> Option<(&str, &StepRecord)> {
        let baseline = self.target_of(v)?.baseline.as_ref()?;
        let record = &baseline.record;
        let slot = self.slots.get(&v)?;
        let same_op = baseline
            .by_op
            .get(&slot.stage)
            .and_then(|ops| ops.get(op))
            .and_then(|places| {
                places
                    .iter()
                    .min_by_key(|(depth, _)| depth.abs_diff(slot.depth))
            })
            .map(|(_, k)| k.as_str());
        let key = same_op.or_else(|| record.steps.contains_key(&slot.key).then_some(&*slot.key))?;
        record
            .steps
            .get_key_value(key)
            .map(|(k, s)| (k.as_str(), s))
    }

    /// The key in the last build's record of the step `v` is compared with.
    fn baseline_key(&self, v: VertexId) -> Option<&str> {
        let op = op_digest(&self.graph.vertex(v).op);
        self.baseline_entry(v, &op).map(|(k, _)| k)
    }

    /// The slot key of the RUN `v`'s environment is a delta from.
    fn env_from(&self, v: VertexId) -> Option<String> {
        let p = self.env_parents.get(&v)?;
        self.slots.get(p).map(|s| s.key.clone())
    }

    /// How `v`'s delta and its record entry's relate.
    fn env_link(&self, v: VertexId, old: &StepRecord) -> Link {
        match (self.env_parents.get(&v), &old.env_from) {
            (None, None) => Link::Root,
            (Some(p), Some(from)) if self.baseline_key(*p) == Some(from.as_str()) => {
                Link::Parent(*p)
            }
            _ => Link::Moved,
        }
    }

    /// The variables of the RUN `v` (compared with the record entry `old`) whose values
    /// differ from the last build. Worked out from the top of `v`'s chain down, each step
    /// once per build.
    fn env_diff(&self, v: VertexId, old: &StepRecord) -> std::sync::Arc<EnvDiff> {
        let graph = &self.graph;
        if env::exec_env(graph, v).is_none() {
            return Default::default();
        }
        let mut memo = self.env_diffs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = memo.get(v) {
            return d;
        }
        // Up the chain to a step already worked out or to where the chains part.
        let mut chain: Vec<(VertexId, StepRecord)> = vec![(v, old.clone())];
        loop {
            let (u, rec) = &chain[chain.len() - 1];
            let Link::Parent(p) = self.env_link(*u, rec) else {
                break;
            };
            if memo.get(p).is_some() {
                break;
            }
            let op = op_digest(&graph.vertex(p).op);
            let Some(prec) = self.baseline_step(p, &op) else {
                break;
            };
            chain.push((p, prec.clone()));
        }
        let record = self
            .target_of(v)
            .and_then(|t| t.baseline.as_ref())
            .map(|b| &b.record);
        let mut last = None;
        for (u, rec) in chain.into_iter().rev() {
            let Some(now_u) = env::exec_env(graph, u) else {
                continue;
            };
            let parent_env = self
                .env_parents
                .get(&u)
                .and_then(|p| env::exec_env(graph, *p));
            let now_delta = env::delta(now_u, parent_env);
            let old_delta = env::recorded_delta(&rec);
            let d = match self.env_link(u, &rec) {
                Link::Root => env::diff_whole(now_u, &old_delta),
                Link::Parent(p) => {
                    let parent = memo.get(p).unwrap_or_default();
                    let parent_env = env::exec_env(graph, p).cloned().unwrap_or_default();
                    env::diff_over_parent(now_u, &now_delta, &old_delta, &parent, &parent_env)
                }
                Link::Moved => {
                    let key = self.baseline_key(u);
                    match record.zip(key).and_then(|(r, k)| env::rebuild(r, k)) {
                        Some(whole) => env::diff_whole(now_u, &whole),
                        None => EnvDiff::new(),
                    }
                }
            };
            last = Some(memo.put(u, d));
        }
        last.unwrap_or_default()
    }

    /// A file list of the last build of `v`'s target, by digest.
    fn old_list(&self, v: VertexId, store: &Store, digest: &str) -> Option<FileList> {
        let target = self.target_of(v)?;
        let baseline = target.baseline.as_ref()?;
        let bytes = match &baseline.imported {
            Some(e) => e.list(digest)?,
            None => store_explain::load_list(store, &target.ident.id, digest).ok()??,
        };
        FileList::decode(&bytes)
    }

    /// The record entry of `v` from what the solve computed.
    fn entry(&self, v: VertexId, key: &CacheKey, inputs: &[CacheKey], facts: &Facts) -> StepRecord {
        let op = &self.graph.vertex(v).op;
        let mut digests = BTreeMap::new();
        let mut values = BTreeMap::new();
        for (name, part) in static_parts(op).into_iter().chain(facts.named.clone()) {
            if let Some(c) = part.clear {
                values.insert(name.clone(), c);
            }
            digests.insert(name, part.digest);
        }
        let mut env_from = None;
        if let Some(now) = env::exec_env(&self.graph, v) {
            let parent = self.env_parents.get(&v);
            let base = parent.and_then(|p| env::exec_env(&self.graph, *p));
            env::record_delta(&mut digests, env::delta(now, base));
            env_from = self.env_from(v);
        }
        StepRecord {
            kind: op.kind().to_string(),
            op: op_digest(op),
            key: short_key(key),
            inputs: inputs.iter().map(short_key).collect(),
            digests,
            values,
            env_from,
        }
    }

    /// Whether the step `v` needs its selections listed (a second walk of what they
    /// select): to name the files of a miss, or to keep a list the next build will need.
    /// A step the last build already had, with the same key, needs nothing.
    pub(crate) fn needs_entries(
        &self,
        v: VertexId,
        key: &CacheKey,
        facts: &Facts,
        store: &Store,
    ) -> bool {
        if facts.selections.is_empty() {
            return false;
        }
        let Some(target) = self.target_of(v) else {
            return false;
        };
        let op = op_digest(&self.graph.vertex(v).op);
        let old = self.baseline_step(v, &op);
        if old.is_some_and(|o| o.key == short_key(key)) {
            return false;
        }
        facts.selections.iter().any(|name| {
            let Some(part) = facts.named.get(name) else {
                return false;
            };
            let changed = old
                .and_then(|o| o.digests.get(name))
                .is_some_and(|d| *d != part.digest);
            let kept = store_explain::has_list(store, &target.ident.id, &part.digest)
                || target
                    .baseline
                    .as_ref()
                    .and_then(|b| b.imported.as_ref())
                    .is_some_and(|e| e.lists.contains_key(&part.digest));
            changed || !kept
        })
    }

    /// Why `v` (key `key`, its inputs' keys `inputs`) missed the cache.
    pub(crate) fn explain(
        &self,
        v: VertexId,
        key: &CacheKey,
        inputs: &[CacheKey],
        facts: &Facts,
        no_cache: bool,
        store: &Store,
    ) -> Miss {
        if no_cache {
            return Miss {
                causes: vec![Cause::NoCache],
            };
        }
        let Some(target) = self.target_of(v) else {
            return Miss::default();
        };
        if target.baseline.is_none() {
            return Miss {
                causes: vec![Cause::FirstBuild {
                    imported: self.imported,
                }],
            };
        }
        let entry = self.entry(v, key, inputs, facts);
        let Some(old) = self.baseline_step(v, &entry.op) else {
            return Miss {
                causes: vec![Cause::NewStep { was: None }],
            };
        };
        if old.kind != entry.kind {
            return Miss {
                causes: vec![Cause::NewStep {
                    was: Some(old.kind.clone()),
                }],
            };
        }
        // The environment compared variable by variable where it differs, not whole.
        let mut parts: BTreeMap<String, Part> = static_parts(&self.graph.vertex(v).op)
            .into_iter()
            .chain(facts.named.clone())
            .collect();
        let recorded = old;
        let mut old = recorded.clone();
        old.digests.retain(|name, _| !name.starts_with("env:"));
        for (var, change) in self.env_diff(v, recorded).iter() {
            if let Some(d) = &change.now {
                parts.insert(
                    env_part(var),
                    Part {
                        digest: d.clone(),
                        clear: None,
                    },
                );
            }
            if let Some(d) = &change.old {
                old.digests.insert(env_part(var), d.clone());
            }
        }
        let old = &old;
        let now = Current {
            graph: &self.graph,
            vertex: v,
            key: &entry.key,
            inputs: &entry.inputs,
            parts: &parts,
            selections: &facts.selections,
            entries: &facts.entries,
        };
        Miss {
            causes: compare(&now, old, &|d| self.old_list(v, store, d)),
        }
    }

    /// Notes what `v` was made of (a hit or a miss), for the record written after the solve.
    pub(crate) fn solved(&self, v: VertexId, key: &CacheKey, inputs: &[CacheKey], facts: Facts) {
        if !self.owner.contains_key(&v) {
            return;
        }
        let op = op_digest(&self.graph.vertex(v).op);
        // Kept when its environment is still a delta from the same step.
        let same = self
            .baseline_step(v, &op)
            .filter(|o| o.key == short_key(key) && o.env_from == self.env_from(v))
            .cloned();
        let solved = match same {
            // The last build's entry, lists and all: a no-op rebuild writes nothing.
            Some(entry) => Solved {
                entry,
                lists: BTreeMap::new(),
            },
            None => {
                let entry = self.entry(v, key, inputs, &facts);
                let lists = facts
                    .entries
                    .iter()
                    .filter_map(|(name, entries)| {
                        Some((facts.named.get(name)?.digest.clone(), FileList::of(entries)))
                    })
                    .collect();
                Solved { entry, lists }
            }
        };
        self.state().solved.insert(v, solved);
    }

    /// Remembers the explanation of a miss (for `--metadata-file`).
    pub(crate) fn missed(&self, v: VertexId, miss: Miss) {
        self.state().misses.insert(v, miss);
    }

    /// Every miss of the solve and its explanation, in vertex order.
    pub fn misses(&self) -> Vec<(VertexId, Miss)> {
        self.state()
            .misses
            .iter()
            .map(|(v, m)| (*v, m.clone()))
            .collect()
    }

    /// Writes each target's new record: the steps this solve reached, and, after a failed
    /// solve, the last build's entries of the steps it did not. A record that did not
    /// change is not written (a no-op rebuild writes nothing).
    pub fn save(&self, store: &Store) -> Result<(), CacheError> {
        let mut state = self.state();
        let mut saved = Vec::new();
        for target in &self.targets {
            let old = target.baseline.as_ref().map(|b| &b.record);
            let mut record = BuildRecord {
                version: store_explain::RECORD_VERSION,
                build: target.ident.build.clone(),
                steps: BTreeMap::new(),
            };
            let mut lists: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut complete = true;
            for v in &target.vertices {
                let Some(slot) = self.slots.get(v) else {
                    continue;
                };
                match state.solved.get(v) {
                    Some(s) => {
                        record.steps.insert(slot.key.clone(), s.entry.clone());
                        for (d, l) in &s.lists {
                            lists.insert(d.clone(), l.encode());
                        }
                    }
                    None => {
                        complete = false;
                        if let Some(e) = old.and_then(|o| o.steps.get(&slot.key)) {
                            record.steps.insert(slot.key.clone(), e.clone());
                        }
                    }
                }
            }
            if !complete && record.steps.is_empty() {
                saved.push(old.cloned());
                continue;
            }
            // Lists an imported record carried are kept locally for the steps that use them.
            if let Some(imported) = target.baseline.as_ref().and_then(|b| b.imported.as_ref()) {
                for d in record.steps.values().flat_map(|s| s.digests.values()) {
                    if let Some(bytes) = imported.list(d) {
                        lists.entry(d.clone()).or_insert(bytes);
                    }
                }
            }
            let local = target
                .baseline
                .as_ref()
                .is_some_and(|b| b.imported.is_none());
            if !(local && old == Some(&record) && lists.is_empty()) {
                store_explain::save(store, &target.ident.id, &record, &lists)?;
            }
            saved.push(Some(record));
        }
        state.saved = saved;
        Ok(())
    }

    /// The records [`save`](Self::save) wrote, with their file lists, for a cache export.
    pub fn exported(&self, store: &Store) -> BTreeMap<String, ExportedRecord> {
        let state = self.state();
        let mut out = BTreeMap::new();
        for (target, record) in self.targets.iter().zip(&state.saved) {
            let Some(record) = record else { continue };
            let mut exported = ExportedRecord {
                record: record.clone(),
                lists: BTreeMap::new(),
            };
            for d in record.steps.values().flat_map(|s| s.digests.values()) {
                if let Ok(Some(bytes)) = store_explain::load_list(store, &target.ident.id, d) {
                    exported.add_list(d, &bytes);
                }
            }
            out.insert(target.ident.build.clone(), exported);
        }
        out
    }

    /// The bytes the record of `ident` takes in `store` (record and file lists).
    pub fn record_size(store: &Store, ident: &BuildIdent) -> u64 {
        store_explain::size(store, &ident.id)
    }
}

/// The part of a runtime key a record keeps.
fn short_key(k: &CacheKey) -> String {
    k.to_hex()[..parts::DIGEST_HEX].to_string()
}

/// Adds the selection `name` (digest `digest`, its entries when listed) to `facts`.
pub(crate) fn add_selection(
    facts: &mut Facts,
    name: &str,
    digest: &[u8; 32],
    entries: Option<Vec<Selected>>,
) {
    facts.add(name, digest, None);
    facts.selections.push(name.to_string());
    if let Some(e) = entries {
        facts.entries.insert(name.to_string(), e);
    }
}
