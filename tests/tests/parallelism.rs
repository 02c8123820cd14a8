//! `--max-parallelism N`: at most N steps execute at once; with 1 they execute one at a
//! time, in the same order on every run (the ready step with the lowest vertex id first).
//! Overlap is counted from what the RUN steps write (`NAME start` / `NAME end` lines in a
//! shared cache mount), never from timings. Needs root and busybox-static.

use rbuild_tests::Env;
use serde_json::Value;
use std::path::{Path, PathBuf};

const STAGES: [&str; 4] = ["a", "b", "c", "d"];

/// Four independent stages, each appending `NAME start` to one shared cache mount's log,
/// then waiting for other steps, then appending `NAME end`; a last stage needs them all.
/// Each `(count, polls)` of `waits` polls (at most `polls` times, 50 ms apart) until
/// `count` steps have started: it makes overlap observable, as steps that may run together
/// then do before either ends. `seed` changes every step's command, so each build runs
/// all four.
fn dockerfile(waits: &[(usize, usize)], seed: usize) -> String {
    let waits: String = waits
        .iter()
        .map(|(count, polls)| {
            format!(
                "n=0 && while [ \"$(grep -c start /m/log)\" -lt {count} ] && [ $n -lt {polls} ]; \
                 do sleep 0.05; n=$((n+1)); done && "
            )
        })
        .collect();
    let mut df = String::new();
    for name in STAGES {
        df.push_str(&format!(
            "FROM busybox AS {name}\n\
             RUN --mount=type=cache,id=order,target=/m,sharing=shared \
             echo '{name} start' >> /m/log && {waits}\
             echo '{name} end' >> /m/log && echo {seed} > /done\n"
        ));
    }
    df.push_str("FROM busybox\n");
    for name in STAGES {
        df.push_str(&format!("COPY --from={name} /done /{name}\n"));
    }
    df
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The cache mount's log, found under the store's `cache-mounts/`.
fn log_file(root: &Path) -> PathBuf {
    let dir = root.join("cache-mounts");
    for e in std::fs::read_dir(&dir).expect("cache-mounts").flatten() {
        let p = e.path().join("log");
        if p.is_file() {
            return p;
        }
    }
    panic!("no cache mount wrote a log under {}", dir.display());
}

/// Builds with `extra` flags; returns the log's lines (and removes it for the next build).
fn build_log(env: &Env, ctx: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(path(ctx));
    env.ok(&args);
    let log = log_file(env.root());
    let text = std::fs::read_to_string(&log).expect("log");
    std::fs::remove_file(&log).expect("remove log");
    text.lines().map(str::to_string).collect()
}

/// The most steps between their start and end lines at any point of the log.
fn max_overlap(lines: &[String]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for l in lines {
        if l.ends_with(" start") {
            now += 1;
            max = max.max(now);
        } else if l.ends_with(" end") {
            now = now.checked_sub(1).expect("an end without a start");
        }
    }
    assert_eq!(now, 0, "a step did not end: {lines:?}");
    max
}

#[test]
fn one_step_at_a_time_in_a_fixed_order() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("par", &[("Dockerfile", &dockerfile(&[], 0))]);

    // The order N=1 promises: the RUN steps by vertex id (what the dry run lists).
    let out = env.ok(&["build", "--dry-run", "--format", "json", path(&ctx)]);
    let graph: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut runs: Vec<(u64, String)> = graph
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["op"]["op"] == "exec")
        .map(|v| {
            let desc = v["description"].as_str().unwrap();
            let stage = desc.trim_start_matches('[').split(' ').next().unwrap();
            (v["id"].as_u64().unwrap(), stage.to_string())
        })
        .collect();
    runs.sort();
    let expected: Vec<String> = runs
        .iter()
        .flat_map(|(_, s)| [format!("{s} start"), format!("{s} end")])
        .collect();
    assert_eq!(runs.len(), 4);

    let mut orders = Vec::new();
    for _ in 0..3 {
        let lines = build_log(&env, &ctx, &["--no-cache", "--max-parallelism", "1"]);
        assert_eq!(max_overlap(&lines), 1, "{lines:?}");
        orders.push(lines);
    }
    assert_eq!(orders[0], expected);
    assert!(orders.iter().all(|o| *o == expected), "{orders:?}");
}

#[test]
fn at_most_n_steps_execute_at_once() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("par", &[]);

    // Without a limit the four steps run together: each waits until all four started.
    std::fs::write(ctx.join("Dockerfile"), dockerfile(&[(4, 1200)], 1)).unwrap();
    let lines = build_log(&env, &ctx, &[]);
    assert_eq!(max_overlap(&lines), 4, "{lines:?}");

    // With 2: the first two wait for each other, then for a third start that cannot come
    // until one of them ends (they give up after 40 polls): two at once, never more.
    std::fs::write(ctx.join("Dockerfile"), dockerfile(&[(2, 1200), (3, 40)], 2)).unwrap();
    let lines = build_log(&env, &ctx, &["--max-parallelism", "2"]);
    assert_eq!(max_overlap(&lines), 2, "{lines:?}");
    assert_eq!(lines.len(), 8, "{lines:?}");
}

#[test]
fn a_limit_of_zero_is_refused() {
    let env = Env::new();
    let ctx = env.context("zero", &[("Dockerfile", "FROM scratch\n")]);
    let out = env.run(&["build", "--max-parallelism", "0", path(&ctx)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-parallelism"), "{err}");
}
