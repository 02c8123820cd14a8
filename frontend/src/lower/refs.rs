//! What `COPY --from` and `RUN --mount from=` name: an earlier stage (by name or index),
//! `scratch` or an image; resolved for every instruction before lowering (pass 2). The
//! vertex it becomes when the instruction is lowered is `state.rs`'s `ref_vertex`.

use super::Lowerer;
use crate::Diagnostic;
use crate::ast::{Command, Instruction, Span};

use rbuild_reference::Reference;

/// What a `--from` / `from=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FromRef {
    Stage(usize),
    Scratch,
    Image(String),
    /// A named directory context (`--build-context NAME=DIR`), by its key.
    Local(String),
}

impl Lowerer<'_> {
    /// `name` as used by an instruction of stage `i`; a stage must be defined before `i`.
    pub(super) fn resolve_from(
        &self,
        i: usize,
        name: &str,
        span: Span,
    ) -> Result<FromRef, Diagnostic> {
        if name.contains('$') {
            return Err(self
                .err(span, name, "variable expansion is not supported for --from")
                .help("define a stage with `FROM ${VAR} AS alias` using a global ARG, and use --from=alias"));
        }
        let later = |j: usize| {
            let msg = if j == i {
                format!("stage {:?} depends on itself", self.stage_label(i))
            } else {
                format!(
                    "stage {:?} uses stage {:?}, which is defined after it",
                    self.stage_label(i),
                    self.stage_label(j)
                )
            };
            self.err(span, name, msg).help(
                "a stage can only use stages defined above it; move the stage it needs earlier",
            )
        };
        if let Ok(n) = name.parse::<usize>() {
            if n >= self.stages.len() {
                return Err(self
                    .err(span, name, format!("invalid stage index {n}"))
                    .help(format!(
                        "stages are numbered from 0; this Dockerfile has {}",
                        self.stages.len()
                    )));
            }
            return if n >= i {
                Err(later(n))
            } else {
                Ok(FromRef::Stage(n))
            };
        }
        if let Some(j) = self.stages.iter().position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }) {
            return if j >= i {
                Err(later(j))
            } else {
                Ok(FromRef::Stage(j))
            };
        }
        if let Some(r) = self.context_ref(name) {
            return Ok(r);
        }
        if name.eq_ignore_ascii_case("scratch") {
            return Ok(FromRef::Scratch);
        }
        match Reference::parse(name) {
            Ok(r) => Ok(FromRef::Image(r.to_string())),
            Err(e) => Err(self
                .err(span, name, format!("unknown stage {name:?}"))
                .help(format!(
                    "it is neither a stage nor a valid image reference ({}); {}",
                    e.reason,
                    self.stage_names()
                ))),
        }
    }

    /// What one instruction of stage `i` reads from besides its own stage.
    pub(super) fn command_refs(
        &self,
        i: usize,
        ins: &Instruction,
    ) -> Result<Vec<FromRef>, Diagnostic> {
        let mut out = Vec::new();
        match &ins.command {
            Command::Copy(spec) | Command::Add(spec) => {
                if let Some(f) = &spec.from {
                    out.push(self.resolve_from(i, f, ins.span)?);
                }
            }
            Command::Run { mounts, .. } => {
                for m in mounts {
                    for (k, v) in &m.fields {
                        if k.eq_ignore_ascii_case("from") {
                            out.push(self.resolve_from(i, v, ins.span)?);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// The references of every instruction of every stage: `needed_stages` follows them, and
    /// a bad `--from` is reported even in a stage the target does not need.
    pub(super) fn resolve_refs(&mut self) -> Result<(), Diagnostic> {
        for i in 0..self.stages.len() {
            let refs = self.stages[i]
                .commands
                .iter()
                .map(|c| self.command_refs(i, c))
                .collect::<Result<Vec<_>, _>>()?;
            self.stages[i].refs = refs;
        }
        Ok(())
    }
}
