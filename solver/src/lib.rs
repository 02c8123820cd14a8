//! The concurrent solver that runs build graphs (`rbuild_graph`).
//!
//! - [`solve`]: the scheduler ([`Solver`]): runtime cache keys, cache lookups, concurrent
//!   execution of what the cache cannot answer, cancellation.
//! - [`ops`]: one module per op (source incl. pull, exec, file, push, run), and the choice
//!   between overlay and the store's copying snapshotter (`rbuild_cache::copysnap`) where
//!   overlayfs cannot be used.
//! - [`cache_export`]: which solved results `--cache-to` exports (mode=min/max).
//! - [`context`]: content hashing of what a COPY selects from the build context, with a
//!   persistent stat cache; `wildcard`: COPY wildcards against a real tree.
//! - [`export`]: writing the final image (config, history, manifest, tags).
//! - [`progress`]: the events a solve emits, and the helpers for steps' output lines.

pub mod cache_export;
pub mod context;
pub mod export;
pub mod ops;
pub mod progress;
pub mod solve;
mod wildcard;
pub use progress::Event;
pub use solve::{Outcome, SolveError, SolveOptions, Solver};
