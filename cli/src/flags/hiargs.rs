//! High-level arguments: the settings each command runs with, made once from the low-level
//! (clap) arguments. Everything that can be checked without doing the work is checked
//! here, flags that depend on each other are settled here (`-q` over `--progress`, `-t`
//! among `--target`s, the `--run` command and the context after `--`), and values are
//! typed, so a command never looks at a flag's text.

use super::cache_spec::CacheFlags;
use super::call_spec::{self, Call};
pub use super::image_spec::{Attestations, ProvenanceMode};
use super::lowargs::{self, BuildArgs, LowArgs, NetworkFlag, ProgressFlag, RunArgs};
use super::output_spec::{self, Output};
use super::{image_cmds, image_spec, platform, run_settings, secret_spec, targets, vars};
use crate::shared::progress;
use anyhow::{Result, bail};
use rbuild_graph::{NetworkMode, Platform, RunSettings};
use rbuild_solver::secrets::SecretSpec;
use rbuild_solver::ssh::SshSpec;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

pub use super::image_cmds::{History, Images, Inspect, Load, Rmi, Save};
pub use super::lowargs::{GraphFormat, PullPolicy};

/// What rbuild was asked to do.
#[derive(Debug)]
pub struct HiArgs {
    pub global: Global,
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug)]
pub struct Global {
    /// `--root`: where the store lives.
    pub root: PathBuf,
    /// `--isolation`: as root, or in a user namespace (`shared::rootless`).
    pub isolation: crate::shared::rootless::Isolation,
    /// `--insecure-registry` hosts.
    pub insecure_registries: Vec<String>,
}

/// A command and its settings.
#[derive(Debug)]
pub enum Command {
    Build(Box<Build>),
    Load(Load),
    Pull(Pull),
    Push(Push),
    Tag(Tag),
    Login(Login),
    Logout(Logout),
    Save(Save),
    Images(Images),
    Inspect(Inspect),
    History(History),
    Rmi(Rmi),
    /// `system df`.
    DiskUsage,
    Version,
    Prune(Prune),
    Check(Check),
    Run(Box<Run>),
    DebugParse(DebugParse),
}

/// Where the Dockerfile is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dockerfile {
    /// `-f -`.
    Stdin,
    /// `-f PATH`, or `CONTEXT/Dockerfile`.
    File(PathBuf),
}

/// `rbuild build`.
#[derive(Debug)]
pub struct Build {
    /// The context directory as given (checked when it is read).
    pub context: PathBuf,
    pub dockerfile: Dockerfile,
    /// `--target`s in order; empty: the last stage.
    pub targets: Vec<String>,
    /// The image names of each target built (one entry per target, the last stage alone
    /// when there is no `--target`).
    pub target_tags: Vec<Vec<String>>,
    pub build_args: BTreeMap<String, String>,
    /// The network of RUN steps (and of `--run`).
    pub network: NetworkMode,
    /// `--allow security.insecure`: `RUN --security=insecure` may run.
    pub allow_insecure: bool,
    /// `--secret`s as given; where values come from is settled when the build starts.
    pub secrets: Vec<SecretSpec>,
    /// `--ssh` agents as given; set up when the build starts.
    pub ssh: Vec<SshSpec>,
    /// `--build-context`s as given; read when the build starts.
    pub build_contexts: Vec<super::context_spec::BuildContext>,
    pub no_cache: bool,
    /// `--squash`: each target's layers above its base image merged into one.
    pub squash: bool,
    /// `--provenance`, `--sbom`, `--attest`: attestations in the image's index.
    pub attestations: Attestations,
    /// `--pull`: resolve base images in their registry even when they are local.
    pub always_pull: bool,
    /// Push every name of every target.
    pub push: bool,
    /// `--run`: run the last target, with this command (empty: the image's CMD).
    pub run: Option<Vec<String>>,
    /// `--dry-run`, and in which format.
    pub dry_run: Option<GraphFormat>,
    /// `--call` / `--check`: print what the Dockerfile says instead of building it.
    pub call: Option<Call>,
    pub progress: progress::Mode,
    /// `-q`: no notes on stderr, the image IDs on stdout.
    pub quiet: bool,
    pub cache: CacheFlags,
    /// `--output`s, in order, checked (their `name=`s are in `target_tags` too).
    pub outputs: Vec<Output>,
    pub iidfile: Option<PathBuf>,
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
    /// `--max-parallelism` (at least 1).
    pub max_parallelism: Option<usize>,
    /// `SOURCE_DATE_EPOCH` (a build arg, or the environment variable): Unix seconds for
    /// every time the build writes.
    pub epoch: Option<i64>,
    /// `--label`s, set on every target's config after the Dockerfile's.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`s of every target's manifest.
    pub annotations: BTreeMap<String, String>,
    /// `--add-host`, `--ulimit`, `--shm-size`, `--cgroup-parent`: every RUN's.
    pub run_settings: RunSettings,
    /// `--platform`s in the order given, without repeats; empty: the machine's alone.
    pub platforms: Vec<Platform>,
    /// `--no-cache-filter`: stages whose RUN steps skip the cache.
    pub no_cache_filter: Vec<String>,
}

