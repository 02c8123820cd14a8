//! The store under stress: `rbuild check` finding and repairing damage on purpose, four
//! concurrent builds sharing one execution, prune running during a build, and the cache
//! policy (`prune --keep-storage`, `--filter until=`, the size limit after each build).
//! Needs root, busybox-static and umoci (scripts/install-deps.sh).

use rbuild_tests::{Env, executed, plain_steps};
use std::path::{Path, PathBuf};
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read json")).expect("json")
}

/// (layer digests, diff_ids) of the image tagged `tag`, read from the store's layout.
fn image_layers(env: &Env, tag: &str) -> (Vec<String>, Vec<String>) {
    let oci = env.root().join("oci");
    let blob = |d: &str| oci.join("blobs/sha256").join(&d["sha256:".len()..]);
    let index = json(&oci.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{tag} in index.json"));
    let manifest = json(&blob(entry["digest"].as_str().expect("digest")));
    let config = json(&blob(
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    let digests = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    let ids = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff_id").to_string())
        .collect();
    (digests, ids)
}

fn blob_path(env: &Env, digest: &str) -> PathBuf {
    env.root()
        .join("oci/blobs/sha256")
        .join(&digest["sha256:".len()..])
}

fn snapshot_path(env: &Env, diff_id: &str) -> PathBuf {
    env.root()
        .join("snapshots")
        .join(&diff_id["sha256:".len()..][..20])
}

/// `rbuild check` (with `--repair` if asked): its exit status and stdout.
fn check(env: &Env, repair: bool) -> (bool, String) {
    let args: &[&str] = if repair {
        &["check", "--repair"]
    } else {
        &["check"]
    };
    let o = env.run(args);
    assert!(
        o.stderr.is_empty(),
        "check wrote to stderr: {}",
        text(&o.stderr)
    );
    (o.status.success(), text(&o.stdout))
}

fn assert_consistent(env: &Env) {
    let (ok, out) = check(env, false);
    assert!(ok && out.ends_with(": consistent\n"), "{out}");
    assert!(!out.contains("problem:"), "{out}");
}

fn build(env: &Env, tag: &str, ctx: &Path) -> Output {
    env.ok(&["build", "--progress=plain", "-t", tag, p(ctx)])
}

/// The image ID `--progress=plain` reports.
fn image_id(out: &Output) -> String {
    let err = text(&out.stderr);
    err.lines()
        .find_map(|l| l.split("writing image ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no image ID in:\n{err}"))
        .to_string()
}

#[test]
fn check_finds_and_repairs_a_corrupt_blob() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "c",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY a /a\nRUN cat /a /a > /b\n",
            ),
            ("a", "alpha\n"),
        ],
    );
    build(&env, "t:1", &ctx);
    assert_consistent(&env);
    let (digests, _) = image_layers(&env, "t:1");
    let run_layer = digests.last().expect("a layer").clone();
    // One byte flipped in the RUN's layer blob.
    let path = blob_path(&env, &run_layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let (ok, out) = check(&env, false);
    assert!(!ok, "an inconsistent store exits 1:\n{out}");
    assert!(
        out.contains(&format!(
            "problem: blob {run_layer}: its content does not match its digest"
        )),
        "{out}"
    );
    assert!(out.contains("problem: image t:1: layer "), "{out}");
    assert!(
        out.contains("problems; run `rbuild check --repair`"),
        "{out}"
    );
    assert!(path.exists(), "check without --repair changes nothing");

    let (ok, out) = check(&env, true);
    assert!(ok && out.contains("problems repaired"), "{out}");
    assert!(!path.exists());
    assert_consistent(&env);
    // The image went with its blob; the rebuild runs the RUN again (its record was
    // dropped: never a hit on a corrupt layer) and gets the right bytes.
    assert!(!text(&env.ok(&["images"]).stdout).contains("\nt "));
    let o = build(&env, "t:1", &ctx);
    assert_eq!(
        executed(&plain_steps(&text(&o.stderr)), "RUN").len(),
        1,
        "{}",
        text(&o.stderr)
    );
    let rootfs = env.umoci_unpack("t:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("b")).unwrap(),
        "alpha\nalpha\n"
    );
    assert_consistent(&env);
}

