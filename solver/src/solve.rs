//! The scheduler: runtime cache keys, cache lookups, and concurrent execution of what the
//! cache cannot answer.

use crate::context::{ContextError, ContextHasher, Filter};
use crate::ops;
use crate::progress::Event;
use petgraph::graph::{DiGraph, NodeIndex};
use rbuild_cache::remote_cache::ImportedCache;
use rbuild_cache::{CacheRecord, Layer, Store};
use rbuild_executor::CancelToken;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::image::ImageConfig;
use rbuild_graph::{
    BuildGraph, CacheKey, CopySource, FileAction, MountKind, Op, SecurityMode, VertexId,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// How one solve runs.
#[derive(Debug, Clone, Default)]
pub struct SolveOptions {
    /// Execute every vertex even when the cache could answer it (results are still recorded).
    pub no_cache: bool,
    /// The directory of the `Op::Local` named "context".
    pub context_dir: Option<PathBuf>,
    /// Cancelled by the caller (e.g. on Ctrl-C): running steps are killed.
    pub cancel: CancelToken,
    /// Records imported with `--cache-from`, consulted when the local cache misses. Their
    /// blobs are fetched only when a step needs their content (see [`Solver::ensure_layers`]).
    pub imported: Option<Arc<ImportedCache>>,
    /// How image sources that are not local are pulled and pushes are sent; None: only
    /// local images, no push.
    pub registry: Option<rbuild_cache::registry::RegistryClient>,
    /// `--allow security.insecure`: RUN steps may ask for `--security=insecure`.
    /// Without it a graph with such a step is refused before anything runs.
    pub allow_insecure: bool,
}

/// The result of one vertex.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The filesystem as a layer chain, bottom first.
    pub layers: Vec<Layer>,
    /// The image config, for image sources.
    pub config: Option<ImageConfig>,
    /// When this result was first produced (unix seconds, from its cache record), so a
    /// fully cached rebuild exports the very same image.
    pub created: u64,
    /// The runtime cache key (hex) the result is recorded under; set by [`Solver::solve`]
    /// (never for actions).
    pub cache_key: Option<String>,
    /// The manifest digest, for image sources, exports and pushes.
    pub image: Option<String>,
    /// What a push did.
    pub pushed: Option<rbuild_cache::push::PushReport>,
    /// The exit status of a run.
    pub exit_code: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error(
        "{description}: process did not complete successfully: exit code: {exit_code}{}",
        .note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    )]
    RunFailed {
        vertex: VertexId,
        description: String,
        lines: Option<(usize, usize)>,
        exit_code: i32,
        /// The last lines the step printed (stdout and stderr interleaved).
        last_output: Vec<String>,
        /// What else is known about why: the step hit its pids limit.
        note: Option<String>,
    },
    #[error(
        "{description}: {path:?}: not found (not in the build context, excluded by .dockerignore, or missing in the source stage)"
    )]
    MissingContextFile {
        path: String,
        description: String,
        lines: Option<(usize, usize)>,
    },
    #[error(
        "image {reference:?} is not in the local store: import it with `rbuild load -i FILE` or fetch it with `rbuild pull {reference}`"
    )]
    ImageNotFound { reference: String },
    #[error("build cancelled")]
    Cancelled,
    /// Any other failure of a step (I/O, mounts, users, archives), naming the step.
    #[error("{description}: {message}")]
    Step {
        vertex: VertexId,
        description: String,
        lines: Option<(usize, usize)>,
        message: String,
    },
    #[error("no directory was given for the local source {name:?}")]
    NoLocalDir { name: String },
    #[error(transparent)]
    Cache(#[from] rbuild_cache::CacheError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl SolveError {
    /// A step failure for `vertex` with its description and lines.
    pub(crate) fn step(graph: &BuildGraph, vertex: VertexId, message: impl Into<String>) -> Self {
        let meta = &graph.vertex(vertex).meta;
        SolveError::Step {
            vertex,
            description: describe(graph, vertex),
            lines: meta.lines,
            message: message.into(),
        }
    }
}