/// `rbuild run`.
#[derive(Debug)]
pub struct Run {
    pub image: String,
    /// Replaces the image's CMD when not empty.
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    /// `-e` entries as `K=V`.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub network: NetworkMode,
    /// `-i`: the container reads rbuild's stdin.
    pub stdin: bool,
    /// `-t`: accepted, no pseudo-terminal.
    pub tty: bool,
    pub pull: PullPolicy,
    /// `--platform`: which image of an index; the machine's when not given.
    pub platform: Platform,
}

/// `rbuild pull`.
#[derive(Debug)]
pub struct Pull {
    pub reference: String,
    pub quiet: bool,
    pub progress: progress::Mode,
    /// `--platform`: which image of an index; the machine's when not given.
    pub platform: Platform,
}

/// `rbuild push`.
#[derive(Debug)]
pub struct Push {
    pub reference: String,
    pub quiet: bool,
    pub progress: progress::Mode,
}

/// `rbuild tag`.
#[derive(Debug)]
pub struct Tag {
    pub source: String,
    pub target: String,
}

/// Where `rbuild login` gets the password.
#[derive(Debug, PartialEq, Eq)]
pub enum Password {
    /// `-p`.
    Given(String),
    /// `--password-stdin`.
    Stdin,
    /// Asked on the terminal.
    Prompt,
}

/// `rbuild login`.
#[derive(Debug)]
pub struct Login {
    /// The registry host; Docker Hub when none is named.
    pub server: String,
    pub username: Option<String>,
    pub password: Password,
}

/// `rbuild logout`.
#[derive(Debug)]
pub struct Logout {
    pub server: String,
}

/// `rbuild prune`.
#[derive(Debug)]
pub struct Prune {
    pub options: rbuild_cache::PruneOptions,
}

/// `rbuild check`.
#[derive(Debug)]
pub struct Check {
    pub repair: bool,
}

/// `rbuild debug parse`.
#[derive(Debug)]
pub struct DebugParse {
    pub file: PathBuf,
}

impl HiArgs {
    /// Settles and checks the low-level arguments.
    pub fn from_low(low: LowArgs) -> Result<HiArgs> {
        use lowargs::Command as C;
        let Some(command) = low.command else {
            // `rbuild [build flags] CONTEXT` is a build: the flags clap read beside the
            // (absent) subcommand are the build's.
            return hi(
                low.root,
                low.isolation,
                low.insecure_registries,
                Command::Build(Box::new(build(low.build)?)),
            );
        };
        let command = match command {
            C::Build(args)
            | C::Buildx {
                command: lowargs::BuildxCommand::Build(args),
            } => Command::Build(Box::new(build(*args)?)),
            C::Buildx {
                command: lowargs::BuildxCommand::Prune(a),
            }
            | C::Builder {
                command: lowargs::BuilderCommand::Prune(a),
            }
            | C::System {
                command: lowargs::SystemCommand::Prune(a),
            }
            | C::Prune(a) => Command::Prune(prune(a)?),
            C::Buildx {
                command: lowargs::BuildxCommand::Du,
            }
            | C::System {
                command: lowargs::SystemCommand::Df,
            } => Command::DiskUsage,
            C::Image { command } => image_command(command)?,
            C::Run(args) => Command::Run(Box::new(run(args)?)),
            C::Load(a) => Command::Load(image_cmds::load(a)),
            C::Save(a) => Command::Save(image_cmds::save(a, std::io::stdout().is_terminal())?),
            C::Pull(a) => pull(a)?,
            C::Push(a) => push(a),
            C::Tag(a) => tag(a)?,
            C::Login(a) => Command::Login(Login {
                password: password(a.password, a.password_stdin)?,
                server: server_or_hub(a.server),
                username: a.username,
            }),
            C::Logout(a) => Command::Logout(Logout {
                server: server_or_hub(a.server),
            }),
            C::Images(a) => Command::Images(image_cmds::images(a)?),
            C::Inspect(a) => Command::Inspect(image_cmds::inspect(a)?),
            C::History(a) => Command::History(image_cmds::history(a)),
            C::Rmi(a) => Command::Rmi(image_cmds::rmi(a)),
            C::Check(a) => Command::Check(Check { repair: a.repair }),
            C::Version => Command::Version,
            C::Debug {
                command: lowargs::DebugCommand::Parse { file },
            } => Command::DebugParse(DebugParse { file }),
        };
        hi(low.root, low.isolation, low.insecure_registries, command)
    }
}