#[test]
fn check_finds_and_repairs_deleted_and_damaged_snapshots() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "c",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY a /a\nRUN cat /a /a > /b\n",
            ),
            ("a", "alpha\n"),
        ],
    );
    build(&env, "t:1", &ctx);
    let (_, ids) = image_layers(&env, "t:1");
    let copy_snap = snapshot_path(&env, &ids[ids.len() - 2]);
    let run_snap = snapshot_path(&env, &ids[ids.len() - 1]);
    assert!(copy_snap.join("a").is_file() && run_snap.join("b").is_file());

    // A record's snapshot deleted: extracted again (a note: snapshots are lazy).
    std::fs::remove_dir_all(&run_snap).unwrap();
    // A snapshot whose file changed under it: builds would read wrong bytes.
    std::fs::write(copy_snap.join("a"), "tampered\n").unwrap();
    let (ok, out) = check(&env, false);
    assert!(!ok, "{out}");
    let run_id = &ids[ids.len() - 1];
    let copy_id = &ids[ids.len() - 2];
    assert!(
        out.contains(&format!("note: snapshot of {run_id}: missing")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "problem: snapshot of {copy_id}: its files differ from layer"
        )),
        "{out}"
    );
    let (ok, out) = check(&env, true);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(copy_snap.join("a")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(run_snap.join("b")).unwrap(),
        "alpha\nalpha\n"
    );
    assert_consistent(&env);
    // A new step on the repaired COPY snapshot reads the right bytes.
    let ctx2 = env.context(
        "c2",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a /a\nRUN cat /a > /c\n"),
            ("a", "alpha\n"),
        ],
    );
    let o = build(&env, "t:2", &ctx2);
    let steps = plain_steps(&text(&o.stderr));
    assert!(executed(&steps, "COPY").is_empty(), "COPY is cached");
    let rootfs = env.umoci_unpack("t:2");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("c")).unwrap(),
        "alpha\n"
    );
}

#[test]
fn check_rebuilds_a_half_written_index() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "c",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a /a\n"),
            ("a", "alpha\n"),
        ],
    );
    let first = image_id(&build(&env, "t:1", &ctx));
    let index = env.root().join("oci/index.json");
    let full = std::fs::read(&index).unwrap();
    // Cut inside the last entry (t:1): busybox's entry is complete.
    std::fs::write(&index, &full[..full.len() - 30]).unwrap();
    let o = env.run(&["images"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("rbuild check --repair"),
        "{}",
        text(&o.stderr)
    );

    let (ok, out) = check(&env, false);
    assert!(!ok, "{out}");
    assert!(out.contains("problem: index.json: does not parse"), "{out}");
    let (ok, out) = check(&env, true);
    assert!(ok, "{out}");
    assert!(
        out.contains("rebuilt: 1 complete entries kept, 1 untagged images added back"),
        "{out}"
    );
    assert_consistent(&env);
    let images = text(&env.ok(&["images"]).stdout);
    assert!(images.contains("busybox"), "{images}");
    assert!(images.contains(&first["sha256:".len()..][..12]), "{images}");
    // Building again names the same image (every step cached).
    let o = build(&env, "t:1", &ctx);
    assert_eq!(image_id(&o), first);
    assert!(executed(&plain_steps(&text(&o.stderr)), "COPY").is_empty());
    let rootfs = env.umoci_unpack("t:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("a")).unwrap(),
        "alpha\n"
    );
    assert_consistent(&env);
}

