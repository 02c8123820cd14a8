//! `--target` and pruning: which stage is built, and the stages it needs (its base chain,
//! what its `--from`s and mounts read, and what the ONBUILD triggers of its base read).
//! Only those are lowered, so a stage nothing needs adds no vertex.

use super::Lowerer;
use super::refs::FromRef;
use super::stages::Base;
use crate::Diagnostic;

impl Lowerer<'_> {
    /// The index of the `--target` stage (matched case-insensitively), or the last stage.
    pub(super) fn find_target(&self) -> Result<usize, Diagnostic> {
        match &self.opts.target {
            None => Ok(self.stages.len() - 1),
            Some(t) => self
                .stages
                .iter()
                .position(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
                .ok_or_else(|| {
                    Diagnostic::new(format!("target stage {t:?} could not be found"))
                        .help(self.stage_names())
                }),
        }
    }

    /// Per stage, whether `target` needs it. Parses the ONBUILD triggers of every needed
    /// stage's base on the way (into `StageDef::triggers`), since they may read other stages.
    pub(super) fn needed_stages(&mut self, target: usize) -> Result<Vec<bool>, Diagnostic> {
        let mut needed = vec![false; self.stages.len()];
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut needed[i], true) {
                continue;
            }
            let triggers = self.base_triggers(i)?;
            let mut deps: Vec<FromRef> = self.stages[i].refs.iter().flatten().cloned().collect();
            for t in &triggers {
                deps.extend(self.command_refs(i, t)?);
            }
            self.stages[i].triggers = triggers;
            if let Base::Stage(j) = self.stages[i].base {
                stack.push(j);
            }
            for d in deps {
                if let FromRef::Stage(j) = d {
                    stack.push(j);
                }
            }
        }
        Ok(needed)
    }
}

impl Lowerer<'_> {
    /// For `--call outline`: the target, and for each stage lowered the stage it is built
    /// on and the stages its instructions (and the triggers of its base) read.
    pub(super) fn capture_structure(&self, target: usize, needed: &[bool]) {
        let Some(capture) = self.capture else {
            return;
        };
        capture.target(target);
        for (i, s) in self.stages.iter().enumerate().filter(|(i, _)| needed[*i]) {
            let base = match s.base {
                Base::Stage(j) => Some(j),
                _ => None,
            };
            let mut deps: Vec<usize> = Vec::new();
            for r in s.refs.iter().flatten() {
                if let FromRef::Stage(j) = r
                    && !deps.contains(j)
                {
                    deps.push(*j);
                }
            }
            capture.stage(i, s.name.clone(), base, deps);
        }
    }
}
