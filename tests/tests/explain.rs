//! Why a step ran instead of coming from the cache: each cause named in the step's
//! progress line and in `--metadata-file`, `--dry-run` predicting the same before anything
//! runs, no build-arg value kept, and the explanation carried by an exported cache onto a
//! fresh root. Needs root, busybox-static and skopeo (scripts/install-deps.sh).

use rbuild_tests::{Env, Step, plain_steps};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const DOCKERFILE: &str = "\
FROM busybox
ARG VERSION=1
ARG API_TOKEN=none
COPY src/ /src/
RUN echo $VERSION > /version && test -n \"$API_TOKEN\"
";

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn context(env: &Env, name: &str) -> PathBuf {
    env.context(
        name,
        &[
            ("Dockerfile", DOCKERFILE),
            ("src/main.rs", "fn main() {}\n"),
            ("src/lib.rs", "pub fn lib() {}\n"),
        ],
    )
}

/// What a build said: its steps (plain progress) and its metadata file.
struct Built {
    steps: Vec<Step>,
    metadata: Value,
    stderr: String,
}

impl Built {
    /// The step whose name contains `needle`, and its progress number.
    fn step(&self, needle: &str) -> (usize, &Step) {
        self.steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.name.contains(needle))
            .map(|(i, s)| (i + 1, s))
            .unwrap_or_else(|| panic!("no step {needle:?} in:\n{}", self.stderr))
    }

    /// The progress line of the step `needle`: why it ran.
    fn miss(&self, needle: &str) -> &str {
        let (_, s) = self.step(needle);
        s.miss
            .as_deref()
            .unwrap_or_else(|| panic!("{needle:?} has no CACHE MISS line:\n{}", self.stderr))
    }

    /// `rbuild.cache.misses`: step → reason texts.
    fn explained(&self) -> BTreeMap<String, Vec<String>> {
        misses(&self.metadata["rbuild.cache.misses"], "step", "reasons")
    }
}

