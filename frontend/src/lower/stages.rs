//! Pass 1: the Dockerfile split into stages (each FROM starts one) and the global ARGs
//! before the first FROM; each stage's base (an earlier stage, `scratch` or an image) and
//! platform, from its FROM expanded with the global ARGs (where the FROM checks run).

use super::Lowerer;
use super::env::env_get;
use super::platform::parse_platform;
use super::refs::FromRef;
use crate::Diagnostic;
use crate::ast::{Command, Instruction};
use crate::lint::{Location, from};
use rbuild_graph::Platform;
use rbuild_reference::Reference;
use std::collections::BTreeSet;

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Base {
    Stage(usize),
    Scratch,
    /// A normalized image reference.
    Image(String),
    /// A named directory context (`--build-context NAME=DIR`), by its key.
    Local(String),
}

/// One stage as written: its FROM, its instructions, and what passes 1 and 2 resolved.
pub(super) struct StageDef {
    pub name: Option<String>,
    pub from: Instruction,
    pub image_raw: String,
    /// `image_raw` expanded with the global ARGs (set by pass 1).
    pub image_name: String,
    pub platform_raw: Option<String>,
    pub base: Base,
    pub platform: Platform,
    pub commands: Vec<Instruction>,
    /// Per command, what its `--from` / mounts read from.
    pub refs: Vec<Vec<FromRef>>,
    /// ONBUILD triggers of the base, parsed (set for needed stages).
    pub triggers: Vec<Instruction>,
}

