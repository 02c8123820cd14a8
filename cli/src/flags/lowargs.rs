//! Low-level arguments: the command line as clap reads it, docker's spellings, before any
//! check that needs more than one flag or the environment. Closed sets of values are
//! `ValueEnum`s, so a value outside the set never reaches a command. `hiargs` turns these
//! into the settings a command runs with.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rbuild",
    version,
    about = "Daemonless Dockerfile build engine",
    subcommand_negates_reqs = true
)]
pub struct LowArgs {
    /// Where images, layers and the build cache live [default: /var/lib/rbuild as root,
    /// else $XDG_DATA_HOME/rbuild or ~/.local/share/rbuild].
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    pub root: Option<PathBuf>,

    /// How builds get their privileges: `namespaces` as root; `rootless` in a user
    /// namespace of the calling user (its /etc/subuid, /etc/subgid ranges); `auto` picks
    /// by who runs rbuild.
    #[arg(
        long,
        global = true,
        env = "RBUILD_ISOLATION",
        value_enum,
        default_value_t = crate::shared::rootless::Isolation::Auto
    )]
    pub isolation: crate::shared::rootless::Isolation,

    /// A registry (`host[:port]`) spoken to over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry", global = true)]
    pub insecure_registries: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// `rbuild -t name .` is `rbuild build -t name .`.
    #[command(flatten)]
    pub build: BuildArgs,
}

// Each command's flags are a struct of their own, so one set of flags can serve several
// spellings of a command (docker's `image ls` and `images`).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// buildx's spellings: `buildx build` (= `build`), `buildx prune`, `buildx du`.
    Buildx {
        #[command(subcommand)]
        command: BuildxCommand,
    },
    /// docker's `builder` commands: `builder prune`.
    Builder {
        #[command(subcommand)]
        command: BuilderCommand,
    },
    /// docker's `image` commands: `image ls|inspect|rm|prune|tag|push|pull|save|load|history`.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// docker's `system` commands: `system df`, `system prune`.
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Import images from a `docker save` tarball, an OCI archive or an OCI layout (stdin
    /// when there is no -i).
    Load(LoadArgs),
    /// Write an image as a `docker save` tarball (to stdout without -o).
    Save(SaveArgs),
    /// Fetch an image from a registry into the local store.
    Pull(PullArgs),
    /// Upload an image of the local store to the registry its name says.
    Push(PushArgs),
    /// Give a stored image another name (`docker tag`).
    Tag(TagArgs),
    /// Log in to a registry (credentials go to the docker config.json).
    Login(LoginArgs),
    /// Remove a registry's credentials from the docker config.json.
    Logout(LogoutArgs),
    /// List the images in the local store.
    Images(ImagesArgs),
    /// Print images' details as a JSON array, in docker's shape.
    Inspect(InspectArgs),
    /// Show the history of an image: one row per step that made it.
    History(HistoryArgs),
    /// Remove images by name or ID (their blobs are freed by `prune`).
    Rmi(RmiArgs),
    /// Free blobs, snapshots and cache records no image needs (docker's `builder prune`).
    Prune(PruneArgs),
    /// Verify the store (every blob's digest, every record, index entry and snapshot);
    /// with --repair, drop what is broken.
    Check(CheckArgs),
    /// Run a command in a new container from an image (always removed afterwards).
    Run(RunArgs),
    /// Print rbuild's version.
    Version,
    /// Developer tools.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum BuildxCommand {
    /// Build an image from a Dockerfile (= `rbuild build`).
    #[command(visible_alias = "b")]
    Build(Box<BuildArgs>),
    /// Free build cache (= `rbuild prune`).
    Prune(PruneArgs),
    /// Show disk usage (= `rbuild system df`).
    Du,
}

