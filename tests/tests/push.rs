//! `rbuild push`, `build --push`, `tag`, `login`/`logout` against a real
//! Debian `docker-registry` on a loopback port, checked with skopeo and by
//! pulling into a fresh store.

use rbuild_tests::{Env, Registry};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (apt-get install skopeo)")
}

/// The manifest digest the registry has for `reference`, by skopeo.
fn registry_digest(reference: &str) -> Option<String> {
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    v["Digest"].as_str().map(String::from)
}

/// `rbuild inspect`'s ManifestDigest and layer count.
fn local_image(env: &Env, name: &str) -> (String, usize) {
    let out = env.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    let v = &v[0];
    (
        v["ManifestDigest"].as_str().expect("digest").to_string(),
        v["Layers"].as_array().expect("layers").len(),
    )
}

/// The blob lines of a push's progress (`#N 0.052 sha256:… pushed …`) with status `word`.
fn count(stderr: &str, word: &str) -> usize {
    stderr
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            l.starts_with('#')
                && f.len() > 3
                && f[1].parse::<f64>().is_ok()
                && f[2].starts_with("sha256:")
                && f[3] == word
        })
        .count()
}

/// A context of one file (`name` with `content`) copied onto `base`.
fn simple_context(env: &Env, dir: &str, base: &str, content: &str) -> String {
    let df = format!("FROM {base}\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n");
    env.context(dir, &[("Dockerfile", &df), ("hello.txt", content)])
        .display()
        .to_string()
}

