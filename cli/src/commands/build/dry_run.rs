//! `--dry-run`: the build lowered and planned like a real one, then printed instead of
//! solved, each vertex marked cached or to run, and why it would run, when there is a
//! store to ask. It reports what is local and never downloads (so it does not read
//! `--cache-from`).

use super::actions::{self, Plan};
use super::inputs::Inputs;
use super::{history, lower, metadata, solve};
use crate::flags::hiargs::{Build, Global, GraphFormat};
use crate::shared::store;
use anyhow::Result;
use rbuild_cache::Store;
use rbuild_graph::VertexId;
use rbuild_graph::render::{self, Reason, Status};
use rbuild_solver::{Prediction, SolveOptions, Solver};

/// Lowers and plans `build`, then prints the graph in `format`, each step that would run
/// with the reasons the build would give (against this store's record of the last build).
pub fn run(global: &Global, build: &Build, inputs: &Inputs, format: GraphFormat) -> Result<()> {
    // A dry run of a root that does not exist yet must not create one.
    let store = if global.root.exists() {
        Some(store::open(&global.root)?)
    } else {
        None
    };
    let lowered = lower::lower(build, inputs, store.as_ref(), None)?;
    let plan = actions::add(lowered.targets, build)?;
    let mut opts = solve::options(build, inputs);
    if let Some(s) = &store {
        opts.history = history::load(build, inputs, s, &plan, None);
    }
    print(store.as_ref(), &plan, &opts, format)
}

/// Prints `plan` in `format`. Without a store nothing is cached: every step runs, its first
/// build.
fn print(
    store: Option<&Store>,
    plan: &Plan,
    opts: &SolveOptions,
    format: GraphFormat,
) -> Result<()> {
    let predicted = match store {
        Some(s) => Some(Solver::new(s.clone()).predict(&plan.graph, &plan.roots, opts)?),
        None => None,
    };
    let graph = &plan.graph;
    let status = |v: VertexId| -> Status {
        let first = || {
            if graph.vertex(v).op.is_action() {
                Vec::new()
            } else {
                vec![Reason {
                    kind: "first-build".into(),
                    text: "first build".into(),
                }]
            }
        };
        match predicted.as_ref().and_then(|p| p.get(&v)) {
            Some(Prediction::Cached) => Status::Cached,
            Some(Prediction::Run(Some(miss))) => Status::Run(
                metadata::reasons(graph, miss)
                    .into_iter()
                    .map(|(kind, text, _)| Reason { kind, text })
                    .collect(),
            ),
            Some(Prediction::Run(None)) => Status::Run(Vec::new()),
            None => Status::Run(first()),
        }
    };
    let status: &dyn Fn(VertexId) -> Status = &status;
    let roots = &plan.roots;
    match format {
        GraphFormat::Text => print!("{}", render::render_text(graph, roots, Some(status))),
        GraphFormat::Dot => print!("{}", render::render_dot(graph, roots, Some(status))),
        GraphFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::render_json(graph, roots, Some(status)))?
        ),
    }
    Ok(())
}
