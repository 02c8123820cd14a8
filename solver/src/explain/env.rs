//! A RUN's environment in a record: as a delta from the RUN before it on its root
//! filesystem (its *env parent*), so a Dockerfile of n steps whose environment grows step
//! by step keeps a record of size O(n), not O(n²).
//!
//! Which variables differ from the last build is found the same way, from the top of each
//! chain down: a step differs from the last build in what its parent differed in, plus
//! what the two deltas (this build's and the record's) say, each checked against the
//! values. Only where the chain's shape moved (steps inserted or removed between the two)
//! is the old environment rebuilt whole from the record.

use super::parts::{env_part, env_value_digest};
use rbuild_cache::explain::{BuildRecord, ENV_REMOVED, StepRecord};
use rbuild_graph::{BuildGraph, EnvMap, Op, VertexId};
use std::collections::{BTreeMap, HashMap};

/// A variable whose value differs from the last build: the digests of its value now and
/// then (None: not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvChange {
    pub now: Option<String>,
    pub old: Option<String>,
}

/// The variables of a step that differ from the last build, by name.
pub(crate) type EnvDiff = BTreeMap<String, EnvChange>;

/// The environment of `v` when it is a RUN.
pub(crate) fn exec_env(graph: &BuildGraph, v: VertexId) -> Option<&EnvMap> {
    match &graph.vertex(v).op {
        Op::Exec(e) => Some(&e.env),
        _ => None,
    }
}

/// The RUN whose environment `v`'s is a delta from: the nearest RUN down `v`'s root
/// filesystem (input 0), through COPY/ADD/WORKDIR steps; None at the top of a stage.
pub(crate) fn env_parent(graph: &BuildGraph, v: VertexId) -> Option<VertexId> {
    let mut cur = *graph.vertex(v).inputs.first()?;
    loop {
        let vertex = graph.vertex(cur);
        match &vertex.op {
            Op::Exec(_) => return Some(cur),
            Op::File(_) => cur = *vertex.inputs.first()?,
            _ => return None,
        }
    }
}

/// `env` against `base` as a record keeps it: variable → digest of its value, `None`
/// where `env` lacks a variable `base` has.
pub(crate) fn delta(env: &EnvMap, base: Option<&EnvMap>) -> BTreeMap<String, Option<String>> {
    let empty = EnvMap::new();
    env.diff_from(base.unwrap_or(&empty))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map(env_value_digest)))
        .collect()
}

/// The delta a record entry holds.
pub(crate) fn recorded_delta(step: &StepRecord) -> BTreeMap<String, Option<String>> {
    step.digests
        .iter()
        .filter_map(|(name, d)| {
            let var = name.strip_prefix("env:")?;
            Some((var.to_string(), (d != ENV_REMOVED).then(|| d.clone())))
        })
        .collect()
}

/// Writes `delta` into a record entry's digests.
pub(crate) fn record_delta(
    digests: &mut BTreeMap<String, String>,
    delta: BTreeMap<String, Option<String>>,
) {
    for (var, d) in delta {
        digests.insert(env_part(&var), d.unwrap_or_else(|| ENV_REMOVED.to_string()));
    }
}

/// Where both sides of a comparison have a delta from.
pub(crate) enum Link {
    /// Both hold the whole environment (the top of a stage in both builds).
    Root,
    /// Both are deltas from the same step (`v`'s env parent, found again in the record).
    Parent(VertexId),
    /// The chains differ in shape: the old environment is rebuilt from the record.
    Moved,
}

/// The variables where `now` (delta `now_delta` over a parent whose own differences are
/// `parent`, its environment `parent_env`) and `old` (delta `old_delta` over the same
/// step of the last build) differ.
pub(crate) fn diff_over_parent(
    now: &EnvMap,
    now_delta: &BTreeMap<String, Option<String>>,
    old_delta: &BTreeMap<String, Option<String>>,
    parent: &EnvDiff,
    parent_env: &EnvMap,
) -> EnvDiff {
    let mut out = EnvDiff::new();
    let names = parent
        .keys()
        .chain(now_delta.keys())
        .chain(old_delta.keys());
    for var in names {
        if out.contains_key(var) {
            continue;
        }
        let now_d = now.get(var).map(env_value_digest);
        // What the last build had: its delta says it, else its parent had it, which is
        // this build's parent value wherever the parents did not differ.
        let old_d = match old_delta.get(var) {
            Some(d) => d.clone(),
            None => match parent.get(var) {
                Some(c) => c.old.clone(),
                None => parent_env.get(var).map(env_value_digest),
            },
        };
        if now_d != old_d {
            out.insert(
                var.clone(),
                EnvChange {
                    now: now_d,
                    old: old_d,
                },
            );
        }
    }
    out
}

