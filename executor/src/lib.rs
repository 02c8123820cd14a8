//! Runs RUN steps in Linux namespaces over an overlay rootfs.
//!
//! How [`run`] works, in order:
//! 1. The parent resolves USER against the layer stack without mounting it
//!    (overlay lookup emulated: whiteouts, opaque dirs, symlinks inside the
//!    root), writes hosts/resolv.conf/hostname into a private temp dir and
//!    builds every string, path and fd number the child will need.
//! 2. A raw `clone` (fork-like) creates the child in new mount, pid, ipc, uts
//!    (and net for [`Network::None`]) namespaces. Until `execve` the child runs
//!    only raw syscalls, so forking from a multi-threaded tokio process is safe.
//! 3. The child makes `/` private, mounts the overlay *inside its own mount
//!    namespace* (layers passed as `/proc/self/fd/N`, so 200+ layers fit in
//!    the one-page option limit), chroots into it to create missing
//!    mountpoints and mount /proc, /dev, /sys (ro), the /etc files and the
//!    caller's mounts with image symlinks contained, masks kernel paths as
//!    Docker does, then pivot_roots and drops the host's mounts.
//! 4. Capabilities are cut to Docker's default set, groups/gid/uid set, and
//!    the command becomes pid 1. When it exits the kernel kills everything
//!    else in its pid namespace and the mount namespace (overlay included)
//!    goes with it; nothing needs unmounting on the host.
//! 5. The parent streams stdout/stderr, SIGKILLs pid 1 on cancel, reaps it,
//!    and removes from the upper dir the empty mountpoints it had to create
//!    (and parents copied up only for them), so the upper dir is the diff.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod overlay;
mod rootpath;
mod sandbox;
pub mod users;

pub use overlay::{OverlayMount, overlay_supported};
pub use rootpath::resolve_in_root;
pub use sandbox::{run, run_in_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Share the host's network namespace.
    Host,
    /// A private network namespace with only `lo`, which is up.
    None,
}

#[derive(Debug, Clone)]
pub enum MountSource {
    /// A host file or directory (recursively bound).
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs; `size` in bytes.
    Tmpfs { size: Option<u64> },
}

#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    pub source: MountSource,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Cancels a [`run`] from another thread: its pid 1 gets SIGKILL and `run`
/// returns [`ExecError::Cancelled`].
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

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cancelled")]
    Cancelled,
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    #[error("container setup failed: {what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    User(#[from] users::UserError),
    #[error("exec {program:?}: {reason}")]
    Exec { program: String, reason: String },
}

impl ExecError {
    pub(crate) fn setup(what: impl Into<String>, source: std::io::Error) -> Self {
        ExecError::Setup {
            what: what.into(),
            source,
        }
    }
}
