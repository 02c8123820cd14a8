//! `rbuild pull`: a graph of one image source, solved: the manifest is resolved in the
//! registry, the vertex fetches the layers the store lacks.

use crate::flags::hiargs::{Global, Pull};
use crate::shared::oneshot::{self, Show, Source};
use crate::shared::{runtime, store};
use anyhow::{Context, Result, bail};
use rbuild_graph::BuildGraph;
use rbuild_solver::SolveOptions;
use std::process::ExitCode;

/// Pulls the image and tags it in the store; prints its manifest digest.
pub fn pull(global: &Global, pull: &Pull) -> Result<ExitCode> {
    let reference = &pull.reference;
    let store = store::open(&global.root)?;
    let runtime = runtime::start(None)?;
    let mut graph = BuildGraph::new();
    let source = Source {
        runtime: &runtime,
        store: &store,
        registry: Some(global.insecure_registries.as_slice()),
        always: true,
        platform: pull.platform.clone(),
    };
    let Some((v, client)) = oneshot::image_vertex(&mut graph, &source, reference)
        .with_context(|| format!("cannot pull {reference}"))?
    else {
        bail!("cannot pull {reference}: no registry answered for it");
    };
    // Always fetched: a cache record of the same manifest must not stand in for it (the
    // point is the image and its tag in the store).
    let opts = SolveOptions {
        no_cache: true,
        ..Default::default()
    };
    let show = Show {
        progress: pull.progress,
        hidden: vec![],
        cached: true,
    };
    let outcomes = oneshot::solve(&runtime, &store, graph, &[v], opts, client, show)
        .map_err(|e| oneshot::said_once(e, &format!("cannot pull {reference}"), pull.progress))?;
    let digest = outcomes
        .get(&v)
        .and_then(|o| o.image.clone())
        .unwrap_or_default();
    if pull.quiet {
        println!("{reference}");
    } else {
        println!("{reference}: pulled, digest {digest}");
    }
    Ok(ExitCode::SUCCESS)
}
