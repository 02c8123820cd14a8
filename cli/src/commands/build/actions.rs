//! Step 3 of a build: the actions it ends with, added as vertices like the steps. Each
//! target is exported (the last one carrying inline cache metadata when asked; squashed
//! with `--squash`), each of its names pushed with `--push`, and the last one run with
//! `--run`.

use crate::flags::cache_spec::CacheTo;
use crate::flags::hiargs::Build;
use anyhow::{Result, anyhow};
use rbuild_frontend::lower::LoweredTargets;
use rbuild_graph::actions;
use rbuild_graph::{BuildGraph, RunOp, VertexId};
use std::sync::Arc;

/// The graph to solve and the vertices the build is after.
pub struct Plan {
    /// Shared with the solve and the progress printer.
    pub graph: Arc<BuildGraph>,
    /// One export per target, in target order.
    pub exports: Vec<VertexId>,
    /// Everything the solve must reach: the exports, pushes and the run.
    pub roots: Vec<VertexId>,
    /// The `--run` vertex.
    pub run: Option<VertexId>,
    /// The last target's final step, one per platform (what a cache export of `mode=min`
    /// starts from).
    pub last_roots: Vec<VertexId>,
}

/// Adds the exports, pushes and run to the lowered graph.
pub fn add(lowered: LoweredTargets, build: &Build) -> Result<Plan> {
    let mut graph = lowered.graph;
    let inline = build.cache.to.contains(&CacheTo::Inline);
    // Several platforms: each image is exported without a name; the build then names
    // the index of them (`platforms.rs`), and pushes that.
    let several = super::platforms::several(build);
    let mut exports = Vec::new();
    for (i, target) in lowered.targets.iter().enumerate() {
        let tags = match several {
            true => Vec::new(),
            false => build.target_tags.get(i).cloned().unwrap_or_default(),
        };
        let history: Vec<_> = target
            .history
            .iter()
            .map(|h| (h.entry.clone(), h.vertex))
            .collect();
        let last = i + 1 == lowered.targets.len();
        // `--label`s come after the Dockerfile's LABELs, as BuildKit applies them.
        let mut config = target.config.clone();
        config.config.labels.extend(build.labels.clone());
        let flags = actions::ExportFlags {
            tags,
            inline_cache: inline && last,
            squash: build.squash,
            annotations: build.annotations.clone(),
        };
        exports.push(actions::add_export(
            &mut graph,
            target.root,
            &config,
            &history,
            &flags,
        ));
    }
    let mut roots = exports.clone();
    if build.push && !several {
        for (export, tags) in exports.iter().zip(&build.target_tags) {
            for t in tags {
                roots.push(actions::add_push(&mut graph, *export, t));
            }
        }
    }
    let no_target = || anyhow!("no target was built");
    // `--run` of several platforms runs the machine's image if there is one.
    let host = rbuild_graph::Platform::host();
    let last_export = lowered
        .targets
        .iter()
        .zip(&exports)
        .rev()
        .find(|(t, _)| t.platform == host)
        .map(|(_, e)| *e)
        .or_else(|| exports.last().copied())
        .ok_or_else(no_target)?;
    let run = build.run.as_ref().map(|command| {
        let name = build
            .target_tags
            .last()
            .and_then(|t| t.first().cloned())
            .unwrap_or_else(|| "the built image".to_string());
        let run = RunOp {
            command: command.clone(),
            network: build.network,
            name,
            ..Default::default()
        };
        let v = actions::add_run(&mut graph, last_export, run);
        roots.push(v);
        v
    });
    // Targets are platform-major: the last of each platform's run is that platform's.
    let per_platform = lowered.targets.len() / build.platforms.len().max(1);
    let last_roots: Vec<VertexId> = lowered
        .targets
        .iter()
        .skip(per_platform.max(1) - 1)
        .step_by(per_platform.max(1))
        .map(|t| t.root)
        .collect();
    if last_roots.is_empty() {
        return Err(no_target());
    }
    Ok(Plan {
        graph: Arc::new(graph),
        exports,
        roots,
        run,
        last_roots,
    })
}
