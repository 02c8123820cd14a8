//! The container itself. The parent prepares every string, path and number
//! the child will need, then forks with a raw `clone` into new namespaces.
//! The child runs only raw syscalls (no allocation, no glibc state such as
//! locks or the setxid thread list, which a fork of a multi-threaded process
//! would inherit in an undefined state) until `execve`. It reports progress
//! and failures as fixed-size records on a close-on-exec status pipe.

use crate::overlay::{MAX_OPTIONS, OPTION_VARIANTS, cstring, overlay_options};
use crate::{CancelToken, ExecError, MountSource, Network, RunSpec, Stream, users};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
/// SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

pub(crate) fn default_cap_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0u64, |m, c| m | (1u64 << c))
}

/// The environment the process gets: `env` as given, plus PATH and HOME when
/// missing.
pub(crate) fn final_env(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={home}"));
    }
    out
}

/// Paths to try with execve for `arg0`: itself when it has a slash, else each
/// `$PATH` entry of the container environment (an empty entry is the cwd).
pub(crate) fn exec_candidates(arg0: &str, env: &[String]) -> Vec<String> {
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

pub(crate) fn hosts_content(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// Normalises a container path to its components ("/a/./b/../c" → [a, c]).
fn container_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

// ---- status protocol -------------------------------------------------------

const REC_CREATED: u32 = 1;
const REC_FAILED: u32 = 2;
const REC_LEN: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Stdio = 1,
    MakePrivate,
    Loopback,
    Hostname,
    OpenLayers,
    MountOverlay,
    OpenSources,
    Chroot,
    Workdir,
    Mountpoint,
    MountProc,
    MountDev,
    Devices,
    Devpts,
    Shm,
    Mount,
    Protect,
    Pivot,
    Chdir,
    Capabilities,
    SetUser,
    Exec,
}

const STEPS: [Step; 22] = [
    Step::Stdio,
    Step::MakePrivate,
    Step::Loopback,
    Step::Hostname,
    Step::OpenLayers,
    Step::MountOverlay,
    Step::OpenSources,
    Step::Chroot,
    Step::Workdir,
    Step::Mountpoint,
    Step::MountProc,
    Step::MountDev,
    Step::Devices,
    Step::Devpts,
    Step::Shm,
    Step::Mount,
    Step::Protect,
    Step::Pivot,
    Step::Chdir,
    Step::Capabilities,
    Step::SetUser,
    Step::Exec,
];

fn encode_record(kind: u32, a: u32, b: i32) -> [u8; REC_LEN] {
    let mut r = [0u8; REC_LEN];
    r[0..4].copy_from_slice(&kind.to_le_bytes());
    r[4..8].copy_from_slice(&a.to_le_bytes());
    r[8..12].copy_from_slice(&b.to_le_bytes());
    r
}

fn decode_records(bytes: &[u8]) -> Vec<(u32, u32, i32)> {
    bytes
        .chunks_exact(REC_LEN)
        .map(|r| {
            let w = |i: usize| [r[i], r[i + 1], r[i + 2], r[i + 3]];
            (
                u32::from_le_bytes(w(0)),
                u32::from_le_bytes(w(4)),
                i32::from_le_bytes(w(8)),
            )
        })
        .collect()
}

// ---- the plan --------------------------------------------------------------

/// A host path the child opens (O_PATH) and moves to a fixed fd number.
struct Source {
    path: CString,
    dir: bool,
    fd: i32,
    /// `/proc/self/fd/<fd>`: how the kernel is handed the opened object.
    proc_path: CString,
}

/// One component of a mountpoint path, created when missing.
struct Candidate {
    /// Absolute container path.
    path: CString,
    /// Relative form, for the cleanup in the upper dir.
    rel: String,
    dir: bool,
}

enum MountKind {
    Proc,
    Dev,
    Sys { host: usize },
    EtcFile { src: usize },
    Bind { src: usize, readonly: bool },
    Tmpfs { data: CString },
}

struct MountStep {
    target: CString,
    kind: MountKind,
    /// Candidate indices, outermost first.
    stubs: Vec<usize>,
}

struct Device {
    path: CString,
    major: u32,
    minor: u32,
    host: usize,
}

struct Plan {
    /// A pidfd of this process (-1 if unavailable): readable once it exits.
    parent_pidfd: i32,
    stdout_w: i32,
    stderr_w: i32,
    status_w: i32,
    net_none: bool,
    hostname: CString,
    layers: Vec<Source>,
    /// Empty when the root is a plain directory bound in (`layers[0]`).
    overlay_opts: Vec<CString>,
    rootfs: CString,
    sources: Vec<Source>,
    hostroot_fd: i32,
    rootfs_fd: i32,
    devnull: CString,
    /// Keep the inherited fd 0 instead of /dev/null.
    inherit_stdin: bool,
    candidates: Vec<Candidate>,
    mounts: Vec<MountStep>,
    devices: Vec<Device>,
    cwd_prefixes: Vec<CString>,
    cwd: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    cap_mask: u64,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    exec_paths: Vec<CString>,
}

fn cs(s: &str) -> Result<CString, ExecError> {
    CString::new(s).map_err(|_| ExecError::InvalidSpec(format!("string contains NUL: {s:?}")))
}

/// Registers the components of `target` as candidates (deduplicated) and
/// returns their indices; the last one is a file when `file` is set.
fn add_candidates(
    cands: &mut Vec<Candidate>,
    target: &str,
    file: bool,
) -> Result<Vec<usize>, ExecError> {
    let comps = container_components(target);
    let mut out = Vec::new();
    for i in 0..comps.len() {
        let rel = comps[..=i].join("/");
        let dir = !(file && i + 1 == comps.len());
        let idx = match cands.iter().position(|c| c.rel == rel) {
            Some(idx) => idx,
            None => {
                cands.push(Candidate {
                    path: cs(&format!("/{rel}"))?,
                    rel,
                    dir,
                });
                cands.len() - 1
            }
        };
        out.push(idx);
    }
    Ok(out)
}

// ---- child side ------------------------------------------------------------

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Writes one record; the child never allocates, so this is a raw write.
fn report(fd: i32, kind: u32, a: u32, b: i32) {
    let r = encode_record(kind, a, b);
    // SAFETY: writing a stack buffer to a pipe.
    unsafe {
        libc::write(fd, r.as_ptr().cast(), r.len());
    }
}

fn fail(fd: i32, step: Step, index: usize, err: i32) -> ! {
    report(
        fd,
        REC_FAILED,
        ((step as u32) << 16) | (index as u32 & 0xffff),
        err,
    );
    // SAFETY: terminating the child without running any user-space cleanup.
    unsafe { libc::_exit(127) }
}

const STATUS_FD: i32 = 3;

/// Runs in the cloned child: pid 1 of the new namespaces.
///
/// # Safety
/// Must only be called in the child of a raw clone; uses only async-signal-safe
/// syscalls and the parent's pre-built `plan`.
unsafe fn child_main(p: &Plan) -> ! {
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
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // The builder may have died before the line above armed the signal.
        if p.parent_pidfd >= 0 {
            let mut pfd = libc::pollfd {
                fd: p.parent_pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut pfd, 1, 0) > 0 {
                libc::_exit(127);
            }
        }

        // Stdio: move the pipe ends out of the way first, then onto 1, 2, 3.
        let out = libc::fcntl(p.stdout_w, libc::F_DUPFD_CLOEXEC, 10);
        let err = libc::fcntl(p.stderr_w, libc::F_DUPFD_CLOEXEC, 10);
        let st = libc::fcntl(p.status_w, libc::F_DUPFD_CLOEXEC, 10);
        if out < 0 || err < 0 || st < 0 || libc::dup3(st, STATUS_FD, libc::O_CLOEXEC) < 0 {
            libc::_exit(127);
        }
        let sfd = STATUS_FD;
        if libc::dup2(out, 1) < 0 || libc::dup2(err, 2) < 0 {
            fail(sfd, Step::Stdio, 0, errno());
        }
        if !p.inherit_stdin {
            let null = libc::open(p.devnull.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if null < 0 || libc::dup2(null, 0) < 0 {
                fail(sfd, Step::Stdio, 1, errno());
            }
            if null != 0 {
                libc::close(null);
            }
        } else if libc::fcntl(0, libc::F_SETFD, 0) < 0 {
            // The caller's fd 0 must survive execve (it is not close-on-exec
            // normally; this makes sure), and must exist at all.
            fail(sfd, Step::Stdio, 1, errno());
        }
        libc::close(out);
        libc::close(err);
        libc::close(st);

        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(sfd, Step::MakePrivate, 0, errno());
        }
        if p.net_none {
            loopback_up(sfd);
        }
        if libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) != 0 {
            fail(sfd, Step::Hostname, 0, errno());
        }

        // Layers and bind sources are opened here, inside the new mount
        // namespace: the kernel refuses to bind or stack mounts of another one.
        for (i, s) in p.layers.iter().enumerate() {
            if !open_at_fd(s) {
                fail(sfd, Step::OpenLayers, i, errno());
            }
        }
        let mut mounted = p.overlay_opts.is_empty()
            && mnt(
                &p.layers[0].proc_path,
                &p.rootfs,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            );
        let mut last = errno();
        for opts in &p.overlay_opts {
            if libc::mount(
                c"overlay".as_ptr(),
                p.rootfs.as_ptr(),
                c"overlay".as_ptr(),
                0,
                opts.as_ptr().cast(),
            ) == 0
            {
                mounted = true;
                break;
            }
            last = errno();
        }
        if !mounted {
            fail(sfd, Step::MountOverlay, 0, last);
        }
        let mut have = [false; 64];
        for (i, s) in p.sources.iter().enumerate() {
            // Host devices and /sys are fallbacks only; their absence is fine.
            let ok = open_at_fd(s);
            if i < have.len() {
                have[i] = ok;
            }
            if !ok && i > p.devices.len() {
                fail(sfd, Step::OpenSources, i, errno());
            }
        }
        // Each open is moved to its number before the next one, which could
        // otherwise land on (and be clobbered at) a planned number.
        let dir = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        let root = libc::open(p.rootfs.as_ptr(), dir);
        if root < 0 || !place(root, p.rootfs_fd) {
            fail(sfd, Step::Chroot, 0, errno());
        }
        let host = libc::open(c"/".as_ptr(), dir);
        if host < 0
            || !place(host, p.hostroot_fd)
            || libc::chroot(p.rootfs.as_ptr()) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            fail(sfd, Step::Chroot, 0, errno());
        }
        libc::umask(0o022);

        // The working directory is part of the layer, as with docker.
        for (i, c) in p.cwd_prefixes.iter().enumerate() {
            if libc::mkdir(c.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                fail(sfd, Step::Workdir, i, errno());
            }
        }

        // Mounts, resolved inside the chroot so image symlinks cannot point
        // them at the host.
        for (mi, m) in p.mounts.iter().enumerate() {
            let optional = matches!(m.kind, MountKind::EtcFile { .. } | MountKind::Sys { .. });
            if !ensure_stubs(p, sfd, &m.stubs) {
                if optional {
                    continue;
                }
                fail(sfd, Step::Mountpoint, mi, errno());
            }
            do_mount(p, sfd, mi, m, &have);
        }
        protect_kernel_paths(sfd);

        // Leave the chroot for the host root, then pivot into the rootfs and
        // drop the host's mounts from view.
        if libc::fchdir(p.hostroot_fd) != 0
            || libc::chroot(c".".as_ptr()) != 0
            || libc::fchdir(p.rootfs_fd) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            fail(sfd, Step::Pivot, 0, errno());
        }
        libc::close(p.hostroot_fd);
        libc::close(p.rootfs_fd);
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(sfd, Step::Chdir, 0, errno());
        }

        drop_capabilities(sfd, p.cap_mask);
        if libc::syscall(libc::SYS_setgroups, p.groups.len(), p.groups.as_ptr()) != 0 {
            fail(sfd, Step::SetUser, 0, errno());
        }
        if libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) != 0 {
            fail(sfd, Step::SetUser, 1, errno());
        }
        if libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) != 0 {
            fail(sfd, Step::SetUser, 2, errno());
        }
        // A uid/gid change clears the parent-death signal; set it again.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );

        // Whatever the runtime left open without close-on-exec stays out.
        libc::syscall(
            libc::SYS_close_range,
            4u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        let mut saved = libc::ENOENT;
        for path in &p.exec_paths {
            libc::execve(path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR && saved == libc::ENOENT {
                saved = e;
            }
        }
        fail(sfd, Step::Exec, 0, saved)
    }
}

