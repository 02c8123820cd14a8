//! Rootless mode: rbuild started by an ordinary user re-executes itself in a new user
//! namespace that maps the user to root (and the user's `/etc/subuid`, `/etc/subgid`
//! ranges to the IDs after it, through the setuid `newuidmap`/`newgidmap`), with a mount
//! namespace of its own. Inside, rbuild is root: the store, overlayfs, `chown` and the
//! RUN namespaces work as they do for root, and the images are the same, since owners are
//! recorded as they are inside. Without subordinate ranges only the user's own IDs are
//! mapped, with one warning saying what cannot be represented.
//!
//! The parent stays outside: it writes the child's ID maps once the child has made its
//! namespace (a pipe each way says when), then waits for it and exits with its status.

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// `--isolation`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// `namespaces` as root, `chroot` as root without CAP_SYS_ADMIN, else `rootless`.
    Auto,
    /// Namespaces made as root (needs root).
    Namespaces,
    /// A user namespace of the calling user; as root the same as `namespaces`.
    Rootless,
    /// No namespaces at all, as root without CAP_SYS_ADMIN: RUN is chrooted into a copy
    /// of its rootfs.
    Chroot,
}

/// Subordinate ID ranges: `(first host ID, count)`.
type Ranges = Vec<(u32, u32)>;

/// The environment variable that tells the re-executed rbuild which fds talk to its
/// parent: `READ,WRITE`.
const SYNC_ENV: &str = "RBUILD_USERNS_SYNC";

/// The store when `--root` is not given: `/var/lib/rbuild` for root, else the user's
/// data directory.
pub fn default_root() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/rbuild"));
    }
    user_root(
        std::env::var_os("XDG_DATA_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
    .context(
        "neither XDG_DATA_HOME nor HOME names an absolute directory for the store: give --root",
    )
}

/// `$XDG_DATA_HOME/rbuild`, else `$HOME/.local/share/rbuild` (relative values are ignored,
/// as the XDG specification says).
fn user_root(xdg: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    fn abs(v: Option<&OsStr>) -> Option<&Path> {
        v.map(Path::new).filter(|p| p.is_absolute())
    }
    abs(xdg)
        .map(|d| d.join("rbuild"))
        .or_else(|| abs(home).map(|h| h.join(".local/share/rbuild")))
}

/// What this process does with `--isolation` given who it is.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Run here: root, or already inside the namespace.
    AsIs,
    /// Re-execute in a user namespace.
    UserNamespace,
    /// Run here with chroot isolation.
    Chroot,
}

/// `root`: effective uid 0; `sys_admin`: CAP_SYS_ADMIN in the effective set.
fn plan(isolation: Isolation, root: bool, sys_admin: bool) -> Result<Plan> {
    match (isolation, root) {
        (Isolation::Chroot, true) => Ok(Plan::Chroot),
        (Isolation::Chroot, false) => bail!(
            "--isolation=chroot needs root (to chroot and chown): as an ordinary user, use --isolation=rootless (or auto)"
        ),
        (Isolation::Auto, true) if !sys_admin => Ok(Plan::Chroot),
        (Isolation::Namespaces, true) if !sys_admin => bail!(
            "--isolation=namespaces needs CAP_SYS_ADMIN, which this process lacks: use --isolation=chroot (or auto)"
        ),
        (_, true) => Ok(Plan::AsIs),
        (Isolation::Namespaces, false) => bail!(
            "--isolation=namespaces needs root: run as root, or use --isolation=rootless (or auto)"
        ),
        (Isolation::Auto | Isolation::Rootless, false) => Ok(Plan::UserNamespace),
    }
}

