//! Build checks: lint rules over a Dockerfile, with BuildKit's rule names and meanings
//! (`rules.rs` is the table).
//!
//! The rules run where what they need is known:
//! - `syntax.rs`, over the parsed nodes of every stage: keyword and stage-name casing,
//!   stage names, MAINTAINER, empty continuation lines;
//! - `from.rs`, over each FROM as lowering expands it with the global ARGs: undeclared or
//!   badly defaulted ARGs, constant or redundant `--platform`, the base image's platform;
//! - `dispatch.rs`, over each instruction of a stage lowering dispatches, with the stage's
//!   variables and config and the `.dockerignore`: UndefinedVar, JSON form, WORKDIR, secrets
//!   in ARG/ENV, EXPOSE, COPY of ignored files, repeated CMD/ENTRYPOINT/HEALTHCHECK.
//!
//! Lowering calls the last two through a [`Linter`], which only records: what lowering
//! produces is the same with or without findings, so cache keys and images do not change.
//! A build checks the stages it builds; `--call check` (`crate::calls::check`) lowers every
//! stage (or the `--target`s) without building. `config.rs` reads `# check=`; `report.rs` prints findings.

mod config;
mod dispatch;
pub(crate) mod from;
mod report;
mod rules;
mod syntax;

pub use config::{CHECK_BUILD_ARG, CheckConfig, ConfigError};
pub use report::LintReport;
pub use rules::{RULES, Rule, RuleId};

pub(crate) use dispatch::{StageChecks, undefined_vars};
pub(crate) use report::{JsonLocation, base64_of};

use crate::Diagnostic;
use crate::ast::{Dockerfile, Span};
use rbuild_graph::dockerignore::Patterns;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Where a finding is: the instruction's lines, and the line and column to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// The instruction's lines (1-based, inclusive).
    pub span: Span,
    /// The line of the offending text.
    pub line: usize,
    /// 1-based column of the offending text; 0 when the whole line is meant.
    pub column: usize,
}

impl Location {
    /// The instruction at `span` as a whole (its first line, no column).
    pub fn of(span: Span) -> Location {
        Location {
            span,
            line: span.start_line,
            column: 0,
        }
    }

    /// The first occurrence of `needle` in the instruction's lines of `source` (the
    /// instruction's first line when it is not there).
    pub fn find(source: &str, span: Span, needle: &str) -> Location {
        if !needle.is_empty() {
            for line in span.start_line..=span.end_line {
                let Some(text) = source.lines().nth(line.saturating_sub(1)) else {
                    break;
                };
                if let Some(pos) = text.find(needle) {
                    return Location {
                        span,
                        line,
                        column: text[..pos].chars().count() + 1,
                    };
                }
            }
        }
        Location::of(span)
    }
}

/// One rule violated at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    /// What is wrong here, naming the offending text.
    pub message: String,
    /// What to do about it.
    pub help: String,
    pub location: Location,
}

/// Collects the findings of one lowering, keeping those the check settings let through.
/// Rules report with `&self`: lowering holds it beside its own state and never waits on it.
pub(crate) struct Linter {
    config: CheckConfig,
    /// Per instruction (by first line), the settings of a `# check=` comment above it.
    local: HashMap<usize, CheckConfig>,
    /// First lines of the ENV and LABEL instructions written in the legacy `key value` form
    /// (the typed instruction no longer tells).
    legacy_key_value: HashSet<usize>,
    /// The `.dockerignore`, when CopyIgnoredFile can judge against it (see `dispatch.rs`).
    pub(crate) ignore: Option<Patterns>,
    /// The raw `.dockerignore` patterns, for the context-root case of CopyIgnoredFile.
    pub(crate) ignore_raw: Vec<String>,
    /// While set (ONBUILD triggers of a base firing), nothing is recorded: those lines are
    /// not in this Dockerfile.
    muted: Cell<bool>,
    findings: RefCell<Vec<Finding>>,
}

