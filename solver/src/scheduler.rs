//! The scheduler: runs a graph's vertices as soon as their inputs are done, each at most
//! once, as tokio tasks; asks the cache first; the first failure cancels the rest.
//!
//! It knows ops only through the op interface ([`SolveOp`]) and the [`Resolver`] it is
//! given, so it never matches on op kinds: per vertex it computes the runtime key (on
//! the blocking pool when the op says that blocks), looks the key up in the local and
//! the imported cache, else makes the inputs' layers present, runs the op's [`Work`] and
//! records the result.

use crate::error::SolveError;
use crate::explain::{Facts, Miss};
use crate::op::{Resolver, SolveOp, StepContext, runtime_key};
use crate::options::SolveOptions;
use crate::outcome::Outcome;
use crate::progress::Event;
use crate::services::Services;
use crate::vertex::{self, Looked, ReadyVertex, SolveRun, VertexResult};
use petgraph::graph::{DiGraph, NodeIndex};
use rbuild_executor::CancelToken;
use rbuild_graph::{BuildGraph, CacheKey, VertexId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;

/// Runs graphs with the ops a [`Resolver`] finds.
#[derive(Clone)]
pub(crate) struct Scheduler {
    pub(crate) services: Arc<Services>,
    resolve: Resolver,
}

/// What a dry run predicts of a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prediction {
    /// The cache answers it.
    Cached,
    /// It runs; why, when the build keeps a history (and it is not an action).
    Run(Option<Miss>),
}

impl Prediction {
    pub fn is_cached(&self) -> bool {
        matches!(self, Prediction::Cached)
    }
}

/// Everything the solve loop tracks.
struct Progress {
    results: HashMap<VertexId, (CacheKey, Outcome)>,
    pending: HashMap<NodeIndex, usize>,
    first_error: Option<SolveError>,
}

impl Progress {
    /// Notes a failure: the first real cause wins over the cancellations it caused.
    fn fail(&mut self, e: SolveError, cancel: &CancelToken) {
        cancel.cancel();
        // A step killed because another one failed reports Cancelled: keep the cause.
        let replace = match (&self.first_error, &e) {
            (None, _) => true,
            (Some(SolveError::Cancelled), e) => !matches!(e, SolveError::Cancelled),
            _ => false,
        };
        if replace {
            self.first_error = Some(e);
        }
    }

