//! `--dry-run`: the build lowered and planned like a real one, then printed instead of
//! solved, each vertex marked cached or to run when there is a store to ask. It reports
//! what is local and never downloads.

use super::actions::{self, Plan};
use super::inputs::Inputs;
use super::{lower, solve};
use crate::flags::hiargs::{Build, Global, GraphFormat};
use crate::shared::store;
use anyhow::Result;
use rbuild_cache::Store;
use rbuild_graph::{VertexId, render};
use rbuild_solver::{SolveOptions, Solver};

/// Lowers and plans `build`, then prints the graph in `format`.
pub fn run(global: &Global, build: &Build, inputs: &Inputs, format: GraphFormat) -> Result<()> {
    // A dry run of a root that does not exist yet must not create one.
    let store = if global.root.exists() {
        Some(store::open(&global.root)?)
    } else {
        None
    };
    let lowered = lower::lower(build, inputs, store.as_ref(), None)?;
    let plan = actions::add(lowered.targets, build)?;
    print(
        store.as_ref(),
        &plan,
        &solve::options(build, inputs),
        format,
    )
}

/// Prints `plan` in `format`. Without a store, or with `--no-cache`, nothing is cached.
fn print(
    store: Option<&Store>,
    plan: &Plan,
    opts: &SolveOptions,
    format: GraphFormat,
) -> Result<()> {
    let cache = match store {
        Some(s) if !opts.no_cache => {
            Some(Solver::new(s.clone()).plan(&plan.graph, &plan.roots, opts)?)
        }
        _ => None,
    };
    let cached = |v: VertexId| {
        cache
            .as_ref()
            .and_then(|p| p.get(&v).copied())
            .unwrap_or(false)
    };
    let cached: &dyn Fn(VertexId) -> bool = &cached;
    let (graph, roots) = (&plan.graph, &plan.roots);
    match format {
        GraphFormat::Text => print!("{}", render::render_text(graph, roots, Some(cached))),
        GraphFormat::Dot => print!("{}", render::render_dot(graph, roots, Some(cached))),
        GraphFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::render_json(graph, roots, Some(cached)))?
        ),
    }
    Ok(())
}
