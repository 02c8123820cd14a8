//! Which step of the last build a step is compared with. Vertices have no identity across
//! builds (an edit anywhere changes keys), so a step is found by its place: its stage and
//! how many steps of that stage come before it along its root filesystem (input 0), e.g.
//! `build/3`. A step whose own instruction is unchanged is found by that first, so a step
//! inserted above it does not make it look new.

use rbuild_graph::{BuildGraph, VertexId};
use std::collections::HashMap;

/// A step's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub stage: String,
    pub depth: usize,
    /// `stage/depth`, with `+N` when another vertex already has that place (an inline
    /// heredoc file, or a source of no stage).
    pub key: String,
}

/// The slot of every vertex in `order` (inputs first).
pub(crate) fn slots(graph: &BuildGraph, order: &[VertexId]) -> HashMap<VertexId, Slot> {
    let mut out: HashMap<VertexId, Slot> = HashMap::new();
    let mut taken: HashMap<String, usize> = HashMap::new();
    for &v in order {
        let vertex = graph.vertex(v);
        let stage = vertex
            .meta
            .stage
            .clone()
            .unwrap_or_else(|| format!("-{}", vertex.op.kind()));
        let depth = match vertex.inputs.first().and_then(|i| out.get(i)) {
            Some(parent) if parent.stage == stage => parent.depth + 1,
            Some(_) => 1,
            None => 0,
        };
        let base = format!("{stage}/{depth}");
        let n = taken.entry(base.clone()).or_insert(0);
        let key = if *n == 0 { base } else { format!("{base}+{n}") };
        *n += 1;
        out.insert(v, Slot { stage, depth, key });
    }
    out
}

/// The stage and depth a slot key names.
pub(crate) fn parse(key: &str) -> Option<(&str, usize)> {
    let (stage, rest) = key.rsplit_once('/')?;
    let depth = rest.split('+').next()?.parse().ok()?;
    Some((stage, depth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::{Op, VertexMeta};

    fn meta(stage: &str) -> VertexMeta {
        VertexMeta {
            stage: Some(stage.into()),
            ..Default::default()
        }
    }

    #[test]
    fn places_count_along_the_stage() {
        let mut g = BuildGraph::new();
        let s = g.add(Op::Scratch, vec![], VertexMeta::default());
        let mkdir = |p: &str| {
            Op::File(rbuild_graph::FileOp {
                actions: vec![rbuild_graph::FileAction::Rm {
                    path: p.into(),
                    allow_not_found: true,
                }],
            })
        };
        let a1 = g.add(mkdir("/1"), vec![s], meta("a"));
        let a2 = g.add(mkdir("/2"), vec![a1], meta("a"));
        let b1 = g.add(mkdir("/3"), vec![a2], meta("b"));
        let other = g.add(mkdir("/4"), vec![s], meta("a"));
        let order: Vec<VertexId> = g.iter().map(|(v, _)| v).collect();
        let slots = slots(&g, &order);
        assert_eq!(slots[&s].key, "-scratch/0");
        assert_eq!(slots[&a1].key, "a/1");
        assert_eq!(slots[&a2].key, "a/2");
        assert_eq!(slots[&b1].key, "b/1");
        assert_eq!(slots[&other].key, "a/1+1");
        assert_eq!(parse("a/1+1"), Some(("a", 1)));
        assert_eq!(parse("-scratch/0"), Some(("-scratch", 0)));
    }
}