/// Opens a source and moves it to its planned fd number.
unsafe fn open_at_fd(s: &Source) -> bool {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if s.dir {
        flags |= libc::O_DIRECTORY;
    }
    let fd = unsafe { libc::open(s.path.as_ptr(), flags) };
    fd >= 0 && unsafe { place(fd, s.fd) }
}

unsafe fn place(fd: i32, want: i32) -> bool {
    if fd == want {
        return true;
    }
    unsafe {
        let ok = libc::dup3(fd, want, libc::O_CLOEXEC) >= 0;
        libc::close(fd);
        ok
    }
}

/// Creates missing mountpoint components; reports each one created so the
/// parent can remove it from the upper dir afterwards.
unsafe fn ensure_stubs(p: &Plan, sfd: i32, stubs: &[usize]) -> bool {
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        for &i in stubs {
            let c = &p.candidates[i];
            if libc::lstat(c.path.as_ptr(), &mut st) == 0 {
                continue;
            }
            if errno() != libc::ENOENT {
                return false;
            }
            let ok = if c.dir {
                libc::mkdir(c.path.as_ptr(), 0o755) == 0
            } else {
                let fd = libc::open(
                    c.path.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd >= 0
            };
            if !ok {
                return false;
            }
            report(sfd, REC_CREATED, i as u32, 0);
        }
        true
    }
}

