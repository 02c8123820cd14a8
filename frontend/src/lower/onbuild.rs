//! ONBUILD: recording a trigger in the image config, and firing the triggers of a stage's
//! base (an earlier stage's ONBUILD instructions, or an image config's `OnBuild`) right
//! after its FROM.

use super::Lowerer;
use super::stages::Base;
use super::state::StageState;
use crate::ast::{Command, Instruction, Span};
use crate::{Diagnostic, instructions, parser};

impl Lowerer<'_> {
    /// The ONBUILD triggers a stage runs right after its FROM.
    pub(super) fn base_triggers(&mut self, i: usize) -> Result<Vec<Instruction>, Diagnostic> {
        let from = self.stages[i].from.clone();
        let texts: Vec<String> = match self.stages[i].base.clone() {
            Base::Scratch | Base::Local(_) => Vec::new(),
            Base::Stage(j) => self.stages[j]
                .commands
                .iter()
                .filter_map(|c| match &c.command {
                    Command::Onbuild(t) => Some(t.clone()),
                    _ => None,
                })
                .collect(),
            Base::Image(r) => {
                let platform = self.stages[i].platform.clone();
                self.resolve_image(&r, &platform, from.span)?
                    .map(|img| img.config.config.on_build)
                    .unwrap_or_default()
            }
        };
        texts.iter().map(|t| self.parse_trigger(t, &from)).collect()
    }

    /// Docker's rules for what ONBUILD may wrap.
    fn check_trigger(&self, text: &str, span: Span) -> Result<(), Diagnostic> {
        let kw = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let msg = match kw.as_str() {
            "ONBUILD" => "chaining ONBUILD via `ONBUILD ONBUILD` is not allowed",
            "FROM" => "FROM is not allowed as an ONBUILD trigger",
            "MAINTAINER" => "MAINTAINER is not allowed as an ONBUILD trigger",
            "" => "ONBUILD needs an instruction to run",
            _ => return Ok(()),
        };
        Err(self
            .err(span, "ONBUILD", msg)
            .help("ONBUILD takes one ordinary instruction, e.g. `ONBUILD COPY . /app`"))
    }

    /// A trigger's text as one instruction, placed at the FROM that fires it.
    fn parse_trigger(&self, text: &str, from: &Instruction) -> Result<Instruction, Diagnostic> {
        self.check_trigger(text, from.span)?;
        let wrap = |d: Diagnostic| {
            self.err(
                from.span,
                "",
                format!("ONBUILD trigger {text:?} of the base: {}", d.message),
            )
        };
        let df = parser::parse(text).map_err(wrap)?;
        if df.nodes.len() != 1 {
            return Err(self.err(
                from.span,
                "",
                format!("ONBUILD trigger {text:?} of the base is not a single instruction"),
            ));
        }
        let mut ins = instructions::from_node(&df.nodes[0], text).map_err(wrap)?;
        ins.span = from.span;
        Ok(ins)
    }

    /// `ONBUILD INSTRUCTION`: checked now, recorded in the config; it fires in the stages
    /// (or images) built on this one.
    pub(super) fn dispatch_onbuild(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        text: &str,
    ) -> Result<(), Diagnostic> {
        self.check_trigger(text, ins.span)?;
        st.config.config.on_build.push(text.to_string());
        Ok(())
    }
}
