//! What can go wrong in a solve: [`SolveError`] (what the CLI reports) and [`StepFailure`]
//! (why one step failed; a [`SolveError::Step`] names the step and its Dockerfile lines).
//!
//! `Internal` is for bugs only: a panicked task, a broken invariant of the graph.

use crate::context::ContextError;
use rbuild_cache::CacheError;
use rbuild_cache::remote_cache::RemoteCacheError;
use rbuild_executor::ExecError;
use rbuild_graph::dockerignore::PatternError;
use rbuild_graph::{BuildGraph, VertexId};

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
    /// Any other failure of a step: what happened (`cause`), naming the step.
    #[error("{description}: {cause}")]
    Step {
        vertex: VertexId,
        description: String,
        lines: Option<(usize, usize)>,
        #[source]
        cause: Box<StepFailure>,
    },
    /// A cache record in the store that cannot be read back.
    #[error("cache record {key}: {source}; remove it (`rbuild prune`) and build again")]
    BadCacheRecord {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Layers(#[from] LayerFetchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why layers a step (or an export) needs could not be made present in the store.
#[derive(Debug, thiserror::Error)]
pub enum LayerFetchError {
    /// Fetching blobs of records imported with `--cache-from` failed.
    #[error("fetching cached layers: {0}")]
    Import(#[source] RemoteCacheError),
    /// A blob is missing and no imported cache can bring it.
    #[error(transparent)]
    Missing(CacheError),
}

/// What went wrong in one step (the step itself is named by [`SolveError::Step`]).
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// The step needs an entitlement the build did not grant.
    #[error("{what} is not allowed: the build needs {flag}")]
    NotAllowed {
        what: &'static str,
        flag: &'static str,
    },
    /// The op needs an input the vertex does not have (a graph not built by the frontend).
    #[error("{what} input {input} does not exist")]
    MissingInput { what: &'static str, input: usize },
    /// A `.dockerignore` pattern of the local source does not parse.
    #[error(transparent)]
    IgnorePattern(PatternError),
    /// A `COPY --exclude` pattern does not parse.
    #[error("--exclude pattern {:?}: {}", .0.pattern, .0.reason)]
    ExcludePattern(PatternError),
    #[error("no directory was given for the local source {name:?}")]
    NoLocalDir { name: String },
    /// `ADD http(s)://…` could not be fetched.
    #[error("ADD {url}: {reason}")]
    Http { url: String, reason: String },
    /// `ADD <git URL>` could not be resolved or checked out.
    #[error("ADD {remote}: {reason}")]
    Git { remote: String, reason: String },
    /// `ADD --checksum=…` and the body differ (nothing of the body was kept).
    #[error("ADD {url}: digest mismatch: the body is {actual}, --checksum expects {expected}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Context(ContextError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] CacheError),
    #[error(transparent)]
    Layers(#[from] LayerFetchError),
    /// The sandbox could not be set up or the command not started.
    #[error(transparent)]
    Exec(ExecError),
    #[error("mounting {what}: {source}")]
    Mount {
        what: String,
        #[source]
        source: ExecError,
    },
    #[error("mount of {path:?}: {source}")]
    BindMount {
        path: String,
        #[source]
        source: Box<StepFailure>,
    },
    #[error("mount source {path:?}: {source}")]
    MountSource {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cache mount {id:?}: {source}")]
    CacheMount {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A RUN's `--ulimit` names no resource (the CLI checks; a graph made elsewhere may not).
    #[error("--ulimit {name}: not a resource limit docker knows (nofile, nproc, core, stack, …)")]
    UnknownUlimit { name: String },
    /// `RUN --mount=type=secret,required=true` of an id the build was not given.
    #[error(
        "secret {id:?} is required but was not provided: pass --secret id={id},src=FILE (or id={id},env=VARIABLE)"
    )]
    MissingSecret { id: String },
    /// `RUN --mount=type=ssh,required=true` of an id the build was not given.
    #[error(
        "ssh agent {id:?} is required but was not provided: pass --ssh {id} (the agent at $SSH_AUTH_SOCK) or --ssh {id}=SOCKET|KEYFILE"
    )]
    MissingSsh { id: String },
    #[error(transparent)]
    Secret(crate::secrets::SecretError),
    #[error("the socket for ssh agent {id:?}: {source}")]
    SshSocket {
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// A COPY/ADD/WORKDIR action failed: what it was doing, and why.
    #[error("{what}: {source}")]
    Action {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot create directory {path}: a file of that name exists")]
    NotADirectory { path: String },
    #[error("image config {digest} is not valid JSON: {source}")]
    ImageConfig {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    // Registry errors are large; boxed so every step result stays small.
    #[error("pulling {reference}: {source}")]
    Pull {
        reference: String,
        #[source]
        source: Box<rbuild_cache::pull::PullError>,
    },
    #[error("cannot push {reference}: {source}")]
    Push {
        reference: String,
        #[source]
        source: Box<rbuild_cache::push::PushError>,
    },
    #[error("no registry client was set up")]
    NoRegistry,
    #[error("the input of a {action} is not an image")]
    NotAnImage { action: &'static str },
    #[error("image {name} has no ENTRYPOINT or CMD; give a command after the image name")]
    NoCommand { name: String },
    #[error("cannot run {name}: {source}")]
    Run {
        name: String,
        #[source]
        source: ExecError,
    },
}

impl SolveError {
    /// A failure of the step `vertex`, with its description and Dockerfile lines.
    pub(crate) fn step(
        graph: &BuildGraph,
        vertex: VertexId,
        cause: impl Into<StepFailure>,
    ) -> Self {
        SolveError::Step {
            vertex,
            description: describe(graph, vertex),
            lines: graph.vertex(vertex).meta.lines,
            cause: Box::new(cause.into()),
        }
    }

    /// A context error as the error of the step `vertex`: a missing source says so in the
    /// CLI's terms, anything else is a step failure.
    pub(crate) fn context(graph: &BuildGraph, vertex: VertexId, e: ContextError) -> Self {
        match e {
            ContextError::NotFound { path } => SolveError::MissingContextFile {
                path,
                description: describe(graph, vertex),
                lines: graph.vertex(vertex).meta.lines,
            },
            other => SolveError::step(graph, vertex, StepFailure::Context(other)),
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