/// The variables where `now` and a whole old environment (variable → digest) differ.
pub(crate) fn diff_whole(now: &EnvMap, old: &BTreeMap<String, Option<String>>) -> EnvDiff {
    let mut out = EnvDiff::new();
    for (var, value) in now.iter() {
        let now_d = Some(env_value_digest(value));
        let old_d = old.get(var).cloned().flatten();
        if now_d != old_d {
            out.insert(
                var.to_string(),
                EnvChange {
                    now: now_d,
                    old: old_d,
                },
            );
        }
    }
    for (var, d) in old {
        if d.is_some() && !now.contains_key(var) {
            out.insert(
                var.clone(),
                EnvChange {
                    now: None,
                    old: d.clone(),
                },
            );
        }
    }
    out
}

/// The whole environment of the record's step `key` (variable → digest), rebuilt along
/// its `env_from` chain; None when the chain is broken or loops.
pub(crate) fn rebuild(record: &BuildRecord, key: &str) -> Option<BTreeMap<String, Option<String>>> {
    let mut chain = Vec::new();
    let mut cur = record.steps.get(key)?;
    loop {
        chain.push(cur);
        if chain.len() > record.steps.len() {
            return None;
        }
        match &cur.env_from {
            None => break,
            Some(parent) => cur = record.steps.get(parent)?,
        }
    }
    let mut env = BTreeMap::new();
    for step in chain.iter().rev() {
        for (var, d) in recorded_delta(step) {
            match d {
                Some(d) => env.insert(var, Some(d)),
                None => env.remove(&var),
            };
        }
    }
    Some(env)
}

/// Memo of [`EnvDiff`]s by vertex, filled from the top of each chain down.
#[derive(Default)]
pub(crate) struct DiffMemo(HashMap<VertexId, std::sync::Arc<EnvDiff>>);

impl DiffMemo {
    pub(crate) fn get(&self, v: VertexId) -> Option<std::sync::Arc<EnvDiff>> {
        self.0.get(&v).cloned()
    }

    pub(crate) fn put(&mut self, v: VertexId, d: EnvDiff) -> std::sync::Arc<EnvDiff> {
        let d = std::sync::Arc::new(d);
        self.0.insert(v, d.clone());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(entries: &[(&str, &str)]) -> EnvMap {
        entries.iter().copied().collect()
    }

    #[test]
    fn a_change_at_the_top_is_seen_all_the_way_down() {
        // Last build: A=1 at the top, B=2 added below. Now: A=9, B=2.
        let old_top = delta(&env(&[("A", "1")]), None);
        let old_below = delta(&env(&[("A", "1"), ("B", "2")]), Some(&env(&[("A", "1")])));
        let now_top_env = env(&[("A", "9")]);
        let now_below_env = env(&[("A", "9"), ("B", "2")]);
        let top = diff_over_parent(
            &now_top_env,
            &delta(&now_top_env, None),
            &old_top,
            &EnvDiff::new(),
            &EnvMap::new(),
        );
        assert_eq!(top.keys().collect::<Vec<_>>(), ["A"]);
        let below = diff_over_parent(
            &now_below_env,
            &delta(&now_below_env, Some(&now_top_env)),
            &old_below,
            &top,
            &now_top_env,
        );
        assert_eq!(below.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(below["A"].now, Some(env_value_digest("9")));
        assert_eq!(below["A"].old, Some(env_value_digest("1")));
    }

    #[test]
    fn a_variable_set_or_gone_below_is_named() {
        let parent = env(&[("A", "1")]);
        let now = env(&[("A", "1"), ("C", "3")]);
        // The last build set B here instead.
        let old = delta(&env(&[("A", "1"), ("B", "2")]), Some(&parent));
        let d = diff_over_parent(
            &now,
            &delta(&now, Some(&parent)),
            &old,
            &EnvDiff::new(),
            &parent,
        );
        assert_eq!(d.keys().collect::<Vec<_>>(), ["B", "C"]);
        assert_eq!(d["B"].now, None);
        assert_eq!(d["C"].old, None);
    }

    #[test]
    fn a_record_chain_rebuilds_the_whole_environment() {
        let mut record = BuildRecord::default();
        let mut top = StepRecord::default();
        record_delta(
            &mut top.digests,
            delta(&env(&[("A", "1"), ("X", "x")]), None),
        );
        let mut below = StepRecord {
            env_from: Some("s/1".into()),
            ..Default::default()
        };
        record_delta(
            &mut below.digests,
            delta(&env(&[("A", "2")]), Some(&env(&[("A", "1"), ("X", "x")]))),
        );
        assert_eq!(below.digests["env:X"], ENV_REMOVED);
        record.steps.insert("s/1".into(), top);
        record.steps.insert("s/2".into(), below);
        let whole = rebuild(&record, "s/2").unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole["A"], Some(env_value_digest("2")));
        assert!(diff_whole(&env(&[("A", "2")]), &whole).is_empty());
        // A loop in a damaged record is no environment, not a hang.
        record.steps.get_mut("s/1").unwrap().env_from = Some("s/2".into());
        assert_eq!(rebuild(&record, "s/2"), None);
    }
}
