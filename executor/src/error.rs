//! The executor's errors: [`ExecError`] for a run or a mount, [`SpecError`] for a
//! [`RunSpec`](crate::RunSpec) that cannot be run as given (found before anything
//! starts), and [`SeccompError`] for a seccomp profile that cannot be compiled.

use crate::users::UserError;
use std::io;
use std::path::PathBuf;

/// Why a run (or a host-side overlay mount) failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cancelled")]
    Cancelled,
    #[error("invalid run spec: {0}")]
    InvalidSpec(#[from] SpecError),
    /// Building the container failed; `what` names the step (and its item).
    #[error("container setup failed: {what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The container was built but the command could not be started.
    #[error("exec {program:?}: {reason}")]
    Exec { program: String, reason: String },
    /// The command is for another platform and no emulator takes it.
    #[error(transparent)]
    Emulation(#[from] EmulationError),
}

impl ExecError {
    pub(crate) fn setup(what: impl Into<String>, source: io::Error) -> Self {
        ExecError::Setup {
            what: what.into(),
            source,
        }
    }
}

/// What is wrong with a run spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command")]
    NoCommand,
    #[error("string contains NUL: {0:?}")]
    Nul(String),
    #[error("path contains NUL: {}", .0.display())]
    NulPath(PathBuf),
    #[error("hostname too long: {0}")]
    HostnameTooLong(String),
    #[error("too many layers ({0}) for one overlay mount")]
    TooManyLayers(usize),
    #[error("too many mounts")]
    TooManyMounts,
    #[error("mount target must be an absolute path below /: {0:?}")]
    MountTarget(String),
    #[error("cgroup parent must stay inside the cgroup hierarchy: {0:?}")]
    CgroupParent(String),
    /// A secret for an environment variable holds a NUL byte (the value is not shown).
    #[error(
        "the secret for environment variable {0} contains a NUL byte; mount it as a file instead"
    )]
    SecretNul(String),
}

/// Why no seccomp filter could be made for a run.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Profile(#[from] ProfileError),
    #[error("seccomp: no filter for this architecture ({0}); rbuild filters x86_64 and aarch64")]
    Architecture(&'static str),
    #[error("seccomp: compiling the profile: {0}")]
    Compile(#[from] seccompiler::BackendError),
}

/// What is wrong in the seccomp profile (`executor/seccomp/default.toml`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProfileError {
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    #[error("unknown action {0:?}")]
    Action(String),
    #[error("unknown architecture {0:?}")]
    Architecture(String),
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("bad min-kernel {0:?}")]
    MinKernel(String),
    /// `op` is the comparison as the profile names it.
    #[error("{op} with mask {mask:?}: only masked-eq takes (and needs) a mask")]
    Mask { op: String, mask: Option<u64> },
    #[error("argument value {0:#x} does not fit 32 bits")]
    ArgumentValue(u64),
}

/// How to get emulators on Debian.
pub const INSTALL_HINT: &str = "apt-get install qemu-user-static binfmt-support";

/// Why a platform's binaries cannot run here (`sandbox/emulation.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    #[error(
        "a RUN for {platform} needs an emulator on this {host} machine, and none is registered in {dir} (binfmt_misc{mounted}): install QEMU user emulation with `{INSTALL_HINT}`{mount_hint}",
        dir = .dir.display(),
        mounted = if *.mounted { "" } else { " is not mounted there" },
        mount_hint = if *.mounted { "" } else { " and mount binfmt_misc: `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`" }
    )]
    Missing {
        platform: String,
        host: String,
        dir: PathBuf,
        mounted: bool,
    },
    #[error(
        "a RUN for {platform}: the binfmt_misc handler {name} ({interpreter}) is registered without the F (fix-binary) flag, so its interpreter cannot be found inside the container: register it with F (Debian's `{INSTALL_HINT}` does)"
    )]
    NotFixBinary {
        platform: String,
        name: String,
        interpreter: String,
    },
    #[error(
        "a RUN for {platform}: rbuild does not know the ELF machine of architecture {architecture:?}, so it cannot tell whether an emulator takes it"
    )]
    UnknownArchitecture {
        platform: String,
        architecture: String,
    },
}
