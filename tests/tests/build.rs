//! End-to-end builds on real namespaces and overlayfs, read back with skopeo and umoci.
//! Needs root, busybox-static, skopeo and umoci (scripts/install-deps.sh).

use rbuild_tests::{Env, executed, plain_steps};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every layer of `tag` in the store's OCI layout, as (path, is-whiteout…) entry lists.
fn layer_entries(env: &Env, tag: &str) -> Vec<Vec<String>> {
    let root = env.root().join("oci");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n == tag || n.ends_with(&format!(":{tag}")) || tag.ends_with(n))
        })
        .expect("tag in index.json")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |d: &str| {
        root.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let f = std::fs::File::open(blob(l["digest"].as_str().unwrap())).unwrap();
            let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
            a.entries()
                .unwrap()
                .map(|e| {
                    e.unwrap()
                        .path()
                        .unwrap()
                        .to_string_lossy()
                        .trim_start_matches("./")
                        .to_string()
                })
                .collect()
        })
        .collect()
}

const APP: &str = r#"FROM busybox:latest AS builder
WORKDIR /src
COPY hello.txt .
RUN echo "built by builder" > built.txt && cat hello.txt >> built.txt

FROM busybox:latest
LABEL org.example.team=build
ENV APP_HOME=/opt/app
WORKDIR /opt/app
COPY --from=builder /src/built.txt ./
COPY --chown=app:app hello.txt ./
COPY --chmod=755 bin/tool.sh bin/
RUN mkdir -p data && echo x > data/x
USER app
EXPOSE 8080
CMD ["/opt/app/bin/tool.sh"]
"#;

#[test]
fn multi_stage_image_reads_in_skopeo_and_umoci() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "app",
        &[
            ("Dockerfile", APP),
            ("hello.txt", "hi\n"),
            ("bin/tool.sh", "#!/bin/sh\necho tool\n"),
        ],
    );
    env.ok(&["build", "--progress=plain", "-t", "app:1", p(&ctx)]);

    let cfg = env.skopeo_config("app:1");
    let c = &cfg["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/opt/app");
    assert_eq!(c["Cmd"], serde_json::json!(["/opt/app/bin/tool.sh"]));
    assert_eq!(c["Labels"]["org.example.team"], "build");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    let envs: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(envs.contains(&"APP_HOME=/opt/app"), "{envs:?}");
    assert!(envs.iter().any(|e| e.starts_with("PATH=")), "{envs:?}");
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    let history = cfg["history"].as_array().unwrap();
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(non_empty, layers, "one non-empty history entry per layer");

    let rootfs = env.umoci_unpack("app:1");
    let app = rootfs.join("opt/app");
    assert_eq!(
        std::fs::read_to_string(app.join("built.txt")).unwrap(),
        "built by builder\nhi\n"
    );
    let hello = std::fs::metadata(app.join("hello.txt")).unwrap();
    assert_eq!((hello.uid(), hello.gid()), (1000, 1000), "--chown=app:app");
    let tool = std::fs::metadata(app.join("bin/tool.sh")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o755, "--chmod=755");
    assert_eq!(
        (tool.uid(), tool.gid()),
        (0, 0),
        "COPY without --chown is root-owned"
    );
    assert_eq!(std::fs::read_to_string(app.join("data/x")).unwrap(), "x\n");
    assert!(
        !rootfs.join("src").exists(),
        "the builder stage's files stay out of the final image"
    );
    for f in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert!(
            !rootfs.join(f).exists(),
            "{f} from the RUN sandbox leaked into the image"
        );
    }
}

const TWO_BRANCHES: &str = r#"FROM busybox:latest AS a
COPY a.txt /a.txt
RUN cat /a.txt > /a.out
FROM busybox:latest
COPY b.txt /b.txt
RUN cat /b.txt > /b.out
COPY --from=a /a.out /a.out
"#;

#[test]
fn rebuilds_run_only_what_changed() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", TWO_BRANCHES),
            ("a.txt", "a1\n"),
            ("b.txt", "b1\n"),
        ],
    );
    let iid = env.work.path().join("iid");
    let build = || {
        let out = env.ok(&[
            "build",
            "--progress=plain",
            "--iidfile",
            p(&iid),
            "-t",
            "two",
            p(&ctx),
        ]);
        (
            plain_steps(&stderr(&out)),
            std::fs::read_to_string(&iid).unwrap(),
        )
    };

    let (first, id1) = build();
    assert_eq!(executed(&first, "RUN").len(), 2, "{first:#?}");

    let (second, id2) = build();
    assert!(
        executed(&second, "RUN").is_empty(),
        "a rebuild runs no RUN: {second:#?}"
    );
    assert!(executed(&second, "COPY").is_empty(), "{second:#?}");
    assert_eq!(id1, id2);

    // mtime changes, content does not: nothing re-runs, same image.
    let b = ctx.join("b.txt");
    let f = std::fs::File::options().write(true).open(&b).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let (third, id3) = build();
    assert!(executed(&third, "RUN").is_empty(), "{third:#?}");
    assert_eq!(id1, id3);

    // a.txt's content changes: only stage a's COPY and RUN, and the final COPY --from re-run.
    std::fs::write(ctx.join("a.txt"), "a2\n").unwrap();
    let (fourth, id4) = build();
    let runs = executed(&fourth, "RUN");
    assert_eq!(runs.len(), 1, "{fourth:#?}");
    assert!(runs[0].contains("cat /a.txt"), "{runs:?}");
    assert!(executed(&fourth, "COPY b.txt").is_empty(), "{fourth:#?}");
    assert_ne!(id1, id4);
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox:latest AS a\nRUN sleep 1 && echo a > /a\nFROM busybox:latest AS b\nRUN sleep 1 && echo b > /b\nFROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n";
    let ctx = env.context("par", &[("Dockerfile", df)]);
    let out = env.ok(&["build", "--progress=plain", "-t", "par", p(&ctx)]);
    let text = stderr(&out);
    // Line positions of each RUN's start and DONE in the event stream.
    let lines: Vec<&str> = text.lines().collect();
    let number_of = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle) && l.starts_with('#'))
            .and_then(|l| l[1..].split_once(' '))
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| panic!("no step {needle} in:\n{text}"))
    };
    let pos = |prefix: String| {
        lines
            .iter()
            .position(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"))
    };
    let (na, nb) = (number_of("echo a > /a"), number_of("echo b > /b"));
    let (start_a, done_a) = (pos(format!("#{na} ")), pos(format!("#{na} DONE")));
    let (start_b, done_b) = (pos(format!("#{nb} ")), pos(format!("#{nb} DONE")));
    assert!(
        start_a < done_b && start_b < done_a,
        "the two RUNs did not overlap:\n{text}"
    );
}