/// The global flags settled: without `--root`, the store is root's or the user's own
/// (`shared::rootless::default_root`).
fn hi(
    root: Option<PathBuf>,
    isolation: crate::shared::rootless::Isolation,
    insecure_registries: Vec<String>,
    command: Command,
) -> Result<HiArgs> {
    Ok(HiArgs {
        global: Global {
            root: root.map_or_else(crate::shared::rootless::default_root, Ok)?,
            isolation,
            insecure_registries,
        },
        command,
    })
}

/// docker's `image …` spellings, as the commands they are.
fn image_command(command: lowargs::ImageCommand) -> Result<Command> {
    use lowargs::ImageCommand as I;
    Ok(match command {
        I::Ls(a) => Command::Images(image_cmds::images(a)?),
        I::Inspect(a) => Command::Inspect(image_cmds::inspect(a)?),
        I::Rm(a) => Command::Rmi(image_cmds::rmi(a)),
        I::Prune(a) => Command::Prune(prune(image_cmds::image_prune(a)?)?),
        I::Tag(a) => tag(a)?,
        I::Push(a) => push(a),
        I::Pull(a) => pull(a)?,
        I::Save(a) => Command::Save(image_cmds::save(a, std::io::stdout().is_terminal())?),
        I::Load(a) => Command::Load(image_cmds::load(a)),
        I::History(a) => Command::History(image_cmds::history(a)),
    })
}

fn pull(a: lowargs::PullArgs) -> Result<Command> {
    Ok(Command::Pull(Pull {
        progress: plain_unless(a.quiet),
        platform: one_platform(a.platform.as_deref())?,
        reference: a.reference,
        quiet: a.quiet,
    }))
}

fn push(a: lowargs::PushArgs) -> Command {
    Command::Push(Push {
        progress: plain_unless(a.quiet),
        reference: a.reference,
        quiet: a.quiet,
    })
}

/// `tag SOURCE TARGET`: the new name is checked before the store is opened.
fn tag(a: lowargs::TagArgs) -> Result<Command> {
    if let Err(e) = rbuild_cache::registry::reference::Reference::parse(&a.target) {
        bail!("cannot tag {} as {}: {e}", a.source, a.target);
    }
    Ok(Command::Tag(Tag {
        source: a.source,
        target: a.target,
    }))
}

/// `rbuild prune`'s flags, as `docker builder prune` takes them.
fn prune(a: lowargs::PruneArgs) -> Result<Prune> {
    Ok(Prune {
        options: image_cmds::prune_options(a)?,
    })
}

