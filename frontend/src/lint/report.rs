//! The findings of a build, as data and as text: each finding with its place, the lines it
//! is about (with a caret, like rbuild's diagnostics), the rule's description and help; a
//! short list for the end of a build; and BuildKit's JSON shape for `--call check` (its
//! `LintResults`: `warnings`, `sources`, `buildError`), which `--metadata-file` can carry.

use super::{Finding, Location};
use crate::Diagnostic;
use base64::Engine;
use serde::Serialize;
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

    /// BuildKit's lint result (`LintResults`): `warnings` (each with `ruleName`,
    /// `description`, `detail` — the message —, rbuild's `help`, and `location`: `ranges` of
    /// 1-based lines, `character` 0-based), `sources` (the Dockerfile) and `buildError`.
    /// Fields are in BuildKit's order; serialize it with serde_json.
    pub fn json<'a>(&'a self, source: &'a str) -> impl Serialize + 'a {
        JsonResults {
            warnings: self
                .findings
                .iter()
                .map(|f| JsonWarning {
                    rule_name: f.rule.name(),
                    description: f.rule.rule().description,
                    detail: &f.message,
                    help: &f.help,
                    location: JsonLocation::of(&f.location),
                })
                .collect(),
            sources: vec![JsonSource::of(&self.file, source)],
            build_error: self.error.as_ref().map(|e| JsonBuildError {
                message: &e.message,
                location: (e.line > 0).then(|| JsonLocation::lines(e.line, e.line)),
            }),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResults<'a> {
    warnings: Vec<JsonWarning<'a>>,
    sources: Vec<JsonSource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_error: Option<JsonBuildError<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonWarning<'a> {
    rule_name: &'static str,
    description: &'static str,
    detail: &'a str,
    help: &'a str,
    location: JsonLocation,
}

#[derive(Serialize)]
struct JsonBuildError<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<JsonLocation>,
}

/// BuildKit's `pb.Location` in one source (index 0, left out as Go's omitempty does).
#[derive(Serialize)]
pub(crate) struct JsonLocation {
    ranges: Vec<JsonRange>,
}

#[derive(Serialize)]
struct JsonRange {
    start: JsonPosition,
    end: JsonPosition,
}

#[derive(Serialize)]
struct JsonPosition {
    line: usize,
    #[serde(skip_serializing_if = "is_zero")]
    character: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl JsonLocation {
    /// Lines `start..=end`.
    pub(crate) fn lines(start: usize, end: usize) -> JsonLocation {
        JsonLocation {
            ranges: vec![JsonRange {
                start: JsonPosition {
                    line: start,
                    character: 0,
                },
                end: JsonPosition {
                    line: end.max(start),
                    character: 0,
                },
            }],
        }
    }

    /// A finding's instruction, starting at its column when it points into the first line.
    fn of(l: &Location) -> JsonLocation {
        let mut loc = JsonLocation::lines(l.span.start_line, l.span.end_line);
        if l.column > 1 && l.line == l.span.start_line {
            loc.ranges[0].start.character = l.column - 1;
        }
        loc
    }
}

/// BuildKit's `pb.SourceInfo`: the Dockerfile, its bytes base64 (as Go encodes `[]byte`).
#[derive(Serialize)]
pub(crate) struct JsonSource<'a> {
    filename: &'a str,
    data: String,
    language: &'static str,
}

impl<'a> JsonSource<'a> {
    pub(crate) fn of(file: &'a str, source: &str) -> JsonSource<'a> {
        JsonSource {
            filename: file,
            data: base64_of(source),
            language: "Dockerfile",
        }
    }
}

/// `source` as Go's JSON encodes a `[]byte`.
pub(crate) fn base64_of(source: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(source)
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
