//! Dockerfile frontend: parser, shell-word expansion and lowering to the build graph.

pub mod ast;
pub mod calls;
pub mod diagnostic;
pub mod dump;
mod duration;
pub mod instructions;
pub mod lint;
pub mod lower;
pub mod outline;
pub mod parser;
pub mod shell;

pub use diagnostic::Diagnostic;