#[test]
fn push_pull_back_mount_and_build_push() {
    let reg = Registry::start();
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox\nCOPY hello.txt /hello.txt\nRUN echo built >> /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n";
    let ctx = env.context(
        "app",
        &[("Dockerfile", df), ("hello.txt", "hello from rbuild\n")],
    );
    let target = format!("{}/app:1", reg.host);
    env.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:1",
        ctx.to_str().unwrap(),
    ]);
    env.ok(&["tag", "app:1", &target]);
    let (local_digest, layers) = local_image(&env, &target);
    assert_eq!(local_image(&env, "app:1").0, local_digest);

    // First push: every blob (layers + config) is uploaded.
    let out = env.ok(&["push", &target]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains(&format!("1: digest: {local_digest} size: ")),
        "{stdout}"
    );
    assert_eq!(count(&stderr, "pushed"), layers + 1, "{stderr}");
    assert!(stderr.contains("#1 pushing 127.0.0.1:"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("#1 ") && l.ends_with(" pushing layers")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("#1 DONE ")),
        "{stderr}"
    );

    // The registry has the same manifest digest, and skopeo copies it intact.
    assert_eq!(
        registry_digest(&target).as_deref(),
        Some(local_digest.as_str())
    );
    let layout = env.work.path().join("copied");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:t", layout.display()),
    ]);
    assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], local_digest.as_str());

    // Pulled into a fresh store, it runs the same.
    let expected = text(&env.ok(&["run", "--rm", &target]).stdout);
    assert_eq!(expected, "hello from rbuild\nbuilt\n");
    let fresh = Env::new();
    fresh.ok(&["pull", &target]);
    assert_eq!(local_image(&fresh, &target).0, local_digest);
    assert_eq!(text(&fresh.ok(&["run", "--rm", &target]).stdout), expected);

    // Again: the registry has every blob, nothing is sent.
    let out = env.ok(&["push", &target]);
    let stderr = text(&out.stderr);
    assert_eq!(count(&stderr, "exists"), layers + 1, "{stderr}");
    assert_eq!(count(&stderr, "pushed"), 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pushed 0 blob(s) (0B), {} already present, 0 mounted",
            layers + 1
        )),
        "{stderr}"
    );

    // Another repository of the same registry: every blob is mounted.
    let other = format!("{}/team/other:2", reg.host);
    env.ok(&["tag", &target, &other]);
    let out = env.ok(&["push", &other]);
    let stderr = text(&out.stderr);
    assert_eq!(count(&stderr, "mounted"), layers + 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pushed 0 blob(s) (0B), 0 already present, {} mounted",
            layers + 1
        )),
        "{stderr}"
    );
    assert_eq!(
        registry_digest(&other).as_deref(),
        Some(local_digest.as_str())
    );

    // The fresh store pulled from `app`: its push to a third repo mounts from there.
    let third = format!("{}/third:1", reg.host);
    fresh.ok(&["tag", &target, &third]);
    let stderr = text(&fresh.ok(&["push", &third]).stderr);
    assert_eq!(count(&stderr, "mounted"), layers + 1, "{stderr}");

    // A mount the registry declines (the blob's link is gone from the source
    // repositories) falls back to an upload of that blob only.
    let out = env.ok(&["inspect", &target]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last_layer = v[0]["Layers"][layers - 1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for repo in ["app", "team/other"] {
        let status = http_delete(&reg.host, &format!("/v2/{repo}/blobs/{last_layer}"));
        assert_eq!(status, 202, "DELETE blob from {repo}");
    }
    let fourth = format!("{}/fourth:1", reg.host);
    env.ok(&["tag", &target, &fourth]);
    let stderr = text(&env.ok(&["push", &fourth]).stderr);
    assert_eq!(count(&stderr, "mounted"), layers, "{stderr}");
    assert_eq!(count(&stderr, "pushed"), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{} pushed", &last_layer[..19])),
        "{stderr}"
    );
    assert_eq!(
        registry_digest(&fourth).as_deref(),
        Some(local_digest.as_str())
    );

    // build --push: the new image is in the registry once the build returns.
    let built = format!("{}/x:1", reg.host);
    let ctx2 = simple_context(&env, "x", "busybox", "pushed by build\n");
    let out = env.ok(&["build", "--progress=plain", "-t", &built, "--push", &ctx2]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("pushing layers"), "{stderr}");
    assert!(stderr.contains("pushing manifest sha256:"), "{stderr}");
    let (built_digest, _) = local_image(&env, &built);
    assert_eq!(
        registry_digest(&built).as_deref(),
        Some(built_digest.as_str())
    );
    fresh.ok(&["pull", &built]);
    assert_eq!(
        text(&fresh.ok(&["run", "--rm", &built]).stdout),
        "pushed by build\n"
    );

    // --push without a name fails before building.
    let out = env.run(&["build", "--push", &ctx2]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--push needs a name"),
        "{}",
        text(&out.stderr)
    );

    // Pushing an image that is not in the store says so.
    let out = env.run(&["push", &format!("{}/nope:1", reg.host)]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no image"),
        "{}",
        text(&out.stderr)
    );
}

/// Sends `DELETE path` to the registry; returns the HTTP status.
fn http_delete(host: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(host).expect("connect to the registry");
    write!(s, "DELETE {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A loopback TCP proxy whose client→server direction is limited to `rate`
/// bytes per second (0: unlimited), counting the bytes it forwarded.
struct SlowProxy {
    port: u16,
    forwarded: Arc<AtomicU64>,
    rate: Arc<AtomicU64>,
    /// When the bytes forwarded pass this (non-zero) mark, the connection
    /// carrying them is reset, once.
    cut_at: Arc<AtomicU64>,
}

impl SlowProxy {
    fn start(upstream: String, rate: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let forwarded = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(rate));
        let cut_at = Arc::new(AtomicU64::new(0));
        let (f, r, cut) = (forwarded.clone(), rate.clone(), cut_at.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || copy_plain(s2, c2));
                let (f, r, cut) = (f.clone(), r.clone(), cut.clone());
                std::thread::spawn(move || copy_slow(client, server, f, r, cut));
            }
        });
        SlowProxy {
            port,
            forwarded,
            rate,
            cut_at,
        }
    }
}

