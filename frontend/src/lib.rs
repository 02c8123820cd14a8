//! Dockerfile frontend: parser, shell-word expansion and lowering to the build graph.

pub mod ast;
pub mod diagnostic;

pub use diagnostic::Diagnostic;
