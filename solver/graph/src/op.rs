//! The operations of the graph and what each carries. Everything here is part of a
//! vertex's cache key (serde JSON of the op), so a field added here changes keys.

use crate::platform::Platform;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Host,
    None,
}

/// `RUN --security`: Docker's sandbox, or buildx's insecure entitlement (every
/// capability, no seccomp filter, no masked paths), which the build must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

impl SecurityMode {
    pub fn is_sandbox(&self) -> bool {
        *self == SecurityMode::Sandbox
    }
}

/// `uid[:gid]` or `name[:group]`, resolved inside the target rootfs when used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What a RUN mount is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A bind of (a subpath of) another vertex's result; `input` indexes `Vertex::inputs`.
    Bind {
        input: usize,
        source: String,
        readonly: bool,
    },
    /// A persistent cache directory, kept across builds, never part of a layer.
    Cache {
        id: String,
        sharing: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<usize>,
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        size: Option<u64>,
    },
    /// A build secret (`--secret`), by id only: its value is never part of the graph.
    /// The file is at the mount's target; an empty target (`env=` without `target=`)
    /// means no file, only the environment variable.
    Secret {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        /// `env=NAME`: the value is also the step's environment variable NAME.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<String>,
    },
    /// An SSH agent socket (`--ssh`), by id only. `mode`, `uid` and `gid` are the
    /// socket's; left out of the encoding at their defaults (0600, root), so the keys of
    /// steps written before they existed stay the same.
    Ssh {
        id: String,
        required: bool,
        #[serde(
            default = "ssh_socket_mode",
            skip_serializing_if = "is_ssh_socket_mode"
        )]
        mode: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        uid: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        gid: u32,
    },
}

/// The mode of an SSH agent socket in a step unless `mode=` says otherwise (BuildKit's).
pub const SSH_SOCKET_MODE: u32 = 0o600;

fn ssh_socket_mode() -> u32 {
    SSH_SOCKET_MODE
}

fn is_ssh_socket_mode(m: &u32) -> bool {
    *m == SSH_SOCKET_MODE
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecMount {
    pub target: String,
    pub kind: MountKind,
}

/// A RUN: input 0 is the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// The process environment (image ENV plus build ARGs), sorted by key; shared with
    /// the other RUNs of the stage where it did not change.
    pub env: crate::env::EnvMap,
    pub cwd: String,
    /// As written in USER (`name`, `uid`, `uid:gid`, …); empty means root.
    pub user: String,
    pub network: NetworkMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ExecMount>,
    /// Left out of the encoding when it is the sandbox, so the cache keys of every RUN
    /// written before this field existed stay the same.
    #[serde(default, skip_serializing_if = "SecurityMode::is_sandbox")]
    pub security: SecurityMode,
    /// What the build's flags set for every RUN; left out of the encoding when none is
    /// given, so the keys of builds without them stay the same.
    #[serde(default, skip_serializing_if = "RunSettings::is_empty")]
    pub settings: RunSettings,
    /// The platform the command is for when it is not the build platform (the machine's):
    /// the executor runs it through the emulator registered for it. Left out of the
    /// encoding when none, so native steps keep their keys; the key names the platform,
    /// never the emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// What `rbuild build` flags set for every RUN of the build (`--add-host`, `--ulimit`,
/// `--shm-size`, `--cgroup-parent`). Part of each RUN's key, as BuildKit keeps them in
/// its exec op's meta: a step run with other limits or hosts is another result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct RunSettings {
    /// Lines added to `/etc/hosts`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostEntry>,
    /// Resource limits replacing the defaults, by docker's names (`nofile`, `nproc`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Size of `/dev/shm` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// The parent of the RUN steps' cgroups, relative to each hierarchy's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
}

impl RunSettings {
    pub fn is_empty(&self) -> bool {
        *self == RunSettings::default()
    }
}

/// An `/etc/hosts` line: `ip` for `host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostEntry {
    pub host: String,
    pub ip: String,
}

