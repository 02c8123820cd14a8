//! `rbuild pull`, `push` and `run` as small graphs: an image-source vertex and the action
//! on it, solved like a build (same pull, push and run code, same progress).

use crate::shared::progress::{self, Printer};
use crate::shared::resolver::StoreResolver;
use crate::shared::runtime::cancel_on_signals;
use anyhow::{Result, anyhow};
use rbuild_cache::Store;
use rbuild_cache::registry::RegistryClient;
use rbuild_frontend::lower::ImageResolver;
use rbuild_graph::{BuildGraph, Op, Platform, VertexId, VertexMeta};
use rbuild_solver::{Outcome, SolveError, SolveOptions, Solver};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where an image source may come from.
pub struct Source<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub store: &'a Store,
    /// `--insecure-registry` hosts; None: the local store only.
    pub registry: Option<&'a [String]>,
    /// Resolve in the registry even when the image is local.
    pub always: bool,
    /// The platform wanted from an index.
    pub platform: Platform,
}

/// Adds the image source for `reference`, pinned to the manifest it resolves to (the
/// local one, or the registry's). Returns the vertex and the registry client if one was
/// needed; Ok(None) when there is no such image locally and no registry to ask.
pub fn image_vertex(
    graph: &mut BuildGraph,
    source: &Source,
    reference: &str,
) -> Result<Option<(VertexId, Option<RegistryClient>)>> {
    let resolver = StoreResolver::new(
        source.store,
        source.registry.map(|r| (source.runtime, r)),
        source.always,
    );
    let platform = source.platform.clone();
    let Some(resolved) = resolver
        .resolve(reference, &platform)
        .map_err(|e| anyhow!(e))?
    else {
        return Ok(None);
    };
    let description = match &resolved.digest {
        Some(d) => format!("FROM {reference}@{d}"),
        None => format!("FROM {reference}"),
    };
    let v = graph.add(
        Op::Image {
            reference: reference.to_string(),
            digest: resolved.digest,
            platform,
        },
        vec![],
        VertexMeta {
            description,
            ..Default::default()
        },
    );
    Ok(Some((v, resolver.into_client())))
}

/// What to show of a small solve.
pub struct Show {
    pub progress: progress::Mode,
    /// Vertices whose events are not shown at all.
    pub hidden: Vec<VertexId>,
    /// Whether cache hits are shown (`#1 … CACHED`).
    pub cached: bool,
}

/// The error of a one-shot solve, said once: a step's failure that plain progress already
/// printed (`#N ERROR: …`) is named, not repeated; a step's failure otherwise is said as
/// it is (it names the step); any other error after `what`.
pub fn said_once(e: SolveError, what: &str, mode: progress::Mode) -> anyhow::Error {
    match (&e, mode) {
        (SolveError::Step { description, .. }, progress::Mode::Plain) => {
            anyhow!("{description} failed (its ERROR line is above)")
        }
        (SolveError::Step { .. }, _) => anyhow!("{e}"),
        _ => anyhow!("{what}: {e}"),
    }
}

/// Solves `roots` of `graph`; Ctrl-C / SIGTERM cancel it.
pub fn solve(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    graph: BuildGraph,
    roots: &[VertexId],
    mut opts: SolveOptions,
    registry: Option<RegistryClient>,
    show: Show,
) -> Result<HashMap<VertexId, Outcome>, SolveError> {
    opts.registry = registry;
    cancel_on_signals(runtime, &opts.cancel);
    let graph = Arc::new(graph);
    let solver = Solver::new(store.clone());
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = Printer::new(show.progress, graph.clone())
            .hiding(show.hidden.into_iter().collect::<HashSet<_>>(), show.cached);
        let printing = tokio::spawn(printer.consume(rx));
        let solved = solver.solve(graph.clone(), roots, &opts, tx).await;
        let _ = printing.await;
        solved
    })
}
