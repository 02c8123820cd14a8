//! The parent's side of a run: it forks the child into its namespaces, pumps its
//! output until it is gone (SIGKILL on cancel), reaps it, and turns what the child
//! reported into the run's result.

use super::child;
use super::namespaces;
use super::plan::Plan;
use super::process::ChildFds;
use super::protocol::{Report, Step};
use crate::error::ExecError;
use crate::spec::{CancelToken, Resource, Rlimit, RunSpec, Stream};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn pipe() -> Result<(OwnedFd, OwnedFd), ExecError> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ExecError::setup(
            "creating pipe",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: freshly created fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pidfd for `pid` (None on kernels without pidfd_open).
fn pidfd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open on a process of ours; -1 when unavailable.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    // SAFETY: a fresh fd we own when non-negative.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Kills and reaps the child if the parent leaves early (error or panic).
struct ChildGuard {
    pid: libc::pid_t,
    reaped: bool,
}

impl ChildGuard {
    fn wait(&mut self) -> io::Result<libc::c_int> {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    /// Ok(None) while running. ECHILD means someone else in this process
    /// reaped it (a `waitpid(-1)` elsewhere): an error, not a hang.
    fn try_wait(&mut self) -> io::Result<Option<libc::c_int>> {
        let mut status = 0;
        // SAFETY: non-blocking wait for our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.reaped = true;
            return Ok(Some(status));
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ECHILD) {
                self.reaped = true;
                return Err(e);
            }
        }
        Ok(None)
    }

    fn kill(&self) {
        // SAFETY: signalling our own (unreaped, so still valid) child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// A started container: its pid 1 and the read ends of stdout, stderr and status.
pub(super) struct Running {
    child: ChildGuard,
    pipes: [OwnedFd; 3],
}

/// Forks the child into `namespaces` (`CLONE_NEW*`); it sets up the container as
/// `plan` says and execs.
pub(super) fn spawn(plan: &Plan, namespaces: libc::c_int) -> Result<Running, ExecError> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (st_r, st_w) = pipe()?;
    // SAFETY: getpid has no preconditions.
    let self_pidfd = pidfd(unsafe { libc::getpid() });
    let fds = ChildFds {
        parent_pidfd: self_pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
        stdout_w: out_w.as_raw_fd(),
        stderr_w: err_w.as_raw_fd(),
        status_w: st_w.as_raw_fd(),
    };
    // SAFETY: the child goes straight into `child::main`, which keeps to raw syscalls
    // and never returns.
    let pid = match unsafe { namespaces::clone(namespaces) } {
        // SAFETY: we are the child of the raw clone above.
        Ok(None) => unsafe { child::main(plan, &fds) },
        Ok(Some(pid)) => pid,
        Err(e) => return Err(ExecError::setup("creating namespaces (clone)", e)),
    };
    let child = ChildGuard { pid, reaped: false };
    // The child holds its own copies of the write ends; ours must close for the reads
    // to end.
    drop((out_w, err_w, st_w));
    Ok(Running {
        child,
        pipes: [out_r, err_r, st_r],
    })
}

/// How the child ended.
pub(super) struct Exited {
    /// The wait status.
    status: libc::c_int,
    /// Everything the child wrote on the status pipe.
    pub status_bytes: Vec<u8>,
    cancelled: bool,
}

/// Pumps output until the child is gone; kills it on cancel.
pub(super) fn supervise(
    running: Running,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Exited, ExecError> {
    let Running { mut child, pipes } = running;
    let pidfd = pidfd(child.pid);
    let mut open = [true; 3];
    let mut status_bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cancelled = false;
    let mut status = None;

    // Reads once from pipe `i`; false when nothing more is available now.
    let mut read_one = |i: usize, fd: i32, status_bytes: &mut Vec<u8>, open: &mut [bool; 3]| {
        // SAFETY: reading into our buffer from a pipe we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let data = &buf[..n as usize];
            match i {
                0 => output(Stream::Stdout, data),
                1 => output(Stream::Stderr, data),
                _ => status_bytes.extend_from_slice(data),
            }
            return true;
        }
        let err = io::Error::last_os_error().raw_os_error();
        if n < 0 && err == Some(libc::EINTR) {
            return true;
        }
        if n == 0 || err != Some(libc::EAGAIN) {
            open[i] = false;
        }
        false
    };

    while status.is_none() {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut which = Vec::with_capacity(4);
        for (i, p) in pipes.iter().enumerate() {
            if open[i] {
                pfds.push(libc::pollfd {
                    fd: p.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                which.push(i);
            }
        }
        if let Some(pfd) = &pidfd {
            pfds.push(libc::pollfd {
                fd: pfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = if pidfd.is_some() || which.is_empty() {
            100
        } else {
            20
        };
        // SAFETY: polling fds we own.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n > 0 {
            for (k, &i) in which.iter().enumerate() {
                if pfds[k].revents != 0 {
                    read_one(i, pipes[i].as_raw_fd(), &mut status_bytes, &mut open);
                }
            }
        }
        if cancel.is_cancelled() && !cancelled {
            cancelled = true;
            child.kill();
        }
        status = child
            .try_wait()
            .map_err(|e| ExecError::setup("waiting for the container", e))?;
    }

    // Every process of the namespace is gone now; take what is left in the pipes
    // without waiting for writers that might have leaked elsewhere.
    for (i, p) in pipes.iter().enumerate() {
        // SAFETY: switching our own fd to non-blocking.
        unsafe {
            let fl = libc::fcntl(p.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(p.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        while open[i] && read_one(i, p.as_raw_fd(), &mut status_bytes, &mut open) {}
    }
    Ok(Exited {
        status: status.unwrap_or(0),
        status_bytes,
        cancelled,
    })
}

/// The exit code of a wait status: 128+signal when killed by a signal.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// The run's result: cancelled, a setup or exec failure the child reported, or the
/// process's exit code.
pub(super) fn outcome(
    spec: &RunSpec,
    plan: &Plan,
    exited: &Exited,
    report: &Report,
) -> Result<i32, ExecError> {
    if exited.cancelled {
        return Err(ExecError::Cancelled);
    }
    let Some(f) = report.failure else {
        return Ok(exit_code(exited.status));
    };
    if f.step == Step::Exec {
        let reason = if f.errno == libc::ENOENT && !spec.args[0].contains('/') {
            "executable file not found in $PATH".to_string()
        } else {
            io::Error::from_raw_os_error(f.errno).to_string()
        };
        return Err(ExecError::Exec {
            program: spec.args[0].clone(),
            reason,
        });
    }
    Err(ExecError::setup(
        describe(f.step, f.index, spec, plan),
        io::Error::from_raw_os_error(f.errno),
    ))
}

/// What setup step `step` (its `index`-th item) was doing, for an error message.
fn describe(step: Step, index: usize, spec: &RunSpec, plan: &Plan) -> String {
    let mount_target = |i: usize| {
        plan.mounts
            .get(i)
            .map(|m| m.target.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match step {
        Step::Stdio => "setting up stdio".into(),
        Step::Cgroup => "joining the run's cgroup".into(),
        Step::CgroupNamespace => "creating the cgroup namespace".into(),
        Step::MakePrivate => "making mounts private".into(),
        Step::Loopback => "bringing up the loopback interface".into(),
        Step::Hostname => "setting the hostname".into(),
        Step::OpenLayers => format!(
            "opening layer {}",
            plan.rootfs
                .layers
                .get(index)
                .map(|s| s.path.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        Step::MountOverlay => format!(
            "mounting the overlay rootfs ({} layers)",
            spec.lowerdirs.len()
        ),
        Step::OpenSources => format!(
            "opening mount source {}",
            plan.sources
                .get(index)
                .map(|s| s.path.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        Step::Chroot => "entering the rootfs".into(),
        Step::Workdir => format!("creating working directory {}", spec.cwd),
        Step::Mountpoint => format!("creating mountpoint {}", mount_target(index)),
        Step::MountProc => "mounting /proc".into(),
        Step::MountDev => "mounting /dev".into(),
        Step::Devices => "creating device nodes".into(),
        Step::Devpts => "mounting /dev/pts".into(),
        Step::Shm => "mounting /dev/shm".into(),
        Step::Mount => format!("mounting {}", mount_target(index)),
        Step::Protect => "masking kernel paths".into(),
        Step::Pivot => "pivoting into the rootfs".into(),
        Step::Chdir => format!("changing to working directory {}", spec.cwd),
        Step::Rlimits => match plan.rlimits.get(index) {
            Some(l) => format!(
                "setting the {} limit to {}:{}",
                rlimit_name(l.resource),
                rlimit_value(l.soft),
                rlimit_value(l.hard)
            ),
            None => "setting resource limits".into(),
        },
        Step::Capabilities => "setting capabilities".into(),
        Step::SetUser => format!("switching to user {:?}", spec.user),
        Step::NoNewPrivs => "setting no_new_privs".into(),
        Step::Seccomp => "installing the seccomp filter".into(),
        Step::Exec => "starting the process".into(),
        Step::Secrets if index == 0 => "mounting the private tmpfs for secrets".into(),
        Step::Secrets => "writing a secret file on its private tmpfs".into(),
    }
}

/// Docker's name of a resource limit (`nofile`).
fn rlimit_name(raw: u32) -> &'static str {
    Resource::from_raw(raw).map_or("resource", Resource::name)
}

fn rlimit_value(v: u64) -> String {
    if v == Rlimit::UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_wait_status() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exit_code(libc::SIGSEGV | 0x80), 139, "core dumped");
    }
}
