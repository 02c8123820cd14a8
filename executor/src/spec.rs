//! What a caller asks of [`run`](crate::run): the rootfs layers, the command, its
//! user, network and mounts ([`RunSpec`]), what comes back ([`Stream`]), and how to stop
//! it early ([`CancelToken`]).

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
    /// Give the process rbuild's own stdin (`rbuild run -i`); otherwise it
    /// reads `/dev/null`, as every build step does.
    pub stdin: bool,
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
