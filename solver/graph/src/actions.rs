//! Adding the actions a build ends with to its graph: export each target as an image,
//! push it, run it. They are vertices like the steps, so one solve does everything and
//! what they share (a target both pushed and run) is done once.

use crate::image::{History, ImageConfig};
use crate::{BuildGraph, ExportOp, ExportStep, Op, RunOp, VertexId, VertexMeta};
use std::collections::BTreeMap;

/// How a target is written, beyond its config and history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFlags {
    /// The image's names.
    pub tags: Vec<String>,
    /// `--cache-to type=inline`: the cache records go into the config.
    pub inline_cache: bool,
    /// `--squash`: the layers above the base image become one.
    pub squash: bool,
    /// `--annotation`s of the manifest.
    pub annotations: BTreeMap<String, String>,
}

/// Adds the export of `root` (a stage's last step) with `config` and `history` (each entry
/// with the step whose layer it is, if any), written as `flags` say.
pub fn add_export(
    graph: &mut BuildGraph,
    root: VertexId,
    config: &ImageConfig,
    history: &[(History, Option<VertexId>)],
    flags: &ExportFlags,
) -> VertexId {
    let mut inputs = vec![root];
    let mut steps = Vec::with_capacity(history.len());
    for (entry, v) in history {
        let input = v.map(|v| match inputs.iter().position(|i| *i == v) {
            Some(i) => i,
            None => {
                inputs.push(v);
                inputs.len() - 1
            }
        });
        steps.push(ExportStep {
            entry: entry.clone(),
            input,
        });
    }
    let description = "exporting to image".to_string();
    graph.add(
        Op::Export(Box::new(ExportOp {
            config: config.clone(),
            history: steps,
            tags: flags.tags.clone(),
            inline_cache: flags.inline_cache,
            squash: flags.squash,
            annotations: flags.annotations.clone(),
        })),
        inputs,
        VertexMeta {
            description,
            ..Default::default()
        },
    )
}

/// Adds a push of `image` (an export or an image source) to `reference`.
pub fn add_push(graph: &mut BuildGraph, image: VertexId, reference: &str) -> VertexId {
    graph.add(
        Op::Push {
            reference: reference.to_string(),
        },
        vec![image],
        VertexMeta {
            description: format!("pushing {reference}"),
            ..Default::default()
        },
    )
}

/// Adds a run of a container of `image` (an export or an image source).
pub fn add_run(graph: &mut BuildGraph, image: VertexId, run: RunOp) -> VertexId {
    let description = format!("running {}", run.name);
    graph.add(
        Op::Run(run),
        vec![image],
        VertexMeta {
            description,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Platform, VertexMeta};

    fn h(by: &str) -> History {
        History {
            created_by: Some(by.into()),
            ..Default::default()
        }
    }

    #[test]
    fn export_inputs_are_the_root_then_each_history_step_once() {
        let mut g = BuildGraph::new();
        let s = g.add(Op::Scratch, vec![], VertexMeta::default());
        let img = g.add(
            Op::Image {
                reference: "x".into(),
                digest: None,
                platform: Platform::host(),
            },
            vec![],
            VertexMeta::default(),
        );
        let history = vec![
            (h("base"), None),
            (h("COPY"), Some(s)),
            (h("ENV"), None),
            (h("RUN"), Some(img)),
            (h("RUN again"), Some(s)),
        ];
        let named = ExportFlags {
            tags: vec!["t".into()],
            ..Default::default()
        };
        let e = add_export(&mut g, img, &ImageConfig::default(), &history, &named);
        let v = g.vertex(e);
        assert_eq!(v.inputs, vec![img, s]);
        let Op::Export(op) = &v.op else {
            panic!("not an export")
        };
        let inputs: Vec<Option<usize>> = op.history.iter().map(|s| s.input).collect();
        assert_eq!(inputs, [None, Some(1), None, Some(0), Some(1)]);
        assert!(v.op.is_action());
        // Same export twice is one vertex; a push and a run hang off it.
        assert_eq!(
            add_export(&mut g, img, &ImageConfig::default(), &history, &named),
            e
        );
        // A squashed export of the same step is another vertex.
        let squash = ExportFlags {
            squash: true,
            ..named.clone()
        };
        let squashed = add_export(&mut g, img, &ImageConfig::default(), &history, &squash);
        assert_ne!(squashed, e);
        // So is an annotated one.
        let annotate = ExportFlags {
            annotations: BTreeMap::from([("k".to_string(), "v".to_string())]),
            ..named.clone()
        };
        let annotated = add_export(&mut g, img, &ImageConfig::default(), &history, &annotate);
        assert_ne!(annotated, e);
        let p = add_push(&mut g, e, "127.0.0.1:5000/t:1");
        let r = add_run(
            &mut g,
            e,
            RunOp {
                name: "t".into(),
                ..Default::default()
            },
        );
        assert_eq!(g.vertex(p).inputs, [e]);
        assert_eq!(g.vertex(r).inputs, [e]);
        assert_eq!(g.reachable(&[p, r]).len(), 5);
    }
}
