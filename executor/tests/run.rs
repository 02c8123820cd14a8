//! End-to-end RUN tests (need root, overlayfs and namespaces) over a rootfs
//! made of /bin/busybox.

mod common;

use common::{Fixture, TestParent, exec, host_processes, sh};
use rbuild_executor::{
    CancelToken, ExecError, Mount, MountSource, Network, SecretValue, run, users::UserError,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// A `sleep` command line no other process on the host has (tests of other checkouts
/// may run beside these): found again by [`host_processes`]. It sleeps for days.
fn unique_sleep(n: usize) -> String {
    format!("sleep 9{:07}{n}", std::process::id())
}

#[test]
fn background_processes_and_mounts_do_not_survive() {
    let f = Fixture::new();
    let marker = f.dir.path().display().to_string();
    let sleep = unique_sleep(1);
    let o = sh(&f, &format!("{sleep} & {sleep} & echo started"));
    assert_eq!(o.stdout, "started\n");
    assert!(host_processes(&sleep).is_empty());
    assert!(mounts_mentioning(&marker).is_empty());
    assert!(mounts_mentioning("rbuild-run").is_empty());
}

#[test]
fn cancel_kills_the_container_and_leaves_nothing() {
    // Cancelled from the output callback once the script says its background sleep
    // has started: nothing here depends on how fast the machine is. Without the kill
    // the script would sleep for 11 days and never print "finished".
    let f = Fixture::new();
    let sleep = unique_sleep(2);
    let spec = f.spec(&format!(
        "{sleep} & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; \
         echo started; {sleep}; echo finished",
    ));
    let cancel = CancelToken::new();
    let mut out = Vec::new();
    let mut running_when_cancelled = Vec::new();
    let r = run(&spec, &cancel, &mut |_, b| {
        out.extend_from_slice(b);
        if out.ends_with(b"started\n") {
            running_when_cancelled = host_processes(&sleep);
            cancel.cancel();
        }
    });
    assert!(matches!(r, Err(ExecError::Cancelled)), "{r:?}");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "started\n",
        "killed, not finished"
    );
    // The script's shell and its background sleep were there, and are gone.
    assert!(
        running_when_cancelled.len() >= 2,
        "{running_when_cancelled:?}"
    );
    assert!(host_processes(&sleep).is_empty());
    assert!(mounts_mentioning("rbuild-run").is_empty());
    assert!(mounts_mentioning(&f.dir.path().display().to_string()).is_empty());
    assert_eq!(upper_entries(&f), Vec::<String>::new());
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

#[test]
fn kernel_paths_are_masked_and_read_only() {
    let f = Fixture::new();
    let o = sh(
        &f,
        "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo writable; \
         head -c 10 /proc/kcore | wc -c; \
         grep -E ' /proc/sys (ro|[^ ]* [^ ]* ro)' /proc/self/mountinfo >/dev/null; \
         cat /proc/self/mountinfo | grep -c ' /proc/sys '",
    );
    assert_eq!(o.stdout, "0\n1\n", "{}", o.stderr);
}

#[test]
fn output_is_delivered_while_running() {
    // Cancelling from the callback on the first line proves the line arrived
    // before the process finished (it would otherwise sleep 100 s).
    let f = Fixture::new();
    let spec = f.spec("echo first; sleep 100; echo second");
    let cancel = CancelToken::new();
    let mut seen = Vec::new();
    let r = run(&spec, &cancel, &mut |_, b| {
        seen.extend_from_slice(b);
        cancel.cancel();
    });
    assert!(matches!(r, Err(ExecError::Cancelled)), "{r:?}");
    assert_eq!(seen, b"first\n");
}

#[test]
fn large_output_and_null_stdin() {
    let f = Fixture::new();
    let o = sh(&f, "cat; head -c 1000000 /dev/zero; echo end >&2");
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.len(), 1_000_000);
    assert!(o.stdout.bytes().all(|b| b == 0));
    assert_eq!(o.stderr, "end\n");
}

#[test]
fn file_bind_mount_leaves_no_stub_in_layer() {
    let f = Fixture::new();
    let secret = f.dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let mut spec = f.spec("cat /etc/app/secret; echo x > /etc/app/secret 2>/dev/null || echo ro");
    spec.mounts = vec![Mount {
        target: "/etc/app/secret".into(),
        source: MountSource::Bind {
            source: secret.clone(),
            readonly: true,
        },
    }];
    let o = exec(&spec).unwrap();
    assert_eq!(o.stdout, "s3cr3tro\n");
    assert_eq!(upper_entries(&f), Vec::<String>::new());
    assert_eq!(std::fs::read(&secret).unwrap(), b"s3cr3t");
}

