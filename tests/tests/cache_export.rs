//! `--cache-to` / `--cache-from` between two "machines" (two fresh store roots, the same
//! context at different paths): local layouts, a real `docker-registry`, inline cache.
//! Needs root, busybox-static, skopeo and docker-registry (scripts/install-deps.sh).

use rbuild_tests::{Env, Registry, Step, executed, plain_steps};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

const MULTI_STAGE: &str = "\
FROM busybox AS builder
RUN head -c 1500000 /dev/urandom > /big.bin && echo built > /out.txt
RUN echo tool > /tool.txt
FROM busybox
COPY --from=builder /out.txt /app/out.txt
COPY hello.txt /app/hello.txt
RUN cat /app/out.txt /app/hello.txt > /app/both.txt
CMD [\"cat\", \"/app/both.txt\"]
";

fn files(dockerfile: &str) -> Vec<(&str, &str)> {
    vec![("Dockerfile", dockerfile), ("hello.txt", "hello\n")]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn skopeo(args: &[&str]) -> Output {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Machine B gets the same base image as A (as a pull would): the FROM step's cache key
/// is the base's manifest digest.
fn copy_base(a: &Env, b: &Env) {
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}/oci:busybox:latest", a.root().display()),
        &format!("oci:{}/oci:busybox:latest", b.root().display()),
    ]);
}

