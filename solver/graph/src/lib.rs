//! The build graph definition: what a Dockerfile lowers to and what the solver runs.
//!
//! No I/O stack here (no tokio, no registry, no syscalls), so the frontend, its fuzz target
//! and tools can build and inspect graphs without the engine — as BuildKit keeps its
//! `solver/pb` + `client/llb` apart from the scheduler.
//!
//! - [`op`]: the operations (sources, exec, file, export/push/run actions) and their fields;
//! - [`graph`]: vertices, metadata and [`BuildGraph`] (identical vertices stored once);
//! - [`env`]: [`EnvMap`], a RUN's environment, shared between vertices (persistent);
//! - [`key`]: static cache keys (blake3 of the op's canonical encoding + input keys);
//! - [`platform`]: OS / architecture / variant;
//! - [`image`]: the image config model carried along a stage and exported;
//! - [`actions`]: adding the export, push and run vertices a build ends with;
//! - [`chmod`]: `--chmod` modes (octal and symbolic) and how they apply;
//! - [`paths`]: COPY/ADD/WORKDIR path rules (cleaning, wildcards, where a source lands);
//! - [`dockerignore`]: Docker's `.dockerignore` pattern rules;
//! - [`render`]: listings of a graph (`--dry-run`: text, dot, json).

pub mod actions;
pub mod chmod;
pub mod dockerignore;
pub mod env;
pub mod graph;
pub mod image;
pub mod key;
pub mod op;
pub mod paths;
pub mod platform;
pub mod render;

pub use env::EnvMap;
pub use graph::{BuildGraph, Vertex, VertexId, VertexMeta};
pub use key::{CacheKey, cache_key};
pub use op::{
    CopyAction, CopySource, ExecMount, ExecOp, ExportOp, ExportStep, FileAction, FileOp, HostEntry,
    MountKind, NetworkMode, Op, Owner, RunOp, RunSettings, SSH_SOCKET_MODE, SecurityMode, Ulimit,
};
pub use platform::Platform;