#[test]
fn secret_file_on_a_private_tmpfs_with_owner_and_mode() {
    let f = Fixture::new();
    let script = "cat /run/secrets/tok; echo; stat -c '%a %u %g' /run/secrets/tok; \
         grep ' /run/secrets/tok ' /proc/self/mountinfo | grep -o 'ro,nosuid,nodev,noexec' ; \
         grep ' /run/secrets/tok ' /proc/self/mountinfo | grep -o ' - tmpfs '; \
         echo x > /run/secrets/tok 2>/dev/null || echo ro; echo \"$TOKEN $KEEP\"";
    let mut spec = f.spec(script);
    let value = SecretValue::new(b"s3cr3t-value".to_vec());
    spec.mounts = vec![Mount {
        target: "/run/secrets/tok".into(),
        source: MountSource::Secret {
            value: value.clone(),
            mode: 0o440,
            uid: 1000,
            gid: 2000,
        },
    }];
    spec.env.push("TOKEN=image-value".into());
    spec.env.push("KEEP=kept".into());
    spec.secret_env = vec![("TOKEN".into(), value)];
    assert!(
        !format!("{spec:?}").contains("s3cr3t"),
        "Debug hides values"
    );
    let o = exec(&spec).unwrap();
    assert_eq!(
        o.stdout,
        "s3cr3t-value\n440 1000 2000\nro,nosuid,nodev,noexec\n - tmpfs \nro\ns3cr3t-value kept\n",
        "{}",
        o.stderr
    );
    // The stub and its parents the child made are gone; the host saw no mount.
    assert_eq!(upper_entries(&f), Vec::<String>::new());
    assert!(mounts_mentioning("rbuild-run").is_empty());
}

#[test]
fn a_secret_for_the_environment_may_not_hold_nul() {
    let f = Fixture::new();
    let mut spec = f.spec("true");
    spec.secret_env = vec![("T".into(), SecretValue::new(b"a\0hidden".to_vec()))];
    let Err(e) = exec(&spec) else {
        panic!("a NUL byte in an environment value was accepted")
    };
    let e = e.to_string();
    assert!(e.contains("environment variable T contains a NUL"), "{e}");
    assert!(!e.contains("hidden"), "{e}");
}

#[test]
fn stub_parent_with_user_changes_is_kept() {
    let f = Fixture::new();
    let mut spec = f.spec("echo data > /etc/app/other");
    spec.mounts = vec![Mount {
        target: "/etc/app/cache".into(),
        source: MountSource::Tmpfs { size: None },
    }];
    assert_eq!(exec(&spec).unwrap().code, 0);
    assert_eq!(upper_entries(&f), vec!["etc", "etc/app", "etc/app/other"]);
}

