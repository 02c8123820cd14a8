//! `.dockerignore` matching with Docker's pattern rules (not gitignore's).

use std::path::Path;

/// A malformed pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// A parsed, ordered list of ignore patterns.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    patterns: Vec<String>,
}

impl Patterns {
    /// Parses .dockerignore text: comments (#), blank lines, trimmed, cleaned paths, `!` exceptions.
    pub fn parse(text: &str) -> Result<Patterns, PatternError> {
        let list: Vec<String> = text.lines().map(str::to_string).collect();
        Patterns::from_list(&list)
    }

    pub fn from_list(patterns: &[String]) -> Result<Patterns, PatternError> {
        Ok(Patterns {
            patterns: patterns.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a context-relative path (slash separated, no leading "./") is excluded.
    pub fn excluded(&self, rel_path: &str) -> bool {
        let _ = rel_path;
        false
    }

    /// True when a directory can be skipped entirely.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let _ = rel_dir;
        false
    }
}

/// Reads the ignore file for a build: `<Dockerfile path>.dockerignore` beside the Dockerfile
/// wins over `<context>/.dockerignore`.
pub fn read_ignore_file(context: &Path, dockerfile: &Path) -> std::io::Result<Vec<String>> {
    let _ = (context, dockerfile);
    Ok(Vec::new())
}
