//! Lowering typed Dockerfile instructions to the build graph.
//!
//! The work happens in three passes, following `docker build` (BuildKit's
//! dockerfile2llb):
//! 1. split the instructions into global ARGs and stages, evaluate the global
//!    ARGs (build args and predefined platform ARGs) and expand every FROM;
//! 2. resolve every `--from` / `--mount from=` of every stage to an earlier
//!    stage, `scratch` or an image, then walk from the target stage to find the
//!    stages it needs (ONBUILD triggers of a base are parsed here, since they
//!    may add dependencies);
//! 3. lower the needed stages in order, building the image config along the
//!    way; only filesystem changes (RUN, COPY/ADD, WORKDIR) become vertices.

pub mod mounts;
pub mod util;

use crate::ast::{Command, CommandLine, CopySpec, Healthcheck, Instruction, Span};
use crate::shell::{Lexer, ShellError};
use crate::{Diagnostic, instructions, parser};
use mounts::{MountType, parse_mount};
use rbuild_graph::image::{Empty, HealthConfig, History, ImageConfig, RootFs};
use rbuild_graph::{
    BuildGraph, CopyAction, CopySource, ExecMount, ExecOp, FileAction, FileOp, MountKind,
    NetworkMode, Op, Platform, VertexId, VertexMeta,
};
use std::collections::{BTreeMap, HashMap};
use util::*;

/// Looks up image configs for FROM and `--from` image references.
pub trait ImageResolver {
    /// Config (and manifest digest, if known) of an image reference for `platform`; Ok(None) when
    /// unknown (lowering then uses an empty config and digest None — the solver reports the
    /// missing image later).
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, String>;
}

/// What a resolver knows about an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedImage {
    pub digest: Option<String>,
    pub config: ImageConfig,
}

/// A resolver that knows no images (tests, `--dry-run` without a store).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, _: &str, _: &Platform) -> Result<Option<ResolvedImage>, String> {
        Ok(None)
    }
}

#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// For diagnostics, e.g. "ctx/Dockerfile".
    pub dockerfile_name: String,
    /// `--target`; None = last stage.
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// Target platform = build platform = host.
    pub platform: Platform,
    /// `.dockerignore` lines; they go into `Op::Local { name: "context", exclude }`.
    pub ignore_patterns: Vec<String>,
    /// Network of RUN steps that say none or `default` (`rbuild build --network`).
    pub default_network: NetworkMode,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            dockerfile_name: "Dockerfile".into(),
            target: None,
            build_args: BTreeMap::new(),
            platform: Platform::host(),
            ignore_patterns: Vec::new(),
            default_network: NetworkMode::Host,
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
}

#[derive(Debug, Clone)]
pub struct Lowered {
    pub graph: BuildGraph,
    pub target: TargetImage,
    /// The build-context Local vertex, if any COPY/ADD/mount uses it.
    pub context: Option<VertexId>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
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
    let ins = instructions::instructions(&df, source).map_err(in_file)?;
    lower_instructions(&ins, df.directives.escape, source, opts, resolver).map_err(in_file)
}

/// Lowers already typed instructions; `source` is the Dockerfile text (for diagnostics).
pub fn lower_instructions(
    instructions: &[Instruction],
    escape: char,
    source: &str,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, Diagnostic> {
    let mut shared = Shared::default();
    let (target, context) =
        lower_target(instructions, escape, source, opts, resolver, &mut shared)?;
    Ok(Lowered {
        graph: shared.graph,
        target,
        context,
    })
}

/// Several targets of one Dockerfile lowered into one graph.
#[derive(Debug, Clone)]
pub struct LoweredTargets {
    /// The union of what every target needs; a vertex two targets share is in it once.
    pub graph: BuildGraph,
    /// One per requested target, in the order asked.
    pub targets: Vec<TargetImage>,
    /// The build-context Local vertex, if any COPY/ADD/mount of any target uses it.
    pub context: Option<VertexId>,
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
    let in_file = |d: Diagnostic| match d.file {
        Some(_) => d,
        None => d.in_file(opts.dockerfile_name.clone()),
    };
    let df = parser::parse(source).map_err(in_file)?;
    let ins = instructions::instructions(&df, source).map_err(in_file)?;
    let wanted: Vec<Option<String>> = if targets.is_empty() {
        vec![opts.target.clone()]
    } else {
        targets.iter().cloned().map(Some).collect()
    };
    let mut shared = Shared::default();
    let mut images = Vec::new();
    let mut context = None;
    for t in wanted {
        let one = LowerOptions {
            target: t,
            ..opts.clone()
        };
        let (image, ctx) = lower_target(
            &ins,
            df.directives.escape,
            source,
            &one,
            resolver,
            &mut shared,
        )
        .map_err(in_file)?;
        images.push(image);
        context = context.or(ctx);
    }
    Ok(LoweredTargets {
        graph: shared.graph,
        targets: images,
        context,
    })
}

/// What successive target lowerings share: the graph and resolved base images.
#[derive(Default)]
struct Shared {
    graph: BuildGraph,
    images: HashMap<(String, Platform), Option<ResolvedImage>>,
}

/// Lowers the stages `opts.target` needs into `shared.graph`.
fn lower_target(
    instructions: &[Instruction],
    escape: char,
    source: &str,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
    shared: &mut Shared,
) -> Result<(TargetImage, Option<VertexId>), Diagnostic> {
    let mut l = Lowerer {
        source,
        opts,
        resolver,
        lexer: Lexer::new(escape),
        globals: Vec::new(),
        stages: Vec::new(),
        graph: std::mem::take(&mut shared.graph),
        context: None,
        images: std::mem::take(&mut shared.images),
        single_stage: false,
    };
    let result = l.lower_all(instructions);
    shared.graph = std::mem::take(&mut l.graph);
    shared.images = std::mem::take(&mut l.images);
    let target = result?;
    Ok((target, l.context))
}

impl Lowerer<'_> {
    fn lower_all(&mut self, instructions: &[Instruction]) -> Result<TargetImage, Diagnostic> {
        let l = self;
        let global_args = l.split(instructions)?;
        let target = l.find_target()?;
        l.eval_globals(&global_args, target)?;
        l.resolve_bases()?;
        l.resolve_refs()?;
        let needed = l.reachable(target)?;
        l.single_stage = l.stages.len() == 1
            && !l.stages[0]
                .refs
                .iter()
                .flatten()
                .any(|r| matches!(r, FromRef::Image(_)));

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
        })
    }
}

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    Stage(usize),
    Scratch,
    /// A normalized image reference.
    Image(String),
}

