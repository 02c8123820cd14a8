//! The executor's errors: [`ExecError`] for a run or a mount, and [`SpecError`] for a
//! [`RunSpec`](crate::RunSpec) that cannot be run as given (found before anything starts).

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
    /// The container was built but the command could not be started.
    #[error("exec {program:?}: {reason}")]
    Exec { program: String, reason: String },
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
}