/// `rbuild inspect`: (manifest digest, config digest, layer digests → sizes).
fn inspect(env: &Env, tag: &str) -> (String, String, Vec<(String, u64)>) {
    let out = env.ok(&["inspect", tag]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    let v = &v[0];
    let layers = v["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().expect("digest").to_string(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect();
    (
        v["ManifestDigest"].as_str().expect("digest").to_string(),
        v["Id"].as_str().expect("id").to_string(),
        layers,
    )
}

/// Layer digests listed by a cache manifest.
fn manifest_layers(manifest: &[u8]) -> BTreeSet<String> {
    let m: serde_json::Value = serde_json::from_slice(manifest).expect("manifest JSON");
    assert_eq!(m["artifactType"], "application/vnd.rbuild.cache.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.rbuild.cache.config.v1+json"
    );
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

fn local_cache_layers(dir: &Path) -> BTreeSet<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .expect("index JSON");
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    manifest_layers(&std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).expect("manifest"))
}

fn has_blob(env: &Env, digest: &str) -> bool {
    env.root()
        .join("oci/blobs/sha256")
        .join(&digest[7..])
        .exists()
}

/// `imported cache: N records, fetched M blobs (X bytes)` → (N, M, X).
fn import_report(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("imported cache: "))
        .unwrap_or_else(|| panic!("no import report in:\n{stderr}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(nums.len(), 3, "{line}");
    (nums[0], nums[1], nums[2])
}

fn all_cached(steps: &[Step], err: &str) {
    assert!(!steps.is_empty(), "{err}");
    for s in steps.iter().filter(|s| !s.is_action()) {
        assert!(
            s.cached && !s.done,
            "step {:?} was not cached:\n{err}",
            s.name
        );
    }
    assert!(executed(steps, "RUN").is_empty(), "{err}");
}

/// Machine A builds and exports with `cache_to`; machine B (fresh root, the context
/// elsewhere) imports with `cache_from` and must answer every step from it, produce the
/// same image, and fetch exactly the layers of that image it did not have.
fn a_then_b(
    cache_to: &str,
    cache_from: impl Fn(&Env) -> String,
    cache_layers: impl Fn() -> BTreeSet<String>,
    b_cache_to: impl Fn(&Env) -> String,
) {
    let a = Env::new();
    a.busybox_base();
    let ctx_a = a.context("ctx", &files(MULTI_STAGE));
    let iid_a = a.work.path().join("iid");
    let out = a.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:1",
        "--iidfile",
        path(&iid_a),
        "--cache-to",
        cache_to,
        path(&ctx_a),
    ]);
    assert!(
        stderr(&out).contains("exported cache to "),
        "{}",
        stderr(&out)
    );
    let (manifest_a, config_a, layers_a) = inspect(&a, "app:1");
    let (_, _, base_layers) = inspect(&a, "busybox:latest");

    let b = Env::new();
    copy_base(&a, &b);
    // Same files, another directory name and parent.
    let ctx_b = b.context("elsewhere/src", &files(MULTI_STAGE));
    let iid_b = b.work.path().join("iid");
    let from = cache_from(&b);
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:1",
        "--iidfile",
        path(&iid_b),
        "--cache-from",
        &from,
        path(&ctx_b),
    ]);
    let err = stderr(&out);
    all_cached(&plain_steps(&err), &err);
    assert_eq!(
        std::fs::read_to_string(&iid_b).unwrap(),
        std::fs::read_to_string(&iid_a).unwrap()
    );
    let (manifest_b, config_b, layers_b) = inspect(&b, "app:1");
    assert_eq!((&manifest_b, &config_b), (&manifest_a, &config_a));
    assert_eq!(layers_b, layers_a);

    // B fetched the image's own layers (not the base it had), and nothing else.
    let base: BTreeSet<String> = base_layers.iter().map(|(d, _)| d.clone()).collect();
    let own: Vec<&(String, u64)> = layers_a.iter().filter(|(d, _)| !base.contains(d)).collect();
    assert_eq!(own.len(), 3, "COPY, COPY, RUN layers: {layers_a:?}");
    let (records, blobs, bytes) = import_report(&err);
    // Through the stderr handle so CI's log shows what machine B transferred.
    let _ = writeln!(
        std::io::stderr(),
        "machine B ({from}): {records} cache records imported, {blobs} layer blobs fetched, {bytes} bytes"
    );
    assert!(records >= 6, "{err}");
    assert_eq!(blobs, own.len() as u64, "{err}");
    assert_eq!(bytes, own.iter().map(|(_, s)| s).sum::<u64>(), "{err}");
    let image: BTreeSet<String> = layers_a.iter().map(|(d, _)| d.clone()).collect();
    let builder_only: Vec<String> = cache_layers().difference(&image).cloned().collect();
    assert_eq!(builder_only.len(), 2, "the builder's two RUN layers");
    for d in &builder_only {
        assert!(has_blob(&a, d), "A has {d}");
        assert!(!has_blob(&b, d), "B downloaded the builder-only layer {d}");
    }

    // B passes the cache on to where it came from (CI's usual round trip): the builder's
    // layers are there already, so B still does not download them.
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "--cache-from",
        &from,
        "--cache-to",
        &b_cache_to(&b),
        path(&ctx_b),
    ]);
    let err = stderr(&out);
    assert!(err.contains("exported cache to "), "{err}");
    all_cached(&plain_steps(&err), &err);
    assert_eq!(import_report(&err).1, 0, "{err}");
    for d in &builder_only {
        assert!(!has_blob(&b, d), "B downloaded the builder-only layer {d}");
    }

    // The image works on B, and B's next build needs no --cache-from.
    let run = b.ok(&["run", "--rm", "app:1"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "built\nhello\n");
    let again = b.ok(&["build", "--progress=plain", "-t", "app:1", path(&ctx_b)]);
    let steps = plain_steps(&stderr(&again));
    let last = steps.iter().find(|s| s.name.contains("RUN cat"));
    assert!(last.is_some_and(|s| s.cached), "{}", stderr(&again));
}

#[test]
fn registry_cache_moves_a_build_to_another_machine() {
    let reg = Registry::start();
    let cache_ref = format!("{}/cache:1", reg.host);
    let raw = |r: &str| {
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{r}"),
        ])
        .stdout
    };
    a_then_b(
        &format!("type=registry,ref={cache_ref},mode=max"),
        |_| format!("type=registry,ref={cache_ref}"),
        || manifest_layers(&raw(&cache_ref)),
        |_| format!("type=registry,ref={cache_ref},mode=max"),
    );
}

