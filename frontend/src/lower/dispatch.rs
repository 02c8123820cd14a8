//! One instruction of a stage handed to its `dispatch_*` function (as BuildKit's
//! `dispatch` does): RUN in `run.rs`, COPY/ADD in `copy.rs`, WORKDIR in `workdir.rs`,
//! ARG in `args.rs`, ONBUILD in `onbuild.rs`, the config-only ones in `metadata.rs`.

use super::Lowerer;
use super::run::RunInstruction;
use super::state::{StageCx, StageState, Step};
use crate::Diagnostic;
use crate::ast::Command;

impl Lowerer<'_> {
    /// Lowers one instruction of the stage `cx` into `st`.
    pub(super) fn dispatch(
        &mut self,
        cx: &mut StageCx,
        st: &mut StageState,
        step: &Step,
    ) -> Result<(), Diagnostic> {
        let ins = step.ins;
        // A trigger's text comes from the base, not from this Dockerfile's lines.
        self.in_trigger = step.onbuild;
        self.lint.mute(step.onbuild);
        match &ins.command {
            // A FROM only starts a stage (pass 1).
            Command::From { .. } => Ok(()),
            Command::Arg(list) => self.dispatch_arg(cx, st, ins, list),
            Command::Env(kvs) => self.dispatch_env(st, ins, kvs),
            Command::Label(kvs) => self.dispatch_label(st, ins, kvs),
            Command::Maintainer(m) => self.dispatch_maintainer(st, m),
            Command::Expose(ports) => self.dispatch_expose(st, ins, ports),
            Command::Volume(vols) => self.dispatch_volume(st, ins, vols),
            Command::User(u) => self.dispatch_user(st, ins, u),
            Command::Workdir(p) => self.dispatch_workdir(cx, st, step, p),
            Command::Stopsignal(s) => self.dispatch_stopsignal(st, ins, s),
            Command::Healthcheck(h) => self.dispatch_healthcheck(st, ins, h),
            Command::Shell(sh) => self.dispatch_shell(st, sh),
            Command::Cmd(cl) => self.dispatch_cmd(st, ins, cl),
            Command::Entrypoint(cl) => self.dispatch_entrypoint(st, ins, cl),
            Command::Onbuild(text) => self.dispatch_onbuild(st, ins, text),
            Command::Run {
                command,
                heredocs,
                mounts,
                network,
                security,
            } => {
                let run = RunInstruction {
                    command,
                    heredocs,
                    mounts,
                    network: network.as_deref(),
                    security: security.as_deref(),
                };
                self.dispatch_run(cx, st, step, &run)
            }
            Command::Copy(spec) => self.dispatch_copy(cx, st, step, spec, false),
            Command::Add(spec) => self.dispatch_copy(cx, st, step, spec, true),
        }
    }
}
