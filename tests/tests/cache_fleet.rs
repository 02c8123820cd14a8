//! A fleet sharing one cache: several builders (separate store roots) export to one
//! registry cache reference at the same time; a fresh root importing it must find the
//! records of every one of them. Needs root, busybox-static, skopeo and docker-registry
//! (scripts/install-deps.sh).

use rbuild_tests::{Env, Registry, executed, plain_steps};
use std::path::Path;
use std::process::Output;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Builder `n`'s Dockerfile: steps no other builder has.
fn dockerfile(n: usize) -> String {
    format!(
        "FROM busybox\nCOPY hello.txt /h{n}.txt\nRUN echo builder {n} > /b{n}.txt\nRUN cat /b{n}.txt /h{n}.txt > /both{n}.txt\n"
    )
}

/// Starts every builder's export to `cache_to` at once and waits for all of them.
fn race(builders: &[(Env, std::path::PathBuf)], cache_to: &str) {
    let children: Vec<_> = builders
        .iter()
        .map(|(env, ctx)| {
            env.cmd(&[
                "build",
                "--progress=plain",
                "--cache-to",
                cache_to,
                path(ctx),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start rbuild")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait for rbuild");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("exported cache to "),
            "{}",
            stderr(&out)
        );
    }
}

/// A fresh root imports `cache_from` and builds each builder's Dockerfile: every step
/// must come from the cache.
fn fresh_root_finds_every_build(base: &Env, builders: usize, cache_from: &str) {
    let c = Env::new();
    copy_base(base, &c);
    for n in 0..builders {
        let ctx = c.context(
            &format!("c{n}"),
            &[("Dockerfile", &dockerfile(n)), ("hello.txt", "hello\n")],
        );
        let out = c.ok(&[
            "build",
            "--progress=plain",
            "--cache-from",
            cache_from,
            path(&ctx),
        ]);
        let err = stderr(&out);
        let steps = plain_steps(&err);
        assert!(
            executed(&steps, "RUN").is_empty() && executed(&steps, "COPY").is_empty(),
            "builder {n}'s steps were not all in the shared cache:\n{err}"
        );
        // FROM, the context, COPY, RUN, RUN.
        assert_eq!(
            steps.iter().filter(|s| s.cached).count(),
            5,
            "builder {n}'s steps CACHED:\n{err}"
        );
    }
}

/// The base image `from` has, copied into `to` (as a pull from one registry would give
/// every builder the same one: a FROM step's key is the base's manifest digest).
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

fn builders(base: &Env, count: usize) -> Vec<(Env, std::path::PathBuf)> {
    (0..count)
        .map(|n| {
            let env = Env::new();
            copy_base(base, &env);
            let ctx = env.context(
                "ctx",
                &[("Dockerfile", &dockerfile(n)), ("hello.txt", "hello\n")],
            );
            (env, ctx)
        })
        .collect()
}

#[test]
fn builders_exporting_to_one_registry_ref_at_once_lose_nothing() {
    let reg = Registry::start();
    let cache_ref = format!("{}/cache:x", reg.host);
    let base = Env::new();
    base.busybox_base();
    let fleet = builders(&base, 2);
    race(&fleet, &format!("type=registry,ref={cache_ref},mode=max"));
    fresh_root_finds_every_build(&base, 2, &format!("type=registry,ref={cache_ref}"));
}

#[test]
fn builders_exporting_to_one_local_dir_at_once_lose_nothing() {
    let shared = tempfile::tempdir().unwrap();
    let dest = shared.path().join("cache");
    let base = Env::new();
    base.busybox_base();
    let fleet = builders(&base, 2);
    race(
        &fleet,
        &format!("type=local,dest={},mode=max", dest.display()),
    );
    fresh_root_finds_every_build(&base, 2, &format!("type=local,src={}", dest.display()));
}

/// `rbuild inspect`'s layers of `tag`: digest → size.
fn image_layers(env: &Env, tag: &str) -> Vec<(String, u64)> {
    let out = env.ok(&["inspect", tag]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    v[0]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().expect("digest").to_string(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect()
}

/// The layer digests the cache manifest tagged `reference` lists (read with skopeo).
fn cache_manifest_layers(reference: &str) -> Vec<String> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn max_size_drops_the_records_exported_longest_ago() {
    let reg = Registry::start();
    let cache_ref = format!("{}/cache:bounded", reg.host);
    let base = Env::new();
    base.busybox_base();
    let fleet = builders(&base, 2);
    let (a, ctx_a) = &fleet[0];
    let (b, ctx_b) = &fleet[1];
    a.ok(&[
        "build",
        "-q",
        "-t",
        "a:1",
        "--cache-to",
        &format!("type=registry,ref={cache_ref},mode=max"),
        path(ctx_a),
    ]);
    // B's image: exactly the layers B's records name.
    b.ok(&["build", "-q", "-t", "b:1", path(ctx_b)]);
    let b_layers = image_layers(b, "b:1");
    let a_layers = image_layers(a, "a:1");
    let bound: u64 = b_layers.iter().map(|(_, s)| s).sum();
    let out = b.ok(&[
        "build",
        "-t",
        "b:1",
        "--cache-to",
        &format!("type=registry,ref={cache_ref},mode=max,max-size={bound}"),
        path(ctx_b),
    ]);
    assert!(
        stderr(&out).contains("exported cache to "),
        "{}",
        stderr(&out)
    );

    // The cache names B's layers and none of A's own.
    let listed = cache_manifest_layers(&cache_ref);
    for (d, _) in &b_layers {
        assert!(listed.contains(d), "B's layer {d} kept: {listed:?}");
    }
    let b_set: Vec<&String> = b_layers.iter().map(|(d, _)| d).collect();
    let a_own: Vec<&String> = a_layers
        .iter()
        .map(|(d, _)| d)
        .filter(|d| !b_set.contains(d))
        .collect();
    assert_eq!(a_own.len(), 3, "A's COPY, RUN, RUN layers: {a_layers:?}");
    for d in &a_own {
        assert!(!listed.contains(d), "A's layer {d} dropped: {listed:?}");
    }

    // A fresh root finds B's steps, and runs A's again.
    let c = Env::new();
    copy_base(&base, &c);
    let from = format!("type=registry,ref={cache_ref}");
    for (n, want_run) in [(1usize, 0usize), (0, 3)] {
        let ctx = c.context(
            &format!("c{n}"),
            &[("Dockerfile", &dockerfile(n)), ("hello.txt", "hello\n")],
        );
        let out = c.ok(&[
            "build",
            "--progress=plain",
            "--cache-from",
            &from,
            path(&ctx),
        ]);
        let err = stderr(&out);
        let steps = plain_steps(&err);
        let ran = executed(&steps, "RUN").len() + executed(&steps, "COPY").len();
        assert_eq!(ran, want_run, "builder {n}:\n{err}");
    }
}

#[test]
fn merge_false_replaces_the_cache_as_before() {
    let shared = tempfile::tempdir().unwrap();
    let dest = shared.path().join("cache");
    let base = Env::new();
    base.busybox_base();
    let fleet = builders(&base, 2);
    for (env, ctx) in &fleet {
        env.ok(&[
            "build",
            "-q",
            "--cache-to",
            &format!("type=local,dest={},mode=max,merge=false", dest.display()),
            path(ctx),
        ]);
    }
    let c = Env::new();
    copy_base(&base, &c);
    let from = format!("type=local,src={}", dest.display());
    for (n, want_run) in [(1usize, 0usize), (0, 3)] {
        let ctx = c.context(
            &format!("c{n}"),
            &[("Dockerfile", &dockerfile(n)), ("hello.txt", "hello\n")],
        );
        let out = c.ok(&[
            "build",
            "--progress=plain",
            "--cache-from",
            &from,
            path(&ctx),
        ]);
        let err = stderr(&out);
        let steps = plain_steps(&err);
        let ran = executed(&steps, "RUN").len() + executed(&steps, "COPY").len();
        assert_eq!(ran, want_run, "builder {n}:\n{err}");
    }
}
