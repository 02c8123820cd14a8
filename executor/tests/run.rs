//! End-to-end RUN tests (need root, overlayfs and namespaces) over a rootfs
//! made of /bin/busybox.

use rbuild_executor::{
    CancelToken, ExecError, Mount, MountSource, Network, RunSpec, Stream, run, users::UserError,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const APPLETS: &[&str] = &[
    "sh", "echo", "ls", "cat", "id", "sleep", "ps", "true", "false", "env", "pwd", "rm", "touch",
    "mkdir", "grep", "wc", "test", "kill", "stat", "hostname", "head",
];

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir_all(base.join("bin")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", base.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            base.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            base.join("etc/group"),
            "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
        )
        .unwrap();
        std::fs::write(base.join("etc/lowerfile"), "from lower\n").unwrap();
        for d in ["upper", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Fixture { dir }
    }
    fn base(&self) -> PathBuf {
        self.dir.path().join("base")
    }
    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            lowerdirs: vec![self.base()],
            upperdir: self.upper(),
            workdir: self.dir.path().join("work"),
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: Network::None,
            hostname: "testhost".into(),
            mounts: vec![],
        }
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn exec(spec: &RunSpec) -> Result<Out, ExecError> {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = run(spec, &CancelToken::new(), &mut |s, b| match s {
        Stream::Stdout => o.extend_from_slice(b),
        Stream::Stderr => e.extend_from_slice(b),
    })?;
    Ok(Out {
        code,
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
    })
}

fn sh(f: &Fixture, script: &str) -> Out {
    exec(&f.spec(script)).unwrap()
}

fn upper_entries(f: &Fixture) -> Vec<String> {
    let mut v: Vec<String> = walk(&f.upper())
        .into_iter()
        .map(|p| p.strip_prefix(f.upper()).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// Host processes whose command line contains `needle`.
fn host_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(c);
            }
        }
    }
    found
}

fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

#[test]
fn exit_code_propagates() {
    let f = Fixture::new();
    assert_eq!(sh(&f, "exit 3").code, 3);
    assert_eq!(sh(&f, "true").code, 0);
}

#[test]
fn output_is_captured_per_stream() {
    let f = Fixture::new();
    let o = sh(&f, "echo out; echo err >&2; echo more");
    assert_eq!(o.stdout, "out\nmore\n");
    assert_eq!(o.stderr, "err\n");
}

#[test]
fn writes_land_in_upper_not_lower() {
    let f = Fixture::new();
    assert_eq!(sh(&f, "echo hi > /newfile").code, 0);
    assert_eq!(std::fs::read(f.upper().join("newfile")).unwrap(), b"hi\n");
    assert!(!f.base().join("newfile").exists());
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout() {
    let f = Fixture::new();
    assert_eq!(
        sh(&f, "rm /etc/lowerfile && test ! -e /etc/lowerfile").code,
        0
    );
    let m = std::fs::symlink_metadata(f.upper().join("etc/lowerfile")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert!(f.base().join("etc/lowerfile").exists());
}

#[test]
fn upper_is_empty_after_true_without_mountpoints_in_base() {
    let f = Fixture::new();
    for p in [
        "proc",
        "dev",
        "sys",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        assert!(!f.base().join(p).exists());
    }
    assert_eq!(sh(&f, "true").code, 0);
    assert_eq!(upper_entries(&f), Vec::<String>::new());
}

#[test]
fn etc_files_are_bind_mounted_not_in_layer() {
    let f = Fixture::new();
    let o = sh(
        &f,
        "cat /etc/hosts; hostname; cat /etc/hostname; test -e /etc/resolv.conf && echo resolv",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("127.0.0.1\tlocalhost testhost"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("testhost\ntesthost\nresolv\n"),
        "{}",
        o.stdout
    );
    assert!(!f.upper().join("etc/hosts").exists());
    assert!(!f.upper().join("etc").exists());
}

#[test]
fn env_path_home_and_cwd() {
    let f = Fixture::new();
    let mut spec = f.spec("echo \"$PATH|$HOME|$FOO\"; pwd");
    spec.env = vec!["FOO=bar baz".into()];
    spec.cwd = "/work/sub".into();
    let o = exec(&spec).unwrap();
    assert_eq!(
        o.stdout,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root|bar baz\n/work/sub\n"
    );
    // The working directory is part of the layer, root-owned 0755.
    let m = std::fs::metadata(f.upper().join("work/sub")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (0, 0, 0o755)
    );

    let mut spec = f.spec("echo \"$PATH|$HOME\"");
    spec.env = vec!["PATH=/bin".into(), "HOME=/h".into()];
    assert_eq!(exec(&spec).unwrap().stdout, "/bin|/h\n");
}

#[test]
fn user_by_name_gets_its_groups_and_home() {
    let f = Fixture::new();
    let mut spec = f.spec("id; echo $HOME");
    spec.user = "app".into();
    let o = exec(&spec).unwrap();
    assert!(
        o.stdout.starts_with("uid=1000(app) gid=1000(app) groups="),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("2000(extra)"), "{}", o.stdout);
    assert!(o.stdout.ends_with("/home/app\n"), "{}", o.stdout);
}

#[test]
fn numeric_user_and_group() {
    let f = Fixture::new();
    let mut spec = f.spec("id -u; id -g; id -G");
    spec.user = "1234:5".into();
    assert_eq!(exec(&spec).unwrap().stdout, "1234\n5\n5\n");
}

#[test]
fn non_root_user_has_no_effective_capabilities() {
    let f = Fixture::new();
    let mut spec = f.spec("grep -E '^Cap(Eff|Bnd)' /proc/self/status");
    spec.user = "app".into();
    let o = exec(&spec).unwrap();
    assert_eq!(
        o.stdout,
        "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );
}

#[test]
fn root_gets_dockers_default_capabilities() {
    let f = Fixture::new();
    let o = sh(&f, "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status");
    assert_eq!(
        o.stdout,
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    );
}

#[test]
fn unknown_user_is_an_error_naming_user_and_file() {
    let f = Fixture::new();
    let mut spec = f.spec("true");
    spec.user = "nobody".into();
    let e = exec(&spec).err().expect("must fail");
    assert!(
        matches!(e, ExecError::User(UserError::UserNotFound { .. })),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("nobody") && msg.contains("/etc/passwd"),
        "{msg}"
    );
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let f = Fixture::new();
    let o = sh(&f, "cat /proc/net/dev; cat /sys/class/net/lo/flags");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ifaces: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
        .collect();
    assert_eq!(ifaces, vec!["lo"]);
    let flags = o.stdout.lines().last().unwrap();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "IFF_UP");
}

#[test]
fn network_host_shares_interfaces() {
    let f = Fixture::new();
    let mut spec = f.spec("cat /proc/net/dev");
    spec.network = Network::Host;
    let inside = exec(&spec).unwrap().stdout;
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    let names = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&inside), names(&host));
}

#[test]
fn process_is_pid_1_of_its_namespace() {
    let f = Fixture::new();
    let o = sh(&f, "echo $$; ps -o pid | wc -l");
    let mut lines = o.stdout.lines();
    assert_eq!(lines.next(), Some("1"));
    let n: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(n <= 4, "ps saw {n} lines");
}

#[test]
fn background_processes_and_mounts_do_not_survive() {
    let f = Fixture::new();
    let marker = f.dir.path().display().to_string();
    let o = sh(&f, "sleep 987123 & sleep 987123 & echo started");
    assert_eq!(o.stdout, "started\n");
    assert!(host_processes("sleep 987123").is_empty());
    assert!(mounts_mentioning(&marker).is_empty());
    assert!(mounts_mentioning("rbuild-run").is_empty());
}

#[test]
fn cancel_kills_promptly_and_leaves_nothing() {
    let f = Fixture::new();
    let spec = f.spec("sleep 987456 & sleep 987456");
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        c2.cancel();
        Instant::now()
    });
    let r = run(&spec, &cancel, &mut |_, _| {});
    let cancelled_at = t.join().unwrap();
    assert!(matches!(r, Err(ExecError::Cancelled)), "{r:?}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));
    assert!(host_processes("sleep 987456").is_empty());
    assert!(mounts_mentioning("rbuild-run").is_empty());
}