#[test]
fn directory_renames_stay_in_plain_overlay_form() {
    // redirect_dir is off: a renamed lower dir is copied, so the upper dir
    // needs no redirect xattrs to be read as a layer.
    let f = Fixture::new();
    std::fs::create_dir(f.base().join("data")).unwrap();
    std::fs::write(f.base().join("data/passwd"), "p").unwrap();
    let o = sh(&f, "mv /data /data2 && test -e /data2/passwd");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let c = std::ffi::CString::new(f.upper().join("data2").as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid path and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.redirect".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n < 0, "unexpected redirect xattr");
    assert_eq!(std::fs::read(f.upper().join("data2/passwd")).unwrap(), b"p");
    let m = std::fs::symlink_metadata(f.upper().join("data")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
}

#[test]
fn parallel_runs_from_a_multithreaded_tokio_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let fixtures: Vec<std::sync::Arc<Fixture>> = (0..6)
        .map(|_| std::sync::Arc::new(Fixture::new()))
        .collect();
    rt.block_on(async {
        // Busy allocating tasks make a fork-while-locked bug likely to bite.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut noise = Vec::new();
        for _ in 0..2 {
            let stop = stop.clone();
            noise.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
                    std::hint::black_box(v);
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut handles = Vec::new();
        for (i, f) in fixtures.iter().enumerate() {
            let f = f.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                let mut codes = Vec::new();
                for j in 0..3 {
                    let o = sh(&f, &format!("echo {i}-{j}; exit {}", (i + j) % 5));
                    assert_eq!(o.stdout, format!("{i}-{j}\n"));
                    codes.push(o.code);
                }
                codes
            }));
        }
        for (i, h) in handles.into_iter().enumerate() {
            let codes = h.await.unwrap();
            assert_eq!(
                codes,
                (0..3).map(|j| ((i + j) % 5) as i32).collect::<Vec<_>>()
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for n in noise {
            n.await.unwrap();
        }
    });
}

#[test]
fn permission_denied_exec_is_reported() {
    let f = Fixture::new();
    std::fs::write(f.base().join("notexec"), "#!/bin/sh\n").unwrap();
    let mut spec = f.spec("");
    spec.args = vec!["/notexec".into()];
    let e = exec(&spec).err().expect("must fail");
    assert!(e.to_string().contains("Permission denied"), "{e}");
}

#[test]
fn setup_failure_names_the_step() {
    let f = Fixture::new();
    std::fs::write(f.base().join("afile"), "").unwrap();
    let mut spec = f.spec("true");
    spec.cwd = "/afile/sub".into();
    let e = exec(&spec).err().expect("must fail");
    assert!(matches!(e, ExecError::Setup { .. }), "{e:?}");
    assert!(
        e.to_string().contains("working directory /afile/sub"),
        "{e}"
    );
}

#[test]
fn stubs_behind_an_etc_symlink_are_cleaned_too() {
    let f = Fixture::new();
    let base = f.base();
    std::fs::create_dir_all(base.join("private")).unwrap();
    std::fs::rename(base.join("etc"), base.join("private/etc")).unwrap();
    std::os::unix::fs::symlink("/private/etc", base.join("etc")).unwrap();
    let mut spec = f.spec("cat /etc/hostname; id -u");
    spec.user = "app".into();
    let o = exec(&spec).unwrap();
    assert_eq!(o.stdout, "testhost\n1000\n", "{}", o.stderr);
    assert_eq!(upper_entries(&f), Vec::<String>::new());
}

#[test]
fn run_in_a_plain_directory() {
    let f = Fixture::new();
    let root = f.base();
    let mut spec =
        f.spec("echo changed > /etc/lowerfile; mkdir /made 2>/dev/null || echo denied; id -u");
    spec.lowerdirs = vec![PathBuf::from("/nonexistent-ignored")];
    spec.user = "app:0".into();
    spec.cwd = "/w".into();
    std::fs::set_permissions(
        root.join("etc/lowerfile"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::set_permissions(root.join("etc"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut out = Vec::new();
    let code = rbuild_executor::run_in_dir(&root, &spec, &CancelToken::new(), &mut |_, b| {
        out.extend_from_slice(b)
    })
    .unwrap()
    .code;
    // mkdir in / is denied to uid 1000.
    assert_eq!((code, out.as_slice()), (0, b"denied\n1000\n".as_slice()));
    assert_eq!(
        std::fs::read(root.join("etc/lowerfile")).unwrap(),
        b"changed\n"
    );
    assert!(root.join("w").is_dir(), "cwd is created");
    for stub in [
        "proc",
        "dev",
        "sys",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(stub)).is_err(),
            "{stub} left behind"
        );
    }
    assert_eq!(
        upper_entries(&f),
        Vec::<String>::new(),
        "upperdir untouched"
    );
}

/// Unmounts a host mount made by a test, even when it fails.
struct HostMount(PathBuf);
impl Drop for HostMount {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn readonly_bind_covers_submounts() {
    let f = Fixture::new();
    let src = f.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let sub = std::ffi::CString::new(src.join("sub").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid strings; a private tmpfs for this test, unmounted by the guard.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            sub.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    let _guard = HostMount(src.join("sub"));
    let mut spec =
        f.spec("touch /m/a 2>/dev/null || echo ro-top; touch /m/sub/b 2>/dev/null || echo ro-sub");
    spec.mounts = vec![Mount {
        target: "/m".into(),
        source: MountSource::Bind {
            source: src.clone(),
            readonly: true,
        },
    }];
    assert_eq!(exec(&spec).unwrap().stdout, "ro-top\nro-sub\n");
    spec.mounts[0].source = MountSource::Bind {
        source: src.clone(),
        readonly: false,
    };
    assert_eq!(exec(&spec).unwrap().stdout, "");
    assert!(src.join("sub/b").exists());
}

#[test]
fn missing_layer_dir_is_a_setup_error_naming_it() {
    let f = Fixture::new();
    let mut spec = f.spec("true");
    spec.lowerdirs.push(f.dir.path().join("no-such-layer"));
    let e = exec(&spec).err().expect("must fail");
    assert!(e.to_string().contains("no-such-layer"), "{e}");
    assert_eq!(upper_entries(&f), Vec::<String>::new());
}

#[test]
fn loopback_answers_under_network_none() {
    let f = Fixture::new();
    let o = sh(&f, "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo up");
    assert_eq!(o.stdout, "up\n", "{}", o.stderr);
}

#[test]
fn cgroup_fs_is_read_only_and_namespaced() {
    let f = Fixture::new();
    let o = sh(
        &f,
        "cat /proc/self/cgroup; touch /sys/fs/cgroup/x 2>/dev/null || echo ro",
    );
    // Every hierarchy (v1 or v2) shows the container's cgroup as its root.
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines.len() >= 2, "{}", o.stdout);
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l.ends_with(":/")),
        "{}",
        o.stdout
    );
    assert_eq!(lines.last(), Some(&"ro"));
}

#[test]
fn signals_start_at_defaults() {
    // The Rust runtime ignores SIGPIPE; the container must not inherit that.
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.args = vec![
        "grep".into(),
        "-E".into(),
        "^Sig(Blk|Ign)".into(),
        "/proc/self/status".into(),
    ];
    let o = exec(&spec).unwrap();
    assert_eq!(
        o.stdout,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

/// The body of `killing_the_builder_kills_the_container`, run by it in a child process
/// of the test binary as the user and under the cgroup parent it names.
#[test]
#[ignore = "a helper: run by killing_the_builder_kills_the_container"]
fn helper_long_run() {
    let user = std::env::var("RBUILD_EXECUTOR_HELPER")
        .expect("run by killing_the_builder_kills_the_container");
    let f = Fixture::new();
    let sleep = std::env::var("RBUILD_EXECUTOR_HELPER_SLEEP")
        .expect("run by killing_the_builder_kills_the_container");
    let mut spec = f.spec(&format!("{sleep} & {sleep}"));
    spec.user = user;
    if let Ok(parent) = std::env::var("RBUILD_EXECUTOR_HELPER_CGROUP") {
        spec.cgroup.parent = parent;
    }
    let _ = exec(&spec);
}

#[test]
fn killing_the_builder_kills_the_container() {
    // A uid change clears the parent-death signal: check root and a user.
    for user in ["root", "app"] {
        // Unique to this test process: another checkout's tests may run beside it.
        let marker = unique_sleep(3 + user.len());
        let parent = TestParent::new(&format!("killed-{user}"));
        // The killed helper cannot clean up: its temp dirs go in ours.
        let tmp = tempfile::tempdir().unwrap();
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["helper_long_run", "--exact", "--ignored", "--nocapture"])
            .env("RBUILD_EXECUTOR_HELPER", user)
            .env("RBUILD_EXECUTOR_HELPER_SLEEP", &marker)
            .env("RBUILD_EXECUTOR_HELPER_CGROUP", &parent.name)
            .env("TMPDIR", tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while host_processes(&marker).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "container never started ({user})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        helper.kill().unwrap();
        helper.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !host_processes(&marker).is_empty() {
            assert!(
                Instant::now() < deadline,
                "container outlived the builder ({user})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The dead builder's cgroup stays behind until the next run under that parent
        // sweeps it away.
        assert!(!parent.leaves().is_empty(), "{user}");
        let f = Fixture::new();
        let mut spec = f.spec("true");
        spec.cgroup.parent = parent.name.clone();
        assert_eq!(exec(&spec).unwrap().code, 0);
        assert_eq!(parent.leaves(), Vec::<PathBuf>::new(), "{user}");
    }
}

#[test]
fn run_in_dir_works_on_an_overlayfs_root() {
    // CI runners whose own filesystem is overlayfs: no overlay upper there,
    // but a plain directory on it can still be the container's root.
    let f = Fixture::new();
    let d = f.dir.path();
    let (u, w, m) = (d.join("ou"), d.join("ow"), d.join("om"));
    for p in [&u, &w, &m] {
        std::fs::create_dir(p).unwrap();
    }
    let outer = rbuild_executor::OverlayMount::mount(&[f.base()], &u, &w, &m).unwrap();
    assert!(!rbuild_executor::overlay_supported(outer.path()));
    let mut spec = f.spec("id -u; echo hi 2>/dev/null >/tmp-new || echo denied");
    spec.user = "app".into();
    let mut out = Vec::new();
    let code =
        rbuild_executor::run_in_dir(outer.path(), &spec, &CancelToken::new(), &mut |_, b| {
            out.extend_from_slice(b)
        })
        .unwrap()
        .code;
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (0, "1000\ndenied\n")
    );
    spec.user = String::new();
    spec.args[2] = "echo hi > /new".into();
    let code =
        rbuild_executor::run_in_dir(outer.path(), &spec, &CancelToken::new(), &mut |_, _| {})
            .unwrap()
            .code;
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(outer.path().join("new")).unwrap(), b"hi\n");
    for stub in ["proc", "dev", "sys", "etc/hosts"] {
        assert!(
            std::fs::symlink_metadata(outer.path().join(stub)).is_err(),
            "{stub} left behind"
        );
    }
}