fn misses(list: &Value, step: &str, reasons: &str) -> BTreeMap<String, Vec<String>> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| {
            let texts: Vec<String> = m[reasons]
                .as_array()?
                .iter()
                .map(|r| r["text"].as_str().expect("text").to_string())
                .collect();
            Some((m[step].as_str().expect("step").to_string(), texts))
        })
        .collect()
}

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> Built {
    let meta = env.work.path().join("metadata.json");
    let mut args = vec!["build", "--progress=plain", "--metadata-file", path(&meta)];
    args.extend_from_slice(extra);
    args.push(path(ctx));
    let out = env.ok(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Built {
        steps: plain_steps(&stderr),
        metadata: serde_json::from_slice(&std::fs::read(&meta).expect("metadata file"))
            .expect("metadata JSON"),
        stderr,
    }
}

/// `--dry-run --format json`: for each step that would run (actions aside), its reasons.
fn predicted(env: &Env, ctx: &Path, extra: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut args = vec!["build", "--dry-run", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(path(ctx));
    let out = env.ok(&args);
    let v: Value = serde_json::from_slice(&out.stdout).expect("dry-run JSON");
    let runs: Vec<Value> = v
        .as_array()
        .expect("vertices")
        .iter()
        .filter(|x| x["cached"] == false && x.get("miss").is_some())
        .cloned()
        .collect();
    misses(&Value::Array(runs), "description", "miss")
}

/// Predicts with a dry run, builds, and checks the build said what was predicted: the same
/// steps ran, for the same reasons, in the metadata; each step that ran has a progress line.
fn check(env: &Env, ctx: &Path, extra: &[&str]) -> Built {
    let predicted = predicted(env, ctx, extra);
    let built = build(env, ctx, extra);
    assert_eq!(
        predicted,
        built.explained(),
        "the dry run predicted otherwise:\n{}",
        built.stderr
    );
    for s in built.steps.iter().filter(|s| s.done && !s.is_action()) {
        assert!(
            s.miss.is_some(),
            "{} ran unexplained:\n{}",
            s.name,
            built.stderr
        );
        assert!(
            predicted.contains_key(&s.name),
            "{} ran unpredicted",
            s.name
        );
    }
    built
}

fn manifest_digest(env: &Env, tag: &str) -> String {
    let out = env.ok(&["inspect", tag]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    v[0]["ManifestDigest"].as_str().expect("digest").to_string()
}

/// Every file under `dir`, read.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walkdir(dir)
        .into_iter()
        .filter_map(|p| Some((p.clone(), std::fs::read(&p).ok()?)))
        .collect()
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn each_cause_is_named_and_the_dry_run_predicts_it() {
    let env = Env::new();
    env.busybox_base();
    let ctx = context(&env, "app");

    // First build: every step says so.
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("COPY src/"), "first build");
    assert_eq!(b.miss("RUN echo"), "first build");

    // A no-op rebuild explains nothing and writes no record.
    let records = env.root().join("explain");
    let before = files_under(&records);
    let stamps: Vec<_> = before
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    let b = check(&env, &ctx, &[]);
    assert!(b.explained().is_empty(), "{}", b.stderr);
    assert!(b.steps.iter().all(|s| s.miss.is_none()));
    let after = files_under(&records);
    assert_eq!(before, after);
    for ((p, _), t) in after.iter().zip(&stamps) {
        assert_eq!(std::fs::metadata(p).unwrap().modified().unwrap(), *t);
    }

    // A file's content: the COPY names it, the RUN names its parent step.
    std::fs::write(ctx.join("src/main.rs"), "fn main() { changed() }\n").unwrap();
    let b = check(&env, &ctx, &[]);
    assert_eq!(
        b.miss("COPY src/"),
        "COPY src: src/main.rs changed (content)"
    );
    let (copy, _) = b.step("COPY src/");
    assert_eq!(b.miss("RUN echo"), format!("parent step #{copy} changed"));
    assert!(b.step("FROM").1.cached);

    // Files added, removed, and a mode.
    std::fs::write(ctx.join("src/new.rs"), "new\n").unwrap();
    std::fs::remove_file(ctx.join("src/lib.rs")).unwrap();
    let b = check(&env, &ctx, &[]);
    assert_eq!(
        b.miss("COPY src/"),
        "COPY src: src/new.rs added, 1 entry removed"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ctx.join("src/new.rs"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("COPY src/"), "COPY src: src/new.rs changed (mode)");

    // A build arg: named ARG, with its new value; the old one was never kept.
    let b = check(&env, &ctx, &["--build-arg", "VERSION=2"]);
    assert!(b.step("COPY src/").1.cached);
    assert_eq!(b.miss("RUN echo"), "ARG VERSION changed (now \"2\")");

    // A secret-looking build arg: named, its value in no reason and kept nowhere. (The
    // step's own name shows the RUN line with its args expanded, as BuildKit's does.)
    let secret = "s3cr3t-value-4711";
    let token = format!("API_TOKEN={secret}");
    let b = check(
        &env,
        &ctx,
        &["--build-arg", "VERSION=2", "--build-arg", &token],
    );
    assert_eq!(b.miss("RUN echo"), "ARG API_TOKEN changed");
    let reasons = b.metadata["rbuild.cache.misses"][0]["reasons"].to_string();
    assert!(
        reasons.contains("ARG API_TOKEN") && !reasons.contains(secret),
        "{reasons}"
    );
    for (p, bytes) in files_under(&records) {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds it",
            p.display()
        );
    }

    // The base image rebuilt under the same tag: the FROM says where its digest moved.
    let old = manifest_digest(&env, "busybox:latest");
    let base = env.work.path().join("busybox-base");
    let mut df = std::fs::read_to_string(base.join("Dockerfile")).unwrap();
    df.push_str("RUN echo rebuilt > /etc/rebuilt\n");
    std::fs::write(base.join("Dockerfile"), df).unwrap();
    env.ok(&["build", "-q", "-t", "busybox:latest", path(&base)]);
    let new = manifest_digest(&env, "busybox:latest");
    assert_ne!(old, new);
    let args = ["--build-arg", "VERSION=2", "--build-arg", &token];
    let b = check(&env, &ctx, &args);
    assert_eq!(
        b.miss("FROM"),
        format!("base image digest moved {} → {}", &old[..19], &new[..19])
    );
    let (from, _) = b.step("FROM");
    assert_eq!(b.miss("COPY src/"), format!("parent step #{from} changed"));

    // A step inserted: it is new; the COPY after it is found again, its parent changed.
    let inserted = DOCKERFILE.replace("COPY src/", "RUN echo inserted\nCOPY src/");
    std::fs::write(ctx.join("Dockerfile"), inserted).unwrap();
    let b = check(&env, &ctx, &args);
    assert_eq!(
        b.miss("RUN echo inserted"),
        "new step: the last build had a COPY/ADD/WORKDIR step here"
    );
    let (run, _) = b.step("RUN echo inserted");
    assert_eq!(b.miss("COPY src/"), format!("parent step #{run} changed"));

    // --no-cache: every step that ran says so.
    let mut no_cache = args.to_vec();
    no_cache.push("--no-cache");
    let b = check(&env, &ctx, &no_cache);
    assert!(b.explained().len() >= 4, "{}", b.stderr);
    for (step, why) in b.explained() {
        assert_eq!(why, ["--no-cache"], "{step}");
    }
}

/// Machine B gets the same base image as A (as a pull would).
fn copy_base(a: &Env, b: &Env) {
    let st = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}/oci:busybox:latest", a.root().display()))
        .arg(format!("oci:{}/oci:busybox:latest", b.root().display()))
        .status()
        .expect("skopeo (apt-get install skopeo)");
    assert!(st.success());
}

#[test]
fn the_explanation_travels_with_an_exported_cache() {
    let a = Env::new();
    a.busybox_base();
    let ctx_a = context(&a, "app");
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let secret = "s3cr3t-in-cache-0815";
    let token = format!("API_TOKEN={secret}");
    let to = format!("type=local,dest={},mode=max", cache.display());
    a.ok(&[
        "build",
        "-q",
        "--build-arg",
        &token,
        "--cache-to",
        &to,
        path(&ctx_a),
    ]);
    for (p, bytes) in files_under(&cache) {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds it",
            p.display()
        );
    }

    // B: a fresh root, the context elsewhere with one file changed. The import's record
    // names it; what did not change comes from the imported cache.
    let b = Env::new();
    copy_base(&a, &b);
    let ctx_b = context(&b, "elsewhere/app");
    std::fs::write(ctx_b.join("src/lib.rs"), "pub fn lib() { 2 }\n").unwrap();
    let from = format!("type=local,src={}", cache.display());
    let built = build(&b, &ctx_b, &["--build-arg", &token, "--cache-from", &from]);
    assert!(built.step("FROM").1.cached, "{}", built.stderr);
    assert_eq!(
        built.miss("COPY src/"),
        "COPY src: src/lib.rs changed (content)"
    );
    let (copy, _) = built.step("COPY src/");
    assert_eq!(
        built.miss("RUN echo"),
        format!("parent step #{copy} changed")
    );

    // B's own history now holds that build: the next change is named against it,
    // without --cache-from.
    std::fs::write(ctx_b.join("src/main.rs"), "fn main() { 3 }\n").unwrap();
    let built = build(&b, &ctx_b, &["--build-arg", &token]);
    assert_eq!(
        built.miss("COPY src/"),
        "COPY src: src/main.rs changed (content)"
    );

    // Another Dockerfile name is another build: the import has no record of it, and the
    // step says so.
    let c = Env::new();
    copy_base(&a, &c);
    let ctx_c = context(&c, "third/app");
    std::fs::rename(ctx_c.join("Dockerfile"), ctx_c.join("other.Dockerfile")).unwrap();
    std::fs::write(ctx_c.join("src/lib.rs"), "pub fn lib() { 4 }\n").unwrap();
    let df = ctx_c.join("other.Dockerfile");
    let built = build(
        &c,
        &ctx_c,
        &[
            "-f",
            path(&df),
            "--build-arg",
            &token,
            "--cache-from",
            &from,
        ],
    );
    assert!(built.step("FROM").1.cached, "{}", built.stderr);
    assert_eq!(
        built.miss("COPY src/"),
        "first build: not in the local history; imported cache has no record for it"
    );
}

