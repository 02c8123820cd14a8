//! A hostile Dockerfile through the rbuild binary: each escape a RUN tries is refused,
//! the step says so, and nothing is left on the host; `RUN --security=insecure` needs
//! `--allow security.insecure`, checked before anything runs. Needs root, a cgroup
//! hierarchy with the pids and memory controllers, busybox-static and gcc.

use rbuild_tests::{Env, executed, plain_steps};
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The executor's syscall probe, built static into `dir`.
fn build_probe(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../executor/tests/probe/sandbox_probe.c");
    let status = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.join("probe"))
        .arg(&src)
        .status()
        .expect("gcc (scripts/install-deps.sh)");
    assert!(status.success(), "building {}", src.display());
}

/// Host processes whose command line contains `needle`.
fn host_processes(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            String::from_utf8_lossy(c)
                .replace('\0', " ")
                .contains(needle)
        })
        .count()
}

/// The per-run cgroups a builder with process id `pid` left under the default parent.
fn cgroups_left_by(pid: u32) -> Vec<PathBuf> {
    let mut left = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if !matches!(f.get(dash + 1), Some(&"cgroup") | Some(&"cgroup2")) {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(Path::new(f[4]).join("rbuild")) {
            left.extend(
                entries
                    .flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{pid}-"))
                    })
                    .map(|e| e.path()),
            );
        }
    }
    left
}

const HOSTILE: &str = r#"FROM busybox:latest
COPY probe /bin/probe
RUN grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
    unshare -U -r id && echo ESCAPED-INTO-A-USER-NAMESPACE; \
    mkdir -p /mnt && mount -t tmpfs tmpfs /mnt && echo MOUNTED; \
    /bin/probe; \
    echo kcore-bytes $(cat /proc/kcore 2>/dev/null | wc -c); \
    echo h > /proc/sysrq-trigger && echo SYSRQ-WRITTEN; \
    echo 1 > /proc/sys/kernel/ns_last_pid && echo SYSCTL-WRITTEN; \
    echo open-files $(ulimit -n); \
    echo forking; while :; do SLEEP & done
"#;

#[test]
fn a_hostile_run_is_refused_and_the_host_untouched() {
    let env = Env::new();
    env.busybox_base();
    // A command line no other process on the host has (another checkout's tests may
    // run beside this one): the fork bomb's children are found by it.
    let sleep = format!("sleep 9{:07}", std::process::id());
    let dockerfile = HOSTILE.replace("SLEEP", &sleep);
    let ctx = env.context("hostile", &[("Dockerfile", &dockerfile)]);
    build_probe(&ctx);
    let child = env
        .cmd(&["build", "--progress=plain", "-t", "hostile", p(&ctx)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");

    let steps = plain_steps(&err);
    let run = steps
        .iter()
        .find(|s| s.name.contains("RUN grep"))
        .unwrap_or_else(|| panic!("no RUN step in:\n{err}"));
    let output = run.output.join("\n");
    for refused in [
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "unshare-user EPERM",
        "clone-newuser EPERM",
        "clone3 ENOSYS",
        "mount-tmpfs EPERM",
        "keyctl EPERM",
        "add_key EPERM",
        "bpf EPERM",
        "perf_event_open EPERM",
        "init_module EPERM",
        "reboot EPERM",
        "kcore-bytes 0",
        "open-files 1024",
        "forking",
    ] {
        assert!(
            output.contains(refused),
            "{refused:?} missing in:\n{output}"
        );
    }
    for escaped in [
        "ESCAPED-INTO-A-USER-NAMESPACE",
        "MOUNTED",
        "SYSRQ-WRITTEN",
        "SYSCTL-WRITTEN",
    ] {
        assert!(!output.contains(escaped), "{escaped}:\n{output}");
    }
    // The fork bomb failed the step, and the error says why.
    assert!(
        err.contains("pids limit reached: the step may run at most 4096 processes"),
        "{err}"
    );
    assert!(
        err.contains("Dockerfile:3"),
        "names the Dockerfile line: {err}"
    );
    // Nothing of it is left: no process, no cgroup, no image.
    assert_eq!(host_processes(&sleep), 0);
    assert_eq!(cgroups_left_by(pid), Vec::<PathBuf>::new());
    assert!(
        !env.run(&["images"])
            .stdout
            .windows(7)
            .any(|w| w == b"hostile")
    );
}

#[test]
fn a_run_shows_its_peak_memory() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox:latest\nRUN dd if=/dev/zero of=/dev/null bs=50M count=1\n";
    let ctx = env.context("memory", &[("Dockerfile", df)]);
    let out = env.ok(&["build", "--progress=plain", p(&ctx)]);
    let err = stderr(&out);
    let done = err
        .lines()
        .find(|l| l.contains(" DONE ") && l.contains("peak memory"))
        .unwrap_or_else(|| panic!("no peak memory in:\n{err}"));
    // `#N DONE 0.1s (peak memory 50.6 MiB)`
    let mib: f64 = done
        .split("peak memory ")
        .nth(1)
        .and_then(|m| m.strip_suffix(" MiB)"))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("{done}"));
    assert!(mib >= 50.0, "{done}");
    assert!(!err.contains("WARNING"), "{err}");
}

#[test]
fn insecure_needs_allow_and_is_refused_before_the_build_starts() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox:latest\n\
              RUN echo sandboxed-step-ran; grep Seccomp: /proc/self/status\n\
              RUN --security=insecure grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status\n";
    let ctx = env.context("insecure", &[("Dockerfile", df)]);

    let out = env.run(&["build", "--progress=plain", p(&ctx)]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "RUN --security=insecure is not allowed: the build needs --allow security.insecure"
        ),
        "{err}"
    );
    assert!(err.contains("Dockerfile:3"), "names the line: {err}");
    // Nothing ran, not even the step before it.
    let steps = plain_steps(&err);
    assert_eq!(executed(&steps, "RUN"), Vec::<String>::new());
    assert!(steps.iter().all(|s| s.output.is_empty()), "{err}");

    let out = env.ok(&[
        "build",
        "--progress=plain",
        "--allow",
        "security.insecure",
        p(&ctx),
    ]);
    let steps = plain_steps(&stderr(&out));
    let output = |needle: &str| {
        steps
            .iter()
            .find(|s| s.name.contains(needle))
            .map(|s| s.output.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        output("RUN echo sandboxed"),
        ["sandboxed-step-ran", "Seccomp:\t2"]
    );
    assert_eq!(
        output("RUN --security=insecure"),
        ["NoNewPrivs:\t0", "Seccomp:\t0"]
    );

    let out = env.run(&["build", "--allow", "device", p(&ctx)]);
    assert!(
        stderr(&out).contains("unknown entitlement"),
        "{}",
        stderr(&out)
    );
}
