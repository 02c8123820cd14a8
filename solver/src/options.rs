//! How one solve runs ([`SolveOptions`]).

use crate::explain::BuildHistory;
use crate::secrets::Secrets;
use crate::ssh::SshAgents;
use rbuild_cache::remote_cache::ImportedCache;
use rbuild_executor::CancelToken;
use rbuild_graph::VertexId;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// How one solve runs.
#[derive(Debug, Clone, Default)]
pub struct SolveOptions {
    /// Execute every vertex even when the cache could answer it (results are still recorded).
    pub no_cache: bool,
    /// Vertices executed even when the cache could answer them (`--no-cache-filter`),
    /// as `no_cache` does for all. The caller includes what depends on them, so a fresh
    /// result is never combined with cached results made on top of another.
    pub no_cache_vertices: HashSet<VertexId>,
    /// The directory of the `Op::Local` named "context".
    pub context_dir: Option<PathBuf>,
    /// The directories of named contexts (`--build-context NAME=DIR`), by the name of
    /// their `Op::Local` (`context:NAME`).
    pub named_dirs: BTreeMap<String, PathBuf>,
    /// Cancelled by the caller (e.g. on Ctrl-C): running steps are killed.
    pub cancel: CancelToken,
    /// Records imported with `--cache-from`, consulted when the local cache misses. Their
    /// blobs are fetched only when a step needs their content (see
    /// [`Solver::ensure_layers`](crate::Solver::ensure_layers)).
    pub imported: Option<Arc<ImportedCache>>,
    /// How image sources that are not local are pulled and pushes are sent; None: only
    /// local images, no push.
    pub registry: Option<rbuild_cache::registry::RegistryClient>,
    /// `--allow security.insecure`: RUN steps may ask for `--security=insecure`.
    /// Without it a graph with such a step is refused before anything runs.
    pub allow_insecure: bool,
    /// `--secret`s: where each id's value is read from when a step mounts it. Never
    /// part of a key: a changed value does not invalidate the cache, as in BuildKit.
    pub secrets: Arc<Secrets>,
    /// `--ssh`: the agent each id reaches (agents started for key files live as long
    /// as this does).
    pub ssh: Arc<SshAgents>,
    /// The records of the last build of these targets: cache misses are explained against
    /// them, and this build's are kept for the next one. None: no explanations.
    pub history: Option<Arc<BuildHistory>>,
    /// `--max-parallelism`: at most this many steps execute at once (cache lookups do not
    /// count); 1 runs them one at a time in a fixed order. None: no limit.
    pub max_parallelism: Option<usize>,
    /// `SOURCE_DATE_EPOCH` (Unix seconds): the image's and its history's `created`, and
    /// the latest time of any file in the layers the build writes (newer ones are set to
    /// it; base layers are left as they are). Part of the runtime key of every step that
    /// writes a layer, so results with and without it never stand in for each other.
    pub epoch: Option<i64>,
}

impl SolveOptions {
    /// Whether `v` must be executed even when the cache has its result.
    pub fn ignores_cache(&self, v: VertexId) -> bool {
        self.no_cache || self.no_cache_vertices.contains(&v)
    }
}