fn build(mut args: BuildArgs) -> Result<Build> {
    if !args.run && !args.run_command.is_empty() {
        bail!("a command after `--` is only for --run: rbuild build --run [-- CMD…] CONTEXT");
    }
    let (context, run_command) =
        targets::split_run_command(args.context.take(), std::mem::take(&mut args.run_command));
    // Which stages are built: each --target, or the last stage.
    let stages: Vec<Option<String>> = if args.targets.is_empty() {
        vec![None]
    } else {
        args.targets.iter().cloned().map(Some).collect()
    };
    let mut target_tags = targets::assign_tags(&args.tags, &stages)?;
    let outputs = args
        .outputs
        .iter()
        .map(|o| output_spec::parse_output(o))
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    output_spec::check_stdout(
        &outputs,
        args.quiet,
        args.run,
        std::io::stdout().is_terminal(),
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(last) = target_tags.last_mut() {
        last.extend(outputs.iter().flat_map(|o| o.names.iter().cloned()));
    }
    args.push |= outputs.iter().any(|o| o.push);
    let context = context.unwrap_or_else(|| PathBuf::from("."));
    let dockerfile = match args.file {
        Some(f) if f.as_os_str() == "-" => Dockerfile::Stdin,
        Some(f) => Dockerfile::File(f),
        None => Dockerfile::File(context.join("Dockerfile")),
    };
    let unnamed = target_tags.iter().all(Vec::is_empty);
    if args.push && unnamed && !args.dry_run && args.call.is_none() && !args.check {
        bail!("--push needs a name to push to: add -t REGISTRY/NAME:TAG");
    }
    let format = args.format.unwrap_or_default();
    if args.format.is_some() && !args.dry_run && args.call.is_none() && !args.check {
        bail!(
            "--format shapes what --dry-run or --call prints, and a build prints neither: add --dry-run (the graph) or --call outline|targets|check, or leave out --format"
        );
    }
    let call = call_spec::settle(args.call.as_deref(), args.check, format)?;
    if call.is_some() && args.dry_run {
        bail!("--call and --dry-run both say what to print instead of building: give one of them");
    }
    let host = Platform::host();
    // `--platform a,b` and `--platform a --platform b` alike, as buildx reads them.
    let platforms = match args.platforms.as_slice() {
        [] => Vec::new(),
        given => platform::parse_platforms(&given.join(","), &host)?,
    };
    let attestations = image_spec::attestations(
        args.provenance.as_deref(),
        args.sbom.as_deref(),
        &args.attest,
    )?;
    let labels = image_spec::labels(&args.labels)?;
    let annotations = image_spec::annotations(&args.annotations, |p| {
        platform::check_platform(p, &host, &platforms)
    })?;
    let run_settings = run_settings::parse(&run_settings::RunFlags {
        add_hosts: &args.add_hosts,
        ulimits: &args.ulimits,
        shm_size: args.shm_size.as_deref(),
        cgroup_parent: args.cgroup_parent.as_deref(),
    })?;
    let cache = CacheFlags::parse(&args.cache_to, &args.cache_from)?;
    let mut build_args = vars::parse_build_args(&args.build_args)?;
    let epoch = vars::source_date_epoch(&mut build_args, std::env::var("SOURCE_DATE_EPOCH").ok())?;
    let allow_insecure = platform::entitlements(&args.allow)?;
    let progress = if args.quiet {
        progress::Mode::Quiet
    } else {
        progress_mode(args.progress, std::io::stderr().is_terminal())?
    };
    Ok(Build {
        context,
        dockerfile,
        targets: args.targets,
        target_tags,
        build_args,
        network: network(args.network.unwrap_or_default()),
        allow_insecure,
        secrets: secret_spec::parse_secrets(&args.secrets)?,
        ssh: secret_spec::parse_ssh(&args.ssh),
        build_contexts: super::context_spec::parse_build_contexts(&args.build_contexts)?,
        no_cache: args.no_cache,
        squash: args.squash,
        attestations,
        always_pull: args.pull,
        push: args.push,
        run: args.run.then_some(run_command),
        dry_run: args.dry_run.then_some(format),
        call,
        progress,
        quiet: args.quiet,
        cache,
        outputs,
        iidfile: args.iidfile,
        metadata_file: args.metadata_file,
        max_parallelism: args.max_parallelism.map(|n| n as usize),
        epoch,
        labels,
        annotations,
        run_settings,
        platforms,
        no_cache_filter: args.no_cache_filter,
    })
}

fn run(args: RunArgs) -> Result<Run> {
    if args.detach {
        bail!(
            "run -d: rbuild runs a container in the foreground only (no daemon keeps it); put it in the background with your shell (rbuild run IMAGE &)"
        );
    }
    if let Some(v) = args.volumes.first() {
        bail!(
            "run -v {v}: volumes and bind mounts are not supported; COPY the files into the image (or RUN --mount=type=bind in a build)"
        );
    }
    if let Some(p) = args.publish.first() {
        bail!(
            "run -p {p}: not needed with --network host (the default here): the container's ports are the host's"
        );
    }
    if let Some(n) = &args.name {
        bail!(
            "run --name {n}: rbuild keeps no containers, so they have no names; leave out --name"
        );
    }
    Ok(Run {
        env: vars::resolve_env(&args.env)?,
        network: network(args.network),
        image: args.image,
        command: args.command,
        entrypoint: args.entrypoint,
        user: args.user,
        workdir: args.workdir,
        stdin: args.interactive,
        tty: args.tty,
        pull: args.pull,
        platform: one_platform(args.platform.as_deref())?,
    })
}

/// `--platform` of `pull` and `run`: one platform; the machine's when not given.
fn one_platform(value: Option<&str>) -> Result<Platform> {
    let host = Platform::host();
    let Some(v) = value else {
        return Ok(host);
    };
    match platform::parse_platforms(v, &host)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("--platform {v}: name one platform here (os/arch[/variant])"),
    }
}

