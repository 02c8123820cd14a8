//! Pass 3, one stage: the state it starts from (a base stage's result, scratch, or an
//! image's config and history), its ONBUILD triggers and instructions dispatched in order,
//! and what every instruction leaves behind (a history entry, maybe a vertex).

use super::HistoryStep;
use super::Lowerer;
use super::dispatch::Step;
use super::stages::Base;
use super::text::Steps;
use super::vars::{Env, env_get, env_set};
use crate::Diagnostic;
use crate::ast::{Command, Instruction, Span};
use crate::lint::{self, Location, StageChecks};
use rbuild_graph::image::{History, ImageConfig, RootFs};
use rbuild_graph::{Op, Platform, VertexId, VertexMeta};

/// The PATH a stage gets when its base sets none (BuildKit's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The comment BuildKit writes on the history entries it creates.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// What a stage carries from instruction to instruction.
#[derive(Debug, Clone)]
pub(super) struct StageState {
    pub root: VertexId,
    pub config: ImageConfig,
    /// The variables RUN sees and instructions expand with: image ENV and ARGs, in order.
    pub env: Env,
    /// ARGs declared in the stage (and its base stages), for RUN history.
    pub args: Vec<(String, Option<String>)>,
    pub history: Vec<HistoryStep>,
    pub platform: Platform,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// What the build checks remember along the stage.
    pub checks: StageChecks,
}

impl StageState {
    /// Records an instruction in the history; `vertex` is the step that made its layer
    /// (None for a metadata-only instruction).
    pub fn commit(&mut self, created_by: String, vertex: Option<VertexId>) {
        self.history.push(HistoryStep {
            entry: History {
                created: None,
                created_by: Some(created_by),
                comment: Some(HISTORY_COMMENT.into()),
                empty_layer: vertex.is_none(),
            },
            vertex,
        });
    }

    /// The working directory relative paths resolve against.
    pub fn cwd(&self) -> String {
        if self.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            self.config.config.working_dir.clone()
        }
    }
}

/// The stage being lowered: its index, its progress counter, and the stages lowered
/// before it (what `--from` and a base stage read).
pub(super) struct StageCx<'r> {
    pub index: usize,
    pub steps: Steps,
    pub done: &'r [Option<StageState>],
}

impl StageCx<'_> {
    /// The progress name of the next counted step: `[stage i/n] ` and the instruction.
    pub fn describe(&mut self, step: &Step, original: &str, env: &Env) -> String {
        format!(
            "{}{}",
            self.steps.next(step.onbuild),
            super::text::display_name(original, env)
        )
    }
}

/// The config of a stage whose base has none (scratch, or an image the resolver does not know).
fn empty_config(p: &Platform) -> ImageConfig {
    ImageConfig {
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: p.variant.clone(),
        ..Default::default()
    }
}