#[test]
fn local_cache_moves_a_build_to_another_machine() {
    let shared = tempfile::tempdir().unwrap();
    let dest = shared.path().join("cache");
    a_then_b(
        &format!("type=local,dest={},mode=max", dest.display()),
        |b| {
            // B reads its own copy, as if carried over from A.
            let copy = b.work.path().join("carried-cache");
            let st = Command::new("cp")
                .arg("-a")
                .arg(&dest)
                .arg(&copy)
                .status()
                .unwrap();
            assert!(st.success());
            format!("type=local,src={}", copy.display())
        },
        || local_cache_layers(&dest),
        |b| {
            format!(
                "type=local,dest={},mode=max",
                b.work.path().join("carried-cache").display()
            )
        },
    );
}

#[test]
fn mode_min_exports_only_the_final_image_steps() {
    let a = Env::new();
    a.busybox_base();
    let ctx_a = a.context("ctx", &files(MULTI_STAGE));
    let min = a.work.path().join("min");
    let max = a.work.path().join("max");
    a.ok(&[
        "build",
        "--progress=plain",
        "--cache-to",
        &format!("type=local,dest={}", min.display()),
        path(&ctx_a),
    ]);
    // A fully cached build exports too.
    a.ok(&[
        "build",
        "--progress=plain",
        "--cache-to",
        &format!("type=local,dest={},mode=max", max.display()),
        path(&ctx_a),
    ]);
    assert!(local_cache_layers(&min).len() < local_cache_layers(&max).len());

    let b = Env::new();
    copy_base(&a, &b);
    let ctx_b = b.context("other", &files(MULTI_STAGE));
    let from_min = format!("type=local,src={}", min.display());
    // The builder stage is not in a min cache: its RUNs execute.
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "--target",
        "builder",
        "--cache-from",
        &from_min,
        path(&ctx_b),
    ]);
    let err = stderr(&out);
    assert_eq!(executed(&plain_steps(&err), "RUN").len(), 2, "{err}");

    // With max, the same target is answered from the cache.
    let c = Env::new();
    copy_base(&a, &c);
    let ctx_c = c.context("other", &files(MULTI_STAGE));
    let out = c.ok(&[
        "build",
        "--progress=plain",
        "--target",
        "builder",
        "--cache-from",
        &format!("type=local,src={}", max.display()),
        path(&ctx_c),
    ]);
    let err = stderr(&out);
    all_cached(&plain_steps(&err), &err);
}

