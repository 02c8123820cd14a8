//! Command-line surface: docker-compatible flags, parsed with clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rbuild",
    version,
    about = "Daemonless Dockerfile build engine",
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Where images, layers and the build cache live.
    #[arg(
        long,
        global = true,
        env = "RBUILD_ROOT",
        default_value = "/var/lib/rbuild"
    )]
    pub root: PathBuf,

    /// A registry (`host[:port]`) spoken to over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry", global = true)]
    pub insecure_registries: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// `rbuild -t name .` is `rbuild build -t name .`.
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    /// Import images from a `docker save` tarball, an OCI archive or an OCI layout.
    Load {
        /// The archive or layout directory.
        #[arg(short = 'i', long = "input")]
        input: PathBuf,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Fetch an image from a registry into the local store.
    Pull {
        reference: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Upload an image of the local store to the registry its name says.
    Push {
        /// A local tag, e.g. `127.0.0.1:5000/app:1` (`rbuild tag` names an image so).
        reference: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Give a stored image another name (`docker tag`).
    Tag { source: String, target: String },
    /// Log in to a registry (credentials go to the docker config.json).
    Login {
        /// The registry host (default: Docker Hub).
        server: Option<String>,
        #[arg(short = 'u', long)]
        username: Option<String>,
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a registry's credentials from the docker config.json.
    Logout { server: Option<String> },
    /// List the images in the local store.
    Images {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print an image's manifest digest, config and layers as JSON.
    Inspect { image: String },
    /// Remove image tags (blobs are freed by `prune`).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Free blobs, snapshots and cache records no image needs.
    Prune {
        /// Drop the whole build cache, not only unreferenced data.
        #[arg(short, long)]
        all: bool,
    },
    /// Run a command in a new container from an image (always removed afterwards).
    Run(RunArgs),
    /// Developer tools.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Print a Dockerfile's AST in BuildKit's dump format.
    Parse { file: PathBuf },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Progress {
    #[default]
    Auto,
    Tty,
    Plain,
    Quiet,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum GraphFormat {
    #[default]
    Text,
    Dot,
    Json,
}

#[derive(Args, Debug, Default)]
pub struct BuildArgs {
    /// The build context directory.
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
    #[arg(long)]
    pub no_cache: bool,
    /// Where to write the result: `type=oci|docker|tar|local,dest=PATH`.
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Write the image ID (config digest) to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Default network for RUN steps (`host` or `none`).
    #[arg(long)]
    pub network: Option<String>,
    /// Print the lowered build graph instead of building.
    #[arg(long)]
    pub dry_run: bool,
    /// Format of `--dry-run` output.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
    /// Accepted for docker compatibility; the host platform is the only one.
    #[arg(long)]
    pub platform: Option<String>,
    /// Accepted for docker compatibility (there is no daemon to keep containers).
    #[arg(long, hide = true)]
    pub rm: bool,
    /// Accepted for docker compatibility.
    #[arg(long, hide = true)]
    pub force_rm: bool,
    /// Pull base images again even when they are in the local store.
    #[arg(long)]
    pub pull: bool,
    /// Export the build cache: `type=local,dest=DIR[,mode=min|max]`,
    /// `type=registry,ref=REF[,mode=min|max]` or `type=inline`.
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Import build cache (lazily): `type=local,src=DIR`, `type=registry,ref=REF` or `REF`.
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Push every `-t` name to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// Run the built image (the last `--target`) once it is built; rbuild exits with its
    /// exit code. A command replacing CMD goes after `--`: `--run -- CMD… CONTEXT`.
    #[arg(long)]
    pub run: bool,
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
    #[arg(long, value_enum, default_value_t = crate::run::PullPolicy::Missing)]
    pub pull: crate::run::PullPolicy,
    /// Replace the image's ENTRYPOINT (its CMD is dropped too); `""` for none.
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Feed rbuild's stdin to the process (without it, the process reads /dev/null).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Accepted for docker compatibility; no pseudo-terminal is allocated.
    #[arg(short = 't', long)]
    pub tty: bool,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
