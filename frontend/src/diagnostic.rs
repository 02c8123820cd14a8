//! User-facing errors about a Dockerfile: where, what, and what to do.

use std::fmt;

/// An error at a place in a Dockerfile, rendered as
///
/// ```text
/// Dockerfile:3:1: unknown instruction "RUNN"
///   3 | RUNN echo hi
///     | ^
///   help: did you mean RUN?
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The Dockerfile's path as the user gave it; set by [`Diagnostic::in_file`].
    pub file: Option<String>,
    /// 1-based line; 0 when the error is about the file as a whole.
    pub line: usize,
    /// 1-based column (in characters) of the caret; 0 for none.
    pub column: usize,
    /// The text of `line`, shown under the message.
    pub source_line: Option<String>,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            line: 0,
            column: 0,
            source_line: None,
            message: message.into(),
            help: None,
        }
    }

    /// Points at `line`:`column` of `source` (the whole Dockerfile text).
    pub fn at(mut self, source: &str, line: usize, column: usize) -> Self {
        self.line = line;
        self.column = column;
        self.source_line = source
            .lines()
            .nth(line.saturating_sub(1))
            .map(|l| l.trim_end_matches('\r').to_string());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().unwrap_or("Dockerfile");
        match (self.line, self.column) {
            (0, _) => write!(f, "{file}: {}", self.message)?,
            (l, 0) => write!(f, "{file}:{l}: {}", self.message)?,
            (l, c) => write!(f, "{file}:{l}:{c}: {}", self.message)?,
        }
        if let Some(src) = &self.source_line {
            let num = self.line.to_string();
            write!(f, "\n  {num} | {src}")?;
            if self.column > 0 {
                let pad: String = src
                    .chars()
                    .take(self.column - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "\n  {} | {pad}^", " ".repeat(num.len()))?;
            }
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_caret_and_help() {
        let src = "FROM scratch\nRUNN echo hi\n";
        let d = Diagnostic::new("unknown instruction \"RUNN\"")
            .at(src, 2, 1)
            .help("did you mean RUN?")
            .in_file("ctx/Dockerfile");
        assert_eq!(
            d.to_string(),
            "ctx/Dockerfile:2:1: unknown instruction \"RUNN\"\n  2 | RUNN echo hi\n    | ^\n  help: did you mean RUN?"
        );
    }
}