/// What to call a vertex in messages.
pub(crate) fn describe(graph: &BuildGraph, v: VertexId) -> String {
    let meta = &graph.vertex(v).meta;
    if meta.description.is_empty() {
        format!("{} #{}", graph.vertex(v).op.kind(), v.0)
    } else {
        meta.description.clone()
    }
}

/// Runs build graphs against one store.
#[derive(Clone)]
pub struct Solver {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) hasher: ContextHasher,
    /// Copy rootfs trees instead of mounting overlays (overlayfs unusable here).
    pub(crate) copying: bool,
    /// Blobs seen in the store by this solver: every cached step checks its whole layer
    /// chain, so without this a rebuild of N steps would stat O(N²) blobs.
    pub(crate) blobs_present: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Warnings already sent (a missing cgroup is the same for every RUN): each once.
    pub(crate) warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Domain separation of runtime keys; bump when their derivation changes.
const RUNTIME_DOMAIN: &[u8] = b"rbuild runtime key v1\0";

/// Parsed `.dockerignore` patterns of a Local op.
pub(crate) fn local_patterns(exclude: &[String]) -> Patterns {
    // An unparsable pattern list would have failed in the frontend; treat it as empty here.
    Patterns::from_list(exclude).unwrap_or_default()
}

/// Whether overlayfs cannot be used under `root`. Probing mounts an overlay, so
/// the answer is remembered in the root (`snapshotter`): a no-op rebuild should
/// not pay a mount and an unmount.
fn copying_snapshotter_needed(root: &Path) -> bool {
    let memo = root.join("snapshotter");
    match std::fs::read_to_string(&memo).as_deref() {
        Ok("overlay\n") => return false,
        Ok("copying\n") => return true,
        _ => {}
    }
    let tmp = root.join("tmp");
    let _ = std::fs::create_dir_all(&tmp);
    let copying = !rbuild_executor::overlay_supported(&tmp);
    let staged = root.join(format!(".snapshotter.{}", std::process::id()));
    let answer = if copying { "copying\n" } else { "overlay\n" };
    if std::fs::write(&staged, answer).is_ok() {
        let _ = std::fs::rename(&staged, &memo);
    }
    copying
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
        let hasher = ContextHasher::new(store.root());
        Solver {
            inner: Arc::new(Inner {
                store,
                hasher,
                copying,
                blobs_present: Default::default(),
                warned: Default::default(),
            }),
        }
    }

    /// Whether steps run on copies instead of overlays (the CLI prints a one-line notice).
    pub fn uses_copying_snapshotter(&self) -> bool {
        self.inner.copying
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// How many context files this solver has read (stat cache misses), for tests/stats.
    pub fn context_files_read(&self) -> u64 {
        self.inner.hasher.files_read()
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
        let order = graph.reachable(roots);
        if !opts.allow_insecure {
            refuse_insecure(&graph, &order)?;
        }
        let (dag, index) = build_dag(&graph, &order);
        let mut pending: HashMap<NodeIndex, usize> = dag
            .node_indices()
            .map(|n| {
                let count = dag
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                    .count();
                (n, count)
            })
            .collect();

        // Our own token: a failure cancels the other steps without touching the caller's.
        let cancel = CancelToken::new();
        let watcher = {
            let outer = opts.cancel.clone();
            let inner = cancel.clone();
            tokio::spawn(async move {
                loop {
                    if outer.is_cancelled() {
                        inner.cancel();
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            })
        };

        let mut results: HashMap<VertexId, (CacheKey, Outcome)> = HashMap::new();
        let mut tasks: tokio::task::JoinSet<(VertexId, VertexResult)> = tokio::task::JoinSet::new();
        let mut ready: Vec<NodeIndex> = pending
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(n, _)| *n)
            .collect();
        ready.sort_by_key(|n| dag[*n]);
        let mut first_error: Option<SolveError> = None;

        loop {
            if first_error.is_none() {
                for n in ready.drain(..) {
                    let v = dag[n];
                    let inputs: Vec<(CacheKey, Outcome)> = graph
                        .vertex(v)
                        .inputs
                        .iter()
                        .map(|i| results[i].clone())
                        .collect();
                    // An export reads the results of every step of its image.
                    let solved = matches!(graph.vertex(v).op, Op::Export(_))
                        .then(|| solved_ancestors(&graph, v, &results));
                    let this = self.clone();
                    let graph = graph.clone();
                    let opts = opts.clone();
                    let cancel = cancel.clone();
                    let events = events.clone();
                    tasks.spawn(async move {
                        let r = this
                            .run_vertex(&graph, v, inputs, solved, &opts, &cancel, &events)
                            .await;
                        if let Err(e) = &r {
                            let _ = events.send(Event::Failed {
                                vertex: v,
                                error: e.to_string(),
                            });
                        }
                        (v, r)
                    });
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((v, Ok(res))) => {
                    results.insert(v, res);
                    let n = index[&v];
                    for d in dag.neighbors_directed(n, petgraph::Direction::Outgoing) {
                        if let Some(c) = pending.get_mut(&d) {
                            *c -= 1;
                            if *c == 0 {
                                ready.push(d);
                            }
                        }
                    }
                }
                Ok((_, Err(e))) => {
                    cancel.cancel();
                    // A step killed because another one failed reports Cancelled: keep the cause.
                    let replace = match (&first_error, &e) {
                        (None, _) => true,
                        (Some(SolveError::Cancelled), e) => !matches!(e, SolveError::Cancelled),
                        _ => false,
                    };
                    if replace {
                        first_error = Some(e);
                    }
                }
                Err(join) => {
                    cancel.cancel();
                    if first_error.is_none() {
                        first_error =
                            Some(SolveError::Internal(format!("a step panicked: {join}")));
                    }
                }
            }
        }
        watcher.abort();
        // Whatever was hashed is worth remembering, even when the build failed.
        let _ = self.inner.hasher.save();
        if opts.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(results
            .into_iter()
            .map(|(v, (k, mut o))| {
                if !graph.vertex(v).op.is_action() {
                    o.cache_key = Some(k.to_hex());
                }
                (v, o)
            })
            .collect())
    }

    /// For --dry-run: per reachable vertex, whether the cache answers it. Computes the
    /// runtime keys (hashing context files) without running anything. An image missing
    /// from the store is not an error here: it and what depends on it are misses.
    pub fn plan(
        &self,
        graph: &BuildGraph,
        roots: &[VertexId],
        opts: &SolveOptions,
    ) -> Result<HashMap<VertexId, bool>, SolveError> {
        let mut keys: HashMap<VertexId, CacheKey> = HashMap::new();
        let mut out = HashMap::new();
        for v in graph.reachable(roots) {
            // An image missing from the store makes its step and everything after it a
            // miss; the dry run still shows the graph (the real build reports the image).
            let input_keys: Option<Vec<CacheKey>> = graph
                .vertex(v)
                .inputs
                .iter()
                .map(|i| keys.get(i).copied())
                .collect();
            let Some(input_keys) = input_keys else {
                out.insert(v, false);
                continue;
            };
            let key = match self.inner.runtime_key(graph, v, &input_keys, opts) {
                Ok((key, _)) => key,
                Err(SolveError::ImageNotFound { .. }) => {
                    out.insert(v, false);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let cached = !opts.no_cache
                && (self
                    .inner
                    .store
                    .record_get(&key.to_hex())?
                    .is_some_and(|r| r.layers.iter().all(|l| self.inner.has_blob(&l.digest)))
                    || opts
                        .imported
                        .as_ref()
                        .is_some_and(|imp| imp.record(&key.to_hex()).is_some()));
            keys.insert(v, key);
            out.insert(v, cached);
        }
        let _ = self.inner.hasher.save();
        Ok(out)
    }

    /// Makes the blobs of `layers` present in the store, fetching the ones imported with
    /// `--cache-from` that are still remote (before an export, or a step on top of them).
    pub async fn ensure_layers(
        &self,
        layers: &[Layer],
        opts: &SolveOptions,
    ) -> Result<(), SolveError> {
        let missing: Vec<Layer> = layers
            .iter()
            .filter(|l| !self.inner.has_blob(&l.digest))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        match &opts.imported {
            Some(imp) => imp
                .ensure_blobs(&self.inner.store, &missing)
                .await
                .map_err(|e| SolveError::Internal(format!("fetching cached layers: {e}"))),
            None => Err(rbuild_cache::CacheError::MissingBlob {
                digest: missing[0].digest.clone(),
                path: self.inner.store.blob_path(&missing[0].digest),
            }
            .into()),
        }
    }

    /// Records the results answered by imported records whose blobs are all local by now
    /// (after an export fetched them), so the next build finds them without `--cache-from`.
    pub fn remember_outcomes(
        &self,
        outcomes: &HashMap<VertexId, Outcome>,
    ) -> Result<(), SolveError> {
        let store = &self.inner.store;
        for o in outcomes.values() {
            let Some(key) = &o.cache_key else { continue };
            if !o.layers.iter().all(|l| store.has_blob(&l.digest))
                || store.record_get(key)?.is_some()
            {
                continue;
            }
            let record = CacheRecord {
                layers: o.layers.clone(),
                config: o
                    .config
                    .as_ref()
                    .map(serde_json::to_value)
                    .transpose()
                    .map_err(|e| SolveError::Internal(e.to_string()))?,
                created: o.created,
            };
            store.record_put(key, &record)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_vertex(
        &self,
        graph: &Arc<BuildGraph>,
        v: VertexId,
        inputs: Vec<(CacheKey, Outcome)>,
        solved: Option<HashMap<VertexId, Outcome>>,
        opts: &SolveOptions,
        cancel: &CancelToken,
        events: &UnboundedSender<Event>,
    ) -> Result<(CacheKey, Outcome), SolveError> {
        if cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        let input_keys: Vec<CacheKey> = inputs.iter().map(|(k, _)| *k).collect();
        // Only keys that read the context or the store block; the rest is a hash, done here
        // (a thread hand-off per step was most of a no-op rebuild of many small steps).
        let (key, image) = if key_blocks(&graph.vertex(v).op) {
            let this = self.clone();
            let g = graph.clone();
            let o = opts.clone();
            tokio::task::spawn_blocking(move || this.inner.runtime_key(&g, v, &input_keys, &o))
                .await
                .map_err(|e| SolveError::Internal(e.to_string()))??
        } else {
            self.inner.runtime_key(graph, v, &input_keys, opts)?
        };
        let key_hex = key.to_hex();
        let op = &graph.vertex(v).op;
        let action = op.is_action();
        // An image source answered from the cache still names its manifest.
        let image_digest = match op {
            Op::Image { digest, .. } => image
                .as_ref()
                .map(|i| i.manifest_digest.clone())
                .or_else(|| digest.clone()),
            _ => None,
        };

        // A record whose blobs were pruned away is a miss: the step runs again.
        if !action
            && !opts.no_cache
            && let Some(rec) = self.inner.store.record_get(&key_hex)?
            && rec.layers.iter().all(|l| self.inner.has_blob(&l.digest))
        {
            let _ = events.send(Event::Cached { vertex: v });
            let config = rec
                .config
                .map(serde_json::from_value::<ImageConfig>)
                .transpose()
                .map_err(|e| SolveError::Internal(format!("cache record {key_hex}: {e}")))?;
            return Ok((
                key,
                Outcome {
                    layers: rec.layers,
                    config,
                    created: rec.created,
                    image: image_digest,
                    ..Default::default()
                },
            ));
        }

        // Imported records answer too; their blobs stay remote until something needs them.
        // One whose config does not parse is a miss (the step runs), never a failure.
        if !action
            && !opts.no_cache
            && let Some(imp) = &opts.imported
            && let Some(rec) = imp.record(&key_hex)
            && let Ok(config) = rec
                .config
                .clone()
                .map(serde_json::from_value::<ImageConfig>)
                .transpose()
        {
            if rec.layers.iter().all(|l| self.inner.has_blob(&l.digest)) {
                self.inner.store.record_put(&key_hex, rec)?;
            }
            let _ = events.send(Event::Cached { vertex: v });
            return Ok((
                key,
                Outcome {
                    layers: rec.layers.clone(),
                    config,
                    created: rec.created,
                    image: image_digest,
                    ..Default::default()
                },
            ));
        }

        let _ = events.send(Event::Started {
            vertex: v,
            at: Instant::now(),
        });
        let outcomes: Vec<Outcome> = inputs.into_iter().map(|(_, o)| o).collect();
        // A step runs on its inputs' content: lazily imported layers must be here now.
        let needed: Vec<Layer> = outcomes.iter().flat_map(|o| o.layers.clone()).collect();
        self.ensure_layers(&needed, opts)
            .await
            .map_err(|e| SolveError::step(graph, v, e.to_string()))?;
        // What a RUN step's cgroup measured: part of its progress, not of its result.
        let mut peak_memory = None;
        let mut outcome = match op {
            Op::Scratch | Op::Local { .. } => Outcome::default(),
            Op::Image {
                reference,
                digest,
                platform,
            } => match image {
                Some(img) => ops::source::image_outcome(&img)?,
                None => {
                    ops::source::image(
                        &self.inner,
                        graph,
                        v,
                        reference,
                        digest.as_deref(),
                        platform,
                        opts,
                        events,
                    )
                    .await?
                }
            },
            Op::Export(export) => {
                let this = self.clone();
                let g = graph.clone();
                let export = export.clone();
                let solved = solved.unwrap_or_default();
                let ev = events.clone();
                tokio::task::spawn_blocking(move || this.run_export(&g, v, &export, &solved, &ev))
                    .await
                    .map_err(|e| SolveError::Internal(e.to_string()))??
            }
            Op::Push { reference } => {
                let input = outcomes.first().cloned().unwrap_or_default();
                ops::push::run(&self.inner, graph, v, &input, reference, opts, events).await?
            }
            Op::Run(run) => {
                let this = self.clone();
                let g = graph.clone();
                let run = run.clone();
                let c = cancel.clone();
                let input = outcomes.first().cloned().unwrap_or_default();
                tokio::task::spawn_blocking(move || {
                    ops::run::run(&this.inner, &g, v, &input, &run, &c)
                })
                .await
                .map_err(|e| SolveError::Internal(e.to_string()))??
            }
            Op::Exec(_) => {
                let this = self.clone();
                let g = graph.clone();
                let o = opts.clone();
                let c = cancel.clone();
                let ev = events.clone();
                let (outcome, peak) = tokio::task::spawn_blocking(move || {
                    ops::exec::run(&this.inner, &g, v, &outcomes, &o, &c, &ev)
                })
                .await
                .map_err(|e| SolveError::Internal(e.to_string()))??;
                peak_memory = peak;
                outcome
            }
            Op::File(_) => {
                let this = self.clone();
                let g = graph.clone();
                let o = opts.clone();
                let c = cancel.clone();
                tokio::task::spawn_blocking(move || {
                    ops::file::run(&this.inner, &g, v, &outcomes, &o, &c)
                })
                .await
                .map_err(|e| SolveError::Internal(e.to_string()))??
            }
        };
        outcome.created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if !action {
            let record = CacheRecord {
                layers: outcome.layers.clone(),
                config: outcome
                    .config
                    .as_ref()
                    .map(serde_json::to_value)
                    .transpose()
                    .map_err(|e| SolveError::Internal(e.to_string()))?,
                created: outcome.created,
            };
            self.inner.store.record_put(&key_hex, &record)?;
        }
        let _ = events.send(Event::Done {
            vertex: v,
            at: Instant::now(),
            peak_memory,
        });
        Ok((key, outcome))
    }
}

/// Refuses a graph with a `RUN --security=insecure` among `order` when the build did not
/// allow it, naming the first such step, as buildx refuses the entitlement.
fn refuse_insecure(graph: &BuildGraph, order: &[VertexId]) -> Result<(), SolveError> {
    let insecure = order.iter().find(
        |v| matches!(&graph.vertex(**v).op, Op::Exec(e) if e.security == SecurityMode::Insecure),
    );
    match insecure {
        Some(v) => Err(SolveError::step(
            graph,
            *v,
            "RUN --security=insecure is not allowed: the build needs --allow security.insecure",
        )),
        None => Ok(()),
    }
}

/// Whether computing the runtime key of `op` does I/O: an image source looks in the store,
/// a COPY or a bind mount hashes context files.
fn key_blocks(op: &Op) -> bool {
    match op {
        Op::Image { .. } | Op::File(_) => true,
        Op::Exec(e) => e
            .mounts
            .iter()
            .any(|m| matches!(m.kind, MountKind::Bind { .. })),
        _ => false,
    }
}

/// The results of every vertex `v` depends on, with their runtime keys filled in.
fn solved_ancestors(
    graph: &BuildGraph,
    v: VertexId,
    results: &HashMap<VertexId, (CacheKey, Outcome)>,
) -> HashMap<VertexId, Outcome> {
    graph
        .reachable(&[v])
        .into_iter()
        .filter_map(|a| {
            let (k, o) = results.get(&a)?;
            let mut o = o.clone();
            if !graph.vertex(a).op.is_action() {
                o.cache_key = Some(k.to_hex());
            }
            Some((a, o))
        })
        .collect()
}

/// What one vertex task returns: its runtime key and outcome.
type VertexResult = Result<(CacheKey, Outcome), SolveError>;

/// The DAG of the reachable vertices, edges from input to consumer (one per distinct input).
fn build_dag(
    graph: &BuildGraph,
    order: &[VertexId],
) -> (DiGraph<VertexId, ()>, HashMap<VertexId, NodeIndex>) {
    let mut dag = DiGraph::new();
    let mut index = HashMap::new();
    for v in order {
        index.insert(*v, dag.add_node(*v));
    }
    for v in order {
        let mut seen = Vec::new();
        for i in &graph.vertex(*v).inputs {
            if !seen.contains(i) {
                seen.push(*i);
                dag.add_edge(index[i], index[v], ());
            }
        }
    }
    (dag, index)
}

impl Inner {
    /// Whether the store has the blob `digest` (a yes is remembered: blobs are only
    /// removed by prune, which does not run during a build of this root).
    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        let mut known = self.blobs_present.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(digest) {
            return true;
        }
        let present = self.store.has_blob(digest);
        if present {
            known.insert(digest.to_string());
        }
        present
    }

    /// The directory of a Local source.
    pub(crate) fn local_dir(&self, name: &str, opts: &SolveOptions) -> Result<PathBuf, SolveError> {
        match (name, &opts.context_dir) {
            ("context", Some(d)) => Ok(d.clone()),
            _ => Err(SolveError::NoLocalDir {
                name: name.to_string(),
            }),
        }
    }

    /// The local image of a source: the pinned manifest when there is one (what lowering
    /// resolved; another image under the same tag is not it), else the reference's.
    pub(crate) fn local_image(
        &self,
        reference: &str,
        digest: Option<&str>,
    ) -> Result<Option<rbuild_cache::StoredImage>, SolveError> {
        Ok(match digest {
            Some(d) => self.store.image(d)?,
            None => self.store.image(reference)?,
        })
    }

    /// blake3(static key, input runtime keys, facts known only now): the manifest digest of
    /// an image source, the content digest of each context selection of a COPY.
    pub(crate) fn runtime_key(
        &self,
        graph: &BuildGraph,
        v: VertexId,
        input_keys: &[CacheKey],
        opts: &SolveOptions,
    ) -> Result<(CacheKey, Option<rbuild_cache::StoredImage>), SolveError> {
        let vertex = graph.vertex(v);
        let mut h = blake3::Hasher::new();
        h.update(RUNTIME_DOMAIN);
        h.update(&graph.key(v).0);
        h.update(&(input_keys.len() as u64).to_le_bytes());
        for k in input_keys {
            h.update(&k.0);
        }
        let mut image = None;
        match &vertex.op {
            Op::Image {
                reference, digest, ..
            } => {
                // A pinned manifest is the key even before it is pulled.
                let img = self.local_image(reference, digest.as_deref())?;
                let manifest = match (&img, digest) {
                    (_, Some(d)) => d.clone(),
                    (Some(img), None) => img.manifest_digest.clone(),
                    (None, None) => {
                        return Err(SolveError::ImageNotFound {
                            reference: reference.to_string(),
                        });
                    }
                };
                h.update(b"image\0");
                h.update(manifest.as_bytes());
                image = img;
            }
            Op::File(file) => {
                for (i, action) in file.actions.iter().enumerate() {
                    let FileAction::Copy(copy) = action else {
                        continue;
                    };
                    let CopySource::Input { input, path } = &copy.source else {
                        continue;
                    };
                    let Some(src) = vertex.inputs.get(*input) else {
                        return Err(SolveError::step(
                            graph,
                            v,
                            format!("copy source input {input} does not exist"),
                        ));
                    };
                    let Op::Local { name, exclude } = &graph.vertex(*src).op else {
                        continue;
                    };
                    let dir = self.local_dir(name, opts)?;
                    let ignore = local_patterns(exclude);
                    let copy_exclude = local_patterns(&copy.exclude);
                    let filter = Filter {
                        ignore: &ignore,
                        copy_exclude: &copy_exclude,
                    };
                    let d = self
                        .hasher
                        .digest(&dir, path, copy.allow_wildcard, &filter)
                        .map_err(|e| context_error(graph, v, e))?;
                    h.update(&(i as u64).to_le_bytes());
                    h.update(&d);
                }
            }
            Op::Exec(exec) => {
                // A bind of the context: what it shows is part of the step's inputs.
                for (i, m) in exec.mounts.iter().enumerate() {
                    let MountKind::Bind { input, source, .. } = &m.kind else {
                        continue;
                    };
                    let Some(src) = vertex.inputs.get(*input) else {
                        continue;
                    };
                    let Op::Local { name, exclude } = &graph.vertex(*src).op else {
                        continue;
                    };
                    let dir = self.local_dir(name, opts)?;
                    let ignore = local_patterns(exclude);
                    let none = Patterns::default();
                    let filter = Filter {
                        ignore: &ignore,
                        copy_exclude: &none,
                    };
                    let d = self
                        .hasher
                        .digest(&dir, source, false, &filter)
                        .map_err(|e| context_error(graph, v, e))?;
                    h.update(b"bind\0");
                    h.update(&(i as u64).to_le_bytes());
                    h.update(&d);
                }
            }
            _ => {}
        }
        Ok((CacheKey(*h.finalize().as_bytes()), image))
    }
}

/// A context error as the step's error.
pub(crate) fn context_error(graph: &BuildGraph, v: VertexId, e: ContextError) -> SolveError {
    match e {
        ContextError::NotFound { path } => SolveError::MissingContextFile {
            path,
            description: describe(graph, v),
            lines: graph.vertex(v).meta.lines,
        },
        other => SolveError::step(graph, v, other.to_string()),
    }
}
