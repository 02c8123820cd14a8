//! A step against its record from the last build: which named inputs of its key differ,
//! which context files, which input steps.

use super::cause::{Cause, Change};
use super::files::{Change as FileChange, FileList};
use super::parts::{Part, describe};
use crate::context::Selected;
use rbuild_cache::explain::StepRecord;
use rbuild_graph::{BuildGraph, VertexId};
use std::collections::{BTreeMap, BTreeSet};

/// What this build knows of a step, in the record's terms.
pub(crate) struct Current<'a> {
    pub graph: &'a BuildGraph,
    pub vertex: VertexId,
    pub key: &'a str,
    pub inputs: &'a [String],
    pub parts: &'a BTreeMap<String, Part>,
    /// Names of the parts that are context selections.
    pub selections: &'a [String],
    /// Their entries, where they were listed.
    pub entries: &'a BTreeMap<String, Vec<Selected>>,
}

/// The causes that make `now` differ from `old`. `old_list` finds a file list of the last
/// build by its digest.
pub(crate) fn compare(
    now: &Current,
    old: &StepRecord,
    old_list: &dyn Fn(&str) -> Option<FileList>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let names: BTreeSet<&String> = now.parts.keys().chain(old.digests.keys()).collect();
    // What an instruction says first (an image's reference, a RUN's command) comes first.
    let first = |n: &&String| !matches!(n.as_str(), "reference" | "args");
    let mut names: Vec<&String> = names.into_iter().collect();
    names.sort_by_key(first);
    for name in names {
        let new = now.parts.get(name);
        let was = old.digests.get(name);
        if new.map(|p| &p.digest) == was {
            continue;
        }
        if now.selections.contains(name)
            && let (Some(_), Some(was)) = (new, was)
        {
            causes.push(content(now, name, was, old_list));
            continue;
        }
        let mut named = describe(now.graph, now.vertex, name);
        let change = match (new, was, named.variable) {
            (Some(_), None, true) => Change::Set,
            (Some(_), None, false) => Change::Added,
            (None, _, true) => Change::Unset,
            (None, _, false) => Change::Removed,
            (Some(_), Some(_), _) => Change::Modified,
        };
        let clear_now = new.and_then(|p| p.clear.clone());
        let whole = named
            .whole
            .take()
            .filter(|_| matches!(change, Change::Added | Change::Removed));
        let cause = if let Some(what) = whole {
            // A whole mount came or went: one cause for all its options.
            Cause::Changed {
                what,
                change,
                old: None,
                now: None,
                moves: false,
            }
        } else {
            Cause::Changed {
                what: named.what,
                change,
                old: old.values.get(name).cloned(),
                now: clear_now.or(named.now),
                moves: named.moves,
            }
        };
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    let width = now.inputs.len().max(old.inputs.len());
    let inputs = &now.graph.vertex(now.vertex).inputs;
    for i in 0..width {
        if now.inputs.get(i) != old.inputs.get(i)
            && let Some(v) = inputs.get(i)
        {
            causes.push(Cause::Input {
                index: i,
                vertex: *v,
            });
        }
    }
    if causes.is_empty() {
        causes.push(if now.key == old.key {
            Cause::Gone
        } else {
            Cause::Unexplained
        });
    }
    causes
}

/// A selection whose digest moved: the files that differ, when both lists are known.
fn content(
    now: &Current,
    name: &str,
    was: &str,
    old_list: &dyn Fn(&str) -> Option<FileList>,
) -> Cause {
    let what = describe(now.graph, now.vertex, name).what;
    let details = match (old_list(was), now.entries.get(name)) {
        (Some(list), Some(entries)) => {
            let d = list.diff(entries);
            let mut out: Vec<String> = d
                .changed
                .iter()
                .map(|(path, how)| {
                    let how = match how {
                        FileChange::Content => "content",
                        FileChange::Mode => "mode",
                    };
                    format!("{path} changed ({how})")
                })
                .collect();
            out.extend(d.added.iter().map(|p| format!("{p} added")));
            if d.removed > 0 {
                out.push(format!(
                    "{} {} removed",
                    d.removed,
                    if d.removed == 1 { "entry" } else { "entries" }
                ));
            }
            if d.more > 0 {
                out.push(format!("and {} more", d.more));
            }
            if out.is_empty() {
                out.push("what it matches changed".into());
            }
            out
        }
        _ => vec!["changed (the last build kept no file list to name the files)".into()],
    };
    Cause::Content { what, details }
}
