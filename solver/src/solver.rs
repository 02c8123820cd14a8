//! [`Solver`]: runs build graphs against one store. It wires the op implementations
//! (`ops::resolve`) into the scheduler and keeps what outlives one solve (the context
//! hasher's stat cache, blobs seen present).

use crate::error::SolveError;
use crate::options::SolveOptions;
use crate::outcome::Outcome;
use crate::progress::Event;
use crate::scheduler::{Prediction, Scheduler};
use crate::services::{Services, copying_snapshotter_needed};
use rbuild_cache::{Layer, Store};
use rbuild_graph::{BuildGraph, VertexId};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Runs build graphs against one store.
#[derive(Clone)]
pub struct Solver {
    scheduler: Scheduler,
}

impl Solver {
    /// A solver over `store`. Probes once whether overlayfs works under the store root and
    /// falls back to the copying snapshotter when it does not (see
    /// [`Solver::uses_copying_snapshotter`]).
    pub fn new(store: Store) -> Self {
        let copying = copying_snapshotter_needed(store.root());
        Self::with_snapshotter(store, copying)
    }

    /// A solver with the snapshotter chosen by the caller: `copying` = plain directory
    /// copies and tree diffs instead of overlay mounts (slower; works on any filesystem).
    pub fn with_snapshotter(store: Store, copying: bool) -> Self {
        let services = Arc::new(Services::new(store, copying));
        Solver {
            scheduler: Scheduler::new(services, crate::ops::resolve),
        }
    }

    fn services(&self) -> &Services {
        &self.scheduler.services
    }

    /// Whether steps run on copies instead of overlays (the CLI prints a one-line notice).
    pub fn uses_copying_snapshotter(&self) -> bool {
        self.services().copying
    }

    pub fn store(&self) -> &Store {
        &self.services().store
    }

    /// How many context files this solver has read (stat cache misses), for tests/stats.
    pub fn context_files_read(&self) -> u64 {
        self.services().hasher.files_read()
    }

    /// Runs what the cache cannot answer; independent vertices run concurrently, each at
    /// most once. The first failure cancels the rest; temp dirs are removed either way.
    pub async fn solve(
        &self,
        graph: Arc<BuildGraph>,
        roots: &[VertexId],
        opts: &SolveOptions,
        events: UnboundedSender<Event>,
    ) -> Result<HashMap<VertexId, Outcome>, SolveError> {
        self.scheduler.solve(graph, roots, opts, events).await
    }

    /// For --dry-run: per reachable vertex, whether the cache answers it. Computes the
    /// runtime keys (hashing context files) without running anything. An image missing
    /// from the store is not an error here: it and what depends on it are misses.
    pub fn plan(
        &self,
        graph: &Arc<BuildGraph>,
        roots: &[VertexId],
        opts: &SolveOptions,
    ) -> Result<HashMap<VertexId, bool>, SolveError> {
        Ok(self
            .predict(graph, roots, opts)?
            .into_iter()
            .map(|(v, p)| (v, p.is_cached()))
            .collect())
    }

    /// [`plan`](Self::plan), saying for each step that would run why, as the build would
    /// (against `opts.history`).
    pub fn predict(
        &self,
        graph: &Arc<BuildGraph>,
        roots: &[VertexId],
        opts: &SolveOptions,
    ) -> Result<HashMap<VertexId, Prediction>, SolveError> {
        self.scheduler.plan(graph, roots, opts)
    }

    /// Makes the blobs of `layers` present in the store, fetching the ones imported with
    /// `--cache-from` that are still remote (before an export, or a step on top of them).
    pub async fn ensure_layers(
        &self,
        layers: &[Layer],
        opts: &SolveOptions,
    ) -> Result<(), SolveError> {
        Ok(self.services().ensure_layers(layers, opts).await?)
    }

    /// Records the results answered by imported records whose blobs are all local by now
    /// (after an export fetched them), so the next build finds them without `--cache-from`.
    pub fn remember_outcomes(
        &self,
        outcomes: &HashMap<VertexId, Outcome>,
    ) -> Result<(), SolveError> {
        let services = self.services();
        for o in outcomes.values() {
            let Some(key) = &o.cache_key else { continue };
            if !services.has_layers(&o.layers) || services.store.record_get(key)?.is_some() {
                continue;
            }
            services.store.record_put(key, &o.record()?)?;
        }
        Ok(())
    }
}
