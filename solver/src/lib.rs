//! The build graph and the concurrent solver that runs it.
//!
//! - [`graph`]: ops, vertices and static cache keys (what the frontend produces).
//! - [`image`]: the image config JSON carried along a stage and exported.

pub mod graph;
pub mod image;
pub mod dockerignore;
pub mod render;
pub mod context;
pub mod export;
pub mod ops;
pub mod progress;
pub mod solve;

pub use progress::Event;
pub use solve::{Outcome, SolveError, SolveOptions, Solver};
