//! The rules over the instructions of a stage lowering dispatches, with what lowering knows
//! there (the stage's variables, its config, the `.dockerignore`): UndefinedVar,
//! JSONArgsRecommended, MultipleInstructionsDisallowed, LegacyKeyValueFormat,
//! WorkdirRelativePath, SecretsUsedInArgOrEnv, ExposeProtoCasing, ExposeInvalidFormat and
//! CopyIgnoredFile.

use super::from::did_you_mean;
use super::{Linter, Location, RuleId};
use crate::ast::Span;
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// What the rules remember along a stage. Carried in lowering's stage state; a stage built
/// on another keeps `workdir_set` but starts its own CMD/ENTRYPOINT/HEALTHCHECK count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StageChecks {
    /// A WORKDIR of this Dockerfile has run in the stage (or the stage it is built on).
    workdir_set: bool,
    cmd: Option<Span>,
    entrypoint: Option<Span>,
    healthcheck: Option<Span>,
}

impl StageChecks {
    /// The state a stage built on this one starts with.
    pub(crate) fn inherited(&self) -> StageChecks {
        StageChecks {
            workdir_set: self.workdir_set,
            ..StageChecks::default()
        }
    }
}

/// UndefinedVar: the names an instruction's words looked up and found unset, except the
/// ARGs the stage declares without a value (`declared`). `defined` are the stage's
/// variables, the candidates for a suggestion.
pub(crate) fn undefined_vars<'a>(
    lint: &Linter,
    source: &str,
    span: Span,
    unmatched: &BTreeSet<String>,
    declared: &dyn Fn(&str) -> bool,
    defined: impl Iterator<Item = &'a str> + Clone,
) {
    for name in unmatched.iter().filter(|n| !declared(n)) {
        let mut message = format!("'${name}' is not defined at this point");
        if let Some(s) = did_you_mean(name, defined.clone()) {
            message.push_str(&format!(" (did you mean ${s}?)"));
        }
        let mut at = Location::find(source, span, &format!("${{{name}"));
        if at.column == 0 {
            at = Location::find(source, span, &format!("${name}"));
        }
        lint.report(RuleId::UndefinedVar, at, message, None);
    }
}

impl Linter {
    /// JSONArgsRecommended: CMD or ENTRYPOINT in shell form, with no SHELL set for the stage
    /// (an explicit SHELL says the shell is wanted).
    pub(crate) fn json_args(&self, keyword: &str, span: Span, shell_form: bool, shell_set: bool) {
        if shell_form && !shell_set {
            self.report(
                RuleId::JSONArgsRecommended,
                Location::of(span),
                format!("{keyword} in shell form runs under /bin/sh -c, which does not pass signals on to the program"),
                None,
            );
        }
    }

    /// MultipleInstructionsDisallowed: a second CMD, ENTRYPOINT or HEALTHCHECK in a stage.
    /// The finding points at the earlier one, which is the one that has no effect.
    pub(crate) fn used_once(&self, checks: &mut StageChecks, keyword: &str, span: Span) {
        let slot = match keyword {
            "CMD" => &mut checks.cmd,
            "ENTRYPOINT" => &mut checks.entrypoint,
            _ => &mut checks.healthcheck,
        };
        if let Some(earlier) = slot.replace(span) {
            self.report(
                RuleId::MultipleInstructionsDisallowed,
                Location::of(earlier),
                format!(
                    "this {keyword} has no effect: the {keyword} on line {} replaces it",
                    span.start_line
                ),
                None,
            );
        }
    }

    /// LegacyKeyValueFormat: ENV or LABEL in the `key value` form.
    pub(crate) fn legacy_key_value(&self, keyword: &str, span: Span) {
        if self.is_legacy_key_value(span.start_line) {
            self.report(
                RuleId::LegacyKeyValueFormat,
                Location::of(span),
                format!("{keyword} is written in the legacy \"{keyword} key value\" form"),
                Some(format!(
                    "write {keyword} key=value, quoting a value that contains spaces"
                )),
            );
        }
    }