#[derive(Subcommand, Debug)]
pub enum BuilderCommand {
    /// Free build cache (= `rbuild prune`).
    Prune(PruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show the space images and the build cache take.
    Df,
    /// Free what no image needs (= `rbuild prune`).
    Prune(PruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images (= `rbuild images`).
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Print images' details (= `rbuild inspect`).
    Inspect(InspectArgs),
    /// Remove images (= `rbuild rmi`).
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Free what no tagged image needs (= `rbuild prune`; `-a` is refused: it would remove
    /// every image).
    Prune(ImagePruneArgs),
    /// Name an image (= `rbuild tag`).
    Tag(TagArgs),
    /// Upload an image (= `rbuild push`).
    Push(PushArgs),
    /// Fetch an image (= `rbuild pull`).
    Pull(PullArgs),
    /// Write an image as a tarball (= `rbuild save`).
    Save(SaveArgs),
    /// Import images (= `rbuild load`).
    Load(LoadArgs),
    /// Show an image's history (= `rbuild history`).
    History(HistoryArgs),
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Print a Dockerfile's AST in BuildKit's dump format.
    Parse {
        /// The Dockerfile.
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The archive or layout directory; `-` or none: stdin.
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    /// Accepted for docker compatibility (rbuild shows no progress while loading).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// The file to write (default: stdout).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// The image (name or ID); one per archive.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The image (name or ID).
    pub image: String,
    /// Print only the IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not cut long values.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print with a template (`{{.CreatedBy}}`, `{{json .}}`).
    #[arg(long)]
    pub format: Option<String>,
    /// Print sizes in bytes and times as dates.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub human: bool,
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// docker's "every unused image": refused (rbuild would remove every image).
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt (rbuild never does).
    #[arg(short, long)]
    pub force: bool,
    /// Only what was unused for this long (`until=24h`).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image to fetch, e.g. `127.0.0.1:5000/base:1`.
    pub reference: String,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// The platform to pull from an image index (`linux/arm64`); default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// A local tag, e.g. `127.0.0.1:5000/app:1` (`rbuild tag` names an image so).
    pub reference: String,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// A stored image (name or ID).
    pub source: String,
    /// The new name, `[REGISTRY/]NAME[:TAG]`.
    pub target: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry host (default: Docker Hub).
    pub server: Option<String>,
    /// The user name (asked when not given).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// The password (prefer --password-stdin: a flag shows in `ps`).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry host (default: Docker Hub).
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only images whose name matches `REPOSITORY[:TAG]` (`*` matches within a path part).
    pub reference: Option<String>,
    /// Print only the image IDs, each once.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show all images, also the untagged platform images of image indexes (rbuild keeps
    /// no intermediate images).
    #[arg(short, long)]
    pub all: bool,
    /// Show whole image IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Only images matching `reference=PATTERN` or `dangling=true|false`.
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Print with a template: `{{.ID}}`, `{{.Repository}}`, `{{.Tag}}`, `{{.Digest}}`,
    /// `{{.CreatedAt}}`, `{{.CreatedSince}}`, `{{.Size}}`, `{{json .}}`; `table …` adds a header.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The images (names or IDs).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Print each image with a template (`{{.Id}}`, `{{json .Config.Cmd}}`).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only `image` is known.
    #[arg(long = "type", value_name = "image")]
    pub kind: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Names or IDs (a full or short image ID removes every name of that image).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Remove an ID with several names, and say nothing of names that are not there.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Drop the whole build cache, not only unreferenced data.
    #[arg(short, long)]
    pub all: bool,
    /// Only cache unused for this long (`until=24h`; Go durations, as docker).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Drop cache, least recently used first, until it takes at most SIZE (`10GB`).
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Do not prompt (rbuild never does; accepted for docker's command lines).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Repair: drop what is broken, rebuild what can be rebuilt, tidy leftovers.
    #[arg(long)]
    pub repair: bool,
}

/// `--progress`: how solver events are shown.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressFlag {
    // `tty` on a terminal, `plain` otherwise.
    #[default]
    Auto,
    Tty,
    Plain,
    Quiet,
    /// BuildKit's JSON event stream, a line per event.
    Rawjson,
}

/// `--format`: how `--dry-run` prints the graph.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum GraphFormat {
    #[default]
    Text,
    Dot,
    Json,
}

/// `--network`: the network namespace of RUN steps and containers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum NetworkFlag {
    // Docker's name for the default, which is `host` here.
    #[value(hide = true)]
    Default,
    #[default]
    Host,
    None,
}

/// `--pull` of `rbuild run`: when an image is fetched from its registry (docker's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum PullPolicy {
    /// Only when it is not in the local store.
    #[default]
    Missing,
    Always,
    Never,
}

#[derive(Args, Debug, Default)]
pub struct BuildArgs {
    /// The build context: a directory, or `-` for a tar (or a Dockerfile) on stdin.
    pub context: Option<PathBuf>,
    /// Name and optionally a tag (`name:tag`); may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile). `-` reads it from stdin.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// The stage to build; give it several times to build several stages in one
    /// graph (shared steps run once). `-t NAME` names the last one, `-t STAGE=NAME` any.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Do not use the build cache.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_cache: bool,
    /// Merge the layers above the base image into one (docker runs images of at most
    /// 125 layers); the history keeps an entry per step.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub squash: bool,
    /// Where to write the result: `type=oci|docker|tar|local,dest=PATH` (`dest=-`, or `-o -`
    /// for a tar of the root filesystem: stdout), `type=image|registry,name=NAME[,push=true]`.
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Write the image ID (config digest) to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result as JSON to this file (buildx's keys, and why each step
    /// missed the cache under `rbuild.cache.misses`).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Execute at most N steps at once (cache lookups do not count); 1 executes them one
    /// at a time in a fixed order.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallelism: Option<u32>,
    /// Print only the image ID.
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub quiet: bool,
    /// How steps are shown: `auto` (the live view on a terminal, else `plain`), `tty`,
    /// `plain`, `quiet`, `rawjson` (BuildKit's JSON, a line per event).
    #[arg(long, value_enum, env = "BUILDKIT_PROGRESS", default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
    /// Default network for RUN steps.
    #[arg(long, value_enum)]
    pub network: Option<NetworkFlag>,
    /// Allow an extra privilege (buildx's entitlements): `security.insecure` lets
    /// `RUN --security=insecure` run; `network.host` is accepted (RUN may always use
    /// the host network).
    #[arg(long = "allow", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE`, `id=ID,env=VARIABLE`
    /// (`type=file|env`); `id=ID` alone reads the variable ID when set, else the file ID.
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|env=VAR]")]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent at
    /// $SSH_AUTH_SOCK), `ID=SOCKET` or `ID=KEYFILE[,KEYFILE…]`.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEYFILE,…]")]
    pub ssh: Vec<String>,
    /// A named context for `FROM NAME`, `COPY --from=NAME` and `RUN --mount from=NAME`:
    /// `NAME=DIR`, `NAME=docker-image://REF` or `NAME=oci-layout://PATH[:TAG|@DIGEST]`.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Print the lowered build graph instead of building.
    #[arg(long)]
    pub dry_run: bool,
    /// Format of `--dry-run` output (text, dot, json) and of `--call` output (text, json).
    #[arg(long, value_enum)]
    pub format: Option<GraphFormat>,
    /// Evaluate the Dockerfile instead of building: `check` (build checks), `outline` (the
    /// build args and secrets the target uses), `targets` (the stages); `build` builds.
    /// Options: `,format=json`, `,ignorestatus=true`.
    #[arg(long, value_name = "FUNC[,format=json]")]
    pub call: Option<String>,
    /// Shorthand for `--call check`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub check: bool,
    /// The platforms to build for, comma-separated (`linux/amd64,linux/arm64`; `local` is
    /// this machine's). A RUN for another architecture than the machine's runs through the
    /// QEMU emulator registered with binfmt_misc; several platforms make an image index.
    #[arg(long = "platform")]
    pub platforms: Vec<String>,
    /// Accepted for docker compatibility (there is no daemon to keep containers).
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Accepted for docker compatibility.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub force_rm: bool,
    /// Pull base images again even when they are in the local store.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub pull: bool,
    /// Export the build cache: `type=local,dest=DIR[,mode=min|max]`,
    /// `type=registry,ref=REF[,mode=min|max]` or `type=inline`.
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Import build cache (lazily): `type=local,src=DIR`, `type=registry,ref=REF` or `REF`.
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Push every `-t` name to its registry after the build.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub push: bool,
    /// Run the built image (the last `--target`) once it is built; rbuild exits with its
    /// exit code. A command replacing CMD goes after `--`: `--run -- CMD… CONTEXT`.
    #[arg(long)]
    pub run: bool,
    /// Set a label on the image (`KEY=VALUE`), after the Dockerfile's LABELs.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Annotate the image manifest: `KEY=VALUE` or `manifest:KEY=VALUE`.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Add a line to /etc/hosts of RUN steps (`NAME:IP` or `NAME=IP`).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// A resource limit of RUN steps (`NAME=SOFT[:HARD]`, e.g. `nofile=1024:4096`).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Size of /dev/shm in RUN steps (e.g. `128m`, `1g`; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// The cgroup the RUN steps' cgroups are made under (default `rbuild`).
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Run these stages' RUN steps (and what depends on them) without the cache.
    #[arg(long = "no-cache-filter", value_delimiter = ',', value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Accepted for docker compatibility: built images always go to the local store.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub load: bool,
    /// Provenance attestation: only `false` is accepted (rbuild writes none).
    #[arg(long, value_name = "false")]
    pub provenance: Option<String>,
    /// SBOM attestation: only `false` is accepted (rbuild writes none).
    #[arg(long, value_name = "false")]
    pub sbom: Option<String>,
    /// Attestations: only `type=provenance|sbom,disabled=true` is accepted.
    #[arg(long = "attest", value_name = "type=…,disabled=true")]
    pub attest: Vec<String>,
    /// After `--`: the `--run` command, then the context if not given before `--`.
    #[arg(last = true, allow_hyphen_values = true, value_name = "CMD")]
    pub run_command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Accepted because docker users type it: runs are always ephemeral.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (`K=V`, or `K` to copy it from rbuild's environment).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// When to fetch the image from its registry.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Replace the image's ENTRYPOINT (its CMD is dropped too); `""` for none.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The user (and group) the command runs as: `NAME|UID[:GROUP|GID]`.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The working directory of the command.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The network: `host` (the default here, unlike docker's private bridge) or `none`.
    #[arg(long, value_enum, default_value_t = NetworkFlag::Host)]
    pub network: NetworkFlag,
    /// Feed rbuild's stdin to the process (without it, the process reads /dev/null).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Accepted for docker compatibility; no pseudo-terminal is allocated.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// docker's -d: refused (no daemon keeps a container running).
    #[arg(short = 'd', long, hide = true)]
    pub detach: bool,
    /// docker's -v: refused (no volumes or bind mounts yet).
    #[arg(short = 'v', long = "volume", hide = true)]
    pub volumes: Vec<String>,
    /// docker's -p: refused (the host network needs none).
    #[arg(short = 'p', long = "publish", hide = true)]
    pub publish: Vec<String>,
    /// docker's --name: refused (containers are not kept).
    #[arg(long, hide = true)]
    pub name: Option<String>,
    /// The platform of an image index to run (`linux/arm64`), emulated when it is not
    /// this machine's; default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
    /// The image (name or ID).
    pub image: String,
    /// The command (replaces the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