#[test]
fn a_big_context_names_the_changed_file_with_a_small_record() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("big", &[("Dockerfile", "FROM busybox\nCOPY . /ctx/\n")]);
    const FILES: usize = 5_000;
    for d in 0..100 {
        let dir = ctx.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..FILES / 100 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    build(&env, &ctx, &[]);
    std::fs::write(ctx.join("d42/f023.txt"), "changed\n").unwrap();
    let b = build(&env, &ctx, &[]);
    assert_eq!(b.miss("COPY ."), "COPY .: d42/f023.txt changed (content)");
    // The record: a list of 8 bytes per entry (5,000 files, 100 dirs, the Dockerfile and
    // the context's root) and the steps' digests.
    // (The base image's build keeps its own small list.)
    let lists: Vec<(PathBuf, Vec<u8>)> = files_under(&env.root().join("explain"))
        .into_iter()
        .filter(|(p, b)| p.extension().is_some_and(|e| e == "files") && b.len() > 100)
        .collect();
    assert_eq!(
        lists.len(),
        1,
        "the old list was removed with the new one written"
    );
    assert_eq!(lists[0].1.len(), 10 + 8 * (FILES + 100 + 2));
}

#[test]
fn a_runs_command_env_workdir_mounts_and_network_are_named() {
    let env = Env::new();
    env.busybox_base();
    let dockerfile = "\
FROM busybox
ENV MODE=a
WORKDIR /w
RUN --mount=type=cache,target=/c echo one > /x
";
    let ctx = env.context("run", &[("Dockerfile", dockerfile)]);
    let edit = |from: &str, to: &str| {
        let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
        assert!(df.contains(from), "{df}");
        std::fs::write(ctx.join("Dockerfile"), df.replace(from, to)).unwrap();
    };
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("RUN"), "first build");

    edit("MODE=a", "MODE=b");
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("RUN"), "ENV MODE changed (now \"b\")");
    assert!(b.step("WORKDIR").1.cached, "{}", b.stderr);

    edit("target=/c", "target=/c,sharing=locked");
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("RUN"), "mount /c: sharing changed: shared → locked");

    edit("RUN ", "RUN --mount=type=tmpfs,target=/t ");
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("RUN"), "mount /t added");

    edit("echo one", "echo two");
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("RUN"), "command changed");

    edit("WORKDIR /w", "WORKDIR /v");
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("WORKDIR"), "WORKDIR /v: path changed");
    let (workdir, _) = b.step("WORKDIR");
    assert_eq!(
        b.miss("RUN"),
        format!("WORKDIR changed (now \"/v\"); parent step #{workdir} changed")
    );

    edit("RUN ", "RUN --network=none ");
    let b = check(&env, &ctx, &[]);
    assert_eq!(b.miss("RUN"), "network mode changed: host → none");

    // A step that failed is no baseline: run again, it is still compared with the last
    // build it succeeded in (not "its cached result is gone").
    edit("echo two > /x", "echo two > /x && false");
    for _ in 0..2 {
        let out = env.run(&["build", "--progress=plain", path(&ctx)]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let steps = plain_steps(&stderr);
        let run = steps.iter().find(|s| s.name.contains("RUN")).expect("RUN");
        assert_eq!(run.miss.as_deref(), Some("command changed"), "{stderr}");
    }
    edit("echo two > /x && false", "echo two > /x");
    let b = check(&env, &ctx, &[]);
    assert!(b.step("RUN").1.cached, "{}", b.stderr);
}

