//! Typed instructions built from parser nodes (flag and arity validation).

use crate::Diagnostic;
use crate::ast::{Dockerfile, Instruction, Node};

/// Typed instruction of one node (validates flags and arity; flags the
/// instruction does not take are errors naming the flag and listing the allowed ones).
pub fn from_node(node: &Node, source: &str) -> Result<Instruction, Diagnostic> {
    let _ = (node, source);
    Err(Diagnostic::new("typed instructions not implemented yet"))
}

/// Typed instructions of every node, in order.
pub fn instructions(df: &Dockerfile, source: &str) -> Result<Vec<Instruction>, Diagnostic> {
    df.nodes.iter().map(|n| from_node(n, source)).collect()
}
