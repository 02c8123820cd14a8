//! Lowering typed Dockerfile instructions to the build graph.
//!
//! The work happens in three passes, following `docker build` (BuildKit's
//! dockerfile2llb):
//! 1. split the instructions into global ARGs and stages, evaluate the global
//!    ARGs (build args and predefined platform ARGs) and expand every FROM
//!    (`stages.rs`, `args.rs`);
//! 2. resolve every `--from` / `--mount from=` of every stage to an earlier
//!    stage, `scratch` or an image (`refs.rs`), then walk from the target stage
//!    to find the stages it needs (`target.rs`; ONBUILD triggers of a base are
//!    parsed here, since they may add dependencies: `onbuild.rs`);
//! 3. lower the needed stages in order (`stage.rs`), each instruction by its own
//!    `dispatch_*` function (`dispatch.rs` hands them out; RUN in `run.rs` with its
//!    mounts in `mounts.rs`, COPY/ADD in `copy.rs`, WORKDIR in `workdir.rs`, ARG in
//!    `args.rs`, the config-only instructions in `metadata.rs`), building the image
//!    config along the way; only filesystem changes (RUN, COPY/ADD, WORKDIR) become
//!    vertices.
//!
//! Build checks (`crate::lint`) and `--call outline` (`crate::outline`) ride along: the
//! lowering calls their rules and records what they ask at the places where it knows it (the
//! ARG scopes, each FROM as expanded, each instruction dispatched), without changing what it
//! produces.
//!
//! This file holds the entry points and the state one lowering carries.

mod args;
mod contexts;
mod copy;
mod diagnostics;
mod dispatch;
mod env;
mod metadata;
mod mounts;
mod onbuild;
mod paths;
mod platform;
mod refs;
mod resolve;
mod run;
mod stage;
mod stages;
mod state;
mod target;
mod text;
mod values;
mod vars;
mod workdir;

pub use contexts::{NamedContext, context_key};
pub use platform::parse_platform;
pub use resolve::{BoxError, ImageResolver, NoImages, ResolveError, ResolvedImage};

