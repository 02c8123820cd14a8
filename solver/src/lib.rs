//! The build graph and the concurrent solver that runs it.
//!
//! - [`graph`]: ops, vertices and static cache keys (what the frontend produces).
//! - [`image`]: the image config JSON carried along a stage and exported.
//! - [`solve`]: the scheduler ([`Solver`]): runtime cache keys, cache lookups, concurrent
//!   execution of what the cache cannot answer, cancellation.
//! - [`ops`]: one module per op (source incl. pull, exec, file, push, run), the COPY path
//!   rules, and the copying snapshotter used where overlayfs cannot be.
//! - [`actions`]: the export, push and run vertices a build ends with.
//! - [`cache_export`]: which solved results `--cache-to` exports (mode=min/max).
//! - [`context`]: content hashing of what a COPY selects from the build context, with a
//!   persistent stat cache.
//! - [`export`]: writing the final image (config, history, manifest, tags).
//! - [`progress`]: the events a solve emits, and the helpers for steps' output lines.
//! - [`render`]: `--dry-run` output (text, dot, json); [`dockerignore`]: Docker's ignore patterns.

pub mod actions;
pub mod cache_export;
pub mod context;
pub mod dockerignore;
pub mod export;
pub mod graph;
pub mod image;
pub mod ops;
pub mod progress;
pub mod render;
pub mod solve;
pub use progress::Event;
pub use solve::{Outcome, SolveError, SolveOptions, Solver};
