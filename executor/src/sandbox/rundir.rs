//! The run's private directory on the host, removed when the run ends: the rootfs
//! mountpoint, the /etc files the container gets bound in (kept out of the layer), and
//! an empty lower layer for a scratch overlay.

use crate::error::ExecError;
use std::path::PathBuf;

/// The files bound onto `/etc/<name>`, in mount order.
const ETC_FILES: [&str; 3] = ["hosts", "resolv.conf", "hostname"];

/// `/etc/hosts`: localhost and the hostname, then each `--add-host` as `ADDRESS\tNAME`
/// (BuildKit's layout).
fn hosts_content(hostname: &str, extra: &[(String, String)]) -> String {
    let mut s =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, ip) in extra {
        s.push_str(&format!("{ip}\t{host}\n"));
    }
    s
}

pub(super) struct RunDir {
    tmp: tempfile::TempDir,
}

impl RunDir {
    /// Creates the dir with the rootfs mountpoint and the /etc files for `hostname` and
    /// the `extra_hosts` (resolv.conf is the host's).
    pub(super) fn create(
        hostname: &str,
        extra_hosts: &[(String, String)],
    ) -> Result<RunDir, ExecError> {
        let tmp = tempfile::Builder::new()
            .prefix("rbuild-run")
            .tempdir()
            .map_err(|e| ExecError::setup("creating run directory", e))?;
        let dir = RunDir { tmp };
        std::fs::create_dir(dir.rootfs())
            .map_err(|e| ExecError::setup("creating rootfs mountpoint", e))?;
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        let contents = [
            hosts_content(hostname, extra_hosts).into_bytes(),
            resolv,
            format!("{hostname}\n").into_bytes(),
        ];
        for (name, content) in ETC_FILES.iter().zip(contents) {
            std::fs::write(dir.tmp.path().join(name), content)
                .map_err(|e| ExecError::setup("writing /etc files", e))?;
        }
        Ok(dir)
    }

    /// Where the rootfs is mounted (in the child's mount namespace only).
    pub(super) fn rootfs(&self) -> PathBuf {
        self.tmp.path().join("rootfs")
    }

    /// The /etc files: (name under /etc, host file).
    pub(super) fn etc_files(&self) -> Vec<(&'static str, PathBuf)> {
        ETC_FILES
            .iter()
            .map(|name| (*name, self.tmp.path().join(name)))
            .collect()
    }

    /// Where the child mounts the tmpfs that holds the run's secret files (in its own
    /// mount namespace only; on the host the dir stays empty). Not created here.
    pub(super) fn secrets(&self) -> PathBuf {
        self.tmp.path().join("secrets")
    }

    /// An empty dir to stand in for the layers of a scratch rootfs.
    pub(super) fn scratch_layer(&self) -> Result<PathBuf, ExecError> {
        let empty = self.tmp.path().join("empty");
        std::fs::create_dir(&empty).map_err(|e| ExecError::setup("creating scratch layer", e))?;
        Ok(empty)
    }
}