impl Linter {
    /// The linter of a Dockerfile: its check settings (the build arg, else the directive),
    /// the per-instruction comments, then the rules over the nodes themselves.
    pub(crate) fn new(
        df: &Dockerfile,
        source: &str,
        build_args: &BTreeMap<String, String>,
        ignore_patterns: &[String],
    ) -> Result<Linter, Diagnostic> {
        let config = match build_args.get(CHECK_BUILD_ARG) {
            Some(v) => CheckConfig::parse(v).map_err(|e| {
                Diagnostic::new(format!("build arg {CHECK_BUILD_ARG}: {e}"))
                    .help("write it as skip=Rule1,Rule2;error=true (or skip=all)")
            })?,
            None => match &df.directives.check {
                Some(v) => CheckConfig::parse(v).map_err(|e| {
                    let line = directive_line(source);
                    Diagnostic::new(format!("# check= directive: {e}"))
                        .at(source, line, 1)
                        .help("write it as # check=skip=Rule1,Rule2;error=true (or skip=all)")
                })?,
                None => CheckConfig::default(),
            },
        };
        let mut local = HashMap::new();
        let mut legacy_key_value = HashSet::new();
        for node in &df.nodes {
            if let Some(c) = node.comments.iter().find_map(|c| config::from_comment(c)) {
                local.insert(node.span.start_line, c);
            }
            // ENV/LABEL args are `key value sep` triples; an empty sep is the legacy form.
            if matches!(node.keyword.as_str(), "env" | "label")
                && node
                    .args
                    .chunks(3)
                    .any(|t| t.get(2).is_some_and(|s| s.is_empty()))
            {
                legacy_key_value.insert(node.span.start_line);
            }
        }
        // A pattern list that cannot be compiled fails the build elsewhere; here it only
        // means CopyIgnoredFile has nothing to judge against.
        let ignore = Patterns::from_list(ignore_patterns).ok();
        let linter = Linter {
            config,
            local,
            legacy_key_value,
            ignore,
            ignore_raw: ignore_patterns.to_vec(),
            muted: Cell::new(false),
            findings: RefCell::new(Vec::new()),
        };
        syntax::check(df, source, &linter);
        Ok(linter)
    }

    /// Records a finding unless the settings skip its rule there, or it was already recorded
    /// (a stage lowered for two targets reports once).
    pub(crate) fn report(
        &self,
        rule: RuleId,
        location: Location,
        message: String,
        help: Option<String>,
    ) {
        if self.muted.get() {
            return;
        }
        let name = rule.name();
        let local_skip = self
            .local
            .get(&location.span.start_line)
            .is_some_and(|c| c.skips(name));
        if self.config.skips(name) || local_skip {
            return;
        }
        let finding = Finding {
            rule,
            message,
            help: help.unwrap_or_else(|| rule.rule().help.to_string()),
            location,
        };
        let mut findings = self.findings.borrow_mut();
        if !findings.contains(&finding) {
            findings.push(finding);
        }
    }

    /// Mutes (or unmutes) the linter; see `muted`.
    pub(crate) fn mute(&self, muted: bool) {
        self.muted.set(muted);
    }

    /// Whether the ENV or LABEL starting at `line` uses the legacy `key value` form.
    pub(crate) fn is_legacy_key_value(&self, line: usize) -> bool {
        self.legacy_key_value.contains(&line)
    }

    /// The findings, in order of their line, with the settings that judge them.
    pub(crate) fn into_report(self, file: &str) -> LintReport {
        let mut findings = self.findings.into_inner();
        findings.sort_by_key(|f| f.location.line);
        LintReport {
            file: file.to_string(),
            findings,
            error_on_findings: self.config.error,
            error: None,
        }
    }
}

/// The line of the `# check=` directive (directives are the first lines of the file).
fn directive_line(source: &str) -> usize {
    source
        .lines()
        .position(|l| {
            let l = l.trim_start_matches('\u{feff}').trim_start();
            l.strip_prefix('#')
                .is_some_and(|r| r.trim_start().to_ascii_lowercase().starts_with("check"))
        })
        .map_or(1, |i| i + 1)
}
