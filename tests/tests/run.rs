//! `rbuild run`, `rbuild build --run` and several `--target`s in one build,
//! through the binary with real namespaces over a busybox base.

use rbuild_tests::{Env, Registry, executed, plain_steps};
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("rbuild exited, not killed")
}

/// An Env with busybox:latest and `name` built from `dockerfile`.
fn with_image(name: &str, dockerfile: &str) -> Env {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("img", &[("Dockerfile", dockerfile)]);
    env.ok(&["build", "-q", "-t", name, ctx.to_str().unwrap()]);
    env
}

/// What a run may leave behind: entries in ROOT/tmp and mounts under ROOT.
fn leftovers(root: &Path) -> (Vec<String>, Vec<String>) {
    let tmp: Vec<String> = std::fs::read_dir(root.join("tmp"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let root = root.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root))
        .map(String::from)
        .collect();
    (tmp, mounts)
}

#[test]
fn entrypoint_and_cmd_and_their_override() {
    let env = with_image(
        "ep:1",
        "FROM busybox\nENTRYPOINT [\"echo\", \"ep\"]\nCMD [\"default\"]\n",
    );
    assert_eq!(stdout(&env.ok(&["run", "--rm", "ep:1"])), "ep default\n");
    assert_eq!(
        stdout(&env.ok(&["run", "ep:1", "other", "-n"])),
        "ep other -n\n"
    );
    // --entrypoint replaces the image's and drops its CMD (docker's rule).
    assert_eq!(
        stdout(&env.ok(&["run", "--entrypoint", "echo", "ep:1"])),
        "\n"
    );
    assert_eq!(
        stdout(&env.ok(&["run", "--entrypoint", "", "ep:1", "echo", "x"])),
        "x\n"
    );
    // Without an ENTRYPOINT the command replaces CMD entirely.
    assert_eq!(
        stdout(&env.ok(&["run", "busybox", "echo", "plain"])),
        "plain\n"
    );
}