/// capability.h's number of CAP_SYS_ADMIN.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether `/proc/self/status` text gives CAP_SYS_ADMIN (bit 21) in `CapEff`.
fn has_sys_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// In the re-executed rbuild (first thing in `main`, while it has one thread): makes the
/// user and mount namespaces, lets the parent write the ID maps, and becomes root in them.
/// Does nothing in any other process.
pub fn child_enter() -> Result<()> {
    let Some(sync) = std::env::var_os(SYNC_ENV) else {
        return Ok(());
    };
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe { std::env::remove_var(SYNC_ENV) };
    let (rfd, wfd) = sync
        .to_str()
        .and_then(|s| s.split_once(','))
        .and_then(|(r, w)| Some((r.parse::<i32>().ok()?, w.parse::<i32>().ok()?)))
        .with_context(|| format!("{SYNC_ENV}={sync:?} is not READ,WRITE"))?;
    // SAFETY: the parent passed these two fds, open and ours alone, in SYNC_ENV.
    let (mut from_parent, mut to_parent) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(rfd),
            std::fs::File::from_raw_fd(wfd),
        )
    };
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|e| {
        anyhow::anyhow!(
            "rootless: cannot create a user namespace ({e}): user namespaces are not allowed \
             here (see sysctl user.max_user_namespaces, and a container's seccomp profile); \
             run rbuild as root"
        )
    })?;
    to_parent
        .write_all(b"u")
        .context("rootless: telling the parent")?;
    drop(to_parent);
    let mut b = [0u8; 1];
    if from_parent.read(&mut b).ok() != Some(1) || b[0] != b'm' {
        bail!("rootless: the ID maps of the user namespace were not written (see above)");
    }
    use nix::unistd::{Gid, Uid, setresgid, setresuid};
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .context("rootless: becoming gid 0 in the user namespace")?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .context("rootless: becoming uid 0 in the user namespace")?;
    // The parent only waits: when it is killed, this build is cancelled as by a SIGTERM
    // (set after the uid change, which clears it).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // Denied when only the user's own gid is mapped; its groups then stay as they are.
    let _ = nix::unistd::setgroups(&[]);
    use nix::mount::{MsFlags, mount};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("rootless: making / private in the mount namespace")?;
    Ok(())
}

/// Once the flags are read: when `isolation` and who runs rbuild call for it, runs this
/// same command again in a user namespace and returns its exit status; `None` means go on
/// here. `root` is the store, passed on so the child uses the user's.
pub fn enter(isolation: Isolation, root: &Path) -> Result<Option<ExitCode>> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match plan(
        isolation,
        nix::unistd::geteuid().is_root(),
        has_sys_admin(&status),
    )? {
        Plan::AsIs => return Ok(None),
        Plan::Chroot => {
            if isolation == Isolation::Auto {
                eprintln!(
                    "note: no CAP_SYS_ADMIN, so no namespaces: RUN steps use chroot isolation (--isolation=chroot) on copies of their rootfs"
                );
            }
            rbuild_executor::use_chroot_isolation();
            return Ok(None);
        }
        Plan::UserNamespace => {}
    }
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let subuids = subids(Path::new("/etc/subuid"), &name, uid);
    let subgids = subids(Path::new("/etc/subgid"), &name, uid);
    let helpers = which("newuidmap").is_some() && which("newgidmap").is_some();
    let ranged = helpers && !subuids.is_empty() && !subgids.is_empty();
    if !ranged {
        eprintln!("{}", single_id_warning(&name, uid, gid, helpers));
    }

    let (from_child, child_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (child_r, to_child) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (cr, cw) = (child_r.as_raw_fd(), child_w.as_raw_fd());
    let exe = std::env::current_exe().context("rootless: finding rbuild's own executable")?;
    let mut cmd = Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(SYNC_ENV, format!("{cr},{cw}"))
        .env("RBUILD_ROOT", root);
    use std::os::unix::process::CommandExt;
    // SAFETY: only fcntl, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [cr, cw] {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("rootless: starting {}", exe.display()))?;
    drop((child_r, child_w));
    // The terminal's ^C and ^\ reach the child too, which stops the build itself.
    // SAFETY: setting signal dispositions to ignore.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let mapped = map_child(
        from_child,
        to_child,
        child.id(),
        (uid, gid),
        ranged.then_some((&subuids, &subgids)),
    );
    if let Err(e) = mapped {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let status = child.wait().context("rootless: waiting for rbuild")?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(Some(ExitCode::from(u8::try_from(code).unwrap_or(1))))
}

/// Waits for the child's namespace, writes its maps, and lets it go on. A child that
/// ended before (it printed why) is no error here.
fn map_child(
    from_child: OwnedFd,
    to_child: OwnedFd,
    pid: u32,
    (uid, gid): (u32, u32),
    ranges: Option<(&Ranges, &Ranges)>,
) -> Result<()> {
    let mut from_child = std::fs::File::from(from_child);
    let mut b = [0u8; 1];
    if from_child.read(&mut b).ok() != Some(1) {
        return Ok(()); // the child failed and said why
    }
    match ranges {
        Some((subuids, subgids)) => {
            run_map_helper("newuidmap", pid, &map_args(uid, subuids))?;
            run_map_helper("newgidmap", pid, &map_args(gid, subgids))?;
        }
        None => {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let write = |file: &str, text: String| {
                std::fs::write(proc.join(file), &text)
                    .with_context(|| format!("rootless: writing {text:?} to /proc/{pid}/{file}"))
            };
            write("uid_map", format!("0 {uid} 1\n"))?;
            write("setgroups", "deny".to_string())?;
            write("gid_map", format!("0 {gid} 1\n"))?;
        }
    }
    std::fs::File::from(to_child)
        .write_all(b"m")
        .context("rootless: letting rbuild go on in its namespace")
}

