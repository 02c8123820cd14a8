//! Variables: the ordered list a stage carries (image ENV and ARGs), and the expansion of
//! instruction words with it (Docker's shell-word rules, or raw where quotes are literal);
//! the names an instruction finds unset go to the UndefinedVar check.

use super::Lowerer;
use super::stage::StageState;
use crate::Diagnostic;
use crate::ast::Span;
use crate::lint;
use crate::outline::Capture;
use crate::shell::Expansion;
use std::collections::BTreeSet;

/// An ordered variable list (later entries replace earlier ones in place).
pub(super) type Env = Vec<(String, String)>;

pub(super) fn env_get(env: &Env, key: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

pub(super) fn env_set(env: &mut Env, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

impl Lowerer<'_> {
    /// One word expanded with `env` (quotes removed), errors pointed at the word.
    pub(super) fn expand(&self, word: &str, env: &Env, span: Span) -> Result<String, Diagnostic> {
        self.lexer
            .expand_word(word, &|k| env_get(env, k))
            .map_err(|e| self.shell_err(e, word, span))
    }

    /// Like [`Lowerer::expand`], also telling which names were found set and unset.
    pub(super) fn expand_full(
        &self,
        word: &str,
        env: &Env,
        span: Span,
    ) -> Result<Expansion, Diagnostic> {
        self.lexer
            .expand(word, &|k| env_get(env, k))
            .map_err(|e| self.shell_err(e, word, span))
    }

    /// A word of an instruction of a stage expanded with the stage's variables, the names
    /// it finds unset reported as UndefinedVar (ARGs the stage declares without a value
    /// excepted: they are defined, only empty).
    pub(super) fn expand_checked(
        &self,
        st: &StageState,
        word: &str,
        span: Span,
    ) -> Result<String, Diagnostic> {
        let e = self.expand_full(word, &st.env, span)?;
        self.report_undefined(st, &e.unmatched, span);
        Ok(e.value)
    }

    /// UndefinedVar for `unmatched`, names looked up by an instruction of the stage `st`.
    pub(super) fn report_undefined(
        &self,
        st: &StageState,
        unmatched: &BTreeSet<String>,
        span: Span,
    ) {
        if unmatched.is_empty() {
            return;
        }
        lint::undefined_vars(
            self.lint,
            self.source,
            span,
            unmatched,
            &|n| st.args.iter().any(|(k, _)| k == n),
            st.env.iter().map(|(k, _)| k.as_str()),
        );
    }

    /// Records something for `--call outline`, when it is asked for and the instruction is
    /// this Dockerfile's own.
    pub(super) fn capture(&self, record: impl FnOnce(&Capture)) {
        if let Some(c) = self.capture
            && !self.in_trigger
        {
            record(c);
        }
    }

    /// A word expanded with `env` and split into words (EXPOSE).
    pub(super) fn expand_words(
        &self,
        word: &str,
        env: &Env,
        span: Span,
    ) -> Result<Vec<String>, Diagnostic> {
        self.lexer
            .expand_words(word, &|k| env_get(env, k))
            .map_err(|e| self.shell_err(e, word, span))
    }
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}` (and `-`/`+` without the colon)
/// in text where quotes are literal (heredoc bodies, progress names). Unset
/// variables are kept as written when `keep_unset`, else replaced by "".
pub fn expand_raw(text: &str, env: &dyn Fn(&str) -> Option<String>, keep_unset: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() && chars[i + 1] == '$' {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        if is_name_start(next) {
            let mut j = i + 1;
            while j < chars.len() && is_name(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            match env(&name) {
                Some(v) => out.push_str(&v),
                None if keep_unset => out.extend(&chars[i..j]),
                None => {}
            }
            i = j;
        } else if next == '{' {
            let Some(close) = chars[i + 2..].iter().position(|c| *c == '}') else {
                out.extend(&chars[i..]);
                break;
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let end = i + 3 + close;
            let name_len = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_len);
            let value = env(name);
            let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            let replaced = if let Some(w) = op.strip_prefix(":-") {
                Some(if set_nonempty {
                    value.unwrap_or_default()
                } else {
                    w.into()
                })
            } else if let Some(w) = op.strip_prefix('-') {
                Some(value.unwrap_or_else(|| w.into()))
            } else if let Some(w) = op.strip_prefix(":+") {
                Some(if set_nonempty {
                    w.into()
                } else {
                    String::new()
                })
            } else if let Some(w) = op.strip_prefix('+') {
                Some(if value.is_some() {
                    w.into()
                } else {
                    String::new()
                })
            } else if op.is_empty() {
                value
            } else {
                // Other operators: leave the text untouched.
                out.extend(&chars[i..end]);
                i = end;
                continue;
            };
            match replaced {
                Some(v) => out.push_str(&v),
                None if keep_unset => out.extend(&chars[i..end]),
                None => {}
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_expansion_keeps_quotes() {
        let env = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand_raw("'$A' \"${A}\" $B", &env, true), "'1' \"1\" $B");
        assert_eq!(expand_raw("$B-${B:-x}-${A:+y}", &env, false), "-x-y");
        assert_eq!(expand_raw("\\$A", &env, false), "$A");
    }
}
