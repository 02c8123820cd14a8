//! What one stage carries while its instructions are lowered: [`StageState`] (root vertex,
//! config, variables, history), [`StageCx`] (its index, step counter, the stages done
//! before it) and one [`Step`] handed to a `dispatch_*` function; and the vertices and
//! metadata every dispatcher adds besides its own (the build context, scratch, what a
//! `--from` reads).
//! Below `stage.rs` (which runs a stage), `dispatch.rs` and the dispatchers, which all
//! share it.

use super::HistoryStep;
use super::Lowerer;
use super::env::Env;
use super::refs::FromRef;
use super::text::Steps;
use crate::Diagnostic;
use crate::ast::{Instruction, Span};
use crate::lint::StageChecks;
use rbuild_graph::image::{History, ImageConfig};
use rbuild_graph::{Op, Platform, VertexId, VertexMeta};
use std::collections::HashMap;

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
    /// Where each key first appears in `config.config.env`, made on first use, so that
    /// an ENV costs the same in a stage of 10,000 variables as in one of ten.
    pub config_env_index: Option<HashMap<String, usize>>,
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

    /// Sets `key=value` in the config's Env (replacing the first entry of `key` in place,
    /// as [`ContainerConfig::env_set`](rbuild_graph::image::ContainerConfig::env_set) does).
    pub fn set_config_env(&mut self, key: &str, value: &str) {
        let env = &mut self.config.config.env;
        let index = self.config_env_index.get_or_insert_with(|| {
            let mut index = HashMap::new();
            for (i, kv) in env.iter().enumerate() {
                let k = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
                index.entry(k.to_string()).or_insert(i);
            }
            index
        });
        let entry = format!("{key}={value}");
        match index.get(key) {
            Some(&i) => env[i] = entry,
            None => {
                index.insert(key.to_string(), env.len());
                env.push(entry);
            }
        }
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

/// One instruction to lower, with what pass 2 resolved about it.
pub(super) struct Step<'i> {
    pub ins: &'i Instruction,
    /// What its `--from` / `--mount from=` read, resolved.
    pub refs: &'i [FromRef],
    /// It is an ONBUILD trigger of the base firing (progress says `ONBUILD`).
    pub onbuild: bool,
}

impl Lowerer<'_> {
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

    /// The vertex a `--from` reads: the stage's last step, scratch, or the image's source.
    pub(super) fn ref_vertex(
        &mut self,
        r: &FromRef,
        results: &[Option<StageState>],
        platform: &Platform,
        span: Span,
    ) -> Result<VertexId, Diagnostic> {
        Ok(match r {
            FromRef::Stage(j) => {
                results[*j]
                    .as_ref()
                    .expect("stages a stage needs are lowered before it")
                    .root
            }
            FromRef::Scratch => self.scratch_vertex(),
            FromRef::Local(key) => self.named_local_vertex(key),
            FromRef::Image(reference) => {
                let digest = self
                    .resolve_image(reference, platform, span)?
                    .and_then(|r| r.digest);
                let description = match &digest {
                    Some(d) => format!("FROM {reference}@{d}"),
                    None => format!("FROM {reference}"),
                };
                self.graph.add(
                    Op::Image {
                        reference: reference.clone(),
                        digest,
                        platform: platform.clone(),
                    },
                    vec![],
                    VertexMeta {
                        description,
                        stage: None,
                        lines: Some((span.start_line, span.end_line)),
                    },
                )
            }
        })
    }
}