    /// Notes `v` done; returns the vertices that became ready.
    fn done(
        &mut self,
        v: VertexId,
        res: (CacheKey, Outcome),
        dag: &DiGraph<VertexId, ()>,
        index: &HashMap<VertexId, NodeIndex>,
    ) -> Vec<NodeIndex> {
        self.results.insert(v, res);
        let mut ready = Vec::new();
        for d in dag.neighbors_directed(index[&v], petgraph::Direction::Outgoing) {
            if let Some(c) = self.pending.get_mut(&d) {
                *c -= 1;
                if *c == 0 {
                    ready.push(d);
                }
            }
        }
        ready
    }
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
    /// most once (at most `opts.max_parallelism` executing at a time; with 1, in a fixed
    /// order). The first failure cancels the rest; temp dirs are removed either way.
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
        let pending: HashMap<NodeIndex, usize> = dag
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
        let ready: Vec<NodeIndex> = pending
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut progress = Progress {
            results: HashMap::new(),
            pending,
            first_error: None,
        };
        if opts.max_parallelism == Some(1) {
            self.run_ordered(&run, &dag, &index, ready, &mut progress)
                .await;
        } else {
            let permits = opts.max_parallelism.map(|n| Arc::new(Semaphore::new(n)));
            self.run_concurrent(&run, &dag, &index, ready, permits, &mut progress)
                .await;
        }
        watcher.abort();
        // Whatever was hashed is worth remembering, even when the build failed.
        let _ = self.services.hasher.save();
        if opts.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        if let Some(e) = progress.first_error {
            return Err(e);
        }
        Ok(progress
            .results
            .into_iter()
            .map(|(v, (_, o))| (v, o))
            .collect())
    }

    /// What a vertex whose inputs are done needs to start.
    fn ready_vertex(
        &self,
        graph: &BuildGraph,
        v: VertexId,
        results: &HashMap<VertexId, (CacheKey, Outcome)>,
    ) -> Result<ReadyVertex, SolveError> {
        self.resolve(graph, v).map(|op| {
            let inputs = graph
                .vertex(v)
                .inputs
                .iter()
                .map(|i| results[i].clone())
                .collect();
            let ancestors = if op.needs_ancestors() {
                solved_ancestors(graph, v, results)
            } else {
                HashMap::new()
            };
            ReadyVertex {
                vertex: v,
                op,
                inputs,
                ancestors,
            }
        })
    }

    /// Every ready vertex as its own task: lookup, then (holding one of `permits`, when
    /// the build limits them) execution.
    async fn run_concurrent(
        &self,
        run: &Arc<SolveRun>,
        dag: &DiGraph<VertexId, ()>,
        index: &HashMap<VertexId, NodeIndex>,
        mut ready: Vec<NodeIndex>,
        permits: Option<Arc<Semaphore>>,
        progress: &mut Progress,
    ) {
        let mut tasks: tokio::task::JoinSet<(VertexId, VertexResult)> = tokio::task::JoinSet::new();
        ready.sort_by_key(|n| dag[*n]);
        loop {
            if progress.first_error.is_none() {
                for n in ready.drain(..) {
                    let v = dag[n];
                    let vertex = self.ready_vertex(&run.graph, v, &progress.results);
                    let (run, permits) = (run.clone(), permits.clone());
                    tasks.spawn(async move {
                        let r = match vertex {
                            Ok(ready) => solve_vertex(&run, ready, permits).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = &r {
                            failed(&run, v, e);
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
                    let more = progress.done(v, res, dag, index);
                    ready.extend(more);
                }
                Ok((_, Err(e))) => progress.fail(e, &run.cancel),
                Err(join) => progress.fail(
                    SolveError::Internal(format!("a step panicked: {join}")),
                    &run.cancel,
                ),
            }
        }
    }

    /// `--max-parallelism 1`: lookups run concurrently, but vertices are taken one at a
    /// time, always the ready one with the lowest id, and a miss executes before the next
    /// is taken. The order of execution is that of this sequential walk, the same on every
    /// run of the same graph and cache.
    async fn run_ordered(
        &self,
        run: &Arc<SolveRun>,
        dag: &DiGraph<VertexId, ()>,
        index: &HashMap<VertexId, NodeIndex>,
        ready: Vec<NodeIndex>,
        progress: &mut Progress,
    ) {
        type Lookup = tokio::task::JoinHandle<Result<Looked, SolveError>>;
        let mut lookups: HashMap<VertexId, Lookup> = HashMap::new();
        let mut queue: BTreeSet<VertexId> = BTreeSet::new();
        let start = |n: NodeIndex,
                     progress: &Progress,
                     lookups: &mut HashMap<VertexId, Lookup>,
                     queue: &mut BTreeSet<VertexId>| {
            let v = dag[n];
            let vertex = self.ready_vertex(&run.graph, v, &progress.results);
            let run = run.clone();
            lookups.insert(
                v,
                tokio::spawn(async move { vertex::lookup(&run, vertex?).await }),
            );
            queue.insert(v);
        };
        for n in ready {
            start(n, progress, &mut lookups, &mut queue);
        }
        while progress.first_error.is_none() {
            let Some(v) = queue.pop_first() else { break };
            let Some(handle) = lookups.remove(&v) else {
                continue;
            };
            let looked = match handle.await {
                Ok(r) => r,
                Err(join) => Err(SolveError::Internal(format!("a step panicked: {join}"))),
            };
            let solved = match looked {
                Ok(Looked::Hit(key, outcome)) => Ok((key, *outcome)),
                Ok(Looked::Miss(pending)) => {
                    let run = run.clone();
                    match tokio::spawn(async move { vertex::execute(&run, pending).await }).await {
                        Ok(r) => r,
                        Err(join) => Err(SolveError::Internal(format!("a step panicked: {join}"))),
                    }
                }
                Err(e) => Err(e),
            };
            match solved {
                Ok(res) => {
                    for n in progress.done(v, res, dag, index) {
                        start(n, progress, &mut lookups, &mut queue);
                    }
                }
                Err(e) => {
                    failed(run, v, &e);
                    progress.fail(e, &run.cancel);
                }
            }
        }
        // Lookups still in flight see the cancel and end; none outlives the solve.
        for (_, handle) in lookups {
            let _ = handle.await;
        }
    }

    /// For --dry-run: per reachable vertex, whether the cache answers it, and why not
    /// (against `opts.history`, as the build would say). Computes the runtime keys
    /// (hashing context files) without running anything. An image missing from the store
    /// is not an error here: it and what depends on it are misses.
    pub(crate) fn plan(
        &self,
        graph: &Arc<BuildGraph>,
        roots: &[VertexId],
        opts: &SolveOptions,
    ) -> Result<HashMap<VertexId, Prediction>, SolveError> {
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
                out.insert(v, Prediction::Run(None));
                continue;
            };
            let op = self.resolve(graph, v)?;
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
            let history = opts.history.as_ref().filter(|_| op.cacheable());
            let facts = history.map(|_| Facts::default());
            let (key, facts) = match runtime_key(op.as_ref(), &step, &input_keys, facts) {
                Ok(key) => key,
                Err(SolveError::ImageNotFound { .. }) => {
                    out.insert(v, Prediction::Run(None));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let hex = key.to_hex();
            let cached = op.cacheable()
                && !opts.ignores_cache(v)
                && (self.services.usable_record(&hex)?.is_some()
                    || opts
                        .imported
                        .as_ref()
                        .is_some_and(|imp| imp.record(&hex).is_some()));
            keys.insert(v, key);
            let prediction = match (cached, history, facts) {
                (true, _, _) => Prediction::Cached,
                (false, Some(h), Some(mut facts)) => {
                    let store = &self.services.store;
                    if h.needs_entries(v, &key, &facts, store) {
                        facts =
                            runtime_key(op.as_ref(), &step, &input_keys, Some(Facts::listing()))?
                                .1
                                .unwrap_or_default();
                    }
                    let miss =
                        h.explain(v, &key, &input_keys, &facts, opts.ignores_cache(v), store);
                    Prediction::Run(Some(miss))
                }
                _ => Prediction::Run(None),
            };
            out.insert(v, prediction);
        }
        let _ = self.services.hasher.save();
        Ok(out)
    }
}

/// One vertex start to end: lookup, then execution (holding a permit when limited).
async fn solve_vertex(
    run: &SolveRun,
    ready: ReadyVertex,
    permits: Option<Arc<Semaphore>>,
) -> VertexResult {
    match vertex::lookup(run, ready).await? {
        Looked::Hit(key, outcome) => Ok((key, *outcome)),
        Looked::Miss(pending) => {
            // Before the permit: waiting for another build must not hold one.
            let pending = match vertex::claim(run, pending).await? {
                Looked::Hit(key, outcome) => return Ok((key, *outcome)),
                Looked::Miss(pending) => pending,
            };
            let _permit = match &permits {
                Some(p) => Some(
                    p.clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| SolveError::Cancelled)?,
                ),
                None => None,
            };
            vertex::execute(run, pending).await
        }
    }
}

/// Reports a vertex's failure as an event.
fn failed(run: &SolveRun, v: VertexId, e: &SolveError) {
    let _ = run.events.send(Event::Failed {
        vertex: v,
        error: e.to_string(),
    });
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
