//! The process the container runs: its environment, argv and the paths to try for
//! it, its working directory, user and groups (planned in the parent); in the child,
//! its signal state, stdio, death with the builder, the switch to its user and the
//! exec itself.

use super::protocol::{StatusPipe, Step};
use super::secrets;
use super::syscall::{errno, exit_now};
use crate::cstr::{CStringArray, cstring};
use crate::error::SpecError;
use crate::rootpath::normalize;
use crate::spec::{RunSpec, SecretValue};
use crate::users::ResolvedUser;
use std::ffi::CString;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment the process gets: `env` as given, plus PATH and HOME when
/// missing.
pub(super) fn final_env(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={home}"));
    }
    out
}

/// `env` with the secret variables set over it (a secret replaces a variable of its
/// name).
fn with_secrets(
    env: &[String],
    secret_env: &[(String, SecretValue)],
) -> Result<CStringArray, SpecError> {
    if secret_env.is_empty() {
        return CStringArray::new(env);
    }
    let named = |e: &String| {
        secret_env
            .iter()
            .any(|(n, _)| e.split_once('=').is_some_and(|(k, _)| k == n))
    };
    let mut all = env
        .iter()
        .filter(|e| !named(e))
        .map(|e| cstring(e))
        .collect::<Result<Vec<_>, _>>()?;
    all.extend(secrets::env_entries(secret_env)?);
    Ok(CStringArray::from_cstrings(all))
}

/// Paths to try with execve for `arg0`: itself when it has a slash, else each
/// `$PATH` entry of the container environment (an empty entry is the cwd).
pub(super) fn exec_candidates(arg0: &str, env: &[String]) -> Vec<String> {
    if arg0.contains('/') {
        return vec![arg0.to_string()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            format!("{}/{arg0}", dir.trim_end_matches('/'))
        })
        .collect()
}

/// Everything the child needs to start the process.
pub(super) struct ProcessPlan {
    /// Keep the inherited fd 0 instead of /dev/null.
    inherit_stdin: bool,
    /// The working directory and each of its parents, outermost first.
    cwd_prefixes: Vec<CString>,
    cwd: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    /// False in a user namespace whose `setgroups` is denied (rootless, only the user's
    /// own IDs mapped): the groups stay as they are.
    set_groups: bool,
    argv: CStringArray,
    envp: CStringArray,
    exec_paths: Vec<CString>,
}

impl ProcessPlan {
    pub(super) fn new(spec: &RunSpec, user: &ResolvedUser) -> Result<ProcessPlan, SpecError> {
        let env = final_env(&spec.env, &user.home);
        let cwd = normalize(&spec.cwd);
        let cwd_prefixes = (1..=cwd.len())
            .map(|i| cstring(&format!("/{}", cwd[..i].join("/"))))
            .collect::<Result<Vec<_>, _>>()?;
        let exec_paths = exec_candidates(&spec.args[0], &env)
            .iter()
            .map(|p| cstring(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProcessPlan {
            inherit_stdin: spec.stdin,
            cwd_prefixes,
            cwd: cstring(&format!("/{}", cwd.join("/")))?,
            uid: user.uid,
            gid: user.gid,
            groups: user.supplementary.clone(),
            set_groups: !super::userns::setgroups_denied(),
            argv: CStringArray::new(&spec.args)?,
            envp: with_secrets(&env, &spec.secret_env)?,
            exec_paths,
        })
    }
}

/// The parent's descriptors the child starts from.
pub(super) struct ChildFds {
    /// A pidfd of the parent (-1 if unavailable): readable once the parent exits.
    pub parent_pidfd: i32,
    pub stdout_w: i32,
    pub stderr_w: i32,
    pub status_w: i32,
}

/// Child side: signals back to their defaults, none blocked.
///
/// # Safety
/// Child only, first thing after clone.
pub(super) unsafe fn reset_signals() {
    // SAFETY: see the function's contract; the zero buffer is a valid empty mask and
    // an all-default kernel sigaction.
    unsafe {
        // Signal state inherited from the runtime (e.g. SIGPIPE ignored) would
        // survive execve; the container starts with defaults and nothing blocked.
        // Raw syscalls: glibc's wrappers refuse its reserved signals (32, 33),
        // which can arrive here ignored. An all-zero kernel sigaction is
        // SIG_DFL whatever the architecture's struct layout.
        let zero = [0u64; 4];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            zero.as_ptr(),
            0usize,
            8usize,
        );
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, sig, zero.as_ptr(), 0usize, 8usize);
            }
        }
    }
}

/// Child side: arms the parent-death signal, and exits if the builder is already gone.
///
/// # Safety
/// Child only.
pub(super) unsafe fn watch_parent(fds: &ChildFds) {
    // SAFETY: see the function's contract; polling a pidfd we inherited.
    unsafe {
        die_with_parent();
        // The builder may have died before the line above armed the signal.
        if fds.parent_pidfd >= 0 {
            let mut pfd = libc::pollfd {
                fd: fds.parent_pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut pfd, 1, 0) > 0 {
                exit_now(127);
            }
        }
    }
}