fn copy_plain(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn copy_slow(
    mut from: TcpStream,
    mut to: TcpStream,
    count: Arc<AtomicU64>,
    rate: Arc<AtomicU64>,
    cut_at: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        let total = count.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        let cut = cut_at.load(Ordering::SeqCst);
        if cut > 0
            && total >= cut
            && cut_at
                .compare_exchange(cut, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // A reset in both directions, as a dropped connection looks.
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            return;
        }
        let r = rate.load(Ordering::SeqCst);
        if r > 0 {
            let due = Duration::from_secs_f64(sent as f64 / r as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn random_file(path: &Path, size: usize) {
    let mut f = std::fs::File::create(path).expect("create");
    let mut urandom = std::fs::File::open("/dev/urandom").expect("urandom");
    let mut left = size;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len());
        urandom.read_exact(&mut buf[..n]).expect("read urandom");
        f.write_all(&buf[..n]).expect("write");
        left -= n;
    }
}

#[test]
fn killed_push_runs_again_to_completion() {
    let reg = Registry::start();
    // 8 MiB/s: the 64 MiB layer takes seconds, so the kill lands mid-upload.
    let proxy = SlowProxy::start(reg.host.clone(), 8 << 20);
    let env = Env::new();
    let ctx = env.context(
        "big",
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY big /big\nCOPY small /small\n",
            ),
            ("small", "s\n"),
        ],
    );
    random_file(&ctx.join("big"), 64 << 20);
    let via_proxy = format!("127.0.0.1:{}/big:1", proxy.port);
    env.ok(&["build", "-q", "-t", &via_proxy, ctx.to_str().unwrap()]);
    let (digest, _) = local_image(&env, &via_proxy);

    let mut child = env
        .cmd(&["push", &via_proxy])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start push");
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.forwarded.load(Ordering::SeqCst) < 16 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it was interrupted"
        );
        assert!(Instant::now() < deadline, "the upload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL rbuild push");
    child.wait().unwrap();
    let direct = format!("{}/big:1", reg.host);
    assert_eq!(registry_digest(&direct), None, "no manifest after the kill");

    // Run again, at full speed: completes, and the image is whole.
    proxy.rate.store(0, Ordering::SeqCst);
    let out = env.ok(&["push", &via_proxy]);
    assert!(
        text(&out.stdout).contains(&format!("digest: {digest}")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(registry_digest(&direct).as_deref(), Some(digest.as_str()));
    let fresh = Env::new();
    fresh.ok(&["pull", &direct]);
    assert_eq!(local_image(&fresh, &direct).0, digest);
    fresh.ok(&["tag", &direct, "big:1"]);
    let rootfs = fresh.umoci_unpack("big:1");
    assert_eq!(
        std::fs::read(rootfs.join("big")).unwrap(),
        std::fs::read(ctx.join("big")).unwrap()
    );
}

#[test]
fn a_connection_reset_mid_upload_is_retried_in_the_same_push() {
    let reg = Registry::start();
    let proxy = SlowProxy::start(reg.host.clone(), 0);
    let env = Env::new();
    let ctx = env.context("big", &[("Dockerfile", "FROM scratch\nCOPY big /big\n")]);
    random_file(&ctx.join("big"), 24 << 20);
    let via_proxy = format!("127.0.0.1:{}/reset:1", proxy.port);
    env.ok(&["build", "-q", "-t", &via_proxy, ctx.to_str().unwrap()]);
    let (digest, _) = local_image(&env, &via_proxy);
    // Cut the connection once 8 MiB of the layer went through.
    proxy.cut_at.store(
        proxy.forwarded.load(Ordering::SeqCst) + (8 << 20),
        Ordering::SeqCst,
    );
    let out = env.ok(&["push", &via_proxy]);
    assert_eq!(proxy.cut_at.load(Ordering::SeqCst), 0, "the cut happened");
    assert!(text(&out.stdout).contains(&format!("digest: {digest}")));
    let direct = format!("{}/reset:1", reg.host);
    assert_eq!(registry_digest(&direct).as_deref(), Some(digest.as_str()));
    let layout = env.work.path().join("copied");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{direct}"),
        &format!("oci:{}:t", layout.display()),
    ]);
    assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));
}