#[test]
fn inline_cache_travels_with_the_pushed_image() {
    let reg = Registry::start();
    let df = "FROM busybox\nCOPY hello.txt /hello.txt\nRUN cp /hello.txt /copy.txt && echo run >> /copy.txt\nCMD [\"cat\", \"/copy.txt\"]\n";
    let a = Env::new();
    a.busybox_base();
    let ctx_a = a.context("ctx", &files(df));
    a.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:inline",
        "--cache-to",
        "type=inline",
        path(&ctx_a),
    ]);
    let config = |env: &Env, tag: &str| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_slice(&env.ok(&["inspect", tag]).stdout).expect("inspect JSON");
        v[0]["ImageConfig"].clone()
    };
    assert!(config(&a, "app:inline")["rbuild.cache.v1"]["records"].is_object());
    // Written once, with its cache metadata: the store holds busybox and app:inline, no
    // second (untagged) manifest of the image without it.
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(a.root().join("oci/index.json")).expect("index.json"),
    )
    .expect("index JSON");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2, "{index:#}");
    assert!(
        manifests
            .iter()
            .all(|m| m["annotations"]["org.opencontainers.image.ref.name"].is_string()),
        "{index:#}"
    );
    let image_ref = format!("{}/app:inline", reg.host);
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}/oci:app:inline", a.root().display()),
        &format!("docker://{image_ref}"),
    ]);
    let (_, _, layers_a) = inspect(&a, "app:inline");

    let b = Env::new();
    copy_base(&a, &b);
    let ctx_b = b.context("somewhere/else", &files(df));
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:b",
        "--cache-from",
        &image_ref,
        path(&ctx_b),
    ]);
    let err = stderr(&out);
    all_cached(&plain_steps(&err), &err);
    let (_, _, layers_b) = inspect(&b, "app:b");
    assert_eq!(layers_b, layers_a);
    // B did not ask for inline export: its config carries no cache metadata.
    assert!(config(&b, "app:b").get("rbuild.cache.v1").is_none());
    assert!(config(&b, "app:b")["rootfs"]["diff_ids"].is_array());
    let (_, blobs, _) = import_report(&err);
    assert_eq!(blobs, 2, "the COPY and RUN layers: {err}");
    let run = b.ok(&["run", "--rm", "app:b"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\nrun\n");
}

#[test]
fn unusable_cache_sources_warn_and_the_build_runs() {
    let reg = Registry::start();
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox\nRUN echo ran > /r.txt\n";
    let ctx = env.context("ctx", &files(df));
    let corrupt = env.work.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("index.json"), "{ not json").unwrap();
    for (i, from) in [
        format!(
            "type=local,src={}",
            env.work.path().join("absent").display()
        ),
        format!("type=local,src={}", corrupt.display()),
        format!("{}/nothing:here", reg.host),
    ]
    .iter()
    .enumerate()
    {
        let mut args = vec!["build", "--progress=plain", "--cache-from", from.as_str()];
        // Only the first build runs the step; later ones have it in the local cache.
        args.push(path(&ctx));
        let out = env.ok(&args);
        let err = stderr(&out);
        assert!(err.contains("WARNING: cannot import cache from"), "{err}");
        let ran = executed(&plain_steps(&err), "RUN").len();
        assert_eq!(ran, usize::from(i == 0), "{err}");
    }
    // A cache export that fails fails the build, unless told to ignore it.
    let blocked = env.work.path().join("file-not-dir");
    std::fs::write(&blocked, "x").unwrap();
    let to = format!("type=local,dest={}", blocked.display());
    let out = env.run(&["build", "--progress=plain", "--cache-to", &to, path(&ctx)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot export the cache"),
        "{}",
        stderr(&out)
    );
    let to = format!("{to},ignore-error=true");
    env.ok(&["build", "--progress=plain", "--cache-to", &to, path(&ctx)]);
}

#[test]
fn a_step_on_top_of_imported_layers_fetches_them_first() {
    let a = Env::new();
    a.busybox_base();
    let ctx_a = a.context("ctx", &files(MULTI_STAGE));
    let dest = a.work.path().join("cache");
    a.ok(&[
        "build",
        "--progress=plain",
        "--cache-to",
        &format!("type=local,dest={},mode=max", dest.display()),
        path(&ctx_a),
    ]);
    let builder_layers: Vec<String> = {
        let all = local_cache_layers(&dest);
        let (_, _, base) = inspect(&a, "busybox:latest");
        let base: BTreeSet<String> = base.into_iter().map(|(d, _)| d).collect();
        all.difference(&base).cloned().collect()
    };

    // B changes the last RUN: it runs on the two imported COPY layers.
    let b = Env::new();
    copy_base(&a, &b);
    let changed = MULTI_STAGE.replace(
        "> /app/both.txt",
        "> /app/both.txt && echo changed >> /app/both.txt",
    );
    let ctx_b = b.context("ctx", &files(&changed));
    let out = b.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:changed",
        "--cache-from",
        &format!("type=local,src={}", dest.display()),
        path(&ctx_b),
    ]);
    let err = stderr(&out);
    let steps = plain_steps(&err);
    assert_eq!(
        executed(&steps, "RUN"),
        [
            "[stage-1 4/4] RUN cat /app/out.txt /app/hello.txt > /app/both.txt && echo changed >> /app/both.txt"
        ],
        "{err}"
    );
    let (_, blobs, _) = import_report(&err);
    assert_eq!(blobs, 2, "the two COPY layers under the RUN: {err}");
    let run = b.ok(&["run", "--rm", "app:changed"]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "built\nhello\nchanged\n"
    );
    // The builder's layers stayed remote.
    let fetched: Vec<&String> = builder_layers.iter().filter(|d| has_blob(&b, d)).collect();
    assert_eq!(fetched.len(), 2, "only the COPY layers: {fetched:?}");
}