#[test]
fn deletions_are_whiteouts_and_gone_from_the_image() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox:latest\nRUN mkdir -p /d && echo k > /d/keep\nRUN rm /etc/group && rm -r /d && mkdir /d && echo n > /d/new\n";
    let ctx = env.context("wh", &[("Dockerfile", df)]);
    env.ok(&["build", "--progress=plain", "-t", "wh", p(&ctx)]);
    let layers = layer_entries(&env, "wh:latest");
    let last = layers.last().unwrap();
    assert!(last.iter().any(|e| e == "etc/.wh.group"), "{last:?}");
    assert!(
        last.iter().any(|e| e == "d/.wh..wh..opq") || last.iter().any(|e| e == "d/.wh.keep"),
        "{last:?}"
    );
    let rootfs = env.umoci_unpack("wh:latest");
    assert!(!rootfs.join("etc/group").exists());
    assert!(!rootfs.join("d/keep").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("d/new")).unwrap(),
        "n\n"
    );
    assert!(rootfs.join("etc/passwd").exists());
}

/// Processes whose environment carries `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open(e.path().join("environ"))
            && f.read_to_end(&mut buf).is_ok()
            && buf.split(|b| *b == 0).any(|kv| kv == marker.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

fn mounts_under(path: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(p(path)))
        .map(String::from)
        .collect()
}

fn leftovers_in_tmp(env: &Env) -> Vec<String> {
    match std::fs::read_dir(env.root().join("tmp")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

/// No process carrying `marker`, no mount under the store, nothing in its tmp/.
fn assert_nothing_left(env: &Env, marker: &str, after: &str) {
    assert!(
        processes_with(marker).is_empty(),
        "a process survived {after}"
    );
    let mounts = mounts_under(env.root());
    assert!(mounts.is_empty(), "mounts left after {after}: {mounts:?}");
    let tmp = leftovers_in_tmp(env);
    assert!(tmp.is_empty(), "temp dirs left after {after}: {tmp:?}");
}

#[test]
fn failing_run_reports_and_leaves_nothing() {
    let env = Env::new();
    env.busybox_base();
    let marker = format!("RBUILD_E2E_MARKER=fail{}", std::process::id());
    let df = format!(
        "FROM busybox:latest\nENV {marker}\nCOPY f /f\nRUN sleep 1000 & echo about-to-fail; exit 3\n"
    );
    let ctx = env.context("fail", &[("Dockerfile", &df), ("f", "f")]);
    let out = env.run(&["build", "--progress=plain", "-t", "fail", p(&ctx)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains(":4"), "names the Dockerfile line: {err}");
    assert!(
        err.contains("about-to-fail"),
        "shows the last output: {err}"
    );
    assert_nothing_left(&env, &marker, "a failed RUN");
}

#[test]
fn sigint_during_run_leaves_nothing() {
    let env = Env::new();
    env.busybox_base();
    let marker = format!("RBUILD_E2E_MARKER=int{}", std::process::id());
    let df = format!("FROM busybox:latest\nENV {marker}\nRUN sleep 1000\n");
    let ctx = env.context("int", &[("Dockerfile", &df)]);
    let mut child = env
        .cmd(&["build", "--progress=plain", "-t", "int", p(&ctx)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_with(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "rbuild did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert_nothing_left(&env, &marker, "SIGINT during a RUN");
}

#[test]
fn two_builds_share_one_root() {
    let env = Env::new();
    env.busybox_base();
    let c1 = env.context(
        "one",
        &[("Dockerfile", "FROM busybox:latest\nRUN echo one > /one\n")],
    );
    let c2 = env.context(
        "two",
        &[("Dockerfile", "FROM busybox:latest\nRUN echo two > /two\n")],
    );
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| env.run(&["build", "-q", "-t", "one", p(&c1)]));
        let b = s.spawn(|| env.run(&["build", "-q", "-t", "two", p(&c2)]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let images = String::from_utf8_lossy(&env.ok(&["images"]).stdout).into_owned();
    for name in ["one", "two", "busybox"] {
        assert!(images.lines().any(|l| l.starts_with(name)), "{images}");
    }
    let r1 = env.umoci_unpack("one:latest");
    assert_eq!(std::fs::read_to_string(r1.join("one")).unwrap(), "one\n");
}
