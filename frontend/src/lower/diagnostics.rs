//! Errors of lowering, pointed at the instruction they are about: the line and column of
//! the offending word, and for expansion failures the exact character.

use super::Lowerer;
use crate::Diagnostic;
use crate::ast::Span;
use crate::shell::ShellError;

impl Lowerer<'_> {
    /// Line and 1-based column of `needle` within the instruction's lines (its first line, col 1, if absent).
    pub(super) fn locate(&self, span: Span, needle: &str) -> (usize, usize) {
        if !needle.is_empty() {
            for line in span.start_line..=span.end_line {
                let Some(text) = self.source.lines().nth(line.saturating_sub(1)) else {
                    break;
                };
                if let Some(pos) = text.find(needle) {
                    return (line, text[..pos].chars().count() + 1);
                }
            }
        }
        (span.start_line, 1)
    }

    /// An error at `needle` in the instruction at `span`.
    pub(super) fn err(&self, span: Span, needle: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(span, needle);
        Diagnostic::new(message).at(self.source, line, col)
    }

    /// An expansion error of `word`, the caret on the character where it went wrong.
    pub(super) fn shell_err(&self, e: ShellError, word: &str, span: Span) -> Diagnostic {
        let (line, col) = self.locate(span, word);
        let found = self
            .source
            .lines()
            .nth(line.saturating_sub(1))
            .is_some_and(|l| l.contains(word));
        let col = if found {
            col + word.get(..e.offset).map_or(0, |s| s.chars().count())
        } else {
            col
        };
        Diagnostic::new(format!("failed to expand {word:?}: {}", e.message))
            .at(self.source, line, col)
            .help("variables are written $NAME, ${NAME}, ${NAME:-default} or ${NAME:+alternative}")
    }
}