fn run_map_helper(helper: &str, pid: u32, args: &[String]) -> Result<()> {
    let out = Command::new(helper)
        .arg(pid.to_string())
        .args(args)
        .output()
        .with_context(|| format!("rootless: running {helper} (Debian: apt-get install uidmap)"))?;
    if !out.status.success() {
        bail!(
            "rootless: {helper} {pid} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `newuidmap`'s triplets: the user's own ID as 0, then its ranges from 1 on.
fn map_args(own: u32, ranges: &[(u32, u32)]) -> Vec<String> {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut inside: u64 = 1;
    for &(start, count) in ranges {
        args.extend([inside.to_string(), start.to_string(), count.to_string()]);
        inside += u64::from(count);
    }
    args
}

/// The user's ranges in a `/etc/subuid`-style file (none when it is missing).
fn subids(file: &Path, name: &str, uid: u32) -> Ranges {
    std::fs::read_to_string(file)
        .map(|text| parse_subids(&text, name, uid))
        .unwrap_or_default()
}

/// `NAME:START:COUNT` lines (or `UID:…`) of this user.
fn parse_subids(text: &str, name: &str, uid: u32) -> Ranges {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != uid {
                return None;
            }
            let (start, count) = (start.parse().ok()?, count.parse().ok()?);
            (count > 0).then_some((start, count))
        })
        .collect()
}

fn single_id_warning(name: &str, uid: u32, gid: u32, helpers: bool) -> String {
    let why = if helpers {
        format!("{name} has no range in /etc/subuid and /etc/subgid")
    } else {
        "newuidmap/newgidmap are missing (Debian: apt-get install uidmap)".to_string()
    };
    format!(
        "warning: rootless: {why}, so only uid {uid} and gid {gid} are mapped (to root): files \
         owned by other IDs (in base images, COPY --chown, RUN chown, USER other than root) \
         cannot be represented and the steps that make them fail; give {name} ranges with \
         `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}`"
    )
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_the_users() {
        let r = user_root(Some(OsStr::new("/x/data")), Some(OsStr::new("/home/a")));
        assert_eq!(r, Some(PathBuf::from("/x/data/rbuild")));
        let r = user_root(Some(OsStr::new("rel")), Some(OsStr::new("/home/a")));
        assert_eq!(r, Some(PathBuf::from("/home/a/.local/share/rbuild")));
        assert_eq!(user_root(None, Some(OsStr::new("rel"))), None);
    }

    #[test]
    fn plans() {
        use Isolation::*;
        assert_eq!(plan(Auto, true, true).unwrap(), Plan::AsIs);
        assert_eq!(plan(Rootless, true, true).unwrap(), Plan::AsIs);
        assert_eq!(plan(Auto, false, false).unwrap(), Plan::UserNamespace);
        assert_eq!(plan(Rootless, false, false).unwrap(), Plan::UserNamespace);
        assert!(
            plan(Namespaces, false, false)
                .unwrap_err()
                .to_string()
                .contains("needs root")
        );
        assert_eq!(plan(Auto, true, false).unwrap(), Plan::Chroot);
        assert_eq!(plan(Chroot, true, true).unwrap(), Plan::Chroot);
        assert!(plan(Chroot, false, false).is_err());
        let e = plan(Namespaces, true, false).unwrap_err().to_string();
        assert!(e.contains("CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn capabilities() {
        assert!(has_sys_admin("Name:\tx\nCapEff:\t000001fffeffffff\n"));
        assert!(!has_sys_admin("CapEff:\t000001fffedfffff\n"));
        assert!(!has_sys_admin(""));
    }

    #[test]
    fn subordinate_ranges() {
        let text = "alice:100000:65536\nbob:200000:10\n1001:300000:5\nalice:400000:0\nbad\n";
        assert_eq!(parse_subids(text, "alice", 1000), vec![(100000, 65536)]);
        assert_eq!(parse_subids(text, "carol", 1001), vec![(300000, 5)]);
        assert!(parse_subids(text, "dave", 7).is_empty());
        assert_eq!(
            map_args(1000, &[(100000, 65536), (300000, 5)]),
            [
                "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "5"
            ]
        );
    }

    #[test]
    fn the_warning_says_what_is_lost() {
        let w = single_id_warning("ci", 1000, 1000, true);
        assert!(w.contains("ci has no range in /etc/subuid"), "{w}");
        assert!(w.contains("COPY --chown"), "{w}");
        assert!(single_id_warning("ci", 1, 1, false).contains("apt-get install uidmap"));
    }
}