/// A long stage whose environment grows at every step: the record keeps each RUN's
/// environment as a delta from the RUN before it (one variable each, not all of them), and
/// a variable changed at the top is still named at the bottom.
#[test]
fn a_growing_environment_is_recorded_as_deltas_and_named_where_it_changed() {
    let env = Env::new();
    env.busybox_base();
    const RUNS: usize = 40;
    let mut dockerfile = String::from("FROM busybox\n");
    for i in 0..RUNS {
        dockerfile.push_str(&format!(
            "ENV V{i}=x{i}\nRUN test \"$V{i}\" = x{i} || test $V0 = changed\n"
        ));
    }
    let ctx = env.context("grow", &[("Dockerfile", &dockerfile)]);
    check(&env, &ctx, &[]);
    // One record, with one `env:` entry per RUN (the first holds the base image's PATH
    // too), where every RUN keeping its whole environment would need 40 × 41 / 2.
    let records: Vec<(PathBuf, Vec<u8>)> = files_under(&env.root().join("explain"))
        .into_iter()
        .filter(|(p, b)| p.ends_with("record.json") && contains(b, b"\"RUN test"))
        .collect();
    assert_eq!(
        records.len(),
        0,
        "a record holds digests, never instructions"
    );
    let record: Vec<u8> = files_under(&env.root().join("explain"))
        .into_iter()
        .filter(|(p, _)| p.ends_with("record.json"))
        .map(|(_, b)| b)
        .max_by_key(Vec::len)
        .expect("a record");
    let entries = record.windows(5).filter(|w| w == b"\"env:").count();
    assert_eq!(entries, RUNS + 1, "{}", String::from_utf8_lossy(&record));

    let edit = |from: &str, to: &str| {
        let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
        assert!(df.contains(from), "{df}");
        std::fs::write(ctx.join("Dockerfile"), df.replacen(from, to, 1)).unwrap();
    };
    edit("ENV V0=x0", "ENV V0=changed");
    let b = check(&env, &ctx, &[]);
    // Steps are named with their variables expanded.
    let last = format!("RUN test \"x{}\"", RUNS - 1);
    let (before_last, _) = b.step(&format!("RUN test \"x{}\"", RUNS - 2));
    assert_eq!(
        b.miss(&last),
        format!("ENV V0 changed (now \"changed\"); parent step #{before_last} changed")
    );
    // A RUN taken out of the middle: the chain below it changes shape, the variables
    // it sees do not (its ENV stays), so only the parent is named.
    edit("RUN test \"$V20\" = x20 || test $V0 = changed\n", "");
    let b = check(&env, &ctx, &[]);
    let (run19, _) = b.step("RUN test \"x19\"");
    assert_eq!(
        b.miss("RUN test \"x21\""),
        format!("parent step #{run19} changed")
    );
}
