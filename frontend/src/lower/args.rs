//! ARG scoping: the predefined platform ARGs and the global ARGs (before the first FROM,
//! usable in FROM lines and as defaults of a stage's ARG), ARG inside a stage, and the
//! proxy build args a RUN sees without any ARG declaring them.

use super::Lowerer;
use super::env::{Env, env_get, env_set};
use super::platform::platform_args;
use super::state::{StageCx, StageState};
use crate::Diagnostic;
use crate::ast::{Command, Instruction};
use std::collections::BTreeSet;

/// Build args a RUN sees without an ARG declaring them.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Lowerer<'_> {
    /// `self.globals`: the predefined platform ARGs (a build arg of the same name wins), then
    /// the global ARG instructions in order, each default expanded with those before it.
    pub(super) fn eval_global_args(
        &mut self,
        global_args: &[Instruction],
        target: usize,
    ) -> Result<(), Diagnostic> {
        let target_name = self.stages[target].name.clone().unwrap_or_default();
        let mut predefined = platform_args("BUILD", &self.opts.build_platform);
        predefined.extend(platform_args("TARGET", &self.opts.platform));
        predefined.push(("TARGETSTAGE".to_string(), target_name));
        for (k, v) in predefined {
            let v = self.opts.build_args.get(&k).cloned().unwrap_or(v);
            env_set(&mut self.globals, &k, &v);
        }
        // What the global ARGs would be without build args, for InvalidDefaultArgInFrom
        // (the predefined ones stay as given: they are not the Dockerfile's defaults).
        self.default_globals = self.globals.clone();
        for ins in global_args {
            let Command::Arg(args) = &ins.command else {
                continue;
            };
            for (key, default) in args {
                self.declared_globals.insert(key.clone());
                let mut deps = BTreeSet::new();
                let value = match (self.opts.build_args.get(key), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => {
                        let e = self.expand_full(d, &self.globals, ins.span)?;
                        deps = e.matched;
                        Some(e.value)
                    }
                    (None, None) => None,
                };
                if let Some(v) = &value {
                    env_set(&mut self.globals, key, v);
                }
                if let Some(d) = default {
                    let defaults = &self.default_globals;
                    // An expansion error here is the build's to report (or not, with a
                    // build arg): the check just has no value to judge.
                    if let Ok(v) = self.lexer.expand_word(d, &|k| env_get(defaults, k)) {
                        env_set(&mut self.default_globals, key, &v);
                    }
                }
                self.capture(|c| c.global_arg(key, value.clone(), ins.span.start_line, deps));
            }
        }
        Ok(())
    }

    /// `ARG NAME[=default] ...` in a stage: the build arg, else the default, else the global
    /// ARG of that name becomes a variable of the stage from here on.
    pub(super) fn dispatch_arg(
        &self,
        cx: &StageCx,
        st: &mut StageState,
        ins: &Instruction,
        list: &[(String, Option<String>)],
    ) -> Result<(), Diagnostic> {
        let mut parts = Vec::new();
        for (key, default) in list {
            self.lint.secret_key(self.source, "ARG", ins.span, key);
            let value = match (self.opts.build_args.get(key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(self.expand_checked(st, d, ins.span)?),
                (None, None) => env_get(&self.globals, key),
            };
            // An ARG that only takes in a global one is that global ARG in the outline.
            let from_global =
                !self.opts.build_args.contains_key(key) && default.is_none() && value.is_some();
            let stage = cx.index;
            self.capture(|c| {
                c.stage_arg(stage, key, value.clone(), ins.span.start_line, from_global)
            });
            if let Some(v) = &value {
                env_set(&mut st.env, key, v);
                parts.push(format!("{key}={v}"));
            } else {
                parts.push(key.clone());
            }
            match st.args.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => st.args.push((key.clone(), value)),
            }
        }
        st.commit(format!("ARG {}", parts.join(" ")), None);
        Ok(())
    }

    /// Which variables of a RUN's environment are build args rather than ENV: the stage's
    /// ARGs with a value that no ENV set since, and the proxy build args (so that an
    /// explanation of a cache miss names them `ARG`).
    pub(super) fn run_build_args(&self, st: &StageState) -> Vec<String> {
        let set_by_env = |k: &str| {
            st.config
                .config
                .env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(name, _)| name == k))
        };
        let mut out: Vec<String> = st
            .args
            .iter()
            .filter(|(k, v)| v.is_some() && !set_by_env(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in PROXY_ARGS {
            if self.opts.build_args.contains_key(k) && !out.iter().any(|o| o == k) {
                out.push(k.to_string());
            }
        }
        out
    }

    /// The environment of a RUN: the stage's variables (a snapshot sharing the stage's
    /// map), plus the proxy build args it does not already set.
    pub(super) fn run_env(&self, env: &Env) -> Env {
        let mut out = env.clone();
        for k in PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(k)
                && !out.contains_key(k)
            {
                out.insert(k, v);
            }
        }
        out
    }
}
