//! ARG scoping: the predefined platform ARGs and the global ARGs (before the first FROM,
//! usable in FROM lines and as defaults of a stage's ARG), ARG inside a stage, and the
//! proxy build args a RUN sees without any ARG declaring them.

use super::Lowerer;
use super::platform::format_platform;
use super::stage::StageState;
use super::vars::{Env, env_get, env_set};
use crate::Diagnostic;
use crate::ast::{Command, Instruction};
use std::collections::BTreeMap;

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
        let p = &self.opts.platform;
        let plat = format_platform(p);
        let variant = p.variant.clone().unwrap_or_default();
        let target_name = self.stages[target].name.clone().unwrap_or_default();
        let predefined = [
            ("BUILDPLATFORM", plat.clone()),
            ("BUILDOS", p.os.clone()),
            ("BUILDARCH", p.architecture.clone()),
            ("BUILDVARIANT", variant.clone()),
            ("TARGETPLATFORM", plat),
            ("TARGETOS", p.os.clone()),
            ("TARGETARCH", p.architecture.clone()),
            ("TARGETVARIANT", variant),
            ("TARGETSTAGE", target_name),
        ];
        for (k, v) in predefined {
            let v = self.opts.build_args.get(k).cloned().unwrap_or(v);
            env_set(&mut self.globals, k, &v);
        }
        for ins in global_args {
            let Command::Arg(args) = &ins.command else {
                continue;
            };
            for (key, default) in args {
                let value = match (self.opts.build_args.get(key), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(self.expand(d, &self.globals, ins.span)?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    env_set(&mut self.globals, key, &v);
                }
            }
        }
        Ok(())
    }

    /// `ARG NAME[=default] ...` in a stage: the build arg, else the default, else the global
    /// ARG of that name becomes a variable of the stage from here on.
    pub(super) fn dispatch_arg(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        list: &[(String, Option<String>)],
    ) -> Result<(), Diagnostic> {
        let mut parts = Vec::new();
        for (key, default) in list {
            let value = match (self.opts.build_args.get(key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(self.expand(d, &st.env, ins.span)?),
                (None, None) => env_get(&self.globals, key),
            };
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

    /// The environment of a RUN: the stage's variables, plus the proxy build args it does
    /// not already set.
    pub(super) fn run_env(&self, env: &Env) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = env.iter().cloned().collect();
        for k in PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(k) {
                out.entry(k.to_string()).or_insert_with(|| v.clone());
            }
        }
        out
    }
}
