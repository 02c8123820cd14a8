//! Which solved results a cache export carries (`--cache-to …,mode=min|max`).

use crate::error::SolveError;
use crate::outcome::Outcome;
use rbuild_cache::CacheRecord;
use rbuild_graph::{BuildGraph, VertexId};
use std::collections::{BTreeMap, HashMap};

/// BuildKit's export modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the final image: its rootfs chain and the sources those steps read.
    #[default]
    Min,
    /// Every solved step, other stages included.
    Max,
}

/// The vertices `mode` exports, in graph order. Min follows input 0 (the rootfs) down from
/// `root` and adds the inputs of those steps that are sources (context, image, scratch);
/// another stage read by `COPY --from` is not part of the image and stays out.
pub fn export_vertices(
    graph: &BuildGraph,
    outcomes: &HashMap<VertexId, Outcome>,
    root: VertexId,
    mode: CacheMode,
) -> Vec<VertexId> {
    let mut out: Vec<VertexId> = match mode {
        CacheMode::Max => outcomes.keys().copied().collect(),
        CacheMode::Min => {
            let mut out = Vec::new();
            let mut cur = Some(root);
            while let Some(v) = cur {
                out.push(v);
                let inputs = &graph.vertex(v).inputs;
                for i in inputs.iter().skip(1) {
                    if graph.vertex(*i).inputs.is_empty() {
                        out.push(*i);
                    }
                }
                cur = inputs.first().copied();
            }
            out
        }
    };
    // Actions (export, push, run) have results but no records.
    out.retain(|v| outcomes.contains_key(v) && !graph.vertex(*v).op.is_action());
    out.sort_by_key(|v| v.0);
    out.dedup();
    out
}

/// The cache records (runtime key → result) of the vertices `mode` exports.
pub fn export_records(
    graph: &BuildGraph,
    outcomes: &HashMap<VertexId, Outcome>,
    root: VertexId,
    mode: CacheMode,
) -> Result<BTreeMap<String, CacheRecord>, SolveError> {
    let mut records = BTreeMap::new();
    for v in export_vertices(graph, outcomes, root, mode) {
        let o = &outcomes[&v];
        let Some(key) = &o.cache_key else { continue };
        records.insert(key.clone(), o.record()?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::{FileOp, Op, VertexMeta};

    fn file() -> Op {
        Op::File(FileOp { actions: vec![] })
    }

    #[test]
    fn min_is_the_final_chain_and_its_sources_max_is_everything() {
        let mut g = BuildGraph::new();
        let m = VertexMeta::default;
        let scratch = g.add(Op::Scratch, vec![], m());
        let ctx = g.add(
            Op::Local {
                name: "context".into(),
                exclude: vec![],
            },
            vec![],
            m(),
        );
        let b1 = g.add(file(), vec![scratch], m());
        let b2 = g.add(file(), vec![b1], m());
        let f1 = g.add(file(), vec![scratch, b2], m());
        let f2 = g.add(file(), vec![f1, ctx], m());
        let outcomes: HashMap<VertexId, Outcome> = [scratch, ctx, b1, b2, f1, f2]
            .into_iter()
            .map(|v| {
                let o = Outcome {
                    cache_key: Some(format!("k{}", v.0)),
                    created: v.0 as u64,
                    ..Default::default()
                };
                (v, o)
            })
            .collect();
        let mut min = vec![scratch, ctx, f1, f2];
        min.sort_by_key(|v| v.0);
        assert_eq!(export_vertices(&g, &outcomes, f2, CacheMode::Min), min);
        assert_eq!(export_vertices(&g, &outcomes, f2, CacheMode::Max).len(), 6);
        let recs = export_records(&g, &outcomes, f2, CacheMode::Min).unwrap();
        assert!(!recs.contains_key(&format!("k{}", b2.0)));
        assert_eq!(recs[&format!("k{}", f2.0)].created, f2.0 as u64);
        // A vertex that was not solved is not exported.
        let mut partial = outcomes.clone();
        partial.remove(&ctx);
        assert_eq!(export_vertices(&g, &partial, f2, CacheMode::Min).len(), 3);
    }
}