    /// WorkdirRelativePath: the first WORKDIR of a stage chain is relative.
    pub(crate) fn workdir(&self, checks: &mut StageChecks, source: &str, span: Span, path: &str) {
        if !checks.workdir_set && !path.starts_with('/') {
            self.report(
                RuleId::WorkdirRelativePath,
                Location::find(source, span, path),
                format!("WORKDIR '{path}' is relative, and no absolute WORKDIR comes before it"),
                Some(format!(
                    "make it absolute, e.g. WORKDIR /{}",
                    path.trim_start_matches("./")
                )),
            );
        }
        checks.workdir_set = true;
    }

    /// SecretsUsedInArgOrEnv: an ARG or ENV name with a secret-like word (`password`,
    /// `token`, `key`, … as the whole name, its first or its last `_`-separated part), unless
    /// a part says it is not the secret itself (`public`, `file`, `version`).
    pub(crate) fn secret_key(&self, source: &str, instruction: &str, span: Span, key: &str) {
        static DENY: OnceLock<Regex> = OnceLock::new();
        static ALLOW: OnceLock<Regex> = OnceLock::new();
        let words = |list: &str| format!("(?i)(?:_|^)(?:{list})(?:_|$)");
        let deny = DENY.get_or_init(|| {
            Regex::new(&words(
                "apikey|auth|credential|credentials|key|password|pword|passwd|secret|token",
            ))
            .expect("static regex")
        });
        let allow =
            ALLOW.get_or_init(|| Regex::new(&words("public|file|version")).expect("static regex"));
        if deny.is_match(key) && !allow.is_match(key) {
            self.report(
                RuleId::SecretsUsedInArgOrEnv,
                Location::find(source, span, key),
                format!("{instruction} '{key}' looks like it holds a secret, which would stay in the image"),
                None,
            );
        }
    }

    /// ExposeProtoCasing and ExposeInvalidFormat over one EXPOSE word (after expansion):
    /// `[ip:][host:]port[/proto]`.
    pub(crate) fn expose(&self, source: &str, span: Span, raw: &str) {
        let parts: Vec<&str> = raw.split(':').collect();
        let container = parts.last().copied().unwrap_or(raw);
        let host_or_ip = parts.len() > 1;
        let proto = container.split_once('/').map_or("", |(_, p)| p);
        let at = Location::find(source, span, raw);
        if proto != proto.to_lowercase() {
            self.report(
                RuleId::ExposeProtoCasing,
                at,
                format!("protocol '{proto}' in EXPOSE '{raw}' is not lower-case"),
                Some(format!(
                    "write '{}'",
                    raw.replace(proto, &proto.to_lowercase())
                )),
            );
        }
        if host_or_ip {
            self.report(
                RuleId::ExposeInvalidFormat,
                at,
                format!("EXPOSE '{raw}' names an IP address or a host port"),
                Some(format!(
                    "expose the container port alone: EXPOSE {container}"
                )),
            );
        }
    }

    /// CopyIgnoredFile: a COPY/ADD source (expanded) read from the build context that the
    /// `.dockerignore` excludes. With `!` exceptions the verdict for a path cannot be told
    /// without the files (an excluded directory may have re-included content), so nothing
    /// is judged then; the context root counts only for patterns excluding everything.
    pub(crate) fn copy_ignored(&self, source: &str, span: Span, is_add: bool, src: &str) {
        let Some(patterns) = &self.ignore else {
            return;
        };
        if patterns.is_empty() || patterns.has_exceptions() {
            return;
        }
        let cleaned = clean(src);
        let excluded = if cleaned == "." || cleaned == "/" {
            self.ignore_raw
                .iter()
                .any(|p| matches!(p.trim(), "*" | "**" | "**/*"))
        } else {
            patterns.excluded(cleaned.trim_start_matches('/'))
        };
        if excluded {
            let kw = if is_add { "ADD" } else { "COPY" };
            self.report(
                RuleId::CopyIgnoredFile,
                Location::find(source, span, src),
                format!("{kw} source '{cleaned}' is excluded by .dockerignore, so it is not in the context"),
                None,
            );
        }
    }
}

/// `path.Clean` of a source path (`./a//b/` → `a/b`, `.` for the root).
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("."), ".");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../x"), "/x");
    }
}
