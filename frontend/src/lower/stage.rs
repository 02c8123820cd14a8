//! Pass 3, one stage: the state it starts from (a base stage's result, scratch, or an
//! image's config and history), then its ONBUILD triggers and instructions dispatched in
//! order. What the stage carries meanwhile is `state.rs`.

use super::HistoryStep;
use super::Lowerer;
use super::env::{Env, env_get, env_set};
use super::stages::Base;
use super::state::{StageCx, StageState, Step};
use super::text::Steps;
use crate::Diagnostic;
use crate::ast::{Command, Instruction};
use crate::lint::{self, Location, StageChecks};
use rbuild_graph::image::{ImageConfig, RootFs};
use rbuild_graph::{CopyAction, CopySource, FileAction, FileOp, Op, Platform};

/// The PATH a stage gets when its base sets none (BuildKit's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config of a stage whose base has none (scratch, or an image the resolver does not
/// know). Its working directory is `/`, as BuildKit writes it (its `emptyImage`); a base
/// image's config is taken as it is, an empty WorkingDir included.
fn empty_config(p: &Platform) -> ImageConfig {
    let mut config = ImageConfig {
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: p.variant.clone(),
        ..Default::default()
    };
    config.config.working_dir = "/".into();
    config
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
                label: self.progress_label(i),
                index: 0,
                total: usize::from(matches!(base, Base::Image(_) | Base::Local(_)))
                    + commands.iter().filter(|c| counted(c)).count()
                    + triggers.len(),
            },
            done: results,
        };

        let mut st = self.base_state(&mut cx, &base, &platform, &from)?;
        if st.config.config.env_get("PATH").is_none() {
            st.set_config_env("PATH", DEFAULT_PATH);
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
                env: Env::new(),
                args: Vec::new(),
                config_env_index: None,
                history: Vec::new(),
                platform: platform.clone(),
                cmd_set: false,
                checks: StageChecks::default(),
            },
            Base::Local(key) => self.local_base(cx, key, platform, from),
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
                    // An oci-layout context is named by its digest alone.
                    Some(d) if d != reference => format!("{reference}@{d}"),
                    _ => reference.clone(),
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
                // A key the image lists twice: the last one wins, as in the config's own
                // `env_get` and in the environment RUN gets.
                let env = config
                    .config
                    .env
                    .iter()
                    .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                    .collect();
                StageState {
                    root,
                    config,
                    env,
                    args: Vec::new(),
                    config_env_index: None,
                    history,
                    platform: platform.clone(),
                    cmd_set: false,
                    checks: StageChecks::default(),
                }
            }
        })
    }

    /// A stage `FROM` a named directory context: its files (less its `.dockerignore`d
    /// ones) copied onto scratch, one layer, hashed by content like any COPY from a context.
    fn local_base(
        &mut self,
        cx: &mut StageCx,
        key: &str,
        platform: &Platform,
        from: &Instruction,
    ) -> StageState {
        let src = self.named_local_vertex(key);
        let scratch = self.scratch_vertex();
        let description = format!("{}FROM {key} (build context)", cx.steps.next(false));
        let root = self.graph.add(
            Op::File(FileOp {
                actions: vec![FileAction::Copy(CopyAction {
                    source: CopySource::Input {
                        input: 1,
                        path: "/".into(),
                    },
                    dest: "/".into(),
                    owner: None,
                    mode: None,
                    allow_wildcard: false,
                    unpack_archive: false,
                    chmod: None,
                    parents: None,
                    exclude: Vec::new(),
                })],
            }),
            vec![scratch, src],
            self.meta(description, cx.index, from.span),
        );
        let mut st = StageState {
            root,
            config: empty_config(platform),
            env: Env::new(),
            args: Vec::new(),
            config_env_index: None,
            history: Vec::new(),
            platform: platform.clone(),
            cmd_set: false,
            checks: StageChecks::default(),
        };
        st.commit(format!("FROM {key} # build context"), Some(root));
        st
    }
}