#[test]
fn forty_lowerdirs_mount() {
    let f = Fixture::new();
    let mut lowers = vec![f.base()];
    for i in 0..40 {
        // Long names make the plain option string exceed a page.
        let l = f
            .dir
            .path()
            .join(format!("layer-{i:02}-{}", "x".repeat(100)));
        std::fs::create_dir(&l).unwrap();
        std::fs::write(l.join(format!("f{i}")), format!("{i}\n")).unwrap();
        std::fs::write(l.join("top"), format!("{i}\n")).unwrap();
        lowers.push(l);
    }
    let mut spec = f.spec("cat /f0 /f39 /top; ls / | grep -c '^f'");
    spec.lowerdirs = lowers;
    let o = exec(&spec).unwrap();
    assert_eq!(o.stdout, "0\n39\n39\n40\n", "{}", o.stderr);
}

#[test]
fn scratch_with_bind_and_tmpfs_mounts() {
    let f = Fixture::new();
    let bb = f.dir.path().join("bb");
    std::fs::create_dir(&bb).unwrap();
    std::fs::copy("/bin/busybox", bb.join("busybox")).unwrap();
    let mut spec = f.spec("");
    spec.lowerdirs = vec![];
    spec.args = vec![
        "/opt/bb/busybox".into(),
        "sh".into(),
        "-c".into(),
        "echo t > /scratch/x && /opt/bb/busybox cat /scratch/x && echo nope > /opt/bb/y".into(),
    ];
    spec.mounts = vec![
        Mount {
            target: "/opt/bb".into(),
            source: MountSource::Bind {
                source: bb.clone(),
                readonly: true,
            },
        },
        Mount {
            target: "/scratch".into(),
            source: MountSource::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    let o = exec(&spec).unwrap();
    assert_eq!(o.stdout, "t\n");
    assert_ne!(o.code, 0, "read-only bind must refuse writes");
    assert!(!bb.join("y").exists());
    assert_eq!(
        upper_entries(&f),
        Vec::<String>::new(),
        "mountpoints and tmpfs content stay out of the layer"
    );
}

#[test]
fn missing_executable_is_an_exec_error() {
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.args = vec!["nosuchcmd".into()];
    let e = exec(&spec).err().expect("must fail");
    assert!(matches!(e, ExecError::Exec { .. }), "{e:?}");
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn args_are_exec_form_and_searched_in_path() {
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.args = vec!["echo".into(), "a  b".into(), "$HOME".into()];
    assert_eq!(exec(&spec).unwrap().stdout, "a  b $HOME\n");
}

#[test]
fn dev_has_the_usual_nodes() {
    let f = Fixture::new();
    let o = sh(
        &f,
        "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; \
         echo x > /dev/null; head -c 3 /dev/zero | wc -c; test -d /dev/pts && test -d /dev/shm && echo ok; \
         touch /sys/x 2>/dev/null || echo sys-ro",
    );
    assert_eq!(o.stdout, "3\nok\nsys-ro\n", "{}", o.stderr);
}