#[test]
fn a_registry_restarted_mid_push_gets_the_whole_image() {
    let mut reg = Registry::start();
    let proxy = SlowProxy::start(reg.host.clone(), 8 << 20);
    let env = Env::new();
    let ctx = env.context("big", &[("Dockerfile", "FROM scratch\nCOPY big /big\n")]);
    random_file(&ctx.join("big"), 32 << 20);
    let via_proxy = format!("127.0.0.1:{}/restart:1", proxy.port);
    env.ok(&["build", "-q", "-t", &via_proxy, ctx.to_str().unwrap()]);
    let (digest, _) = local_image(&env, &via_proxy);
    let before = proxy.forwarded.load(Ordering::SeqCst);
    let child = env
        .cmd(&["push", &via_proxy])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start push");
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.forwarded.load(Ordering::SeqCst) < before + (8 << 20) {
        assert!(Instant::now() < deadline, "the upload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    reg.stop();
    std::thread::sleep(Duration::from_millis(300));
    reg.restart();
    proxy.rate.store(0, Ordering::SeqCst);
    // The client's retries may carry the push through the outage; if they
    // gave up first, running it again completes it.
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!(
            "the push across the restart failed; running it again:\n{}",
            text(&out.stderr)
        );
        env.ok(&["push", &via_proxy]);
    }
    let direct = format!("{}/restart:1", reg.host);
    assert_eq!(registry_digest(&direct).as_deref(), Some(digest.as_str()));
    let layout = env.work.path().join("copied");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{direct}"),
        &format!("oci:{}:t", layout.display()),
    ]);
    assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));
}

fn htpasswd(user: &str, pass: &str) -> Vec<u8> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .expect("htpasswd (apt-get install apache2-utils)");
    assert!(out.status.success());
    out.stdout
}

#[test]
fn login_push_logout_with_htpasswd() {
    let pw = htpasswd("user", "s3cret");
    let reg = Registry::start_with(
        "auth:\n  htpasswd:\n    realm: test-realm\n    path: {dir}/htpasswd\n",
        &[("htpasswd", &pw)],
    );
    let env = Env::new();
    let docker_config = env.work.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let cfg_file = docker_config.join("config.json");
    let run = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut c = env.cmd(args);
        c.env("DOCKER_CONFIG", &docker_config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("rbuild");
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let target = format!("{}/secure/app:1", reg.host);
    let ctx = simple_context(&env, "app", "scratch", "secret content\n");
    env.ok(&["build", "-q", "-t", &target, &ctx]);
    let (digest, _) = local_image(&env, &target);

    // Not logged in: refused, nothing pushed.
    let out = run(&["push", &target], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("authentication"),
        "{}",
        text(&out.stderr)
    );

    // Wrong password: a clear error, no credentials stored.
    let out = run(&["login", "-u", "user", "-p", "wrong", &reg.host], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("login to") && err.contains("authentication failed"),
        "{err}"
    );
    let stored = std::fs::read_to_string(&cfg_file).unwrap_or_default();
    assert!(!stored.contains(&reg.host), "{stored}");
    assert_eq!(registry_digest_auth(&target, "user:s3cret"), None);

    // Right password (from stdin, as CI scripts do): stored, push works.
    let out = run(
        &["login", "-u", "user", "--password-stdin", &reg.host],
        Some("s3cret\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Login Succeeded"));
    let stored = std::fs::read_to_string(&cfg_file).unwrap();
    assert!(stored.contains(&reg.host), "{stored}");
    let out = run(&["push", &target], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        registry_digest_auth(&target, "user:s3cret").as_deref(),
        Some(digest.as_str())
    );

    // -p works too (with docker's warning).
    let out = run(&["login", "-u", "user", "-p", "s3cret", &reg.host], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--password-stdin"));

    // Logout removes them; the next push is refused again.
    let out = run(&["logout", &reg.host], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Removing login credentials"));
    let stored = std::fs::read_to_string(&cfg_file).unwrap_or_default();
    assert!(!stored.contains(&reg.host), "{stored}");
    let out = run(&["logout", &reg.host], None);
    assert!(text(&out.stdout).contains("Not logged in"));
    let out = run(&["push", &target], None);
    assert!(!out.status.success());
}

fn registry_digest_auth(reference: &str, creds: &str) -> Option<String> {
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        creds,
        &format!("docker://{reference}"),
    ]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["Digest"].as_str().map(String::from)
}
