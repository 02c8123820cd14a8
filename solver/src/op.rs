//! The op interface: what every op implementation (`ops/`) answers, and the one context a
//! step gets. Shaped after BuildKit's `solver.Op` (`CacheMap` + `Exec`).
//!
//! An op says what its runtime cache key is made of ([`SolveOp::cache_key`], on top of
//! its static key and its inputs' runtime keys) and whether computing it blocks
//! ([`SolveOp::key_blocks`]); and how it executes ([`SolveOp::execute`], which hands back
//! [`Work`]: done, blocking, or waiting on the network). The scheduler runs what it gets
//! and never looks at which op it is.

use crate::context::Selected;
use crate::error::{SolveError, StepFailure, describe};
use crate::explain::Facts;
use crate::options::SolveOptions;
use crate::outcome::Outcome;
use crate::progress::{Event, say};
use crate::services::Services;
use rbuild_executor::CancelToken;
use rbuild_graph::{BuildGraph, CacheKey, Op, VertexId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Finds the implementation of an op (`ops::resolve`, wired in by `Solver::new`). Errors are
/// the op's own (e.g. an `--exclude` pattern that does not parse).
pub type Resolver = fn(&Op) -> Result<Arc<dyn SolveOp>, StepFailure>;

/// One op as the solver runs it.
pub trait SolveOp: Send + Sync {
    /// Whether [`cache_key`](Self::cache_key) reads files or the store (hashing context
    /// files, looking up an image); it then runs on the blocking pool. Keys that are only
    /// a hash are computed in place: a thread hand-off per step was most of a no-op
    /// rebuild of many small steps.
    fn key_blocks(&self) -> bool {
        false
    }

    /// Adds to `key` what the result depends on beyond the op's static encoding and its
    /// inputs' runtime keys (already in `key`): facts known only while solving, such as
    /// the content digest of the context files a COPY selects or an image's manifest
    /// digest. `step.inputs` is not available here (a dry run computes keys without
    /// solving anything).
    fn cache_key(&self, _step: &StepContext, _key: &mut RuntimeKey) -> Result<(), SolveError> {
        Ok(())
    }

    /// Whether results are looked up in the cache and recorded under the runtime key.
    /// Actions (export, push, run) act on the world every time they are reached.
    fn cacheable(&self) -> bool {
        true
    }

    /// Whether the step reads the results of every vertex it depends on
    /// ([`StepContext::ancestors`]), as an export does for its history and inline cache.
    fn needs_ancestors(&self) -> bool {
        false
    }

    /// Why this step may not run under `opts` (an entitlement the build did not grant,
    /// e.g. `RUN --security=insecure` without `--allow security.insecure`); checked for
    /// every step before any runs.
    fn refused(&self, _opts: &SolveOptions) -> Option<StepFailure> {
        None
    }

    /// Completes an outcome read back from a cache record (an image source names its
    /// manifest, which records do not carry).
    fn cache_hit(&self, _outcome: &mut Outcome) {}

    /// Runs the op on its inputs' results.
    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome>;
}

/// Everything one step sees: which vertex, its inputs' results, the solve's options,
/// cancellation, progress, and the solver's services.
pub struct StepContext {
    pub graph: Arc<BuildGraph>,
    pub vertex: VertexId,
    /// The results of the vertex's inputs, in `Vertex::inputs` order (empty while only
    /// keys are computed).
    pub inputs: Vec<Outcome>,
    /// The results of every vertex this one depends on, with their runtime keys; filled
    /// only for ops that ask ([`SolveOp::needs_ancestors`]).
    pub ancestors: HashMap<VertexId, Outcome>,
    pub opts: Arc<SolveOptions>,
    /// The solve's token: cancelled when the caller cancels or another step failed.
    pub cancel: CancelToken,
    pub events: UnboundedSender<Event>,
    pub services: Arc<Services>,
}

impl StepContext {
    /// A failure of this step.
    pub fn fail(&self, cause: impl Into<StepFailure>) -> SolveError {
        SolveError::step(&self.graph, self.vertex, cause)
    }

    /// A context error as this step's error (a missing source says so).
    pub fn context_error(&self, e: crate::context::ContextError) -> SolveError {
        SolveError::context(&self.graph, self.vertex, e)
    }

    /// What to call this step in messages.
    pub fn describe(&self) -> String {
        describe(&self.graph, self.vertex)
    }

    /// The vertex of input `input` (`what` names the input in the error).
    pub fn input_vertex(&self, input: usize, what: &'static str) -> Result<VertexId, SolveError> {
        let inputs = &self.graph.vertex(self.vertex).inputs;
        inputs
            .get(input)
            .copied()
            .ok_or_else(|| self.fail(StepFailure::MissingInput { what, input }))
    }

    /// The result of input `input` (empty when there is none).
    pub fn input(&self, input: usize) -> Outcome {
        self.inputs.get(input).cloned().unwrap_or_default()
    }

    /// A line of this step's progress output.
    pub fn say(&self, line: String) {
        say(&self.events, self.vertex, line);
    }

    pub fn store(&self) -> &rbuild_cache::Store {
        &self.services.store
    }
}

/// Domain separation of runtime keys; bump when their derivation changes.
const RUNTIME_DOMAIN: &[u8] = b"rbuild runtime key v1\0";

/// A runtime cache key being computed: blake3 over the static key, the inputs' runtime
/// keys, then the facts the op adds ([`SolveOp::cache_key`]). When the build explains its
/// cache misses, the facts an op names ([`add_shown`](Self::add_shown),
/// [`add_selection`](Self::add_selection)) are also noted, as short digests; the bytes hashed are the same either way, so keys do not
/// depend on whether anyone asked.
pub struct RuntimeKey {
    hasher: blake3::Hasher,
    facts: Option<Facts>,
}

impl RuntimeKey {
    pub(crate) fn new(static_key: &CacheKey, input_keys: &[CacheKey]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(RUNTIME_DOMAIN);
        h.update(&static_key.0);
        h.update(&(input_keys.len() as u64).to_le_bytes());
        for k in input_keys {
            h.update(&k.0);
        }
        RuntimeKey {
            hasher: h,
            facts: None,
        }
    }

    /// Notes the facts ops name into `facts` as well.
    pub(crate) fn noting(mut self, facts: Facts) -> Self {
        self.facts = Some(facts);
        self
    }

    /// Adds a fact. Ops tag and index their facts so that two of them never read alike.
    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        self.hasher.update(bytes);
        self
    }

    /// Adds a fact (exactly as [`add`](Self::add)) that is never secret (an image's
    /// manifest digest) and names it: the record keeps it in clear, so a miss can say
    /// what it was and is.
    pub fn add_shown(&mut self, name: &str, value: &str) -> &mut Self {
        self.hasher.update(value.as_bytes());
        if let Some(f) = &mut self.facts {
            f.add(name, value.as_bytes(), Some(value));
        }
        self
    }

    /// Whether [`add_selection`](Self::add_selection) wants the entries of what was
    /// selected (listing them costs a second walk, done only to explain a miss).
    pub fn wants_entries(&self) -> bool {
        self.facts.as_ref().is_some_and(|f| f.want_entries)
    }

    /// Adds the digest of a context selection (exactly as [`add`](Self::add)), named, with
    /// its entries when [`wants_entries`](Self::wants_entries).
    pub fn add_selection(
        &mut self,
        name: &str,
        digest: &[u8; 32],
        entries: Option<Vec<Selected>>,
    ) -> &mut Self {
        self.hasher.update(digest);
        if let Some(f) = &mut self.facts {
            crate::explain::add_selection(f, name, digest, entries);
        }
        self
    }

    pub(crate) fn finish(self) -> (CacheKey, Option<Facts>) {
        (CacheKey(*self.hasher.finalize().as_bytes()), self.facts)
    }
}

