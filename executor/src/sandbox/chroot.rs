//! `--isolation=chroot`: where no namespace can be made (no CAP_SYS_ADMIN and user
//! namespaces denied, as in a default `docker run`), a RUN step is a process chrooted into
//! the plain copy of its rootfs the copying snapshotter made, as the step's user. Nothing
//! is mounted: no /proc, no fresh /dev, no RUN `--mount`; the host's network, pids,
//! hostname and IPC are shared; no cgroup, no seccomp filter, capabilities as rbuild's.
//! The layer is still the diff of that copy, so the image is the same.

use super::rootfs::Root;
use crate::error::{ExecError, SpecError};
use crate::spec::{CancelToken, Network, RunExit, RunSpec, Stream};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

static CHROOT: AtomicBool = AtomicBool::new(false);

/// From now on, RUN steps of this process use chroot isolation (set once by the CLI).
pub fn use_chroot_isolation() {
    CHROOT.store(true, Ordering::Relaxed);
}

/// Whether RUN steps use chroot isolation (they then need the copying snapshotter).
pub fn chroot_isolation() -> bool {
    CHROOT.load(Ordering::Relaxed)
}

/// The one line said once per build.
const NOTE: &str = "chroot isolation: RUN steps share the host's network, processes and hostname, and get no /proc, /dev, cgroup, seccomp filter or RUN --mount";

/// Runs `spec` chrooted into `rootfs`.
pub(super) fn run(
    rootfs: &Path,
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunExit, ExecError> {
    if let Some(m) = spec.mounts.first() {
        return Err(ExecError::setup(
            format!("RUN --mount target={}", m.target),
            std::io::Error::other("chroot isolation mounts nothing: run as root or rootless"),
        ));
    }
    if spec.network == Network::None {
        return Err(ExecError::setup(
            "--network=none",
            std::io::Error::other(
                "chroot isolation has no network namespace to cut it off: run as root or rootless",
            ),
        ));
    }
    let user = Root::new(spec, Some(rootfs)).resolve_user(&spec.user)?;
    let env = super::process::final_env(&spec.env, &user.home);
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or_default();
    let program = find_program(rootfs, &spec.args[0], path);
    let cwd = Path::new("/").join(spec.cwd.trim_start_matches('/'));
    std::fs::create_dir_all(rootfs.join(cwd.strip_prefix("/").unwrap_or(&cwd))).map_err(|e| {
        ExecError::setup(format!("making the working directory {}", cwd.display()), e)
    })?;
    let nul = |s: &str| CString::new(s).map_err(|_| SpecError::Nul(s.to_string()));
    let (c_root, c_cwd) = (
        nul(&rootfs.to_string_lossy())?,
        nul(&cwd.to_string_lossy())?,
    );
    let (uid, gid, groups) = (user.uid, user.gid, user.supplementary.clone());
    let mut cmd = Command::new(&program);
    cmd.arg0(&spec.args[0])
        .args(&spec.args[1..])
        .env_clear()
        .envs(env.iter().filter_map(|e| e.split_once('=')))
        .stdin(if spec.stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::chroot(c_root.as_ptr()))?;
            check(libc::chdir(c_cwd.as_ptr()))?;
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))
        });
    }
    let mut child = cmd.spawn().map_err(|e| ExecError::Exec {
        program: spec.args[0].clone(),
        reason: e.to_string(),
    })?;
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let readers: Vec<_> = [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn Read + Send>),
        ),
    ]
    .into_iter()
    .filter_map(|(s, r)| r.map(|r| (s, r)))
    .map(|(stream, mut r)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || tx.send((stream, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((stream, data)) => output(stream, &data),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if cancel.is_cancelled() && !killed {
            // SAFETY: kill of the step's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            killed = true;
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| ExecError::setup("waiting for the step", e))?;
    if killed {
        return Err(ExecError::Cancelled);
    }
    Ok(RunExit {
        code: status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1),
        peak_memory: None,
        pids_limit_reached: None,
        own_ids_only: false,
        warning: Some(NOTE.to_string()),
    })
}

/// The program's path inside the root: as given with a `/`, else the first PATH entry
/// that holds it (looked up without following links, which point inside the root).
fn find_program(rootfs: &Path, arg0: &str, path: &str) -> PathBuf {
    if arg0.contains('/') {
        return PathBuf::from(arg0);
    }
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(arg0))
        .find(|p| std::fs::symlink_metadata(rootfs.join(p.strip_prefix("/").unwrap_or(p))).is_ok())
        .unwrap_or_else(|| PathBuf::from(arg0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.path().join("bin/sh")).unwrap();
        let f = |a| find_program(root.path(), a, "/usr/bin:/bin");
        assert_eq!(f("sh"), PathBuf::from("/bin/sh"));
        assert_eq!(f("./x"), PathBuf::from("./x"));
        assert_eq!(f("none"), PathBuf::from("none"));
    }
}