impl Lowerer<'_> {
    /// Lowers stage `i`; `results` holds the stages it needs, already lowered.
    pub(super) fn lower_stage(
        &mut self,
        i: usize,
        results: &[Option<StageState>],
    ) -> Result<StageState, Diagnostic> {
        let def = &self.stages[i];
        let from = def.from.clone();
        let base = def.base.clone();
        let platform = def.platform.clone();
        let commands = def.commands.clone();
        let refs = def.refs.clone();
        let triggers = def.triggers.clone();

        // FROM an image, RUN, COPY/ADD and WORKDIR take a step number; the rest do not.
        let counted = |c: &Instruction| {
            matches!(
                c.command,
                Command::Copy(_) | Command::Add(_) | Command::Run { .. } | Command::Workdir(_)
            )
        };
        let mut cx = StageCx {
            index: i,
            steps: Steps {
                label: (!self.single_stage).then(|| self.stage_label(i)),
                index: 0,
                total: usize::from(matches!(base, Base::Image(_)))
                    + commands.iter().filter(|c| counted(c)).count()
                    + triggers.len(),
            },
            done: results,
        };

        let mut st = self.base_state(&mut cx, &base, &platform, &from)?;
        if st.config.config.env_get("PATH").is_none() {
            st.config.config.env_set("PATH", DEFAULT_PATH);
            if env_get(&st.env, "PATH").is_none() {
                env_set(&mut st.env, "PATH", DEFAULT_PATH);
            }
        }

        for t in &triggers {
            let t_refs = self.command_refs(i, t)?;
            let step = Step {
                ins: t,
                refs: &t_refs,
                onbuild: true,
            };
            self.dispatch(&mut cx, &mut st, &step)?;
        }
        for (c, r) in commands.iter().zip(&refs) {
            let step = Step {
                ins: c,
                refs: r,
                onbuild: false,
            };
            self.dispatch(&mut cx, &mut st, &step)?;
        }
        Ok(st)
    }

    /// The state a stage starts from: its base stage's (without that stage's triggers and
    /// CMD flag), scratch's, or an image's config and history (the FROM is a counted step).
    fn base_state(
        &mut self,
        cx: &mut StageCx,
        base: &Base,
        platform: &Platform,
        from: &Instruction,
    ) -> Result<StageState, Diagnostic> {
        Ok(match base {
            Base::Stage(j) => {
                let mut s = cx.done[*j]
                    .clone()
                    .expect("a base stage is lowered before the stages built on it");
                // Triggers do not carry over from a base stage (they fire in this one).
                s.config.config.on_build.clear();
                s.cmd_set = false;
                s.checks = s.checks.inherited();
                s
            }
            Base::Scratch => StageState {
                root: self.scratch_vertex(),
                config: empty_config(platform),
                env: Vec::new(),
                args: Vec::new(),
                history: Vec::new(),
                platform: platform.clone(),
                cmd_set: false,
                checks: StageChecks::default(),
            },
            Base::Image(reference) => {
                let resolved = self.resolve_image(reference, platform, from.span)?;
                if let Some(r) = &resolved {
                    let def = &self.stages[cx.index];
                    let at = Location::find(self.source, from.span, &def.image_raw);
                    lint::from::base_platform(self.lint, at, &def.image_name, platform, &r.config);
                }
                let (digest, mut config) = match resolved {
                    Some(r) => (r.digest, r.config),
                    None => (None, empty_config(platform)),
                };
                let shown = match &digest {
                    Some(d) => format!("{reference}@{d}"),
                    None => reference.clone(),
                };
                let description = format!("{}FROM {shown}", cx.steps.next(false));
                let root = self.graph.add(
                    Op::Image {
                        reference: reference.clone(),
                        digest,
                        platform: platform.clone(),
                    },
                    vec![],
                    self.meta(description, cx.index, from.span),
                );
                let history = std::mem::take(&mut config.history)
                    .into_iter()
                    .map(|entry| HistoryStep {
                        entry,
                        vertex: None,
                    })
                    .collect();
                config.rootfs = RootFs::default();
                config.created = None;
                config.config.on_build.clear();
                let env = config
                    .config
                    .env
                    .iter()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                StageState {
                    root,
                    config,
                    env,
                    args: Vec::new(),
                    history,
                    platform: platform.clone(),
                    cmd_set: false,
                    checks: StageChecks::default(),
                }
            }
        })
    }

    /// Metadata of a vertex made by an instruction of stage `stage`.
    pub(super) fn meta(&self, description: String, stage: usize, span: Span) -> VertexMeta {
        VertexMeta {
            description,
            stage: Some(self.stage_label(stage)),
            lines: Some((span.start_line, span.end_line)),
        }
    }

    /// The build context, added on first use (a build that reads none has no such vertex).
    pub(super) fn context_vertex(&mut self) -> VertexId {
        if let Some(v) = self.context {
            return v;
        }
        let v = self.graph.add(
            Op::Local {
                name: "context".into(),
                exclude: self.opts.ignore_patterns.clone(),
            },
            vec![],
            VertexMeta {
                description: "[internal] load build context".into(),
                ..Default::default()
            },
        );
        self.context = Some(v);
        v
    }

    pub(super) fn scratch_vertex(&mut self) -> VertexId {
        self.graph.add(Op::Scratch, vec![], VertexMeta::default())
    }
}