/// The runtime key of the step `step` with the op `op`: the static key and input keys,
/// then what the op adds; with the facts it named when `facts` is given.
pub(crate) fn runtime_key(
    op: &dyn SolveOp,
    step: &StepContext,
    input_keys: &[CacheKey],
    facts: Option<Facts>,
) -> Result<(CacheKey, Option<Facts>), SolveError> {
    let mut key = RuntimeKey::new(&step.graph.key(step.vertex), input_keys);
    if let Some(f) = facts {
        key = key.noting(f);
    }
    op.cache_key(step, &mut key)?;
    Ok(key.finish())
}

type StepResult<T> = Result<T, SolveError>;

/// Work an op hands to the scheduler, by where it has to run.
pub enum Work<T> {
    /// Nothing left to do.
    Done(StepResult<T>),
    /// Blocks a thread (files, the store, the executor): runs on the blocking pool.
    Blocking(Box<dyn FnOnce() -> StepResult<T> + Send>),
    /// Waits on the network (a registry): awaited on the runtime.
    Async(Pin<Box<dyn Future<Output = StepResult<T>> + Send>>),
}

impl<T: Send + 'static> Work<T> {
    pub fn blocking(f: impl FnOnce() -> StepResult<T> + Send + 'static) -> Self {
        Work::Blocking(Box::new(f))
    }

    pub fn future(f: impl Future<Output = StepResult<T>> + Send + 'static) -> Self {
        Work::Async(Box::pin(f))
    }

    /// Does the work. The one place steps reach the blocking pool.
    pub(crate) async fn run(self) -> StepResult<T> {
        match self {
            Work::Done(r) => r,
            Work::Blocking(f) => tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| SolveError::Internal(format!("a step's task failed: {e}")))?,
            Work::Async(f) => f.await,
        }
    }
}
