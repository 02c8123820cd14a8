//! The concurrent solver that runs build graphs (`rbuild_graph`).
//!
//! - [`Solver`] (`solver.rs`): the public entry point; wires the op implementations into
//!   the scheduler.
//! - `scheduler`: runs the vertices of a graph concurrently (dedup, cancel on the first
//!   failure): per vertex the runtime key, the local or imported cache, else the op.
//!   It sees ops only through the op interface.
//! - `op`: the op interface (`SolveOp`: what a runtime key is made of, whether computing
//!   it blocks, how the op executes), the one `StepContext` a step gets, `RuntimeKey`,
//!   and `Work` (done, blocking or async; the one place steps reach the blocking pool).
//! - [`ops`]: the op implementations, one module each (sources incl. pull, exec and its
//!   mounts, file and ADD archives, the export/push/run actions), a step's filesystem
//!   (`rootfs`: on overlays, or on the store's copying snapshotter where overlayfs cannot
//!   be used).
//! - `services`: what steps share across solves: the store, the context hasher, memos of
//!   blobs seen present and of parsed `.dockerignore` lists.
//! - [`context`]: content hashing of what a COPY selects from the build context, with a
//!   persistent stat cache; `wildcard`: COPY wildcards against a real tree.
//! - [`SolveOptions`], [`Outcome`] (and its cache record), [`SolveError`] /
//!   [`StepFailure`] (typed: what happened, in which step).
//! - [`cache_export`]: which solved results `--cache-to` exports (mode=min/max).
//! - [`cache_mounts`]: cache mounts that travel with the cache (which ids a graph uses,
//!   the lazy restore of an imported one).
//! - [`explain`]: why a step missed the cache, against the record of the last build of
//!   the same Dockerfile and target (kept in the store, carried by exported caches).
//! - [`progress`]: the events a solve emits, and the helpers for steps' output lines.

pub mod cache_export;
pub mod cache_mounts;
pub mod context;
mod error;
pub mod explain;
mod op;
pub mod ops;
mod options;
mod outcome;
pub mod progress;
mod scheduler;
pub mod secrets;
mod services;
mod solver;
pub mod ssh;
mod vertex;
mod wildcard;

pub use error::{LayerFetchError, SolveError, StepFailure};
pub use options::SolveOptions;
pub use outcome::Outcome;
pub use progress::Event;
pub use scheduler::Prediction;
pub use solver::Solver;
