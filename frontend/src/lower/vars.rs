//! Instruction words expanded with a stage's variables (Docker's shell-word rules); the
//! names an instruction finds unset go to the UndefinedVar check. The variable list itself
//! is `env.rs`.

use super::Lowerer;
use super::env::{Env, env_get};
use super::state::StageState;
use crate::Diagnostic;
use crate::ast::Span;
use crate::lint;
use crate::outline::Capture;
use crate::shell::Expansion;
use std::collections::BTreeSet;

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
            st.env.iter().map(|(k, _)| k),
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