unsafe fn mnt(
    src: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> bool {
    unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        ) == 0
    }
}

unsafe fn do_mount(p: &Plan, sfd: i32, mi: usize, m: &MountStep, have: &[bool; 64]) {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC};
    unsafe {
        let t = m.target.as_c_str();
        match &m.kind {
            MountKind::Proc => {
                if !mnt(
                    c"proc",
                    t,
                    Some(c"proc"),
                    MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    None,
                ) {
                    fail(sfd, Step::MountProc, 0, errno());
                }
            }
            MountKind::Dev => {
                if !mnt(
                    c"tmpfs",
                    t,
                    Some(c"tmpfs"),
                    MS_NOSUID | libc::MS_STRICTATIME,
                    Some(c"mode=755,size=65536k"),
                ) {
                    fail(sfd, Step::MountDev, 0, errno());
                }
                setup_dev(p, sfd, have);
            }
            MountKind::Sys { host } => {
                let flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
                if mnt(c"sysfs", t, Some(c"sysfs"), flags, None) {
                    // Our own cgroup as the root of a read-only cgroup2 tree,
                    // as docker's private cgroupns does; absent on v1-only hosts.
                    mnt(c"cgroup2", c"/sys/fs/cgroup", Some(c"cgroup2"), flags, None);
                } else if have[*host]
                    && mnt(&p.sources[*host].proc_path, t, None, MS_BIND | MS_REC, None)
                {
                    // sysfs needs a network namespace we own; with the host's
                    // in a restricted container, bind the host /sys read-only.
                    make_readonly_recursive(t);
                }
            }
            MountKind::EtcFile { src } => {
                // A dangling symlink or a directory in the image: skip it.
                mnt(&p.sources[*src].proc_path, t, None, MS_BIND, None);
            }
            MountKind::Bind { src, readonly } => {
                if !mnt(&p.sources[*src].proc_path, t, None, MS_BIND | MS_REC, None) {
                    fail(sfd, Step::Mount, mi, errno());
                }
                if *readonly && !make_readonly_recursive(t) {
                    fail(sfd, Step::Mount, mi, errno());
                }
            }
            MountKind::Tmpfs { data } => {
                if !mnt(
                    c"tmpfs",
                    t,
                    Some(c"tmpfs"),
                    MS_NOSUID | MS_NODEV,
                    Some(data),
                ) {
                    fail(sfd, Step::Mount, mi, errno());
                }
            }
        }
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Read-only for the bind and every mount below it (a plain remount would
/// leave submounts of the source writable); remount on pre-5.12 kernels.
unsafe fn make_readonly_recursive(target: &CStr) -> bool {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    unsafe {
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            AT_RECURSIVE,
            &attr,
            std::mem::size_of::<MountAttr>(),
        );
        rc == 0
            || (errno() == libc::ENOSYS
                && mnt(
                    c"",
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    None,
                ))
    }
}

unsafe fn setup_dev(p: &Plan, sfd: i32, have: &[bool; 64]) {
    unsafe {
        let old = libc::umask(0);
        for (i, d) in p.devices.iter().enumerate() {
            let dev = libc::makedev(d.major, d.minor);
            if libc::mknod(d.path.as_ptr(), libc::S_IFCHR | 0o666, dev) == 0 {
                continue;
            }
            // No CAP_MKNOD or a device cgroup (nested containers): bind the
            // host's node instead.
            let fd = libc::open(
                d.path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            if !(have[d.host]
                && mnt(
                    &p.sources[d.host].proc_path,
                    &d.path,
                    None,
                    libc::MS_BIND,
                    None,
                ))
            {
                fail(sfd, Step::Devices, i, errno());
            }
        }
        if libc::mkdir(c"/dev/pts".as_ptr(), 0o755) != 0
            || !mnt(
                c"devpts",
                c"/dev/pts",
                Some(c"devpts"),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
            )
            || libc::symlink(c"pts/ptmx".as_ptr(), c"/dev/ptmx".as_ptr()) != 0
        {
            fail(sfd, Step::Devpts, 0, errno());
        }
        if libc::mkdir(c"/dev/shm".as_ptr(), 0o1777) != 0
            || !mnt(
                c"shm",
                c"/dev/shm",
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(c"mode=1777,size=65536k"),
            )
        {
            fail(sfd, Step::Shm, 0, errno());
        }
        for (target, link) in [
            (c"/proc/self/fd", c"/dev/fd"),
            (c"/proc/self/fd/0", c"/dev/stdin"),
            (c"/proc/self/fd/1", c"/dev/stdout"),
            (c"/proc/self/fd/2", c"/dev/stderr"),
            (c"/proc/kcore", c"/dev/core"),
        ] {
            libc::symlink(target.as_ptr(), link.as_ptr());
        }
        libc::umask(old);
    }
}

/// Docker's default masked paths: hidden behind /dev/null or an empty tmpfs.
const MASKED: [&CStr; 11] = [
    c"/proc/asound",
    c"/proc/acpi",
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
    c"/proc/scsi",
    c"/sys/firmware",
    c"/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths: the process runs as real root, so a
/// writable /proc/sys would change the host's kernel settings.
const READONLY: [&CStr; 5] = [
    c"/proc/bus",
    c"/proc/fs",
    c"/proc/irq",
    c"/proc/sys",
    c"/proc/sysrq-trigger",
];

unsafe fn protect_kernel_paths(sfd: i32) {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT};
    unsafe {
        for (i, path) in READONLY.iter().enumerate() {
            if !mnt(path, path, None, MS_BIND | MS_REC, None) {
                if errno() == libc::ENOENT {
                    continue;
                }
                fail(sfd, Step::Protect, i, errno());
            }
            let flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
            if !mnt(c"", path, None, flags, None) {
                fail(sfd, Step::Protect, i, errno());
            }
        }
        let mut st: libc::stat = std::mem::zeroed();
        for (i, path) in MASKED.iter().enumerate() {
            if libc::stat(path.as_ptr(), &mut st) != 0 {
                continue;
            }
            let ok = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                mnt(c"tmpfs", path, Some(c"tmpfs"), MS_RDONLY, Some(c"size=0"))
            } else {
                mnt(c"/dev/null", path, None, MS_BIND, None)
            };
            if !ok {
                fail(sfd, Step::Protect, READONLY.len() + i, errno());
            }
        }
    }
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

unsafe fn loopback_up(sfd: i32) {
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            fail(sfd, Step::Loopback, 0, errno());
        }
        let mut req = IfReqFlags {
            name: [0; 16],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) != 0 {
            fail(sfd, Step::Loopback, 1, errno());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &req) != 0 {
            fail(sfd, Step::Loopback, 2, errno());
        }
        libc::close(s);
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Bounding set and effective/permitted to Docker's default set; inheritable
/// and ambient empty (as moby does since CVE-2022-24769).
unsafe fn drop_capabilities(sfd: i32, mask: u64) {
    unsafe {
        for cap in 0..64u32 {
            if mask & (1u64 << cap) != 0 {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                if errno() == libc::EINVAL {
                    break; // past the kernel's last capability
                }
                fail(sfd, Step::Capabilities, cap as usize, errno());
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let hdr = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let lo = mask as u32;
        let hi = (mask >> 32) as u32;
        let data = [
            CapData {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            CapData {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
            fail(sfd, Step::Capabilities, 64, errno());
        }
    }
}

// ---- parent side -----------------------------------------------------------

/// This process's permitted capabilities: in a restricted CI container some
/// of Docker's defaults (e.g. NET_RAW, MKNOD) may be missing, and asking for
/// them would fail the run.
fn permitted_caps() -> u64 {
    let hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget fills two CapData entries for the v3 header.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return u64::MAX;
    }
    u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32)
}

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

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

fn step_description(step: u32, index: usize, spec: &RunSpec, plan: &Plan) -> String {
    let mount_target = |i: usize| {
        plan.mounts
            .get(i)
            .map(|m| m.target.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match STEPS.iter().find(|s| **s as u32 == step) {
        Some(Step::Stdio) => "setting up stdio".into(),
        Some(Step::MakePrivate) => "making mounts private".into(),
        Some(Step::Loopback) => "bringing up the loopback interface".into(),
        Some(Step::Hostname) => "setting the hostname".into(),
        Some(Step::OpenLayers) => format!(
            "opening layer {}",
            plan.layers
                .get(index)
                .map(|s| s.path.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        Some(Step::MountOverlay) => format!(
            "mounting the overlay rootfs ({} layers)",
            spec.lowerdirs.len()
        ),
        Some(Step::OpenSources) => format!(
            "opening mount source {}",
            plan.sources
                .get(index)
                .map(|s| s.path.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        Some(Step::Chroot) => "entering the rootfs".into(),
        Some(Step::Workdir) => format!("creating working directory {}", spec.cwd),
        Some(Step::Mountpoint) => format!("creating mountpoint {}", mount_target(index)),
        Some(Step::MountProc) => "mounting /proc".into(),
        Some(Step::MountDev) => "mounting /dev".into(),
        Some(Step::Devices) => "creating device nodes".into(),
        Some(Step::Devpts) => "mounting /dev/pts".into(),
        Some(Step::Shm) => "mounting /dev/shm".into(),
        Some(Step::Mount) => format!("mounting {}", mount_target(index)),
        Some(Step::Protect) => "masking kernel paths".into(),
        Some(Step::Pivot) => "pivoting into the rootfs".into(),
        Some(Step::Chdir) => format!("changing to working directory {}", spec.cwd),
        Some(Step::Capabilities) => "setting capabilities".into(),
        Some(Step::SetUser) => format!("switching to user {:?}", spec.user),
        Some(Step::Exec) | None => "starting the process".into(),
    }
}

/// Where a stub at container path `rel` lives in the upper dir: its parent
/// is resolved in the merged view, since the image may route it through a
/// symlink (e.g. `/etc -> /private/etc`).
fn stub_path(upper: &Path, lowers_top_first: &[&Path], rel: &str) -> PathBuf {
    let Some((parent, name)) = rel.rsplit_once('/') else {
        return upper.join(rel);
    };
    let mut layers = vec![upper];
    layers.extend_from_slice(lowers_top_first);
    match crate::rootpath::lookup_in_layers(&layers, parent) {
        Ok(Some(p)) if p.starts_with(upper) => p.join(name),
        _ => upper.join(rel),
    }
}

/// Removes, from the upper dir, the mountpoints the child had to create, and
/// the parents that were only copied up because of them, so they never
/// become part of the layer.
fn cleanup_stubs(
    upper: &Path,
    lowers_top_first: &[&Path],
    cands: &[(String, bool)],
    created: &[bool],
) {
    let empty_dir = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
            && std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
            && !rbuild_fsutil::whiteout::is_opaque(p)
    };
    let mut order: Vec<usize> = (0..cands.len())
        .filter(|&i| created.get(i).copied().unwrap_or(false))
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cands[i].0.matches('/').count()));
    for i in order {
        let (rel, dir) = &cands[i];
        let p = stub_path(upper, lowers_top_first, rel);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let removed = if *dir {
            empty_dir(&p) && std::fs::remove_dir(&p).is_ok()
        } else {
            m.is_file() && m.len() == 0 && std::fs::remove_file(&p).is_ok()
        };
        if !removed {
            continue;
        }
        // Parents that exist below were only copied up to hold the stub: drop
        // them while they are empty and still look like the lower dir.
        let mut d = p.parent();
        while let Some(dir) = d.filter(|d| *d != upper && d.starts_with(upper)) {
            let Ok(rel) = dir.strip_prefix(upper) else {
                break;
            };
            let copied_up =
                crate::rootpath::lookup_in_layers(lowers_top_first, &rel.to_string_lossy())
                    .ok()
                    .flatten()
                    .and_then(|l| std::fs::symlink_metadata(l).ok())
                    .zip(std::fs::symlink_metadata(dir).ok())
                    .is_some_and(|(l, m)| {
                        l.is_dir()
                            && l.mode() == m.mode()
                            && l.uid() == m.uid()
                            && l.gid() == m.gid()
                    });
            if !(copied_up && empty_dir(dir) && std::fs::remove_dir(dir).is_ok()) {
                break;
            }
            d = dir.parent();
        }
    }
}

const HOST_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Runs the command and returns its exit code (128+signal when killed by a
/// signal). Blocking; output is delivered as it comes.
pub fn run(
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<i32, ExecError> {
    let r = run_impl(spec, None, cancel, output);
    // The container (and with it its mount namespace) is gone.
    crate::overlay::clear_volatile_marker(&spec.workdir);
    r
}

/// Like [`run`], but over a plain writable directory holding the whole
/// rootfs (the copying-snapshotter fallback where overlayfs cannot be used):
/// `spec.lowerdirs`, `upperdir` and `workdir` are ignored and changes land in
/// `rootfs` itself. Mountpoints created for the run are removed again.
pub fn run_in_dir(
    rootfs: &Path,
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<i32, ExecError> {
    run_impl(spec, Some(rootfs), cancel, output)
}

fn run_impl(
    spec: &RunSpec,
    root_dir: Option<&Path>,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<i32, ExecError> {
    if spec.args.is_empty() || spec.args[0].is_empty() {
        return Err(ExecError::InvalidSpec("no command".into()));
    }
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let lowers_top_first: Vec<&Path> = match root_dir {
        Some(_) => Vec::new(),
        None => spec.lowerdirs.iter().rev().map(PathBuf::as_path).collect(),
    };
    let user = match root_dir {
        Some(dir) => users::resolve_in_rootfs(&spec.user, dir)?,
        None => users::resolve_in_layers(&spec.user, &lowers_top_first)?,
    };
    let env = final_env(&spec.env, &user.home);
    let hostname = if spec.hostname.is_empty() {
        "rbuild"
    } else {
        spec.hostname.as_str()
    };
    if hostname.len() > 64 {
        return Err(ExecError::InvalidSpec(format!(
            "hostname too long: {hostname}"
        )));
    }

    let tmp = tempfile::Builder::new()
        .prefix("rbuild-run")
        .tempdir()
        .map_err(|e| ExecError::setup("creating run directory", e))?;
    let io_err = |what: &str| {
        let what = what.to_string();
        move |e| ExecError::setup(what, e)
    };
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(io_err("creating rootfs mountpoint"))?;
    let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hosts", hosts_content(hostname).into_bytes()),
        ("resolv.conf", resolv),
        ("hostname", format!("{hostname}\n").into_bytes()),
    ];
    for (name, content) in &files {
        std::fs::write(tmp.path().join(name), content).map_err(io_err("writing /etc files"))?;
    }
    let empty = tmp.path().join("empty");
    if spec.lowerdirs.is_empty() {
        std::fs::create_dir(&empty).map_err(io_err("creating scratch layer"))?;
    }

    // Fixed fd numbers in the child: 0-2 stdio, 3 status, then layers, then sources.
    let mut next_fd = STATUS_FD + 1;
    let mut source = |path: &Path, dir: bool| -> Result<Source, ExecError> {
        let fd = next_fd;
        next_fd += 1;
        Ok(Source {
            path: cstring(path)?,
            dir,
            fd,
            proc_path: cs(&format!("/proc/self/fd/{fd}"))?,
        })
    };
    let mut layers = Vec::new();
    let mut overlay_opts = Vec::new();
    if let Some(dir) = root_dir {
        layers.push(source(dir, true)?);
    } else {
        let layer_paths: Vec<&Path> = if spec.lowerdirs.is_empty() {
            vec![&empty]
        } else {
            lowers_top_first.clone()
        };
        for l in &layer_paths {
            layers.push(source(l, true)?);
        }
        layers.push(source(&spec.upperdir, true)?);
        layers.push(source(&spec.workdir, true)?);
        let nums: Vec<i32> = layers.iter().map(|s| s.fd).collect();
        let (lower_nums, rest) = nums.split_at(nums.len() - 2);
        for extra in OPTION_VARIANTS {
            let opts = overlay_options(lower_nums, rest[0], rest[1], extra);
            if opts.len() > MAX_OPTIONS {
                return Err(ExecError::InvalidSpec(format!(
                    "too many layers ({}) for one overlay mount",
                    spec.lowerdirs.len()
                )));
            }
            overlay_opts.push(cs(&opts)?);
        }
    }

    // Sources: host devices, host /sys, then /etc files and user binds.
    let mut sources = Vec::new();
    for (name, _, _) in HOST_DEVICES {
        sources.push(source(&Path::new("/dev").join(name), false)?);
    }
    let sys_src = sources.len();
    sources.push(source(Path::new("/sys"), true)?);
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut mounts = Vec::new();
    for (target, kind, file) in [
        ("/proc", MountKind::Proc, false),
        ("/dev", MountKind::Dev, false),
        ("/sys", MountKind::Sys { host: sys_src }, false),
    ] {
        mounts.push(MountStep {
            target: cs(target)?,
            kind,
            stubs: add_candidates(&mut candidates, target, file)?,
        });
    }
    for (name, _) in &files {
        let src = sources.len();
        sources.push(source(&tmp.path().join(name), false)?);
        let target = format!("/etc/{name}");
        mounts.push(MountStep {
            target: cs(&target)?,
            kind: MountKind::EtcFile { src },
            stubs: add_candidates(&mut candidates, &target, true)?,
        });
    }
    // Parents before children, as docker sorts them.
    let mut user_mounts: Vec<&crate::Mount> = spec.mounts.iter().collect();
    user_mounts.sort_by_key(|m| container_components(&m.target).len());
    for m in user_mounts {
        if !m.target.starts_with('/') || container_components(&m.target).is_empty() {
            return Err(ExecError::InvalidSpec(format!(
                "mount target must be an absolute path below /: {:?}",
                m.target
            )));
        }
        let target = format!("/{}", container_components(&m.target).join("/"));
        let (kind, file) = match &m.source {
            MountSource::Bind {
                source: src,
                readonly,
            } => {
                let host = std::fs::canonicalize(src)
                    .map_err(io_err(&format!("bind source {}", src.display())))?;
                let is_dir = host.is_dir();
                let idx = sources.len();
                sources.push(source(&host, is_dir)?);
                (
                    MountKind::Bind {
                        src: idx,
                        readonly: *readonly,
                    },
                    !is_dir,
                )
            }
            MountSource::Tmpfs { size } => {
                let data = match size {
                    Some(s) => format!("mode=1777,size={s}"),
                    None => "mode=1777".to_string(),
                };
                (MountKind::Tmpfs { data: cs(&data)? }, false)
            }
        };
        mounts.push(MountStep {
            target: cs(&target)?,
            kind,
            stubs: add_candidates(&mut candidates, &target, file)?,
        });
    }
    if sources.len() > 64 {
        return Err(ExecError::InvalidSpec("too many mounts".into()));
    }
    let hostroot_fd = next_fd;
    let rootfs_fd = next_fd + 1;

    let devices = HOST_DEVICES
        .iter()
        .enumerate()
        .map(|(i, (name, major, minor))| {
            Ok(Device {
                path: cs(&format!("/dev/{name}"))?,
                major: *major,
                minor: *minor,
                host: i,
            })
        })
        .collect::<Result<Vec<_>, ExecError>>()?;

    let cwd_comps = container_components(&spec.cwd);
    let cwd_prefixes = (1..=cwd_comps.len())
        .map(|i| cs(&format!("/{}", cwd_comps[..i].join("/"))))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = cs(&format!("/{}", cwd_comps.join("/")))?;

    let arg_c = spec
        .args
        .iter()
        .map(|a| cs(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env_c = env.iter().map(|e| cs(e)).collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*const libc::c_char> = arg_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let exec_paths = exec_candidates(&spec.args[0], &env)
        .iter()
        .map(|p| cs(p))
        .collect::<Result<Vec<_>, _>>()?;

    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (st_r, st_w) = pipe()?;

    // SAFETY: pidfd_open on ourselves; -1 on kernels without it.
    let self_pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) } as i32;
    // SAFETY: a fresh fd we own when non-negative.
    let self_pidfd = (self_pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(self_pidfd) });
    let plan = Plan {
        parent_pidfd: self_pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
        stdout_w: out_w.as_raw_fd(),
        stderr_w: err_w.as_raw_fd(),
        status_w: st_w.as_raw_fd(),
        net_none: spec.network == Network::None,
        hostname: cs(hostname)?,
        layers,
        overlay_opts,
        rootfs: cstring(&rootfs)?,
        sources,
        hostroot_fd,
        rootfs_fd,
        devnull: cs("/dev/null")?,
        inherit_stdin: spec.stdin,
        candidates,
        mounts,
        devices,
        cwd_prefixes,
        cwd,
        uid: user.uid,
        gid: user.gid,
        groups: user.supplementary.clone(),
        cap_mask: default_cap_mask() & permitted_caps(),
        argv,
        envp,
        exec_paths,
    };

    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack); the child only
    // runs `child_main`, which never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: we are the child of the raw clone above.
        unsafe { child_main(&plan) }
    }
    if pid < 0 {
        return Err(ExecError::setup(
            "creating namespaces (clone)",
            io::Error::last_os_error(),
        ));
    }
    let mut child = ChildGuard {
        pid: pid as libc::pid_t,
        reaped: false,
    };
    drop((out_w, err_w, st_w));

    let (status, status_bytes, cancelled) =
        supervise(&mut child, [out_r, err_r, st_r], cancel, output)?;

    let records = decode_records(&status_bytes);
    let mut created = vec![false; plan.candidates.len()];
    let mut failure = None;
    for (kind, a, b) in records {
        match kind {
            REC_CREATED => {
                if let Some(c) = created.get_mut(a as usize) {
                    *c = true;
                }
            }
            REC_FAILED => failure = Some((a >> 16, (a & 0xffff) as usize, b)),
            _ => {}
        }
    }
    let cands: Vec<(String, bool)> = plan
        .candidates
        .iter()
        .map(|c| (c.rel.clone(), c.dir))
        .collect();
    let upper = root_dir.unwrap_or(&spec.upperdir);
    cleanup_stubs(upper, &lowers_top_first, &cands, &created);

    if cancelled {
        return Err(ExecError::Cancelled);
    }
    if let Some((step, index, err)) = failure {
        if step == Step::Exec as u32 {
            let reason = if err == libc::ENOENT && !spec.args[0].contains('/') {
                "executable file not found in $PATH".to_string()
            } else {
                io::Error::from_raw_os_error(err).to_string()
            };
            return Err(ExecError::Exec {
                program: spec.args[0].clone(),
                reason,
            });
        }
        return Err(ExecError::setup(
            step_description(step, index, spec, &plan),
            io::Error::from_raw_os_error(err),
        ));
    }
    Ok(exit_code(status))
}

/// Pumps output until the child is gone; kills it on cancel. Returns the wait
/// status, the raw status-pipe bytes and whether it was cancelled.
fn supervise(
    child: &mut ChildGuard,
    pipes: [OwnedFd; 3],
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<(libc::c_int, Vec<u8>, bool), ExecError> {
    // SAFETY: pidfd_open on our own unreaped child; -1 on old kernels.
    let pidfd_raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.pid, 0) } as i32;
    // SAFETY: a fresh fd we own when non-negative.
    let pidfd = (pidfd_raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd_raw) });
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
    Ok((status.unwrap_or(0), status_bytes, cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permitted_caps_match_proc_status() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let prm = status
            .lines()
            .find_map(|l| l.strip_prefix("CapPrm:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(permitted_caps(), prm);
    }

    #[test]
    fn exit_codes_from_wait_status() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exit_code(libc::SIGSEGV | 0x80), 139, "core dumped");
    }

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

    #[test]
    fn cap_mask_is_dockers_default_set() {
        let m = default_cap_mask();
        assert_eq!(m.count_ones(), 14);
        assert_eq!(m & (1 << 21), 0, "no CAP_SYS_ADMIN");
        assert_eq!(m & (1 << 24), 0, "no CAP_SYS_RESOURCE");
        assert_ne!(m & (1 << 0), 0, "CAP_CHOWN");
    }

    #[test]
    fn records_roundtrip() {
        let mut bytes = encode_record(REC_CREATED, 7, 0).to_vec();
        bytes.extend(encode_record(
            REC_FAILED,
            (Step::Mount as u32) << 16 | 2,
            -5,
        ));
        bytes.push(9); // a torn record is ignored
        assert_eq!(
            decode_records(&bytes),
            vec![
                (REC_CREATED, 7, 0),
                (REC_FAILED, (Step::Mount as u32) << 16 | 2, -5)
            ]
        );
    }

    #[test]
    fn container_paths_normalise() {
        assert_eq!(container_components("/a/./b/../c/"), vec!["a", "c"]);
        assert!(container_components("/../").is_empty());
    }

    #[test]
    fn candidates_are_shared_between_targets() {
        let mut c = Vec::new();
        let a = add_candidates(&mut c, "/etc/hosts", true).unwrap();
        let b = add_candidates(&mut c, "/etc/hostname", true).unwrap();
        assert_eq!(a[0], b[0]);
        assert_eq!(c.len(), 3);
        assert!(c[0].dir && !c[1].dir);
        assert_eq!(c[1].path.as_bytes(), b"/etc/hosts");
    }

    #[test]
    fn stub_cleanup_removes_only_what_was_created() {
        let d = tempfile::tempdir().unwrap();
        let (upper, lower) = (d.path().join("u"), d.path().join("l"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("proc")).unwrap();
        std::fs::create_dir_all(upper.join("dev")).unwrap();
        std::fs::write(upper.join("dev/kept"), "").unwrap();
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        std::fs::write(upper.join("etc/hostname"), "user wrote this").unwrap();
        let perm = std::fs::metadata(lower.join("etc")).unwrap().permissions();
        std::fs::set_permissions(upper.join("etc"), perm).unwrap();
        let cands = vec![
            ("proc".to_string(), true),
            ("dev".to_string(), true),
            ("etc".to_string(), true),
            ("etc/hosts".to_string(), false),
            ("etc/hostname".to_string(), false),
        ];
        cleanup_stubs(
            &upper,
            &[lower.as_path()],
            &cands,
            &[true, true, false, true, true],
        );
        assert!(!upper.join("proc").exists());
        assert!(upper.join("dev/kept").exists(), "non-empty dir stays");
        assert!(!upper.join("etc/hosts").exists());
        assert!(upper.join("etc/hostname").exists(), "non-empty file stays");
        std::fs::remove_file(upper.join("etc/hostname")).unwrap();
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        cleanup_stubs(
            &upper,
            &[lower.as_path()],
            &cands,
            &[true, true, false, true, true],
        );
        assert!(
            !upper.join("etc").exists(),
            "copied-up parent with lower's metadata goes"
        );
    }
}