/// What a `--from` / `from=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FromRef {
    Stage(usize),
    Scratch,
    Image(String),
}

struct StageDef {
    name: Option<String>,
    from: Instruction,
    image_raw: String,
    platform_raw: Option<String>,
    base: Base,
    platform: Platform,
    commands: Vec<Instruction>,
    /// Per command, what its `--from` / mounts read from.
    refs: Vec<Vec<FromRef>>,
    /// ONBUILD triggers of the base, parsed (set for needed stages).
    triggers: Vec<Instruction>,
}

/// An ordered variable list (later entries replace earlier ones in place).
type Env = Vec<(String, String)>;

fn env_get(env: &Env, key: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn env_set(env: &mut Env, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

/// What a stage carries from instruction to instruction.
#[derive(Debug, Clone)]
struct StageState {
    root: VertexId,
    config: ImageConfig,
    /// The variables RUN sees and instructions expand with: image ENV and ARGs, in order.
    env: Env,
    /// ARGs declared in the stage (and its base stages), for RUN history.
    args: Vec<(String, Option<String>)>,
    history: Vec<HistoryStep>,
    platform: Platform,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

/// The `[stage i/n]` progress counter of one stage.
struct Steps {
    label: Option<String>,
    index: usize,
    total: usize,
}

impl Steps {
    fn next(&mut self, onbuild: bool) -> String {
        if self.total == 0 {
            return String::new();
        }
        self.index += 1;
        let mut p = step_prefix(self.label.as_deref(), self.index, self.total);
        if onbuild {
            p.push_str("ONBUILD ");
        }
        p
    }
}

struct Lowerer<'a> {
    source: &'a str,
    opts: &'a LowerOptions,
    resolver: &'a dyn ImageResolver,
    lexer: Lexer,
    /// Global ARGs (with predefined platform ARGs) usable in FROM and as ARG defaults.
    globals: Env,
    stages: Vec<StageDef>,
    graph: BuildGraph,
    context: Option<VertexId>,
    images: HashMap<(String, Platform), Option<ResolvedImage>>,
    single_stage: bool,
}

fn keyword(ins: &Instruction) -> String {
    ins.original
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// BuildKit's progress name: the instruction as written, variables expanded, keyword upper-cased.
fn display_name(original: &str, env: &Env) -> String {
    let expanded = expand_raw(original.trim(), &|k| env_get(env, k), true);
    match expanded.split_once(' ') {
        Some((kw, rest)) => format!("{} {rest}", kw.to_ascii_uppercase()),
        None => expanded.to_ascii_uppercase(),
    }
}

fn with_shell(config: &ImageConfig, cmd: &CommandLine) -> Vec<String> {
    match cmd {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(text) => {
            let mut args = if config.config.shell.is_empty() {
                vec!["/bin/sh".to_string(), "-c".to_string()]
            } else {
                config.config.shell.clone()
            };
            args.push(text.clone());
            args
        }
    }
}

fn empty_config(p: &Platform) -> ImageConfig {
    ImageConfig {
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: p.variant.clone(),
        ..Default::default()
    }
}

impl<'a> Lowerer<'a> {
    // ---- diagnostics ----

    /// Line and 1-based column of `needle` within the instruction's lines (its first line, col 1, if absent).
    fn locate(&self, span: Span, needle: &str) -> (usize, usize) {
        if !needle.is_empty() {
            for line in span.start_line..=span.end_line {
                let Some(text) = self.source.lines().nth(line.saturating_sub(1)) else {
                    break;
                };
                if let Some(pos) = text.find(needle) {
                    return (line, text[..pos].chars().count() + 1);
                }
            }
        }
        (span.start_line, 1)
    }

    fn err(&self, span: Span, needle: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(span, needle);
        Diagnostic::new(message).at(self.source, line, col)
    }

    fn shell_err(&self, e: ShellError, word: &str, span: Span) -> Diagnostic {
        let (line, col) = self.locate(span, word);
        let found = self
            .source
            .lines()
            .nth(line.saturating_sub(1))
            .is_some_and(|l| l.contains(word));
        let col = if found {
            col + word.get(..e.offset).map_or(0, |s| s.chars().count())
        } else {
            col
        };
        Diagnostic::new(format!("failed to expand {word:?}: {}", e.message))
            .at(self.source, line, col)
            .help("variables are written $NAME, ${NAME}, ${NAME:-default} or ${NAME:+alternative}")
    }

    fn expand(&self, word: &str, env: &Env, span: Span) -> Result<String, Diagnostic> {
        self.lexer
            .expand_word(word, &|k| env_get(env, k))
            .map_err(|e| self.shell_err(e, word, span))
    }

    fn expand_words(&self, word: &str, env: &Env, span: Span) -> Result<Vec<String>, Diagnostic> {
        self.lexer
            .expand_words(word, &|k| env_get(env, k))
            .map_err(|e| self.shell_err(e, word, span))
    }

    fn stage_label(&self, i: usize) -> String {
        self.stages[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}"))
    }

    fn stage_names(&self) -> String {
        let names: Vec<String> = self.stages.iter().filter_map(|s| s.name.clone()).collect();
        if names.is_empty() {
            "no stage is named; name one with `FROM <image> AS <name>`".into()
        } else {
            format!("stages: {}", names.join(", "))
        }
    }

    // ---- pass 1: stages and global ARGs ----

    fn split(&mut self, instructions: &[Instruction]) -> Result<Vec<Instruction>, Diagnostic> {
        let mut globals = Vec::new();
        for ins in instructions {
            match &ins.command {
                Command::From {
                    image,
                    stage_name,
                    platform,
                } => {
                    if let Some(name) = stage_name {
                        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                            && name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                        if !valid {
                            return Err(self
                                .err(ins.span, name, format!("invalid stage name {name:?}"))
                                .help("a stage name starts with a letter and contains only letters, digits, '-', '_' and '.'"));
                        }
                    }
                    self.stages.push(StageDef {
                        name: stage_name.clone(),
                        from: ins.clone(),
                        image_raw: image.clone(),
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

    fn find_target(&self) -> Result<usize, Diagnostic> {
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

    fn eval_globals(
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

    fn resolve_bases(&mut self) -> Result<(), Diagnostic> {
        for i in 0..self.stages.len() {
            let span = self.stages[i].from.span;
            let raw = self.stages[i].image_raw.clone();
            let name = self.expand(&raw, &self.globals, span)?;
            if name.is_empty() {
                return Err(self
                    .err(span, &raw, format!("base name ({raw}) should not be blank"))
                    .help("give the ARG used in FROM a default or pass it with --build-arg"));
            }
            let base = if let Some(j) = self.stages[..i].iter().position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
            }) {
                Base::Stage(j)
            } else if name.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else {
                match parse_image_ref(&name) {
                    Some(r) => Base::Image(r.normalized()),
                    None => {
                        return Err(self
                            .err(
                                span,
                                &raw,
                                format!("FROM {name:?}: not an earlier stage nor a valid image reference"),
                            )
                            .help("image references are lower-case, e.g. `alpine:3.20` or `registry:5000/team/app`"));
                    }
                }
            };
            let platform = match self.stages[i].platform_raw.clone() {
                None => match &base {
                    Base::Stage(j) => self.stages[*j].platform.clone(),
                    _ => self.opts.platform.clone(),
                },
                Some(raw) => {
                    let v = self.expand(&raw, &self.globals, span)?;
                    parse_platform(&v, &self.opts.platform).ok_or_else(|| {
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

    // ---- pass 2: dependencies and reachability ----

    fn resolve_from(&self, i: usize, name: &str, span: Span) -> Result<FromRef, Diagnostic> {
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
        if name.eq_ignore_ascii_case("scratch") {
            return Ok(FromRef::Scratch);
        }
        match parse_image_ref(name) {
            Some(r) => Ok(FromRef::Image(r.normalized())),
            None => Err(self
                .err(span, name, format!("unknown stage {name:?}"))
                .help(format!(
                    "it is neither a stage nor a valid image reference; {}",
                    self.stage_names()
                ))),
        }
    }

    /// What one instruction of stage `i` reads from besides its own stage.
    fn command_refs(&self, i: usize, ins: &Instruction) -> Result<Vec<FromRef>, Diagnostic> {
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

    fn resolve_refs(&mut self) -> Result<(), Diagnostic> {
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

    fn resolve_image(
        &mut self,
        reference: &str,
        platform: &Platform,
        span: Span,
    ) -> Result<Option<ResolvedImage>, Diagnostic> {
        let key = (reference.to_string(), platform.clone());
        if let Some(r) = self.images.get(&key) {
            return Ok(r.clone());
        }
        let r = self.resolver.resolve(reference, platform).map_err(|e| {
            self.err(
                span,
                "",
                format!("failed to resolve image {reference}: {e}"),
            )
            .help("check the image name and tag, and that the registry is reachable")
        })?;
        self.images.insert(key, r.clone());
        Ok(r)
    }

    /// The ONBUILD triggers a stage runs right after its FROM.
    fn base_triggers(&mut self, i: usize) -> Result<Vec<Instruction>, Diagnostic> {
        let from = self.stages[i].from.clone();
        let texts: Vec<String> = match self.stages[i].base.clone() {
            Base::Scratch => Vec::new(),
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

    fn reachable(&mut self, target: usize) -> Result<Vec<bool>, Diagnostic> {
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

    // ---- pass 3: lowering ----

    fn meta(&self, description: String, stage: usize, span: Span) -> VertexMeta {
        VertexMeta {
            description,
            stage: Some(self.stage_label(stage)),
            lines: Some((span.start_line, span.end_line)),
        }
    }

    fn context_vertex(&mut self) -> VertexId {
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

    fn scratch_vertex(&mut self) -> VertexId {
        self.graph.add(Op::Scratch, vec![], VertexMeta::default())
    }

    /// The vertex a `--from` reads.
    fn ref_vertex(
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

    fn lower_stage(
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

        let counted = |c: &Instruction| {
            matches!(
                c.command,
                Command::Copy(_) | Command::Add(_) | Command::Run { .. } | Command::Workdir(_)
            )
        };
        let mut steps = Steps {
            label: (!self.single_stage).then(|| self.stage_label(i)),
            index: 0,
            total: usize::from(matches!(base, Base::Image(_)))
                + commands.iter().filter(|c| counted(c)).count()
                + triggers.len(),
        };

        let mut st = match &base {
            Base::Stage(j) => {
                let mut s = results[*j]
                    .clone()
                    .expect("a base stage is lowered before the stages built on it");
                // Triggers do not carry over from a base stage (they fire in this one).
                s.config.config.on_build.clear();
                s.cmd_set = false;
                s
            }
            Base::Scratch => StageState {
                root: self.scratch_vertex(),
                config: empty_config(&platform),
                env: Vec::new(),
                args: Vec::new(),
                history: Vec::new(),
                platform: platform.clone(),
                cmd_set: false,
            },
            Base::Image(reference) => {
                let resolved = self.resolve_image(reference, &platform, from.span)?;
                let (digest, mut config) = match resolved {
                    Some(r) => (r.digest, r.config),
                    None => (None, empty_config(&platform)),
                };
                let shown = match &digest {
                    Some(d) => format!("{reference}@{d}"),
                    None => reference.clone(),
                };
                let description = format!("{}FROM {shown}", steps.next(false));
                let root = self.graph.add(
                    Op::Image {
                        reference: reference.clone(),
                        digest,
                        platform: platform.clone(),
                    },
                    vec![],
                    self.meta(description, i, from.span),
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
                }
            }
        };
        if st.config.config.env_get("PATH").is_none() {
            st.config.config.env_set("PATH", DEFAULT_PATH);
            if env_get(&st.env, "PATH").is_none() {
                env_set(&mut st.env, "PATH", DEFAULT_PATH);
            }
        }

        for t in &triggers {
            let t_refs = self.command_refs(i, t)?;
            self.dispatch(i, &mut st, t, &t_refs, true, &mut steps, results)?;
        }
        for (c, r) in commands.iter().zip(&refs) {
            self.dispatch(i, &mut st, c, r, false, &mut steps, results)?;
        }
        Ok(st)
    }

    fn commit(st: &mut StageState, created_by: String, vertex: Option<VertexId>) {
        st.history.push(HistoryStep {
            entry: History {
                created: None,
                created_by: Some(created_by),
                comment: Some(HISTORY_COMMENT.into()),
                empty_layer: vertex.is_none(),
            },
            vertex,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        i: usize,
        st: &mut StageState,
        ins: &Instruction,
        refs: &[FromRef],
        onbuild: bool,
        steps: &mut Steps,
        results: &[Option<StageState>],
    ) -> Result<(), Diagnostic> {
        let span = ins.span;
        match &ins.command {
            Command::From { .. } => {}
            Command::Arg(list) => {
                let mut parts = Vec::new();
                for (key, default) in list {
                    let value = match (self.opts.build_args.get(key), default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(self.expand(d, &st.env, span)?),
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
                Self::commit(st, format!("ARG {}", parts.join(" ")), None);
            }
            Command::Env(kvs) => {
                // All words expand with the variables from before this instruction.
                let mut pairs = Vec::new();
                for kv in kvs {
                    pairs.push((
                        self.expand(&kv.key, &st.env, span)?,
                        self.expand(&kv.value, &st.env, span)?,
                    ));
                }
                let mut msg = String::from("ENV");
                for (k, v) in pairs {
                    env_set(&mut st.env, &k, &v);
                    st.config.config.env_set(&k, &v);
                    msg.push_str(&format!(" {k}={v}"));
                }
                Self::commit(st, msg, None);
            }
            Command::Label(kvs) => {
                let mut msg = String::from("LABEL");
                let mut pairs = Vec::new();
                for kv in kvs {
                    pairs.push((
                        self.expand(&kv.key, &st.env, span)?,
                        self.expand(&kv.value, &st.env, span)?,
                    ));
                }
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    st.config.config.labels.insert(k, v);
                }
                Self::commit(st, msg, None);
            }
            Command::Maintainer(m) => {
                st.config.author = Some(m.clone());
                Self::commit(st, format!("MAINTAINER {m}"), None);
            }
            Command::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    for word in self.expand_words(p, &st.env, span)? {
                        let specs = parse_port_spec(&word).map_err(|e| {
                            self.err(span, p, format!("invalid EXPOSE port {word:?}: {e}"))
                                .help("write ports as PORT[/PROTO] or START-END[/PROTO], PROTO being tcp, udp or sctp")
                        })?;
                        all.extend(specs);
                    }
                }
                for p in &all {
                    st.config.config.exposed_ports.insert(p.clone(), Empty {});
                }
                Self::commit(st, format!("EXPOSE {}", go_list(&all)), None);
            }
            Command::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let e = self.expand(v, &st.env, span)?;
                    if e.is_empty() {
                        return Err(self
                            .err(span, "", "VOLUME specified can not be an empty string")
                            .help(
                                "give the volume's path inside the container, e.g. VOLUME /data",
                            ));
                    }
                    out.push(e);
                }
                for v in &out {
                    st.config.config.volumes.insert(v.clone(), Empty {});
                }
                Self::commit(st, format!("VOLUME {}", go_list(&out)), None);
            }
            Command::User(u) => {
                let u = self.expand(u, &st.env, span)?;
                st.config.config.user = u.clone();
                Self::commit(st, format!("USER {u}"), None);
            }
            Command::Workdir(p) => {
                let p = self.expand(p, &st.env, span)?;
                let cur = if st.config.config.working_dir.is_empty() {
                    "/".to_string()
                } else {
                    st.config.config.working_dir.clone()
                };
                let wd = resolve_path(&cur, &p, false);
                st.config.config.working_dir = wd.clone();
                if wd == "/" {
                    Self::commit(st, format!("WORKDIR {wd}"), None);
                } else {
                    let description = format!(
                        "{}{}",
                        steps.next(onbuild),
                        display_name(&ins.original, &st.env)
                    );
                    let v = self.graph.add(
                        Op::File(FileOp {
                            actions: vec![FileAction::Mkdir {
                                path: wd.clone(),
                                mode: 0o755,
                                make_parents: true,
                                owner: parse_owner(&st.config.config.user),
                            }],
                        }),
                        vec![st.root],
                        self.meta(description, i, span),
                    );
                    st.root = v;
                    Self::commit(st, format!("WORKDIR {wd}"), Some(v));
                }
            }
            Command::Stopsignal(s) => {
                let s = self.expand(s, &st.env, span)?;
                if !valid_signal(&s) {
                    return Err(self
                        .err(span, "", format!("invalid signal: {s}"))
                        .help("use a signal name such as SIGTERM or SIGQUIT, or its number"));
                }
                st.config.config.stop_signal = s.clone();
                Self::commit(st, format!("STOPSIGNAL {s}"), None);
            }
            Command::Healthcheck(h) => {
                let hc = self.healthcheck(h, span)?;
                let msg = format!(
                    "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                    go_list(&hc.test),
                    format_duration_ns(hc.interval),
                    format_duration_ns(hc.timeout),
                    format_duration_ns(hc.start_period),
                    format_duration_ns(hc.start_interval),
                    hc.retries
                );
                st.config.config.healthcheck = Some(hc);
                Self::commit(st, msg, None);
            }
            Command::Shell(sh) => {
                st.config.config.shell = sh.clone();
                Self::commit(st, format!("SHELL {}", go_list(sh)), None);
            }
            Command::Cmd(cl) => {
                let args = with_shell(&st.config, cl);
                st.config.config.cmd = Some(args.clone());
                st.config.config.args_escaped = true;
                st.cmd_set = true;
                Self::commit(st, format!("CMD {}", go_quoted_list(&args)), None);
            }
            Command::Entrypoint(cl) => {
                let args = with_shell(&st.config, cl);
                st.config.config.entrypoint = Some(args.clone());
                // An inherited CMD was written for the old ENTRYPOINT; one set in this stage stays.
                if !st.cmd_set {
                    st.config.config.cmd = None;
                }
                Self::commit(st, format!("ENTRYPOINT {}", go_quoted_list(&args)), None);
            }
            Command::Onbuild(text) => {
                self.check_trigger(text, span)?;
                st.config.config.on_build.push(text.clone());
            }
            Command::Run {
                command,
                heredocs,
                mounts,
                network,
                security,
            } => {
                let network = match network.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("default") => self.opts.default_network,
                    Some("host") => NetworkMode::Host,
                    Some("none") => NetworkMode::None,
                    Some(other) => {
                        return Err(self
                            .err(
                                span,
                                "--network",
                                format!("unsupported network mode {other:?}"),
                            )
                            .help("use --network=default, --network=none or --network=host"));
                    }
                };
                match security.as_deref() {
                    None | Some("sandbox") => {}
                    Some("insecure") => {
                        return Err(self
                            .err(span, "--security", "RUN --security=insecure is not supported yet")
                            .help("remove --security=insecure; RUN gets Docker's default capabilities"));
                    }
                    Some(other) => {
                        return Err(self
                            .err(
                                span,
                                "--security",
                                format!("unsupported security mode {other:?}"),
                            )
                            .help("use --security=sandbox"));
                    }
                }
                let mut inputs = vec![st.root];
                let mut exec_mounts = Vec::new();
                let mut name = ins.original.clone();
                let mut args: Vec<String> = match command {
                    CommandLine::Exec(v) => {
                        if !heredocs.is_empty() {
                            return Err(self
                                .err(span, "", "RUN in exec form cannot use heredocs")
                                .help("use the shell form: RUN <<EOF ... EOF"));
                        }
                        v.clone()
                    }
                    CommandLine::Shell(text) if heredocs.is_empty() => vec![text.clone()],
                    CommandLine::Shell(text) if is_single_heredoc(text) => {
                        let doc = &heredocs[0];
                        name.push_str(&format!(" ({})", summarize_heredoc(&doc.content)));
                        if doc.content.starts_with("#!") {
                            // A script with its own interpreter: mount it as a file and run it.
                            let scratch = self.scratch_vertex();
                            let file = self.graph.add(
                                Op::File(FileOp {
                                    actions: vec![FileAction::Copy(CopyAction {
                                        source: CopySource::Inline {
                                            data: doc.content.clone(),
                                            mode: 0o755,
                                        },
                                        dest: format!("/{}", doc.name),
                                        owner: None,
                                        mode: None,
                                        allow_wildcard: false,
                                        unpack_archive: false,
                                        exclude: vec![],
                                    })],
                                }),
                                vec![scratch],
                                VertexMeta {
                                    description: "[internal] preparing inline document".into(),
                                    stage: Some(self.stage_label(i)),
                                    lines: Some((span.start_line, span.end_line)),
                                },
                            );
                            inputs.push(file);
                            exec_mounts.push(ExecMount {
                                target: "/dev/pipes".into(),
                                kind: MountKind::Bind {
                                    input: inputs.len() - 1,
                                    source: "/".into(),
                                    readonly: true,
                                },
                            });
                            vec![format!("/dev/pipes/{}", doc.name)]
                        } else {
                            vec![doc.content.clone()]
                        }
                    }
                    CommandLine::Shell(text) => {
                        // `RUN cmd <<EOF`: hand the shell the command and its heredocs verbatim.
                        let mut script = text.clone();
                        for h in heredocs {
                            script.push('\n');
                            script.push_str(&h.content);
                            script.push_str(&h.name);
                        }
                        vec![script]
                    }
                };
                if let CommandLine::Shell(_) = command {
                    args = with_shell(&st.config, &CommandLine::Shell(args.join(" ")));
                }

                let cwd = if st.config.config.working_dir.is_empty() {
                    "/".to_string()
                } else {
                    st.config.config.working_dir.clone()
                };
                let mut ssh_count = 0;
                for (mi, spec) in mounts.iter().enumerate() {
                    let env = st.env.clone();
                    let mut expand = |w: &str| -> Result<String, String> {
                        self.lexer
                            .expand_word(w, &|k| env_get(&env, k))
                            .map_err(|e| e.message)
                    };
                    let m = parse_mount(spec, &mut expand).map_err(|e| {
                        self.err(span, "--mount", format!("invalid --mount: {e}"))
                            .help("write mounts as --mount=type=bind|cache|tmpfs|secret|ssh,target=PATH[,from=STAGE][,source=PATH]")
                    })?;
                    let _ = mi;
                    let target = if m.kind == MountType::Ssh && m.target.is_empty() {
                        ssh_count += 1;
                        format!("/run/buildkit/ssh_agent.{}", ssh_count - 1)
                    } else {
                        resolve_path(&cwd, &m.target, false)
                    };
                    if target == "/" {
                        return Err(self
                            .err(span, "--mount", "invalid mount target \"/\"")
                            .help("mount somewhere below /, e.g. target=/src"));
                    }
                    let from_vertex = match &m.from {
                        Some(f) => {
                            let r = self.resolve_from(i, f, span)?;
                            Some(self.ref_vertex(&r, results, &st.platform, span)?)
                        }
                        None => None,
                    };
                    let mut input_of = |v: VertexId| match inputs[1..].iter().position(|x| *x == v)
                    {
                        Some(p) => p + 1,
                        None => {
                            inputs.push(v);
                            inputs.len() - 1
                        }
                    };
                    let source = clean_abs(&m.source);
                    let kind = match m.kind {
                        MountType::Bind => {
                            let v = match from_vertex {
                                Some(v) => v,
                                None => self.context_vertex(),
                            };
                            MountKind::Bind {
                                input: input_of(v),
                                source,
                                readonly: m.readonly,
                            }
                        }
                        MountType::Cache => MountKind::Cache {
                            id: m.id.clone(),
                            sharing: m.sharing.clone().unwrap_or_else(|| "shared".into()),
                            from: from_vertex.map(&mut input_of),
                            source,
                            mode: m.mode.unwrap_or(0o755),
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                        },
                        MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
                        MountType::Secret => MountKind::Secret {
                            id: m.id.clone(),
                            required: m.required,
                            mode: m.mode.unwrap_or(0o400),
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                        },
                        MountType::Ssh => MountKind::Ssh {
                            id: m.id.clone(),
                            required: m.required,
                        },
                    };
                    exec_mounts.push(ExecMount { target, kind });
                }

                let mut env: BTreeMap<String, String> = st.env.iter().cloned().collect();
                for k in PROXY_ARGS {
                    if let Some(v) = self.opts.build_args.get(k) {
                        env.entry(k.to_string()).or_insert_with(|| v.clone());
                    }
                }
                let description =
                    format!("{}{}", steps.next(onbuild), display_name(&name, &st.env));
                let v = self.graph.add(
                    Op::Exec(ExecOp {
                        args: args.clone(),
                        env,
                        cwd,
                        user: st.config.config.user.clone(),
                        network,
                        mounts: exec_mounts,
                    }),
                    inputs,
                    self.meta(description, i, span),
                );
                st.root = v;
                let msg = format!("RUN {} # buildkit", run_history(&args, &st.args, &st.env));
                Self::commit(st, msg, Some(v));
            }
            Command::Copy(spec) | Command::Add(spec) => {
                let is_add = matches!(ins.command, Command::Add(_));
                self.dispatch_copy(i, st, ins, spec, is_add, refs, onbuild, steps, results)?;
            }
        }
        Ok(())
    }

    fn healthcheck(&self, h: &Healthcheck, span: Span) -> Result<HealthConfig, Diagnostic> {
        let dur = |flag: &str, v: &Option<String>| -> Result<i64, Diagnostic> {
            let Some(v) = v else { return Ok(0) };
            let ns = parse_duration_ns(v).ok_or_else(|| {
                self.err(span, flag, format!("invalid duration for --{flag}: {v:?}"))
                    .help("durations are written like 30s, 1m30s or 500ms")
            })?;
            if ns != 0 && ns < 1_000_000 {
                return Err(self
                    .err(span, flag, format!("--{flag} cannot be less than 1ms"))
                    .help("use 0s for the default, or at least 1ms"));
            }
            Ok(ns)
        };
        let retries = match &h.retries {
            None => 0,
            Some(r) => r.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                self.err(
                    span,
                    "retries",
                    format!("invalid value for --retries: {r:?}"),
                )
                .help("--retries takes a non-negative whole number")
            })?,
        };
        Ok(HealthConfig {
            test: h.test.clone(),
            interval: dur("interval", &h.interval)?,
            timeout: dur("timeout", &h.timeout)?,
            start_period: dur("start-period", &h.start_period)?,
            start_interval: dur("start-interval", &h.start_interval)?,
            retries,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_copy(
        &mut self,
        i: usize,
        st: &mut StageState,
        ins: &Instruction,
        spec: &CopySpec,
        is_add: bool,
        refs: &[FromRef],
        onbuild: bool,
        steps: &mut Steps,
        results: &[Option<StageState>],
    ) -> Result<(), Diagnostic> {
        let span = ins.span;
        let kw = if is_add { "ADD" } else { "COPY" };
        if spec.parents {
            return Err(self
                .err(
                    span,
                    "--parents",
                    format!("{kw} --parents is not supported yet"),
                )
                .help("copy each directory with its own COPY instead"));
        }
        let mut sources = Vec::new();
        for s in &spec.sources {
            // Heredoc markers are carried in `heredocs`, not copied as paths.
            if spec.heredocs.iter().any(|h| {
                s.trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(['"', '\''])
                    == h.name
                    && s.starts_with("<<")
            }) {
                continue;
            }
            let e = self.expand(s, &st.env, span)?;
            if is_url(&e) {
                let msg = if is_add {
                    "ADD from a URL is not supported yet"
                } else {
                    "source can't be a URL for COPY"
                };
                return Err(self
                    .err(span, s, msg)
                    .help("download the file in a RUN step (e.g. with wget or curl), or add it to the build context"));
            }
            sources.push(e);
        }
        if spec.checksum.is_some() {
            let msg = if is_add {
                "--checksum requires HTTP(S) or Git sources"
            } else {
                "--checksum can't be specified for COPY"
            };
            return Err(self.err(span, "--checksum", msg).help("remove --checksum"));
        }
        let dest_raw = self.expand(&spec.dest, &st.env, span)?;
        let cwd = if st.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            st.config.config.working_dir.clone()
        };
        let dest = resolve_path(&cwd, &dest_raw, true);
        let chown = match &spec.chown {
            Some(c) => Some(self.expand(c, &st.env, span)?),
            None => None,
        };
        let owner = chown.as_deref().and_then(parse_owner);
        let chmod = match &spec.chmod {
            Some(c) => Some(self.expand(c, &st.env, span)?),
            None => None,
        };
        let mode = match &chmod {
            None => None,
            Some(c) => Some(parse_chmod(c).ok_or_else(|| {
                self.err(
                    span,
                    "--chmod",
                    format!("invalid chmod parameter: '{c}'. it should be octal string and between 0 and 07777"),
                )
                .help("write the mode in octal, e.g. --chmod=755 or --chmod=0644")
            })?),
        };
        let mut exclude = Vec::new();
        for e in &spec.exclude {
            exclude.push(self.expand(e, &st.env, span)?);
        }

        let mut inputs = vec![st.root];
        let mut actions = Vec::new();
        if !sources.is_empty() {
            let src_vertex = match refs.first() {
                Some(r) => self.ref_vertex(r, results, &st.platform, span)?,
                None => self.context_vertex(),
            };
            inputs.push(src_vertex);
            for s in &sources {
                actions.push(FileAction::Copy(CopyAction {
                    source: CopySource::Input {
                        input: 1,
                        path: clean_abs(s),
                    },
                    dest: dest.clone(),
                    owner: owner.clone(),
                    mode,
                    allow_wildcard: true,
                    unpack_archive: is_add,
                    exclude: exclude.clone(),
                }));
            }
        }
        for h in &spec.heredocs {
            let data = if h.expand {
                expand_raw(&h.content, &|k| env_get(&st.env, k), false)
            } else {
                h.content.clone()
            };
            let file_dest = if dest.ends_with('/') {
                format!("{dest}{}", h.name)
            } else {
                dest.clone()
            };
            actions.push(FileAction::Copy(CopyAction {
                source: CopySource::Inline { data, mode: 0o644 },
                dest: file_dest,
                owner: owner.clone(),
                mode,
                allow_wildcard: false,
                unpack_archive: false,
                exclude: vec![],
            }));
        }
        if actions.is_empty() {
            return Err(self
                .err(
                    span,
                    "",
                    format!("{kw} needs at least one source and a destination"),
                )
                .help(format!("write it as {kw} <src>... <dest>")));
        }

        let description = format!(
            "{}{}",
            steps.next(onbuild),
            display_name(&ins.original, &st.env)
        );
        let v = self.graph.add(
            Op::File(FileOp { actions }),
            inputs,
            self.meta(description, i, span),
        );
        st.root = v;

        let mut msg = String::from(kw);
        if let Some(c) = &chown {
            msg.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            msg.push_str(&format!(" --chmod={c}"));
        }
        for s in &sources {
            msg.push(' ');
            msg.push_str(s);
        }
        for h in &spec.heredocs {
            msg.push_str(&format!(" <<{}", h.name));
        }
        msg.push_str(&format!(" {dest_raw} # buildkit"));
        Self::commit(st, msg, Some(v));
        Ok(())
    }
}

/// BuildKit's RUN history text: `|N K=V ... args` with the stage's ARGs.
fn run_history(args: &[String], declared: &[(String, Option<String>)], env: &Env) -> String {
    let mut parts: Vec<String> = declared
        .iter()
        .map(|(k, v)| {
            let v = env_get(env, k).or_else(|| v.clone()).unwrap_or_default();
            format!("{k}={v}")
        })
        .collect();
    if !parts.is_empty() {
        parts.insert(0, format!("|{}", parts.len()));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_history_lists_args_first() {
        let env = vec![("A".to_string(), "1".to_string())];
        let declared = vec![("A".to_string(), None), ("B".to_string(), None)];
        assert_eq!(
            run_history(
                &["/bin/sh".into(), "-c".into(), "make".into()],
                &declared,
                &env
            ),
            "|2 A=1 B= /bin/sh -c make"
        );
        assert_eq!(run_history(&["true".into()], &[], &env), "true");
    }

    #[test]
    fn display_name_expands_and_uppercases() {
        let env = vec![("V".to_string(), "1.2".to_string())];
        assert_eq!(display_name("run echo $V $U", &env), "RUN echo 1.2 $U");
        assert_eq!(display_name("copy . /app", &env), "COPY . /app");
    }

    #[test]
    fn steps_count_and_mark_onbuild() {
        let mut s = Steps {
            label: Some("build".into()),
            index: 0,
            total: 3,
        };
        assert_eq!(s.next(false), "[build 1/3] ");
        assert_eq!(s.next(true), "[build 2/3] ONBUILD ");
        let mut none = Steps {
            label: None,
            index: 0,
            total: 0,
        };
        assert_eq!(none.next(false), "");
    }
}