use crate::ast::{Dockerfile, Instruction};
use crate::lint::{LintReport, Linter};
use crate::outline::Capture;
use crate::shell::Lexer;
use crate::{Diagnostic, instructions, parser};
use env::Env;
use rbuild_graph::image::{History, ImageConfig};
use rbuild_graph::{BuildGraph, NetworkMode, Platform, RunSettings, VertexId};
use stages::StageDef;
use state::StageState;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// For diagnostics, e.g. "ctx/Dockerfile".
    pub dockerfile_name: String,
    /// `--target`; None = last stage.
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// The target platform: what a stage without `FROM --platform` is built for
    /// (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The build platform, the machine's (`BUILDPLATFORM`): a RUN for another platform is
    /// marked with its platform, for the executor to emulate.
    pub build_platform: Platform,
    /// `.dockerignore` lines; they go into `Op::Local { name: "context", exclude }`.
    pub ignore_patterns: Vec<String>,
    /// Network of RUN steps that say none or `default` (`rbuild build --network`).
    pub default_network: NetworkMode,
    /// `--build-context NAME=…`, by NAME as given (see `contexts.rs` for how names match).
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// What the build's flags set for every RUN (`--add-host`, `--ulimit`, …).
    pub run_settings: RunSettings,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            dockerfile_name: "Dockerfile".into(),
            target: None,
            build_args: BTreeMap::new(),
            platform: Platform::host(),
            build_platform: Platform::host(),
            ignore_patterns: Vec::new(),
            default_network: NetworkMode::Host,
            named_contexts: BTreeMap::new(),
            run_settings: RunSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryStep {
    pub entry: History,
    /// The vertex whose diff over its input 0 is this step's layer (None: metadata-only step).
    pub vertex: Option<VertexId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetImage {
    pub stage_name: Option<String>,
    pub stage_index: usize,
    /// The final filesystem vertex of the stage.
    pub root: VertexId,
    /// Full config (base image's + stage's); history/rootfs NOT filled.
    pub config: ImageConfig,
    /// Base image history entries first (vertex None), then one per instruction.
    pub history: Vec<HistoryStep>,
    /// The platform the build was lowered for (`TARGETPLATFORM`); the image's own may
    /// differ when its stage says `FROM --platform`.
    pub platform: Platform,
}

#[derive(Debug, Clone)]
pub struct Lowered {
    pub graph: BuildGraph,
    pub target: TargetImage,
    /// The build-context Local vertex, if any COPY/ADD/mount uses it.
    pub context: Option<VertexId>,
    /// The build checks' findings about the stages lowered (and the file as a whole).
    pub lint: LintReport,
}

/// Parses, types and lowers a Dockerfile.
pub fn lower(
    source: &str,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, Diagnostic> {
    let in_file = |d: Diagnostic| match d.file {
        Some(_) => d,
        None => d.in_file(opts.dockerfile_name.clone()),
    };
    let df = parser::parse(source).map_err(in_file)?;
    let lint =
        Linter::new(&df, source, &opts.build_args, &opts.ignore_patterns).map_err(in_file)?;
    let ins = instructions::instructions(&df, source).map_err(in_file)?;
    let mut shared = Shared::default();
    let cx = Context {
        source,
        escape: df.directives.escape,
        opts,
        resolver,
        lint: &lint,
        capture: None,
        all_stages: false,
    };
    let (target, context) = lower_target(&ins, &cx, &mut shared).map_err(in_file)?;
    Ok(Lowered {
        graph: shared.graph,
        target,
        context,
        lint: lint.into_report(&opts.dockerfile_name),
    })
}

/// Lowers already typed instructions; `source` is the Dockerfile text (for diagnostics).
/// Without the parsed file, the checks that read it (comments, casing) have nothing to go
/// on; the others run.
pub fn lower_instructions(
    instructions: &[Instruction],
    escape: char,
    source: &str,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, Diagnostic> {
    let bare = Dockerfile {
        directives: Default::default(),
        nodes: Vec::new(),
    };
    let lint = Linter::new(&bare, source, &opts.build_args, &opts.ignore_patterns)?;
    let mut shared = Shared::default();
    let cx = Context {
        source,
        escape,
        opts,
        resolver,
        lint: &lint,
        capture: None,
        all_stages: false,
    };
    let (target, context) = lower_target(instructions, &cx, &mut shared)?;
    Ok(Lowered {
        graph: shared.graph,
        target,
        context,
        lint: lint.into_report(&opts.dockerfile_name),
    })
}

/// Several targets of one Dockerfile lowered into one graph.
#[derive(Debug, Clone)]
pub struct LoweredTargets {
    /// The union of what every target needs; a vertex two targets share is in it once.
    pub graph: BuildGraph,
    /// One per requested target, in the order asked (for several platforms: each
    /// platform's targets in turn, [`TargetImage::platform`] saying whose).
    pub targets: Vec<TargetImage>,
    /// The build-context Local vertex, if any COPY/ADD/mount of any target uses it.
    pub context: Option<VertexId>,
    /// The build checks' findings about the stages lowered (and the file as a whole): what
    /// a build prints at its end, and fails on under `# check=error=true`.
    pub lint: LintReport,
}

/// Parses, types and lowers a Dockerfile for each of `targets` (stage names;
/// empty = `opts.target` alone). Each target is lowered as a build of it alone
/// would be (its own `TARGETSTAGE`), into one shared graph: identical vertices
/// dedup in [`BuildGraph::add`], so a stage two targets need is solved once.
/// Each base image is resolved once.
pub fn lower_targets(
    source: &str,
    opts: &LowerOptions,
    targets: &[String],
    resolver: &dyn ImageResolver,
) -> Result<LoweredTargets, Diagnostic> {
    lower_targets_for(source, opts, targets, &[], resolver)
}

/// [`lower_targets`] for each of `platforms` (empty: `opts.platform` alone), into one
/// graph: platform-major, each platform's targets in the order asked (see
/// `platform::lower_platforms`).
pub fn lower_targets_for(
    source: &str,
    opts: &LowerOptions,
    targets: &[String],
    platforms: &[Platform],
    resolver: &dyn ImageResolver,
) -> Result<LoweredTargets, Diagnostic> {
    let in_file = |d: Diagnostic| match d.file {
        Some(_) => d,
        None => d.in_file(opts.dockerfile_name.clone()),
    };
    let df = parser::parse(source).map_err(in_file)?;
    let lint =
        Linter::new(&df, source, &opts.build_args, &opts.ignore_patterns).map_err(in_file)?;
    let ins = instructions::instructions(&df, source).map_err(in_file)?;
    let cx = Context {
        source,
        escape: df.directives.escape,
        opts,
        resolver,
        lint: &lint,
        capture: None,
        all_stages: false,
    };
    let (graph, images, context) =
        platform::lower_platforms(&ins, &cx, targets, platforms).map_err(in_file)?;
    Ok(LoweredTargets {
        graph,
        targets: images,
        context,
        lint: lint.into_report(&opts.dockerfile_name),
    })
}

/// Lowers each of `targets` (empty: `opts.target` alone) as a build of it alone would,
/// into one graph.
pub(super) fn lower_each(
    ins: &[Instruction],
    cx: &Context,
    targets: &[String],
) -> Result<(BuildGraph, Vec<TargetImage>, Option<VertexId>), Diagnostic> {
    let mut shared = Shared::default();
    let (images, context) = lower_each_with(ins, cx, targets, &mut shared)?;
    Ok((shared.graph, images, context))
}

/// [`lower_each`] adding to `shared` (the graph, and the base images resolved so far).
pub(super) fn lower_each_with(
    ins: &[Instruction],
    cx: &Context,
    targets: &[String],
    shared: &mut Shared,
) -> Result<(Vec<TargetImage>, Option<VertexId>), Diagnostic> {
    let wanted: Vec<Option<String>> = if targets.is_empty() {
        vec![cx.opts.target.clone()]
    } else {
        targets.iter().cloned().map(Some).collect()
    };
    let mut images = Vec::new();
    let mut context = None;
    for t in wanted {
        let one = LowerOptions {
            target: t,
            ..cx.opts.clone()
        };
        let cx = Context { opts: &one, ..*cx };
        let (image, ctx) = lower_target(ins, &cx, shared)?;
        images.push(image);
        context = context.or(ctx);
    }
    Ok((images, context))
}

/// `--call check`: every stage lowered into a throwaway graph (only the stages `targets`
/// need when some are named), for the findings `lint` collects on the way.
pub(crate) fn lower_for_check(
    df: &Dockerfile,
    source: &str,
    opts: &LowerOptions,
    targets: &[String],
    resolver: &dyn ImageResolver,
    lint: &Linter,
) -> Result<(), Diagnostic> {
    let ins = instructions::instructions(df, source)?;
    let cx = Context {
        source,
        escape: df.directives.escape,
        opts,
        resolver,
        lint,
        capture: None,
        all_stages: targets.is_empty() && opts.target.is_none(),
    };
    lower_each(&ins, &cx, targets).map(|_| ())
}

/// `--call outline`: the target lowered into a throwaway graph, `capture` recording what
/// it reads (build args, secrets, SSH) on the way.
pub(crate) fn lower_for_outline(
    df: &Dockerfile,
    source: &str,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
    capture: &Capture,
) -> Result<(), Diagnostic> {
    let lint = Linter::new(df, source, &opts.build_args, &opts.ignore_patterns)?;
    let ins = instructions::instructions(df, source)?;
    let cx = Context {
        source,
        escape: df.directives.escape,
        opts,
        resolver,
        lint: &lint,
        capture: Some(capture),
        all_stages: false,
    };
    lower_target(&ins, &cx, &mut Shared::default()).map(|_| ())
}

/// What a lowering is given, the same for every target.
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    source: &'a str,
    escape: char,
    pub(super) opts: &'a LowerOptions,
    resolver: &'a dyn ImageResolver,
    lint: &'a Linter,
    /// `--call outline`: where the target's build args, secrets and SSH uses are recorded.
    capture: Option<&'a Capture>,
    /// `--call check` without a target: every stage is lowered, needed or not.
    all_stages: bool,
}

/// What successive target lowerings share: the graph and resolved base images.
#[derive(Default)]
pub(super) struct Shared {
    graph: BuildGraph,
    images: HashMap<(String, Platform), Option<ResolvedImage>>,
}

/// Lowers the stages `cx.opts.target` needs into `shared.graph`.
fn lower_target(
    instructions: &[Instruction],
    cx: &Context,
    shared: &mut Shared,
) -> Result<(TargetImage, Option<VertexId>), Diagnostic> {
    let mut l = Lowerer {
        source: cx.source,
        opts: cx.opts,
        resolver: cx.resolver,
        lexer: Lexer::new(cx.escape),
        globals: Env::new(),
        default_globals: Env::new(),
        declared_globals: BTreeSet::new(),
        stages: Vec::new(),
        graph: std::mem::take(&mut shared.graph),
        context: None,
        images: std::mem::take(&mut shared.images),
        single_stage: false,
        lint: cx.lint,
        capture: cx.capture,
        all_stages: cx.all_stages,
        in_trigger: false,
    };
    let result = l.lower_all(instructions);
    l.lint.mute(false);
    shared.graph = std::mem::take(&mut l.graph);
    shared.images = std::mem::take(&mut l.images);
    let target = result?;
    Ok((target, l.context))
}

/// One target's lowering: the Dockerfile, its stages, and the graph being built.
struct Lowerer<'a> {
    source: &'a str,
    opts: &'a LowerOptions,
    resolver: &'a dyn ImageResolver,
    lexer: Lexer,
    /// Global ARGs (with predefined platform ARGs) usable in FROM and as ARG defaults.
    globals: Env,
    /// The global ARGs as they are without any build arg (InvalidDefaultArgInFrom).
    default_globals: Env,
    /// Every global ARG name, with a value or not (UndefinedArgInFrom).
    declared_globals: BTreeSet<String>,
    stages: Vec<StageDef>,
    graph: BuildGraph,
    context: Option<VertexId>,
    images: HashMap<(String, Platform), Option<ResolvedImage>>,
    /// One stage and no image `--from`: progress leaves the stage name out, as BuildKit does.
    single_stage: bool,
    /// Where build checks report.
    lint: &'a Linter,
    /// `--call outline`: what the target reads is recorded here.
    capture: Option<&'a Capture>,
    /// Lower every stage, not only those the target needs (`--call check`).
    all_stages: bool,
    /// An ONBUILD trigger of the base is being dispatched: its text is not in this
    /// Dockerfile, so it is neither checked nor outlined.
    in_trigger: bool,
}

impl Lowerer<'_> {
    /// The three passes, for the stage `opts.target` names.
    fn lower_all(&mut self, instructions: &[Instruction]) -> Result<TargetImage, Diagnostic> {
        let l = self;
        let global_args = l.split_stages(instructions)?;
        let target = l.find_target()?;
        l.eval_global_args(&global_args, target)?;
        l.resolve_bases()?;
        l.resolve_refs()?;
        let needed = if l.all_stages {
            let mut all = vec![false; l.stages.len()];
            for t in 0..l.stages.len() {
                for (a, n) in all.iter_mut().zip(l.needed_stages(t)?) {
                    *a |= n;
                }
            }
            all
        } else {
            l.needed_stages(target)?
        };
        l.capture_structure(target, &needed);
        l.single_stage = l.stages.len() == 1
            && !l.stages[0]
                .refs
                .iter()
                .flatten()
                .any(|r| matches!(r, refs::FromRef::Image(_)));

        let mut results: Vec<Option<StageState>> = vec![None; l.stages.len()];
        for i in 0..l.stages.len() {
            if needed[i] {
                let st = l.lower_stage(i, &results)?;
                results[i] = Some(st);
            }
        }
        let st = results[target]
            .take()
            .expect("the target stage is always lowered");
        let mut config = st.config;
        if config.os.is_empty() || config.architecture.is_empty() {
            config.os = st.platform.os.clone();
            config.architecture = st.platform.architecture.clone();
            config.variant = st.platform.variant.clone();
        }
        Ok(TargetImage {
            stage_name: l.stages[target].name.clone(),
            stage_index: target,
            root: st.root,
            config,
            history: st.history,
            platform: l.opts.platform.clone(),
        })
    }
}