fn network(flag: NetworkFlag) -> NetworkMode {
    match flag {
        NetworkFlag::Default | NetworkFlag::Host => NetworkMode::Host,
        NetworkFlag::None => NetworkMode::None,
    }
}

/// `--progress` (or `BUILDKIT_PROGRESS`) on a stderr that is a terminal or not: `tty`
/// where there is none prints plain lines rather than nothing.
fn progress_mode(flag: ProgressFlag, terminal: bool) -> Result<progress::Mode> {
    Ok(match flag {
        ProgressFlag::Auto | ProgressFlag::Tty if terminal => progress::Mode::Tty,
        ProgressFlag::Auto | ProgressFlag::Tty | ProgressFlag::Plain => progress::Mode::Plain,
        ProgressFlag::Quiet => progress::Mode::Quiet,
        ProgressFlag::Rawjson => progress::Mode::RawJson,
    })
}

/// `pull` and `push` print plain progress, or nothing with `-q`.
fn plain_unless(quiet: bool) -> progress::Mode {
    if quiet {
        progress::Mode::Quiet
    } else {
        progress::Mode::Plain
    }
}

/// Docker Hub when no server is named.
fn server_or_hub(server: Option<String>) -> String {
    server.unwrap_or_else(|| "docker.io".to_string())
}