/// SIGKILL when the builder dies: a container never outlives it.
///
/// # Safety
/// Child only.
unsafe fn die_with_parent() {
    // SAFETY: a prctl on ourselves.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

/// Child side: stdout and stderr onto the parent's pipes, stdin from /dev/null (or
/// the inherited one), and the status pipe moved to its fixed fd, which it returns.
/// Before that exists a failure can only exit.
///
/// # Safety
/// Child only.
pub(super) unsafe fn setup_stdio(p: &ProcessPlan, fds: &ChildFds) -> StatusPipe {
    // SAFETY: see the function's contract; the fds are the parent's pipe ends.
    unsafe {
        // Move the pipe ends out of the way first, then onto 1, 2, 3.
        let out = libc::fcntl(fds.stdout_w, libc::F_DUPFD_CLOEXEC, 10);
        let err = libc::fcntl(fds.stderr_w, libc::F_DUPFD_CLOEXEC, 10);
        let st = libc::fcntl(fds.status_w, libc::F_DUPFD_CLOEXEC, 10);
        if out < 0 || err < 0 || st < 0 || libc::dup3(st, StatusPipe::FD, libc::O_CLOEXEC) < 0 {
            exit_now(127);
        }
        let status = StatusPipe::at_fixed_fd();
        if libc::dup2(out, 1) < 0 || libc::dup2(err, 2) < 0 {
            status.fail(Step::Stdio, 0, errno());
        }
        if !p.inherit_stdin {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if null < 0 || libc::dup2(null, 0) < 0 {
                status.fail(Step::Stdio, 1, errno());
            }
            if null != 0 {
                libc::close(null);
            }
        } else if libc::fcntl(0, libc::F_SETFD, 0) < 0 {
            // The caller's fd 0 must survive execve (it is not close-on-exec
            // normally; this makes sure), and must exist at all.
            status.fail(Step::Stdio, 1, errno());
        }
        libc::close(out);
        libc::close(err);
        libc::close(st);
        status
    }
}

/// Child side, chrooted: creates the working directory and its missing parents
/// (root-owned, 0755). It is part of the layer, as with docker.
///
/// # Safety
/// Child only.
pub(super) unsafe fn make_workdir(p: &ProcessPlan, st: StatusPipe) {
    for (i, c) in p.cwd_prefixes.iter().enumerate() {
        // SAFETY: a NUL-terminated path built by the parent.
        if unsafe { libc::mkdir(c.as_ptr(), 0o755) } != 0 && errno() != libc::EEXIST {
            st.fail(Step::Workdir, i, errno());
        }
    }
}

/// Child side, after pivot_root: changes to the working directory.
///
/// # Safety
/// Child only.
pub(super) unsafe fn enter_workdir(p: &ProcessPlan, st: StatusPipe) {
    // SAFETY: a NUL-terminated path built by the parent.
    if unsafe { libc::chdir(p.cwd.as_ptr()) } != 0 {
        st.fail(Step::Chdir, 0, errno());
    }
}

/// Child side: groups, gid, then uid. Comes after the capabilities (it needs
/// CAP_SETUID and CAP_SETGID; for a non-root user the switch then clears the permitted
/// and effective sets).
///
/// # Safety
/// Child only.
pub(super) unsafe fn set_user(p: &ProcessPlan, st: StatusPipe) {
    // SAFETY: see the function's contract; `groups` outlives the call.
    unsafe {
        if p.set_groups
            && libc::syscall(libc::SYS_setgroups, p.groups.len(), p.groups.as_ptr()) != 0
        {
            st.fail(Step::SetUser, 0, errno());
        }
        if libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) != 0 {
            st.fail(Step::SetUser, 1, errno());
        }
        if libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) != 0 {
            st.fail(Step::SetUser, 2, errno());
        }
        // A uid/gid change clears the parent-death signal; set it again.
        die_with_parent();
    }
}

/// Child side, last: execs the process, trying each candidate path in turn. Reports
/// the most telling error when none can be executed.
///
/// # Safety
/// Child only.
pub(super) unsafe fn exec(p: &ProcessPlan, st: StatusPipe) -> ! {
    let mut saved = libc::ENOENT;
    // SAFETY: see the function's contract; argv and envp are NULL-terminated arrays
    // of C strings the plan owns.
    unsafe {
        // Whatever the runtime left open without close-on-exec stays out.
        libc::syscall(
            libc::SYS_close_range,
            4u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        for path in &p.exec_paths {
            libc::execve(path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR && saved == libc::ENOENT {
                saved = e;
            }
        }
    }
    st.fail(Step::Exec, 0, saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gets_default_path_and_home() {
        let env = final_env(&["A=1".into()], "/home/app");
        assert_eq!(
            env,
            vec![
                "A=1".to_string(),
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/home/app".to_string()
            ]
        );
        let env = final_env(&["PATH=/x".into(), "HOME=/h".into()], "/root");
        assert_eq!(env, vec!["PATH=/x".to_string(), "HOME=/h".to_string()]);
    }

    #[test]
    fn exec_candidates_search_container_path() {
        assert_eq!(exec_candidates("/bin/sh", &[]), vec!["/bin/sh"]);
        assert_eq!(exec_candidates("./x", &[]), vec!["./x"]);
        assert_eq!(
            exec_candidates("sh", &["PATH=/a/:/b::".into()]),
            vec!["/a/sh", "/b/sh", "./sh", "./sh"]
        );
        assert_eq!(exec_candidates("sh", &[]).len(), 6);
    }
}