/// A resource limit (`--ulimit name=soft:hard`); `u64::MAX` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Where a file action reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CopySource {
    /// A path or wildcard pattern in `Vertex::inputs[input]`'s result.
    Input { input: usize, path: String },
    /// Inline bytes (a heredoc).
    Inline { data: String, mode: u32 },
    /// `ADD http(s)://…`: the body of `url`, written as `filename` (the URL path's last
    /// segment) into the destination directory, or as the destination itself. The content
    /// digest (and `Last-Modified`) join the key when the step runs; `checksum`
    /// (`sha256:…`) pins it, and is checked before anything is written.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
        filename: String,
    },
    /// `ADD <git URL>[#ref[:subdir]]`: the tree of `reference` (a branch, tag or commit;
    /// none: the remote's HEAD) at `subdir`, copied into the destination. The commit the
    /// reference names joins the key when the step runs; `checksum` pins that commit.
    Git {
        remote: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subdir: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep_git_dir: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyAction {
    pub source: CopySource,
    /// Absolute destination inside input 0's filesystem. A trailing `/` means "into this directory".
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// `--chmod` as parsed octal mode bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// `--chmod` as a symbolic mode (`u+x`, `go-w`, `a+X`; see [`crate::chmod`]), applied
    /// to each entry's own mode. Set instead of `mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
    /// `COPY --parents`: the pattern (relative, may hold wildcards and `**`) of what below
    /// each match of the source path is copied, keeping its path under the destination
    /// directory (the part of the source after a `/./` pivot, or all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<String>,
    /// Wildcards in `source` are expanded; no match is an error unless allowed.
    pub allow_wildcard: bool,
    /// ADD: a local tar archive is extracted into `dest`.
    pub unpack_archive: bool,
    /// Patterns (`--exclude`) not copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    Copy(CopyAction),
    Mkdir {
        path: String,
        mode: u32,
        make_parents: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Owner>,
    },
    Rm {
        path: String,
        allow_not_found: bool,
    },
}

/// COPY / ADD / WORKDIR: input 0 is the filesystem changed; others are copy sources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileOp {
    pub actions: Vec<FileAction>,
}

/// One history entry of an exported image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExportStep {
    pub entry: crate::image::History,
    /// Indexes `Vertex::inputs`: the step whose diff over its input 0 is this entry's
    /// layer. None: a metadata-only step or an entry inherited from the base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<usize>,
}

/// Writes input 0's filesystem as an image of the store: config (history, rootfs,
/// created), manifest, tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExportOp {
    /// The stage's config; export fills in rootfs, history and created.
    pub config: crate::image::ImageConfig,
    pub history: Vec<ExportStep>,
    pub tags: Vec<String>,
    /// `--cache-to type=inline`: the cache records of the image's own steps go into its
    /// config, so the image is written once, with them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline_cache: bool,
    /// `--squash`: the layers above the base image are merged into one; the history keeps
    /// an entry per step, empty but for the last, which carries the merged layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub squash: bool,
    /// `--annotation`s of the image manifest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Runs a throwaway container of input 0's image (an export or an image source), with
/// rbuild's stdin/stdout/stderr; its exit status is the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct RunOp {
    /// Replaces the image's CMD (not its ENTRYPOINT) when not empty.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces ENTRYPOINT and drops CMD; `""` means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// `K=V` entries over the image's Env.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub network: NetworkMode,
    /// Feed rbuild's stdin to the process; otherwise it reads /dev/null.
    pub stdin: bool,
    /// What to call the image in messages.
    pub name: String,
}

/// One operation of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The empty filesystem.
    Scratch,
    /// An image's filesystem (and config). `digest` pins the manifest when known.
    Image {
        reference: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        platform: Platform,
    },
    /// A local directory (the build context); only files the consumers select are read.
    Local {
        name: String,
        /// `.dockerignore` patterns, in order (with `!` exceptions).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
    },
    Exec(ExecOp),
    File(FileOp),
    /// Input 0's layer chain with the layers of the other inputs on top, as they are
    /// (`COPY --link`: a copy made on scratch, then placed over the stage without looking
    /// at it, so its layer is the same whatever is below).
    Merge,
    /// Actions (never cached, run every time they are reached): export, push, run.
    Export(Box<ExportOp>),
    /// Sends input 0's image (an export or a local image source) to `reference`.
    Push {
        reference: String,
    },
    Run(RunOp),
}

impl Op {
    /// A short name for listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Scratch => "scratch",
            Op::Image { .. } => "image",
            Op::Local { .. } => "local",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge => "merge",
            Op::Export(_) => "export",
            Op::Push { .. } => "push",
            Op::Run(_) => "run",
        }
    }

    /// Whether this op acts on the world (writes an image, pushes, runs a container)
    /// rather than computing a filesystem: its result is never looked up in or written to
    /// the cache.
    pub fn is_action(&self) -> bool {
        matches!(self, Op::Export(_) | Op::Push { .. } | Op::Run(_))
    }
}
