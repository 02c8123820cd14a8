//! Cache mounts that travel with the cache: machine A's `RUN --mount=type=cache` contents
//! exported with `--cache-to …,cache-mounts=true`, imported by a fresh root, whose RUN sees
//! them; through a real `docker-registry` and through a local directory. Needs root,
//! busybox-static, skopeo and docker-registry (scripts/install-deps.sh).

use rbuild_tests::{Env, Registry, executed, plain_steps};
use std::path::Path;
use std::process::Output;

/// A fills the cache `deps` (as a package manager would).
const A: &str = "FROM busybox\nRUN --mount=type=cache,target=/cache,id=deps sh -c 'echo fetched-on-a > /cache/dep.txt && mkdir -p /cache/sub && echo nested > /cache/sub/n.txt'\n";
/// B's step reads it (another step, so it runs on B and mounts the cache there).
const B: &str = "FROM busybox\nRUN --mount=type=cache,target=/var/cache/x,id=deps sh -c 'cat /var/cache/x/dep.txt /var/cache/x/sub/n.txt > /seen.txt || echo cold > /seen.txt'\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn copy_base(from: &Env, to: &Env) {
    let out = std::process::Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci:{}/oci:busybox:latest", from.root().display()))
        .arg(format!("oci:{}/oci:busybox:latest", to.root().display()))
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What B's RUN saw in the cache mount, importing `cache_from` on a fresh root.
fn b_sees(base: &Env, cache_from: &str) -> String {
    let b = Env::new();
    copy_base(base, &b);
    // A's own build on B comes from the cache: no mount is fetched for it.
    let ctx_a = b.context("a", &[("Dockerfile", A)]);
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "--cache-from",
        cache_from,
        path(&ctx_a),
    ]);
    let err = stderr(&out);
    assert!(executed(&plain_steps(&err), "RUN").is_empty(), "{err}");
    let mounts = b.root().join("cache-mounts");
    let restored = std::fs::read_dir(&mounts).map(|d| d.count()).unwrap_or(0);
    assert_eq!(restored, 0, "no step mounted the cache yet:\n{err}");

    let ctx_b = b.context("b", &[("Dockerfile", B)]);
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "b:1",
        "--cache-from",
        cache_from,
        path(&ctx_b),
    ]);
    let err = stderr(&out);
    assert_eq!(executed(&plain_steps(&err), "RUN").len(), 1, "{err}");
    let run = b.ok(&["run", "--rm", "b:1", "cat", "/seen.txt"]);
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// A builds (filling the cache mount) and exports to `plain` without and to `with_mounts`
/// with `cache-mounts=true`; B sees A's files only through the second.
fn travel(plain: &str, with_mounts: &str, from_plain: &str, from_mounts: &str) {
    let a = Env::new();
    a.busybox_base();
    let ctx = a.context("a", &[("Dockerfile", A)]);
    a.ok(&[
        "build",
        "-q",
        "--cache-to",
        plain,
        "--cache-to",
        with_mounts,
        path(&ctx),
    ]);
    assert_eq!(b_sees(&a, from_mounts), "fetched-on-a\nnested\n");
    assert_eq!(b_sees(&a, from_plain), "cold\n");
}

#[test]
fn cache_mounts_travel_through_a_registry() {
    let reg = Registry::start();
    let plain = format!("{}/cache:plain", reg.host);
    let mounts = format!("{}/cache:mounts", reg.host);
    travel(
        &format!("type=registry,ref={plain},mode=max"),
        &format!("type=registry,ref={mounts},mode=max,cache-mounts=true"),
        &format!("type=registry,ref={plain}"),
        &format!("type=registry,ref={mounts}"),
    );
}

/// The `deps` mount's layer digest in the local cache at `dir`.
fn mount_digest(dir: &Path) -> String {
    let read = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).expect("blob");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&read(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&read(m["config"]["digest"].as_str().unwrap())).unwrap();
    cfg["mounts"]["deps"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no mount in {cfg}"))
        .to_string()
}

#[test]
fn cache_mounts_travel_through_a_local_directory() {
    let shared = tempfile::tempdir().unwrap();
    let plain = shared.path().join("plain");
    let mounts = shared.path().join("mounts");
    travel(
        &format!("type=local,dest={},mode=max", plain.display()),
        &format!(
            "type=local,dest={},mode=max,cache-mounts=true",
            mounts.display()
        ),
        &format!("type=local,src={}", plain.display()),
        &format!("type=local,src={}", mounts.display()),
    );
}

#[test]
fn an_unchanged_cache_mount_is_the_blob_the_destination_has() {
    let shared = tempfile::tempdir().unwrap();
    let dest = shared.path().join("cache");
    let to = format!(
        "type=local,dest={},mode=max,cache-mounts=true",
        dest.display()
    );
    let a = Env::new();
    a.busybox_base();
    let ctx = a.context("a", &[("Dockerfile", A)]);
    a.ok(&["build", "-q", "--cache-to", &to, path(&ctx)]);
    let first = mount_digest(&dest);
    let blobs = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .count();
    // A cached rebuild exports the same mount: the same blob, nothing new in the directory
    // but the cache config and manifest (the records' export stamps moved).
    a.ok(&["build", "-q", "--cache-to", &to, path(&ctx)]);
    assert_eq!(mount_digest(&dest), first);
    let after = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .count();
    assert!(after <= blobs + 2, "{blobs} → {after}");
}
