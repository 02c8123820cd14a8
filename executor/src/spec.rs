//! What a caller asks of [`run`](crate::run): the rootfs layers, the command, its
//! user, network, mounts, security mode, resource limits, cgroup, extra /etc/hosts lines
//! and /dev/shm size ([`RunSpec`]), what
//! comes back ([`Stream`] while it runs, [`RunExit`] at the end), and how to stop it
//! early ([`CancelToken`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The network a RUN step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Share the host's network namespace.
    Host,
    /// A private network namespace with only `lo`, which is up.
    None,
}

/// What is mounted at a [`Mount`]'s target.
#[derive(Debug, Clone)]
pub enum MountSource {
    /// A host file or directory (recursively bound).
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs; `size` in bytes.
    Tmpfs { size: Option<u64> },
    /// A file holding `value`, written by the child on a tmpfs private to its mount
    /// namespace (it never touches a disk and is gone with the container) and bound
    /// read-only, nosuid, nodev, noexec at the target, owned `uid:gid` with `mode`.
    Secret {
        value: SecretValue,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// A secret's bytes. Its `Debug` shows only the length, so a spec printed in a log or
/// an error never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Arc<[u8]>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

/// A mount of the caller's (`RUN --mount`), on top of the rootfs.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    pub source: MountSource,
}

/// One command to run in a container.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Layer snapshot dirs, BOTTOM first. Empty = scratch.
    pub lowerdirs: Vec<PathBuf>,
    /// Fresh empty dirs on the same filesystem; after the run `upperdir` holds
    /// exactly the diff (overlay form: whiteouts are 0/0 char devices).
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
    /// Final argv (shell form is the caller's job).
    pub args: Vec<String>,
    /// `K=V` entries. PATH and HOME are added when missing.
    pub env: Vec<String>,
    /// Working directory, created (root-owned, 0755) when missing.
    pub cwd: String,
    /// `""`, `name`, `uid`, `uid:gid`, `name:group`.
    pub user: String,
    pub network: Network,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    /// Environment variables whose values are secrets (`RUN --mount=type=secret,env=`):
    /// set over `env`, never shown.
    pub secret_env: Vec<(String, SecretValue)>,
    /// Give the process rbuild's own stdin (`rbuild run -i`); otherwise it
    /// reads `/dev/null`, as every build step does.
    pub stdin: bool,
    /// `RUN --security`: Docker's sandbox, or buildx's insecure entitlement.
    pub security: Security,
    /// Resource limits (`--ulimit`): each replaces the default for its resource
    /// ([`DEFAULT_RLIMITS`]); the others are inherited from rbuild.
    pub rlimits: Vec<Rlimit>,
    /// Where the run's own cgroup goes and what bounds it.
    pub cgroup: CgroupOptions,
    /// Lines added to the container's `/etc/hosts` (`--add-host`): (host name, address).
    pub extra_hosts: Vec<(String, String)>,
    /// Size of the `/dev/shm` tmpfs in bytes (`--shm-size`); `None`: docker's 64 MiB.
    pub shm_size: Option<u64>,
    /// The platform (`os/arch[/variant]`) the command is for when it is not the machine's:
    /// it runs through the binfmt_misc emulator registered for it, and fails before the
    /// container is made when there is none.
    pub platform: Option<String>,
}

/// docker's /dev/shm size when `--shm-size` is not given.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// How much of the sandbox a RUN step gets (`RUN --security=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Docker's default: its seccomp profile with `no_new_privs`, its capability set,
    /// masked and read-only kernel paths, read-only /sys.
    #[default]
    Sandbox,
    /// `RUN --security=insecure`, which the caller must have been allowed
    /// (`--allow security.insecure`): every capability rbuild holds, no seccomp filter,
    /// nothing masked, /sys writable, as buildx's insecure entitlement. The namespaces,
    /// rlimits and cgroup stay.
    Insecure,
}

/// A resource a [`Rlimit`] bounds: `setrlimit(2)`'s `RLIMIT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

// The kernel's numbers, as u32: libc's type for them differs between C libraries
// (unsigned on glibc, where the cast is a no-op; int on musl).
#[allow(clippy::unnecessary_cast)]
const RESOURCES: [(Resource, &str, u32); 16] = [
    (Resource::As, "as", libc::RLIMIT_AS as u32),
    (Resource::Core, "core", libc::RLIMIT_CORE as u32),
    (Resource::Cpu, "cpu", libc::RLIMIT_CPU as u32),
    (Resource::Data, "data", libc::RLIMIT_DATA as u32),
    (Resource::Fsize, "fsize", libc::RLIMIT_FSIZE as u32),
    (Resource::Locks, "locks", libc::RLIMIT_LOCKS as u32),
    (Resource::Memlock, "memlock", libc::RLIMIT_MEMLOCK as u32),
    (Resource::Msgqueue, "msgqueue", libc::RLIMIT_MSGQUEUE as u32),
    (Resource::Nice, "nice", libc::RLIMIT_NICE as u32),
    (Resource::Nofile, "nofile", libc::RLIMIT_NOFILE as u32),
    (Resource::Nproc, "nproc", libc::RLIMIT_NPROC as u32),
    (Resource::Rss, "rss", libc::RLIMIT_RSS as u32),
    (Resource::Rtprio, "rtprio", libc::RLIMIT_RTPRIO as u32),
    (Resource::Rttime, "rttime", libc::RLIMIT_RTTIME as u32),
    (
        Resource::Sigpending,
        "sigpending",
        libc::RLIMIT_SIGPENDING as u32,
    ),
    (Resource::Stack, "stack", libc::RLIMIT_STACK as u32),
];

