//! The scheduler: runs a graph's vertices as soon as their inputs are done, each at most
//! once, as tokio tasks; asks the cache first; the first failure cancels the rest.
//!
//! It knows ops only through the op interface ([`SolveOp`]) and the [`Resolver`] it is
//! given, so it never matches on op kinds: per vertex it computes the runtime key (on
//! the blocking pool when the op says that blocks), looks the key up in the local and
//! the imported cache, else makes the inputs' layers present, runs the op's [`Work`] and
//! records the result.

use crate::error::SolveError;
use crate::op::{Resolver, SolveOp, StepContext, Work, runtime_key};
use crate::options::SolveOptions;
use crate::outcome::Outcome;
use crate::progress::Event;
use crate::services::Services;
use petgraph::graph::{DiGraph, NodeIndex};
use rbuild_executor::CancelToken;
use rbuild_graph::{BuildGraph, CacheKey, VertexId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// Runs graphs with the ops a [`Resolver`] finds.
#[derive(Clone)]
pub(crate) struct Scheduler {
    pub(crate) services: Arc<Services>,
    resolve: Resolver,
}

/// What one vertex task returns: its runtime key and outcome.
type VertexResult = Result<(CacheKey, Outcome), SolveError>;

/// What every vertex task of one solve shares.
struct SolveRun {
    services: Arc<Services>,
    graph: Arc<BuildGraph>,
    opts: Arc<SolveOptions>,
    cancel: CancelToken,
    events: UnboundedSender<Event>,
}

/// A vertex whose inputs are done, with what its step needs.
struct ReadyVertex {
    vertex: VertexId,
    op: Arc<dyn SolveOp>,
    inputs: Vec<(CacheKey, Outcome)>,
    ancestors: HashMap<VertexId, Outcome>,
}

impl Scheduler {
    pub(crate) fn new(services: Arc<Services>, resolve: Resolver) -> Self {
        Scheduler { services, resolve }
    }

    /// The implementation of `v`'s op; an op that cannot be set up fails as its step.
    fn resolve(&self, graph: &BuildGraph, v: VertexId) -> Result<Arc<dyn SolveOp>, SolveError> {
        (self.resolve)(&graph.vertex(v).op).map_err(|cause| SolveError::step(graph, v, cause))
    }

    /// Runs what the cache cannot answer; independent vertices run concurrently, each at
    /// most once. The first failure cancels the rest; temp dirs are removed either way.
    pub(crate) async fn solve(
        &self,
        graph: Arc<BuildGraph>,
        roots: &[VertexId],
        opts: &SolveOptions,
        events: UnboundedSender<Event>,
    ) -> Result<HashMap<VertexId, Outcome>, SolveError> {
        let order = graph.reachable(roots);
        // Nothing runs when a step needs what the build did not allow.
        for v in &order {
            if let Some(cause) = self.resolve(&graph, *v)?.refused(opts) {
                return Err(SolveError::step(&graph, *v, cause));
            }
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
        let run = Arc::new(SolveRun {
            services: self.services.clone(),
            graph: graph.clone(),
            opts: Arc::new(opts.clone()),
            cancel: cancel.clone(),
            events,
        });

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
                    let op = self.resolve(&graph, v).map(|op| {
                        let vertex = graph.vertex(v);
                        let inputs = vertex.inputs.iter().map(|i| results[i].clone()).collect();
                        let ancestors = if op.needs_ancestors() {
                            solved_ancestors(&graph, v, &results)
                        } else {
                            HashMap::new()
                        };
                        ReadyVertex {
                            vertex: v,
                            op,
                            inputs,
                            ancestors,
                        }
                    });
                    let run = run.clone();
                    tasks.spawn(async move {
                        let r = match op {
                            Ok(ready) => solve_vertex(&run, ready).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = &r {
                            let _ = run.events.send(Event::Failed {
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
        let _ = self.services.hasher.save();
        if opts.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(results.into_iter().map(|(v, (_, o))| (v, o)).collect())
    }

    /// For --dry-run: per reachable vertex, whether the cache answers it. Computes the
    /// runtime keys (hashing context files) without running anything. An image missing
    /// from the store is not an error here: it and what depends on it are misses.
    pub(crate) fn plan(
        &self,
        graph: &BuildGraph,
        roots: &[VertexId],
        opts: &SolveOptions,
    ) -> Result<HashMap<VertexId, bool>, SolveError> {
        let graph = Arc::new(graph.clone());
        let opts = Arc::new(opts.clone());
        // Nobody listens: keys report no progress.
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
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
            let op = self.resolve(&graph, v)?;
            let step = StepContext {
                graph: graph.clone(),
                vertex: v,
                inputs: Vec::new(),
                ancestors: HashMap::new(),
                opts: opts.clone(),
                cancel: CancelToken::new(),
                events: events.clone(),
                services: self.services.clone(),
            };
            let key = match runtime_key(op.as_ref(), &step, &input_keys) {
                Ok(key) => key,
                Err(SolveError::ImageNotFound { .. }) => {
                    out.insert(v, false);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let hex = key.to_hex();
            let cached = !opts.no_cache
                && (self.services.usable_record(&hex)?.is_some()
                    || opts
                        .imported
                        .as_ref()
                        .is_some_and(|imp| imp.record(&hex).is_some()));
            keys.insert(v, key);
            out.insert(v, cached);
        }
        let _ = self.services.hasher.save();
        Ok(out)
    }
}

/// One vertex: its runtime key, then the local cache, the imported cache, or the op.
async fn solve_vertex(run: &SolveRun, ready: ReadyVertex) -> VertexResult {
    let ReadyVertex {
        vertex: v,
        op,
        inputs,
        ancestors,
    } = ready;
    if run.cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    let (input_keys, inputs): (Vec<CacheKey>, Vec<Outcome>) = inputs.into_iter().unzip();
    let step = Arc::new(StepContext {
        graph: run.graph.clone(),
        vertex: v,
        inputs,
        ancestors,
        opts: run.opts.clone(),
        cancel: run.cancel.clone(),
        events: run.events.clone(),
        services: run.services.clone(),
    });
    let key = if op.key_blocks() {
        let (op, step) = (op.clone(), step.clone());
        Work::blocking(move || runtime_key(op.as_ref(), &step, &input_keys))
            .run()
            .await?
    } else {
        runtime_key(op.as_ref(), &step, &input_keys)?
    };
    let key_hex = key.to_hex();
    let cacheable = op.cacheable();

    if cacheable
        && !run.opts.no_cache
        && let Some(hit) = cache_lookup(run, &key_hex)?
    {
        let mut outcome = hit;
        op.cache_hit(&mut outcome);
        outcome.cache_key = Some(key_hex);
        let _ = run.events.send(Event::Cached { vertex: v });
        return Ok((key, outcome));
    }

    let _ = run.events.send(Event::Started {
        vertex: v,
        at: Instant::now(),
    });
    // A step runs on its inputs' content: lazily imported layers must be here now.
    let needed: Vec<rbuild_cache::Layer> = step
        .inputs
        .iter()
        .flat_map(|o| o.layers.iter().cloned())
        .collect();
    run.services
        .ensure_layers(&needed, &run.opts)
        .await
        .map_err(|e| step.fail(e))?;
    let mut outcome = op.execute(step).run().await?;
    outcome.created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if cacheable {
        run.services
            .store
            .record_put(&key_hex, &outcome.record()?)?;
        outcome.cache_key = Some(key_hex);
    }
    let _ = run.events.send(Event::Done {
        vertex: v,
        at: Instant::now(),
        peak_memory: outcome.peak_memory.take(),
    });
    Ok((key, outcome))
}

/// The outcome the cache has for `key`: a local record whose blobs are all present, else
/// an imported record (its blobs stay remote until something needs them; it is recorded
/// locally when they are all here already). An imported record whose config does not
/// parse is a miss (the step runs), never a failure.
fn cache_lookup(run: &SolveRun, key: &str) -> Result<Option<Outcome>, SolveError> {
    if let Some(rec) = run.services.usable_record(key)? {
        return Outcome::from_record(&rec)
            .map(Some)
            .map_err(|source| SolveError::BadCacheRecord {
                key: key.to_string(),
                source,
            });
    }
    let Some(imp) = &run.opts.imported else {
        return Ok(None);
    };
    let Some(rec) = imp.record(key) else {
        return Ok(None);
    };
    let Ok(outcome) = Outcome::from_record(rec) else {
        return Ok(None);
    };
    if run.services.has_layers(&rec.layers) {
        run.services.store.record_put(key, rec)?;
    }
    Ok(Some(outcome))
}

/// The results of every vertex `v` depends on (runtime keys included).
fn solved_ancestors(
    graph: &BuildGraph,
    v: VertexId,
    results: &HashMap<VertexId, (CacheKey, Outcome)>,
) -> HashMap<VertexId, Outcome> {
    graph
        .reachable(&[v])
        .into_iter()
        .filter_map(|a| Some((a, results.get(&a)?.1.clone())))
        .collect()
}

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