#[test]
fn env_user_workdir_from_the_image_and_the_flags() {
    let env = with_image(
        "cfg:1",
        "FROM busybox\nENV A=img B=keep\nUSER app\nWORKDIR /home/app\n",
    );
    let script = "echo A=$A B=$B C=$C; id -u; pwd";
    let o = env.ok(&["run", "cfg:1", "sh", "-c", script]);
    assert_eq!(stdout(&o), "A=img B=keep C=\n1000\n/home/app\n");
    let o = env.ok(&[
        "run",
        "-e",
        "A=cli",
        "-e",
        "C=new",
        "--user",
        "root",
        "--workdir",
        "/made/here",
        "cfg:1",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(stdout(&o), "A=cli B=keep C=new\n0\n/made/here\n");
    let o = env.ok(&["run", "-u", "app", "busybox", "id", "-u"]);
    assert_eq!(stdout(&o), "1000\n");
}

#[test]
fn network_none_has_only_loopback() {
    let env = with_image("n:1", "FROM busybox\n");
    let ifaces = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let o = env.ok(&["run", "--network", "none", "n:1", "sh", "-c", ifaces]);
    assert_eq!(stdout(&o), "lo\n");
    // The host's network (this machine has more than lo).
    let host: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    let o = env.ok(&["run", "--network", "host", "n:1", "sh", "-c", ifaces]);
    let mut got: Vec<String> = stdout(&o).lines().map(String::from).collect();
    let mut want = host;
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn stdin_is_fed_with_dash_i_and_null_without() {
    let env = with_image("in:1", "FROM busybox\n");
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut child = env
        .cmd(&["run", "-i", "in:1", "sh", "-c", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || w.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == input, "got {} bytes back", out.stdout.len());

    // Without -i the process reads /dev/null, not what rbuild is given.
    let mut child = env
        .cmd(&["run", "in:1", "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    w.write_all(b"not for the container\n").unwrap();
    drop(w);
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "end\n");
}

#[test]
fn exit_code_propagates_and_nothing_is_left_behind() {
    let env = with_image("x:1", "FROM busybox\n");
    // A background process outlives its shell only until pid 1 exits.
    let o = env.run(&[
        "run",
        "x:1",
        "sh",
        "-c",
        "sleep 987654 & echo started; touch /left; exit 42",
    ]);
    assert_eq!(code(&o), 42, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "started\n");
    // As docker: 127 when the command cannot be found.
    let o = env.run(&["run", "x:1", "no-such-command"]);
    assert_eq!(code(&o), 127);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no-such-command"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A reader that goes away ends the container (it would write forever).
    let mut child = env
        .cmd(&["run", "x:1", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 2];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"y\n");
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.and_then(|s| s.code()), Some(141), "yes kept running");

    std::thread::sleep(std::time::Duration::from_millis(200));
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("sleep 987654"))
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
    let (tmp, mounts) = leftovers(env.root());
    assert!(tmp.is_empty(), "left in ROOT/tmp: {tmp:?}");
    assert!(mounts.is_empty(), "left mounted: {mounts:?}");
    // The run's writes went nowhere: the image is unchanged.
    let o = env.run(&["run", "x:1", "test", "-e", "/left"]);
    assert_eq!(code(&o), 1);
}

#[test]
fn an_image_that_is_not_local_is_pulled_first() {
    let src = Env::new();
    src.busybox_base();
    let reg = Registry::start();
    let reference = reg.push_from(src.root(), "busybox:latest", "bb:1");

    let fresh = Env::new();
    let o = fresh.ok(&["run", &reference, "echo", "hi"]);
    assert_eq!(stdout(&o), "hi\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Unable to find image"), "{err}");
    // Now it is local: a second run does not pull.
    let images = stdout(&fresh.ok(&["images"]));
    assert!(images.contains(&format!("{}/bb", reg.host)), "{images}");
    let o = fresh.ok(&["run", &reference, "echo", "again"]);
    assert_eq!(stdout(&o), "again\n");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("Unable to find"));
    // The tag moves in the registry: the local copy still answers, --pull=always
    // fetches the new image; --pull=never refuses what is not local.
    let ctx = src.context("v2", &[("Dockerfile", "FROM busybox\nRUN echo v2 > /v\n")]);
    src.ok(&["build", "-q", "-t", "bb:2", ctx.to_str().unwrap()]);
    reg.push_from(src.root(), "bb:2", "bb:1");
    let o = fresh.run(&["run", &reference, "cat", "/v"]);
    assert_ne!(code(&o), 0, "the local bb:1 has no /v");
    let o = fresh.ok(&["run", "--pull", "always", &reference, "cat", "/v"]);
    assert_eq!(stdout(&o), "v2\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pulled, digest sha256:"), "{err}");
    let o = fresh.run(&["run", "--pull=never", &format!("{}/bb:2", reg.host), "true"]);
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pull=never"));
    let (tmp, mounts) = leftovers(fresh.root());
    assert!(tmp.is_empty() && mounts.is_empty(), "{tmp:?} {mounts:?}");

    // Nothing to pull from: a clear error, not a run.
    let o = fresh.run(&["run", &format!("{}/missing:1", reg.host), "true"]);
    assert_ne!(code(&o), 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pulling it failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const CI: &str = "FROM busybox AS base\nRUN echo shared > /s\n\
FROM base AS test\nRUN echo test > /t\nCMD [\"sh\", \"-c\", \"cat /s /t; exit ${RESULT:-0}\"]\n\
FROM base AS app\nRUN echo app > /a\nCMD [\"cat\", \"/a\"]\n";

#[test]
fn build_run_runs_the_result_and_returns_its_exit_code() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("ci", &[("Dockerfile", CI)]);
    let ctx = ctx.to_str().unwrap();
    let o = env.run(&[
        "build",
        "--run",
        "--progress=quiet",
        "--target",
        "test",
        ctx,
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "shared\ntest\n");
    // The default target (last stage), run with its CMD.
    let o = env.ok(&["build", "--run", "--progress=quiet", ctx]);
    assert_eq!(stdout(&o), "app\n");
    // A failing test: its exit code is rbuild's; a command after `--`, context last.
    let o = env.run(&[
        "build",
        "--run",
        "--progress=quiet",
        "--target",
        "test",
        "--",
        "sh",
        "-c",
        "echo failing; exit 3",
        ctx,
    ]);
    assert_eq!(code(&o), 3);
    assert_eq!(stdout(&o), "failing\n");
    // Or the context before `--`.
    let o = env.run(&[
        "build",
        "--run",
        "--progress=quiet",
        "--target",
        "test",
        ctx,
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(code(&o), 4);
    // A build failure is the build's error; nothing runs.
    let bad = env.context(
        "bad",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN exit 9\nCMD [\"echo\", \"ran\"]\n",
        )],
    );
    let o = env.run(&["build", "--run", "--progress=plain", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(!stdout(&o).contains("ran"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exit code: 9"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = env.run(&["build", "--", "echo", ctx]);
    assert_ne!(code(&o), 0, "a command after -- needs --run");
    let (tmp, mounts) = leftovers(env.root());
    assert!(tmp.is_empty() && mounts.is_empty(), "{tmp:?} {mounts:?}");
}

#[test]
fn two_targets_share_a_stage_solved_once() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("ci", &[("Dockerfile", CI)]);
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "--target",
        "test",
        "--target",
        "app",
        "-t",
        "me/app:1",
        "-t",
        "test=me/test:1",
        ctx.to_str().unwrap(),
    ]);
    let steps = plain_steps(&String::from_utf8_lossy(&o.stderr));
    assert_eq!(executed(&steps, "echo shared").len(), 1, "{steps:#?}");
    assert_eq!(executed(&steps, "echo test").len(), 1, "{steps:#?}");
    assert_eq!(executed(&steps, "echo app").len(), 1, "{steps:#?}");

    let test = env.umoci_unpack("me/test:1");
    assert_eq!(std::fs::read_to_string(test.join("s")).unwrap(), "shared\n");
    assert_eq!(std::fs::read_to_string(test.join("t")).unwrap(), "test\n");
    assert!(!test.join("a").exists());
    let app = env.umoci_unpack("me/app:1");
    assert_eq!(std::fs::read_to_string(app.join("s")).unwrap(), "shared\n");
    assert_eq!(std::fs::read_to_string(app.join("a")).unwrap(), "app\n");
    assert!(!app.join("t").exists());
    assert_eq!(
        env.skopeo_config("me/app:1")["config"]["Cmd"],
        serde_json::json!(["cat", "/a"])
    );

    // The same images as when each target is built alone (all cached now).
    let test_id = env.skopeo_config("me/test:1");
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "--target",
        "test",
        "-t",
        "alone/test:1",
        ctx.to_str().unwrap(),
    ]);
    let steps = plain_steps(&String::from_utf8_lossy(&o.stderr));
    assert!(executed(&steps, "RUN").is_empty(), "{steps:#?}");
    assert_eq!(env.skopeo_config("alone/test:1"), test_id);

    // A -t STAGE=NAME for a stage that is not a --target is refused.
    let o = env.run(&[
        "build",
        "--target",
        "test",
        "-t",
        "app=me/x",
        ctx.to_str().unwrap(),
    ]);
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a --target"));
}

#[test]
fn ctrl_c_kills_the_container_and_cleans_up() {
    use std::io::{BufRead, BufReader};
    let env = with_image("c:1", "FROM busybox\n");
    let mut child = env
        .cmd(&["run", "c:1", "sh", "-c", "echo ready; exec sleep 876543"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| c.starts_with(b"sleep\0876543"));
    assert!(!alive, "the container outlived rbuild");
    let (tmp, mounts) = leftovers(env.root());
    assert!(tmp.is_empty() && mounts.is_empty(), "{tmp:?} {mounts:?}");
}
