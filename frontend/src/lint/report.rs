//! The findings of a build, as data and as text: each finding with its place, the lines it
//! is about (with a caret, like rbuild's diagnostics), the rule's description and help; a
//! short list for the end of a build; and BuildKit's JSON shape for `--call check` (its
//! `LintResults`: `warnings`, `sources`, `buildError`), which `--metadata-file` can carry.

use super::{Finding, Location};
use crate::Diagnostic;
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Instruction lines shown under a finding; longer ones (heredocs) are cut.
const SNIPPET_LINES: usize = 4;

/// What the checks of one Dockerfile found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintReport {
    /// The Dockerfile's name as the user gave it.
    pub file: String,
    /// Ordered by line.
    pub findings: Vec<Finding>,
    /// `error=true`: findings fail the build.
    pub error_on_findings: bool,
    /// `--call check` only: the error that stopped the check (the Dockerfile cannot be
    /// parsed or lowered), after the findings made before it.
    pub error: Option<Diagnostic>,
}

impl LintReport {
    /// The error a build stops with under `error=true` when there are findings.
    pub fn violation(&self) -> Option<Diagnostic> {
        let first = self.findings.first()?;
        if !self.error_on_findings {
            return None;
        }
        let rules: BTreeSet<&str> = self.findings.iter().map(|f| f.rule.name()).collect();
        let names: Vec<&str> = rules.into_iter().collect();
        let mut d = Diagnostic::new(format!(
            "build checks failed ({}) and the check settings say error=true",
            names.join(", ")
        ))
        .help("fix the findings above, or skip a rule with # check=skip=RULE")
        .in_file(self.file.clone());
        d.line = first.location.line;
        Some(d)
    }

    /// Every finding in full, separated by blank lines.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        for (i, f) in self.findings.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&f.render(&self.file, source));
            out.push('\n');
        }
        out
    }

    /// One line per finding (`rule: message (file:line)`), for the end of a build.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                " - {}: {} ({}:{})",
                f.rule.name(),
                f.message,
                self.file,
                f.location.line
            );
        }
        out
    }

    /// BuildKit's lint result: `{"warnings": [...], "sources": [...], "buildError": ...}`,
    /// each warning with `ruleName`, `description`, `detail` (the message), `location`
    /// (`ranges` of 1-based lines, `character` 0-based) and rbuild's `help`.
    pub fn to_json(&self, source: &str) -> Value {
        let warnings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "ruleName": f.rule.name(),
                    "description": f.rule.rule().description,
                    "detail": f.message,
                    "help": f.help,
                    "location": location_json(&f.location),
                })
            })
            .collect();
        let mut out = json!({
            "warnings": warnings,
            "sources": [source_json(&self.file, source)],
        });
        if let Some(e) = &self.error {
            let mut err = json!({ "message": e.message });
            if e.line > 0 {
                err["location"] = json!({ "ranges": [{
                    "start": { "line": e.line },
                    "end": { "line": e.line },
                }]});
            }
            out["buildError"] = err;
        }
        out
    }
}

/// A location as BuildKit's `pb.Location` (source index 0, Go's omitempty on zeros).
fn location_json(l: &Location) -> Value {
    let mut start = json!({ "line": l.span.start_line });
    if l.column > 1 && l.line == l.span.start_line {
        start["character"] = json!(l.column - 1);
    }
    json!({ "ranges": [{ "start": start, "end": { "line": l.span.end_line.max(l.span.start_line) } }] })
}

/// The Dockerfile as BuildKit's `pb.SourceInfo` (its bytes base64, as Go encodes `[]byte`).
pub(crate) fn source_json(file: &str, source: &str) -> Value {
    json!({
        "filename": file,
        "language": "Dockerfile",
        "data": base64::engine::general_purpose::STANDARD.encode(source),
    })
}

impl Finding {
    /// `file:line[:col]: Rule: message`, the instruction's lines with a caret, the rule's
    /// description and the help.
    pub fn render(&self, file: &str, source: &str) -> String {
        let l = &self.location;
        let mut out = match l.column {
            0 => format!("{file}:{}: {}: {}", l.line, self.rule.name(), self.message),
            c => format!(
                "{file}:{}:{c}: {}: {}",
                l.line,
                self.rule.name(),
                self.message
            ),
        };
        let lines: Vec<&str> = source.lines().collect();
        let first = l.span.start_line.min(l.line).max(1);
        let last = l.span.end_line.max(l.line).min(first + SNIPPET_LINES - 1);
        let width = last.to_string().len();
        for n in first..=last {
            let Some(text) = lines.get(n - 1) else { break };
            let text = text.trim_end_matches('\r');
            let _ = write!(out, "\n  {n:>width$} | {text}");
            if n == l.line && l.column > 0 {
                let pad: String = text
                    .chars()
                    .take(l.column - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = write!(out, "\n  {} | {pad}^", " ".repeat(width));
            }
        }
        if l.span.end_line > last {
            let _ = write!(out, "\n  {} | …", " ".repeat(width));
        }
        let _ = write!(
            out,
            "\n  rule: {}\n  help: {}",
            self.rule.rule().description,
            self.help
        );
        out
    }
}