/// The instruction's keyword as written, upper-cased.
fn keyword(ins: &Instruction) -> String {
    ins.original
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Docker's stage-name rule: a letter, then letters, digits, `-`, `_` and `.`.
fn valid_stage_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Lowerer<'_> {
    /// Fills `self.stages` from the instructions; returns the global ARG instructions.
    pub(super) fn split_stages(
        &mut self,
        instructions: &[Instruction],
    ) -> Result<Vec<Instruction>, Diagnostic> {
        let mut globals = Vec::new();
        for ins in instructions {
            match &ins.command {
                Command::From {
                    image,
                    stage_name,
                    platform,
                } => {
                    if let Some(name) = stage_name
                        && !valid_stage_name(name)
                    {
                        return Err(self
                            .err(ins.span, name, format!("invalid stage name {name:?}"))
                            .help("a stage name starts with a letter and contains only letters, digits, '-', '_' and '.'"));
                    }
                    self.stages.push(StageDef {
                        name: stage_name.clone(),
                        from: ins.clone(),
                        image_raw: image.clone(),
                        image_name: String::new(),
                        platform_raw: platform.clone(),
                        base: Base::Scratch,
                        platform: self.opts.platform.clone(),
                        commands: Vec::new(),
                        refs: Vec::new(),
                        triggers: Vec::new(),
                    })
                }
                Command::Arg(_) if self.stages.is_empty() => globals.push(ins.clone()),
                _ => match self.stages.last_mut() {
                    Some(stage) => stage.commands.push(ins.clone()),
                    None => {
                        return Err(self
                            .err(
                                ins.span,
                                "",
                                format!("{} instruction before the first FROM", keyword(ins)),
                            )
                            .help("only ARG may come before the first FROM; start a stage with `FROM <image>` above it"));
                    }
                },
            }
        }
        if self.stages.is_empty() {
            let d = Diagnostic::new("no build stage in Dockerfile")
                .help("add a FROM instruction, e.g. `FROM alpine`, to start a build stage");
            return Err(if self.source.trim().is_empty() {
                d
            } else {
                d.at(self.source, 1, 1)
            });
        }
        Ok(globals)
    }

    /// Expands every FROM with the global ARGs: the base and platform of each stage. The
    /// FROM checks run here, for every stage.
    pub(super) fn resolve_bases(&mut self) -> Result<(), Diagnostic> {
        // What a FROM may use: the declared global ARGs and the predefined ones.
        let known: BTreeSet<String> = self
            .declared_globals
            .iter()
            .cloned()
            .chain(self.globals.iter().map(|(k, _)| k.to_string()))
            .collect();
        for i in 0..self.stages.len() {
            let span = self.stages[i].from.span;
            let raw = self.stages[i].image_raw.clone();
            let expanded = self.expand_full(&raw, &self.globals, span)?;
            let at = Location::find(self.source, span, &raw);
            from::undeclared_args(self.lint, at, &expanded.unmatched, &known);
            let defaults = &self.default_globals;
            let with_defaults = self.lexer.expand_word(&raw, &|k| env_get(defaults, k)).ok();
            let valid = with_defaults
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case("scratch") || Reference::parse(n).is_ok());
            from::default_base_name(self.lint, at, &raw, with_defaults.as_deref(), valid);
            let used = expanded.matched;
            self.capture(|c| c.used_by_from(i, &used));
            let name = expanded.value;
            self.stages[i].image_name = name.clone();
            if name.is_empty() {
                return Err(self
                    .err(span, &raw, format!("base name ({raw}) should not be blank"))
                    .help("give the ARG used in FROM a default or pass it with --build-arg"));
            }
            // A named context called like this stage replaces it (BuildKit's rule).
            let replaced = self.stages[i]
                .name
                .as_deref()
                .and_then(|n| self.context_base(n));
            let base = if let Some(b) = replaced {
                self.stages[i].commands.clear();
                b
            } else if let Some(j) = self.stages[..i].iter().position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
            }) {
                Base::Stage(j)
            } else if let Some(b) = self.context_base(&name) {
                b
            } else if name.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else {
                match Reference::parse(&name) {
                    Ok(r) => Base::Image(r.to_string()),
                    Err(e) => {
                        return Err(self
                            .err(
                                span,
                                &raw,
                                format!("FROM {name:?}: not an earlier stage nor a valid image reference"),
                            )
                            .help(format!("{}; image references are lower-case, e.g. `alpine:3.20` or `registry:5000/team/app`", e.reason)));
                    }
                }
            };
            let platform = match self.stages[i].platform_raw.clone() {
                None => match &base {
                    Base::Stage(j) => self.stages[*j].platform.clone(),
                    _ => self.opts.platform.clone(),
                },
                Some(raw) => {
                    let e = self.expand_full(&raw, &self.globals, span)?;
                    let at = Location::find(self.source, span, "--platform");
                    from::undeclared_args(self.lint, at, &e.unmatched, &known);
                    let parsed = parse_platform(&e.value, &self.opts.platform);
                    let target_platform = env_get(&self.globals, "TARGETPLATFORM");
                    let stage_name = self.stages[i].name.as_deref();
                    from::platform_flag(
                        self.lint,
                        at,
                        &raw,
                        &e,
                        target_platform.as_deref(),
                        stage_name,
                        parsed.as_ref(),
                    );
                    self.capture(|c| c.used_by_from(i, &e.matched));
                    let v = e.value;
                    parsed.ok_or_else(|| {
                        self.err(span, "--platform", format!("invalid platform {v:?}"))
                            .help("write it as os/arch[/variant], e.g. linux/amd64")
                    })?
                }
            };
            self.stages[i].base = base;
            self.stages[i].platform = platform;
        }
        Ok(())
    }

    /// The stage's name, or `stage-N` for an unnamed one (progress and messages).
    pub(super) fn stage_label(&self, i: usize) -> String {
        self.stages[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}"))
    }

    /// The named stages, for help texts.
    pub(super) fn stage_names(&self) -> String {
        let names: Vec<String> = self.stages.iter().filter_map(|s| s.name.clone()).collect();
        if names.is_empty() {
            "no stage is named; name one with `FROM <image> AS <name>`".into()
        } else {
            format!("stages: {}", names.join(", "))
        }
    }
}