fn password(given: Option<String>, from_stdin: bool) -> Result<Password> {
    Ok(match (given, from_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (None, true) => Password::Stdin,
        (Some(p), false) => Password::Given(p),
        (None, false) => Password::Prompt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn hi(args: &[&str]) -> Result<HiArgs> {
        let low = LowArgs::try_parse_from(std::iter::once("rbuild").chain(args.iter().copied()))?;
        HiArgs::from_low(low)
    }

    fn build_of(args: &[&str]) -> Build {
        match hi(args).unwrap().command {
            Command::Build(b) => *b,
            other => panic!("{args:?}: not a build: {other:?}"),
        }
    }

    #[test]
    fn a_bare_context_is_a_build_with_docker_defaults() {
        let b = build_of(&["-t", "app:1", "ctx"]);
        assert_eq!(b.context, PathBuf::from("ctx"));
        assert_eq!(b.dockerfile, Dockerfile::File("ctx/Dockerfile".into()));
        assert_eq!(b.target_tags, [vec!["app:1".to_string()]]);
        assert_eq!(b.network, NetworkMode::Host);
        assert!(b.run.is_none() && b.dry_run.is_none() && !b.quiet && !b.squash);
        assert!(build_of(&["build", "--squash", "."]).squash);
        let b = build_of(&["build"]);
        assert_eq!(b.context, PathBuf::from("."));
        assert_eq!(b.dockerfile, Dockerfile::File("./Dockerfile".into()));
    }

    #[test]
    fn docker_spellings_of_switches_lists_and_hosts() {
        // `--flag=BOOL` as docker and buildx take it; a bare flag is true, and never takes
        // the next word as its value (the context stays the context).
        let b = build_of(&[
            "build",
            "--pull=false",
            "--no-cache=true",
            "--push=false",
            ".",
        ]);
        assert!(!b.always_pull && b.no_cache && !b.push);
        let b = build_of(&["build", "--pull", "--load", "ctx"]);
        assert!(b.always_pull);
        assert_eq!(b.context, PathBuf::from("ctx"));
        assert!(hi(&["build", "--pull=maybe", "."]).is_err());
        // --platform given twice is a list, as `a,b` is.
        let twice = build_of(&[
            "build",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            ".",
        ]);
        assert_eq!(
            twice.platforms,
            build_of(&["build", "--platform", "linux/amd64,linux/arm64", "."]).platforms
        );
        assert_eq!(twice.platforms.len(), 2);
        // --add-host a:IP,b:IP is two entries.
        let b = build_of(&["build", "--add-host", "a:10.0.0.1,b:10.0.0.2", "."]);
        assert_eq!(b.run_settings.extra_hosts.len(), 2);
    }

    #[test]
    fn allow_security_insecure_and_nothing_unknown() {
        assert!(!build_of(&["build", "."]).allow_insecure);
        assert!(build_of(&["build", "--allow", "security.insecure", "."]).allow_insecure);
        let b = build_of(&["build", "--allow=network.host,security.insecure", "."]);
        assert!(b.allow_insecure);
        assert!(!build_of(&["build", "--allow", "network.host", "."]).allow_insecure);
        let e = hi(&["build", "--allow", "device", "."]).err().unwrap();
        assert!(e.to_string().contains("unknown entitlement"), "{e}");
    }

    #[test]
    fn build_flags_are_settled_once() {
        let b = build_of(&[
            "build",
            "-q",
            "--progress=plain",
            "--network=none",
            "-f",
            "-",
            "--dry-run",
            "--format",
            "dot",
            "--run",
            "--",
            "echo",
            "hi",
            "ctx",
        ]);
        assert_eq!(b.progress, progress::Mode::Quiet, "-q wins over --progress");
        assert_eq!(b.network, NetworkMode::None);
        assert_eq!(b.dockerfile, Dockerfile::Stdin);
        assert_eq!(b.dry_run, Some(GraphFormat::Dot));
        assert_eq!(b.run, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(b.context, PathBuf::from("ctx"));
        let e = hi(&["build", "-o", "type=bogus,dest=x", "."]).unwrap_err();
        assert!(e.to_string().contains("type=bogus is not supported"), "{e}");
        let e = hi(&["build", "--format", "json", "."]).unwrap_err();
        assert!(e.to_string().contains("add --dry-run"), "{e}");
        let b = build_of(&[
            "build",
            "-t",
            "a:1",
            "-o",
            "type=image,name=b:2,push=true",
            ".",
        ]);
        assert_eq!(b.target_tags, [vec!["a:1".to_string(), "b:2".to_string()]]);
        assert!(b.push);
        assert_eq!(
            build_of(&["build", "--network", "default"]).network,
            NetworkMode::Host
        );
        assert_eq!(
            build_of(&["build", "--progress", "plain"]).progress,
            progress::Mode::Plain
        );
        assert_eq!(
            progress_mode(ProgressFlag::Tty, false).unwrap(),
            progress::Mode::Plain
        );
        assert_eq!(
            progress_mode(ProgressFlag::Auto, true).unwrap(),
            progress::Mode::Tty
        );
        assert_eq!(
            progress_mode(ProgressFlag::Rawjson, true).unwrap(),
            progress::Mode::RawJson
        );
    }

    #[test]
    fn build_platforms_are_settled() {
        let two = platform::parse_platforms("linux/arm64,linux/amd64", &Platform::host()).unwrap();
        let b = build_of(&["build", "--platform", "linux/arm64,linux/amd64", "."]);
        assert_eq!(b.platforms, two);
    }

    #[test]
    fn run_and_login_settings() {
        let Command::Run(r) = hi(&["run", "-i", "--network", "none", "img", "sh", "-c", "x"])
            .unwrap()
            .command
        else {
            panic!("not a run")
        };
        assert_eq!(r.network, NetworkMode::None);
        assert!(r.stdin);
        assert_eq!(r.command, ["sh", "-c", "x"]);
        assert_eq!(r.pull, PullPolicy::Missing);

        let Command::Login(l) = hi(&["login", "--password-stdin", "-u", "me"])
            .unwrap()
            .command
        else {
            panic!("not a login")
        };
        assert_eq!(
            (l.server.as_str(), l.password),
            ("docker.io", Password::Stdin)
        );
        let e = hi(&["login", "-p", "x", "--password-stdin", "r:5000"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--password and --password-stdin are mutually exclusive"
        );
        let Command::Logout(l) = hi(&["logout", "r:1"]).unwrap().command else {
            panic!("not a logout")
        };
        assert_eq!(l.server, "r:1");
    }
}