#[test]
fn four_concurrent_builds_execute_a_step_once() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "c",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN head -c16 /dev/urandom | od -x > /r && echo ran-once\n",
        )],
    );
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.cmd(&[
                "build",
                "--progress=plain",
                "-t",
                &format!("c:{i}"),
                p(&ctx),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rbuild")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let mut ran = 0;
    let mut ids = Vec::new();
    for o in &outs {
        assert!(o.status.success(), "{}", text(&o.stderr));
        let steps = plain_steps(&text(&o.stderr));
        ran += executed(&steps, "RUN").len();
        ids.push(image_id(o));
    }
    assert_eq!(ran, 1, "the RUN executed once across the four builds");
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    let r: Vec<Vec<u8>> = (0..4)
        .map(|i| std::fs::read(env.umoci_unpack(&format!("c:{i}")).join("r")).unwrap())
        .collect();
    assert!(r.iter().all(|x| x == &r[0]) && !r[0].is_empty());
    assert!(
        std::fs::read_dir(env.root().join("locks/keys"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no key lock file is left"
    );
    assert_consistent(&env);
}

#[test]
fn a_step_whose_builder_dies_is_taken_over() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "c",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,target=/c touch /c/started && while [ ! -e /c/go ]; do sleep 0.05; done; echo done > /d\n",
        )],
    );
    let mut first = env
        .cmd(&["build", "--progress=plain", "-t", "k:1", p(&ctx)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = wait_for_cache_file(&env, "started");
    let second = env
        .cmd(&["build", "--progress=plain", "-t", "k:2", p(&ctx)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The second reaches the RUN (its lease names the base it looked up) and waits on
    // the first's key lock; the first dies holding it.
    let lease = format!("{}-", second.id());
    for _ in 0..1200 {
        let leased = std::fs::read_dir(env.root().join("leases"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&lease));
        if leased {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::write(started.with_file_name("go"), "").unwrap();
    let o = second.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(executed(&plain_steps(&text(&o.stderr)), "RUN").len(), 1);
    let rootfs = env.umoci_unpack("k:2");
    assert_eq!(std::fs::read_to_string(rootfs.join("d")).unwrap(), "done\n");
    assert_consistent(&env);
}

/// Waits until a `RUN --mount=type=cache` step creates `name` in its cache dir (under
/// the root's `cache-mounts/`); returns its host path. Fails after a minute.
fn wait_for_cache_file(env: &Env, name: &str) -> PathBuf {
    for _ in 0..1200 {
        let found = walk(&env.root().join("cache-mounts"))
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name));
        if let Some(f) = found {
            return f;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no RUN created {name} in a cache mount");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn prune_during_a_build_leaves_what_it_uses() {
    let env = Env::new();
    env.busybox_base();
    let big: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    let one = env.context(
        "one",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a /a\nRUN wc -l /a > /n\n"),
            ("a", &big),
        ],
    );
    build(&env, "one:1", &one);
    env.ok(&["rmi", "one:1"]);
    // Same COPY (a cache hit), then a RUN that waits until the test lets it go.
    let two = env.context(
        "two",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY a /a\nRUN --mount=type=cache,target=/c touch /c/started && while [ ! -e /c/go ]; do sleep 0.05; done; wc -l /a > /m\n",
            ),
            ("a", &big),
        ],
    );
    let child = env
        .cmd(&["build", "--progress=plain", "-t", "two:1", p(&two)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_for_cache_file(&env, "started");
    let o = env.ok(&["prune", "--all"]);
    let out = text(&o.stdout);
    // The first build's RUN (unused now) goes; the COPY the running build uses stays.
    assert!(out.contains("Removed "), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    std::fs::write(started.with_file_name("go"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let steps = plain_steps(&text(&o.stderr));
    assert!(executed(&steps, "COPY").is_empty(), "COPY was a cache hit");
    let rootfs = env.umoci_unpack("two:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("m")).unwrap().trim(),
        "20000 /a"
    );
    assert_eq!(std::fs::read_to_string(rootfs.join("a")).unwrap(), big);
    assert_consistent(&env);
}

/// Builds `ctx` tagged `tmp:1` with `vars` in the environment, then untags it, so only
/// the build cache holds what it made (an untagged build would keep a dangling image).
fn build_cache_only(env: &Env, ctx: &Path, vars: &[(&str, &str)]) -> Output {
    let o = env
        .cmd(&["build", "--progress=plain", "-t", "tmp:1", p(ctx)])
        .envs(vars.iter().copied())
        .output()
        .expect("run rbuild");
    assert!(o.status.success(), "{}", text(&o.stderr));
    env.ok(&["rmi", "tmp:1"]);
    o
}

/// A context whose RUN writes `kb` KiB of incompressible data.
fn random_ctx(env: &Env, name: &str, kb: usize) -> PathBuf {
    env.context(
        name,
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {name} && head -c {kb}k /dev/urandom > /data\n"),
        )],
    )
}

fn cache_only(env: &Env, name: &str, kb: usize) -> PathBuf {
    let ctx = random_ctx(env, name, kb);
    build_cache_only(env, &ctx, &[]);
    ctx
}

/// Whether building `ctx` again executes its RUN.
fn run_executed(env: &Env, ctx: &Path) -> bool {
    let o = build_cache_only(env, ctx, &[]);
    !executed(&plain_steps(&text(&o.stderr)), "RUN").is_empty()
}

fn age_dir(dir: &Path, secs: u64) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let f = std::fs::File::options().write(true).open(e.path()).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
            .unwrap();
    }
}

#[test]
fn prune_keep_storage_drops_least_recently_used_first() {
    let env = Env::new();
    env.busybox_base();
    let a = cache_only(&env, "a", 1024);
    let b = cache_only(&env, "b", 1024);
    // "a" is used again, so "b" is the least recently used.
    assert!(!run_executed(&env, &a));
    // Each takes about 2 MiB (its blob and its snapshot): one fits.
    let o = env.ok(&["prune", "--keep-storage", "3MB"]);
    let out = text(&o.stdout);
    assert!(out.contains("Build cache now: "), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert!(!run_executed(&env, &a), "a was kept");
    assert!(run_executed(&env, &b), "b was dropped");
    // Tagged images are never touched: busybox is whole.
    let o = env.ok(&["prune", "--keep-storage", "0"]);
    assert!(text(&o.stdout).contains("Build cache now: "));
    assert!(text(&env.ok(&["images"]).stdout).contains("busybox"));
    env.umoci_unpack("busybox:latest");
    assert_consistent(&env);
    // Bad values say what to write.
    let o = env.run(&["prune", "--keep-storage", "lots"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--keep-storage"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stderr).contains("10GB"), "{}", text(&o.stderr));
    let o = env.run(&["prune", "--filter", "type=regular"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("only until=DURATION"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn prune_filter_until_drops_what_was_not_used_for_that_long() {
    let env = Env::new();
    env.busybox_base();
    let a = cache_only(&env, "a", 64);
    let b = cache_only(&env, "b", 64);
    let o = env.ok(&["prune", "--filter", "until=1h"]);
    assert!(
        text(&o.stdout).starts_with("Removed 0 cache records"),
        "{}",
        text(&o.stdout)
    );
    // Everything was last used two hours ago; then "a" is used now.
    age_dir(&env.root().join("records"), 7200);
    age_dir(&env.root().join("leases"), 7200);
    assert!(!run_executed(&env, &a));
    let o = env.ok(&["prune", "--filter", "until=1h"]);
    assert!(
        !text(&o.stdout).starts_with("Removed 0 cache records"),
        "{}",
        text(&o.stdout)
    );
    assert!(!run_executed(&env, &a), "a was used within the hour");
    assert!(run_executed(&env, &b), "b was not");
    assert_consistent(&env);
}

#[test]
fn the_policy_after_a_build_keeps_the_cache_under_its_limit() {
    let env = Env::new();
    env.busybox_base();
    let limit = [("RBUILD_GC_KEEP_STORAGE", "1.5MB")];
    let a = random_ctx(&env, "a", 1024);
    let o = build_cache_only(&env, &a, &limit);
    assert!(!text(&o.stderr).contains("#gc"), "under the limit");
    let b = random_ctx(&env, "b", 1024);
    let o = build_cache_only(&env, &b, &limit);
    let err = text(&o.stderr);
    // "b"'s own result is leased by the build that made it; "a"'s goes.
    assert!(err.contains("#gc freed "), "{err}");
    assert!(err.contains("(limit 1.6MB)"), "{err}");
    // A no-op rebuild adds nothing: the policy costs nothing and frees nothing.
    let o = build_cache_only(&env, &b, &limit);
    assert!(!text(&o.stderr).contains("#gc"), "{}", text(&o.stderr));
    assert!(executed(&plain_steps(&text(&o.stderr)), "RUN").is_empty());
    assert!(run_executed(&env, &a), "a was dropped");
    assert!(text(&env.ok(&["images"]).stdout).contains("busybox"));

    // The file under the root, and the variable that turns it off.
    std::fs::write(env.root().join("gc.toml"), "keep-storage = \"100KB\"\n").unwrap();
    let c = random_ctx(&env, "c", 512);
    let o = build_cache_only(&env, &c, &[("RBUILD_GC", "0")]);
    assert!(!text(&o.stderr).contains("#gc"), "{}", text(&o.stderr));
    let d = random_ctx(&env, "d", 512);
    let o = build_cache_only(&env, &d, &[]);
    assert!(
        text(&o.stderr).contains("(limit 102.4kB)"),
        "{}",
        text(&o.stderr)
    );
    assert!(run_executed(&env, &c), "c was dropped by the file's limit");
    // A bad file stops the build before it starts, naming the file.
    std::fs::write(env.root().join("gc.toml"), "keep-storage = \"much\"\n").unwrap();
    let o = env.run(&["build", "--progress=plain", p(&d)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("gc.toml") && err.contains("keep-storage"),
        "{err}"
    );
    assert!(!err.contains("#1 "), "nothing was built: {err}");
    std::fs::remove_file(env.root().join("gc.toml")).unwrap();
    assert_consistent(&env);
}