impl Resource {
    /// The resource docker's `--ulimit` calls `name` (`nofile`, `nproc`, …).
    pub fn from_name(name: &str) -> Option<Resource> {
        RESOURCES
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
            .map(|(r, _, _)| *r)
    }

    /// Docker's name for it.
    pub fn name(self) -> &'static str {
        RESOURCES
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("", |(_, n, _)| n)
    }

    /// The resource with the kernel's number `raw`.
    pub(crate) fn from_raw(raw: u32) -> Option<Resource> {
        RESOURCES
            .iter()
            .find(|(_, _, r)| *r == raw)
            .map(|(r, _, _)| *r)
    }

    /// The kernel's number for it.
    pub(crate) fn raw(self) -> u32 {
        RESOURCES
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or(u32::MAX, |(_, _, raw)| *raw)
    }
}

/// A soft and hard limit on a [`Resource`]; [`Rlimit::UNLIMITED`] for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// `RLIM_INFINITY`.
    pub const UNLIMITED: u64 = u64::MAX;
}

/// containerd's default spec: 1024 open files, whatever rbuild itself may open. The
/// other limits are inherited, as there.
pub const DEFAULT_RLIMITS: [Rlimit; 1] = [Rlimit {
    resource: Resource::Nofile,
    soft: 1024,
    hard: 1024,
}];

/// The per-run cgroup: where it is made and what bounds it. Memory is always
/// accounted (the peak is in [`RunExit::peak_memory`]), never limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupOptions {
    /// The parent of the per-run cgroups, relative to each cgroup hierarchy's root
    /// (`--cgroup-parent`); created when missing.
    pub parent: String,
    /// The most processes and threads the step may have at once (`pids.max`); `None`
    /// for no limit.
    pub pids_limit: Option<u64>,
}

impl CgroupOptions {
    /// Where per-run cgroups go by default (as docker's `/docker`).
    pub const DEFAULT_PARENT: &str = "rbuild";
    /// Enough for parallel compilers and thread-heavy test runners, far from what takes
    /// a machine down; podman's default is 2048.
    pub const DEFAULT_PIDS_LIMIT: u64 = 4096;
}

impl Default for CgroupOptions {
    fn default() -> Self {
        CgroupOptions {
            parent: Self::DEFAULT_PARENT.to_string(),
            pids_limit: Some(Self::DEFAULT_PIDS_LIMIT),
        }
    }
}

/// How a run ended, and what its cgroup measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExit {
    /// The exit code; 128+signal when killed by a signal.
    pub code: i32,
    /// The most memory the step's processes used at once, page cache included, in
    /// bytes (`memory.peak` on cgroup v2, `memory.max_usage_in_bytes` on v1); `None`
    /// without a memory cgroup.
    pub peak_memory: Option<u64>,
    /// The step's pids limit, when a fork or clone failed because of it.
    pub pids_limit_reached: Option<u64>,
    /// Why the run had no cgroup, or only part of one (one line, for the caller to
    /// show once: it is the same for every run on this machine).
    pub warning: Option<String>,
    /// The step ran in a user namespace that maps only the user's own IDs (rootless
    /// without subordinate ranges): `chown` to other IDs fails there.
    pub own_ids_only: bool,
}

impl RunExit {
    /// What a failed step's error should add: that it hit its pids limit, or that it ran
    /// where other owners cannot be represented.
    pub fn limit_note(&self) -> Option<String> {
        self.pids_limit_reached
            .map(|n| {
                format!(
                    "pids limit reached: the step may run at most {n} processes and threads at once"
                )
            })
            .or_else(|| {
                self.own_ids_only.then(|| {
                    "rootless without /etc/subuid, /etc/subgid ranges: only root is mapped, so chown \
                     to other IDs (\"Invalid argument\") and users other than root fail here"
                        .to_string()
                })
            })
    }
}

/// Which output stream a chunk of the process's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Cancels a [`run`](crate::run) from another thread: its pid 1 gets SIGKILL and `run`
/// returns [`ExecError::Cancelled`](crate::ExecError::Cancelled).
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
