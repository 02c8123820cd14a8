//! BuildKit's AST dump format (`(keyword ["--flag"] "arg" ...)` per line).

use crate::ast::Dockerfile;

/// Renders `df` as BuildKit's parser dump, one line per instruction.
pub fn dump(df: &Dockerfile) -> String {
    let _ = df;
    String::new()
}
