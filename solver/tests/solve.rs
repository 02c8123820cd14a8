//! The solver over a real store and executor (needs root and overlayfs).

mod common;

use common::*;
use rbuild_graph::image::{History, ImageConfig};
use rbuild_graph::{BuildGraph, VertexId, actions};
use rbuild_solver::{Event, SolveError};
use std::os::unix::fs::MetadataExt;

#[test]
fn run_writes_a_layer_and_second_solve_is_all_cached() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let r = run(&mut g, b, "echo hello > /out.txt");
    let (res, events) = solve(&env.solver(), &g, &[r], &env.opts());
    let out = res.unwrap();
    assert_eq!(out[&r].layers.len(), 2);
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&r]).join("out.txt")).unwrap(),
        "hello\n"
    );
    assert!(started(&events).contains(&r));

    // A new solver on the same store: everything answered by the cache.
    let (res2, events2) = solve(&env.solver(), &g, &[r], &env.opts());
    assert_eq!(res2.unwrap()[&r], out[&r]);
    assert!(started(&events2).is_empty(), "{events2:?}");
    assert_eq!(cached(&events2), vec![b, r]);

    // no_cache runs it again
    let mut opts = env.opts();
    opts.no_cache = true;
    let (res3, events3) = solve(&env.solver(), &g, &[r], &opts);
    res3.unwrap();
    assert!(started(&events3).contains(&r));
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
}

#[test]
fn context_change_reruns_only_downstream_and_mtime_change_nothing() {
    let env = env();
    std::fs::write(env.ctx.join("a.txt"), "A1").unwrap();
    std::fs::write(env.ctx.join("b.txt"), "B1").unwrap();
    age(&env.ctx.join("a.txt"), 100);
    age(&env.ctx.join("b.txt"), 100);
    settle();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let ca = copy(&mut g, b, c, vec![copy_action(1, "a.txt", "/a.txt")]);
    let ra = run(&mut g, ca, "cat /a.txt > /a.out");
    let cb = copy(&mut g, b, c, vec![copy_action(1, "b.txt", "/b.txt")]);
    let rb = run(&mut g, cb, "cat /b.txt > /b.out");
    let roots = [ra, rb];
    let (res, _) = solve(&env.solver(), &g, &roots, &env.opts());
    let out = res.unwrap();
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&ra]).join("a.out")).unwrap(),
        "A1"
    );

    std::fs::write(env.ctx.join("a.txt"), "A2").unwrap();
    age(&env.ctx.join("a.txt"), 10);
    settle();
    let solver = env.solver();
    let (res, events) = solve(&solver, &g, &roots, &env.opts());
    assert_eq!(
        solver.context_files_read(),
        1,
        "only the changed file is read"
    );
    let out = res.unwrap();
    assert_eq!(started(&events), vec![ca, ra]);
    assert!(cached(&events).contains(&cb) && cached(&events).contains(&rb));
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&ra]).join("a.out")).unwrap(),
        "A2"
    );

    // Only the mtime of b.txt changes: nothing runs.
    age(&env.ctx.join("b.txt"), 50);
    settle();
    let solver = env.solver();
    let (res, events) = solve(&solver, &g, &roots, &env.opts());
    res.unwrap();
    assert_eq!(solver.context_files_read(), 1);
    // And with nothing changed, no file content is read at all.
    let solver = env.solver();
    let (res, events2) = solve(&solver, &g, &roots, &env.opts());
    res.unwrap();
    assert!(started(&events2).is_empty());
    assert_eq!(solver.context_files_read(), 0);
    assert!(started(&events).is_empty(), "{events:?}");
}

#[test]
fn independent_runs_overlap() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let r1 = run(&mut g, b, "sleep 1; echo 1 > /one");
    let r2 = run(&mut g, b, "sleep 1; echo 2 > /two");
    let (res, events) = solve(&env.solver(), &g, &[r1, r2], &env.opts());
    res.unwrap();
    let when = |v: VertexId, start: bool| {
        events
            .iter()
            .find_map(|e| match e {
                Event::Started { vertex, at } if start && *vertex == v => Some(*at),
                Event::Done { vertex, at, .. } if !start && *vertex == v => Some(*at),
                _ => None,
            })
            .unwrap()
    };
    // Each started before the other finished.
    assert!(when(r1, true) < when(r2, false));
    assert!(when(r2, true) < when(r1, false));
}

#[test]
fn failing_run_reports_exit_code_and_output_and_cleans_up() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let bad = run(&mut g, b, "echo first; echo oops >&2; exit 3");
    let slow = run(&mut g, b, "sleep 30");
    let (res, events) = solve(&env.solver(), &g, &[bad, slow], &env.opts());
    match res {
        Err(SolveError::RunFailed {
            vertex,
            exit_code,
            last_output,
            lines,
            ..
        }) => {
            assert_eq!(vertex, bad);
            assert_eq!(exit_code, 3);
            assert_eq!(lines, Some((1, 1)));
            assert!(last_output.contains(&"oops".to_string()), "{last_output:?}");
            assert!(
                last_output.contains(&"first".to_string()),
                "{last_output:?}"
            );
        }
        other => panic!("expected RunFailed, got {other:?}"),
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Failed { vertex, .. } if *vertex == bad))
    );
    // The sleeping step was killed, not waited for: it never completed.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Done { vertex, .. } if *vertex == slow))
    );
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
}

#[test]
fn missing_context_file_and_missing_image_are_reported() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let cp = copy(&mut g, b, c, vec![copy_action(1, "nope.txt", "/x")]);
    let (res, _) = solve(&env.solver(), &g, &[cp], &env.opts());
    match res {
        Err(SolveError::MissingContextFile { path, lines, .. }) => {
            assert_eq!(path, "nope.txt");
            assert_eq!(lines, Some((1, 1)));
        }
        other => panic!("expected MissingContextFile, got {other:?}"),
    }
    let mut g = BuildGraph::new();
    let img = g.add(
        rbuild_graph::Op::Image {
            reference: "nosuch:1".into(),
            digest: None,
            platform: rbuild_graph::Platform::host(),
        },
        vec![],
        meta("FROM nosuch:1"),
    );
    let after = run(&mut g, img, "true");
    let plan = env
        .solver()
        .plan(&std::sync::Arc::new(g.clone()), &[after], &env.opts())
        .unwrap();
    assert!(!plan[&img] && !plan[&after]);
    let (res, _) = solve(&env.solver(), &g, &[img], &env.opts());
    let err = res.unwrap_err();
    assert!(matches!(&err, SolveError::ImageNotFound { reference } if reference == "nosuch:1"));
    assert!(err.to_string().contains("rbuild load -i"), "{err}");
}

#[test]
fn plan_reports_what_the_cache_answers() {
    let env = env();
    std::fs::write(env.ctx.join("a.txt"), "A").unwrap();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let cp = copy(&mut g, b, c, vec![copy_action(1, "a.txt", "/a.txt")]);
    let r = run(&mut g, cp, "true");
    let solver = env.solver();
    let plan = solver
        .plan(&std::sync::Arc::new(g.clone()), &[r], &env.opts())
        .unwrap();
    assert!(!plan[&cp] && !plan[&r]);
    solve(&solver, &g, &[r], &env.opts()).0.unwrap();
    let plan = solver
        .plan(&std::sync::Arc::new(g.clone()), &[r], &env.opts())
        .unwrap();
    assert!(plan.values().all(|c| *c), "{plan:?}");
    std::fs::write(env.ctx.join("a.txt"), "B").unwrap();
    let plan = solver
        .plan(&std::sync::Arc::new(g.clone()), &[r], &env.opts())
        .unwrap();
    assert!(plan[&b] && !plan[&cp] && !plan[&r]);
}

#[test]
fn malformed_ignore_and_exclude_patterns_fail_the_step_naming_them() {
    let env = env();
    std::fs::write(env.ctx.join("a.txt"), "A").unwrap();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let ignoring = g.add(
        rbuild_graph::Op::Local {
            name: "context".into(),
            exclude: vec!["ok".into(), "a[".into()],
        },
        vec![],
        meta("context"),
    );
    let cp = copy(&mut g, b, ignoring, vec![copy_action(1, "a.txt", "/a")]);
    let (res, events) = solve(&env.solver(), &g, &[cp], &env.opts());
    match res {
        Err(SolveError::Step {
            vertex,
            lines,
            cause,
            ..
        }) => {
            assert_eq!((vertex, lines), (cp, Some((1, 1))));
            let text = cause.to_string();
            assert!(text.contains(".dockerignore pattern \"a[\""), "{text}");
        }
        other => panic!("expected a step error, got {other:?}"),
    }
    assert!(
        !started(&events).contains(&cp),
        "the copy never ran: {events:?}"
    );

    let c = context(&mut g);
    let mut excluding = copy_action(1, "a.txt", "/a");
    excluding.exclude = vec!["[-x]".into()];
    let cp = copy(&mut g, b, c, vec![excluding]);
    let err = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap_err();
    assert!(
        matches!(&err, SolveError::Step { vertex, .. } if *vertex == cp),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("--exclude pattern \"[-x]\""),
        "{err}"
    );
}

#[test]
fn export_writes_diff_ids_and_empty_layer_flags() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let touch = run(&mut g, b, "touch /made");
    let noop = run(&mut g, touch, "true");
    let (res, _) = solve(&env.solver(), &g, &[noop], &env.opts());
    let out = res.unwrap();
    let base_cfg = out[&b].config.clone().unwrap();
    let h = |s: &str| History {
        created_by: Some(s.into()),
        ..Default::default()
    };
    let history = vec![
        (h("busybox base"), None),
        (h("RUN touch /made"), Some(touch)),
        (h("ENV A=1"), None),
        (h("RUN true"), Some(noop)),
    ];
    let mut cfg: ImageConfig = base_cfg.clone();
    cfg.config.env_set("A", "1");
    // The export is a vertex of the graph like the steps it writes.
    let export = |g: &mut BuildGraph, tag: &str| {
        let flags = actions::ExportFlags {
            tags: vec![tag.to_string()],
            ..Default::default()
        };
        actions::add_export(g, noop, &cfg, &history, &flags)
    };
    let e1 = export(&mut g, "result:1");
    let (res, events) = solve(&env.solver(), &g, &[e1], &env.opts());
    let out = res.unwrap();
    assert_eq!(started(&events), vec![e1], "only the export acts");
    let digest = out[&e1].image.clone().unwrap();
    let img = env.store.image("result:1").unwrap().unwrap();
    assert_eq!(img.manifest_digest, digest);
    let written: ImageConfig = serde_json::from_slice(&img.config).unwrap();
    let want: Vec<String> = out[&noop]
        .layers
        .iter()
        .map(|l| l.diff_id.clone())
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(written.rootfs.diff_ids, want);
    let flags: Vec<bool> = written.history.iter().map(|h| h.empty_layer).collect();
    assert_eq!(flags, [false, false, true, true]);
    assert!(written.created.is_some());
    assert!(written.history.iter().all(|h| h.created.is_some()));
    assert_eq!(written.config.env_get("A"), Some("1"));

    // A rebuild answered by the cache exports the very same image.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let e2 = export(&mut g, "result:2");
    let (res, events) = solve(&env.solver(), &g, &[e2], &env.opts());
    let out2 = res.unwrap();
    assert_eq!(started(&events), vec![e2]);
    assert_eq!(out2[&e2].image, Some(digest));
}

#[test]
fn exec_uid_and_env_reach_the_process() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let r = run(&mut g, b, "id -u > /uid; echo $PATH > /path");
    let out = solve(&env.solver(), &g, &[r], &env.opts()).0.unwrap();
    let top = env.top(&out[&r]);
    assert_eq!(std::fs::read_to_string(top.join("uid")).unwrap(), "0\n");
    assert_eq!(std::fs::read_to_string(top.join("path")).unwrap(), "/bin\n");
    let m = std::fs::metadata(top.join("uid")).unwrap();
    assert_eq!(m.uid(), 0);
}

/// Lets just-changed files leave the stat cache's racy window (their ctime is "now").
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(200));
}

#[test]
fn run_with_context_bind_mount_reruns_when_the_mounted_files_change() {
    use rbuild_graph::{ExecMount, ExecOp, MountKind, NetworkMode, Op};
    let env = env();
    std::fs::create_dir_all(env.ctx.join("src")).unwrap();
    std::fs::write(env.ctx.join("src/a.txt"), "v1").unwrap();
    std::fs::write(env.ctx.join("other.txt"), "o1").unwrap();
    settle();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let r = g.add(
        Op::Exec(ExecOp {
            args: vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat /mnt/a.txt > /out".into(),
            ],
            env: [("PATH".to_string(), "/bin".to_string())].into(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::Host,
            mounts: vec![ExecMount {
                target: "/mnt".into(),
                kind: MountKind::Bind {
                    input: 1,
                    source: "src".into(),
                    readonly: true,
                },
            }],
            security: Default::default(),
            settings: Default::default(),
            platform: None,
        }),
        vec![b, c],
        meta("RUN --mount=type=bind"),
    );
    let out = solve(&env.solver(), &g, &[r], &env.opts()).0.unwrap();
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&r]).join("out")).unwrap(),
        "v1"
    );
    // the mount target is not part of the layer
    assert!(!env.top(&out[&r]).join("mnt").exists());
    // a file outside the mounted subpath changes: still cached
    std::fs::write(env.ctx.join("other.txt"), "o2").unwrap();
    let (res, events) = solve(&env.solver(), &g, &[r], &env.opts());
    res.unwrap();
    assert!(started(&events).is_empty());
    std::fs::write(env.ctx.join("src/a.txt"), "v2").unwrap();
    let (res, events) = solve(&env.solver(), &g, &[r], &env.opts());
    let out = res.unwrap();
    assert_eq!(started(&events), vec![r]);
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&r]).join("out")).unwrap(),
        "v2"
    );
}

#[test]
fn cancel_kills_running_steps_and_cleans_up() {
    use rbuild_graph::{ExecMount, MountKind};
    let env = env();
    // The step marks in a cache mount (on the host, kept across steps) that it began, and
    // would mark that it finished: killed, it never does.
    let marks = rbuild_solver::ops::mounts::cache_mount_dir(env.store.root(), "cancel-marks");
    let cache = ExecMount {
        target: "/marks".into(),
        kind: MountKind::Cache {
            id: "cancel-marks".into(),
            sharing: "shared".into(),
            from: None,
            source: String::new(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    };
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let slow = g.add(
        exec_with_mounts(
            "touch /marks/began; sleep 30; touch /marks/finished",
            vec![cache],
        ),
        vec![b],
        meta("RUN slow"),
    );
    let opts = env.opts();
    let solved = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let canceller = {
        let (cancel, solved, began) = (opts.cancel.clone(), solved.clone(), marks.join("began"));
        // Cancels once the command runs (or gives up when the solve ended without it).
        std::thread::spawn(move || {
            while !began.exists() && !solved.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            cancel.cancel();
        })
    };
    let (res, events) = solve(&env.solver(), &g, &[slow], &opts);
    solved.store(true, std::sync::atomic::Ordering::SeqCst);
    canceller.join().unwrap();
    assert!(matches!(res, Err(SolveError::Cancelled)), "{res:?}");
    assert!(started(&events).contains(&slow));
    assert!(marks.join("began").exists());
    assert!(
        !marks.join("finished").exists(),
        "the command ran to its end instead of being killed"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Done { vertex, .. } if *vertex == slow))
    );
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
}

fn exec_with_mounts(cmd: &str, mounts: Vec<rbuild_graph::ExecMount>) -> rbuild_graph::Op {
    use rbuild_graph::{ExecOp, NetworkMode, Op};
    Op::Exec(ExecOp {
        args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env: [("PATH".to_string(), "/bin".to_string())].into(),
        cwd: "/".into(),
        user: String::new(),
        network: NetworkMode::Host,
        mounts,
        security: Default::default(),
        settings: Default::default(),
        platform: None,
    })
}

#[test]
fn cache_mounts_persist_across_steps_and_stay_out_of_layers() {
    use rbuild_graph::{ExecMount, MountKind};
    let env = env();
    std::fs::create_dir_all(env.ctx.join("seed")).unwrap();
    std::fs::write(env.ctx.join("seed/s.txt"), "seeded").unwrap();
    let cache = |from: Option<usize>| ExecMount {
        target: "/cache".into(),
        kind: MountKind::Cache {
            id: "c1".into(),
            sharing: "locked".into(),
            from,
            source: "seed".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    };
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let first = g.add(
        exec_with_mounts("echo one >> /cache/log", vec![cache(None)]),
        vec![b],
        meta("RUN 1"),
    );
    let second = g.add(
        exec_with_mounts("cat /cache/log > /seen", vec![cache(None)]),
        vec![first],
        meta("RUN 2"),
    );
    let seeded = g.add(
        exec_with_mounts("cat /cache/s.txt > /seed-seen", vec![cache(Some(1))]),
        vec![b, c],
        meta("RUN 3"),
    );
    let out = solve(&env.solver(), &g, &[second, seeded], &env.opts())
        .0
        .unwrap();
    // the first step changed nothing in its rootfs: the cache is not part of the layer
    assert_eq!(out[&first].layers, out[&b].layers);
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&second]).join("seen")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&seeded]).join("seed-seen")).unwrap(),
        "seeded"
    );
}

#[test]
fn context_bind_hides_ignored_files_and_never_writes_to_the_context() {
    use rbuild_graph::{ExecMount, MountKind, Op};
    let env = env();
    std::fs::write(env.ctx.join("a.txt"), "original").unwrap();
    std::fs::write(env.ctx.join("secret.txt"), "s3cret").unwrap();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = g.add(
        Op::Local {
            name: "context".into(),
            exclude: vec!["secret.txt".into()],
        },
        vec![],
        meta("context"),
    );
    let r = g.add(
        exec_with_mounts(
            "ls /src > /listing; echo changed > /src/a.txt",
            vec![ExecMount {
                target: "/src".into(),
                kind: MountKind::Bind {
                    input: 1,
                    source: "/".into(),
                    readonly: false,
                },
            }],
        ),
        vec![b, c],
        meta("RUN --mount=type=bind,rw"),
    );
    let out = solve(&env.solver(), &g, &[r], &env.opts()).0.unwrap();
    let listing = std::fs::read_to_string(env.top(&out[&r]).join("listing")).unwrap();
    assert_eq!(listing, "a.txt\n");
    assert_eq!(
        std::fs::read_to_string(env.ctx.join("a.txt")).unwrap(),
        "original"
    );
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
}

#[test]
fn a_record_whose_blob_is_gone_is_a_miss() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let r = run(&mut g, b, "echo x > /x");
    let out = solve(&env.solver(), &g, &[r], &env.opts()).0.unwrap();
    let layer = out[&r].layers.last().unwrap().clone();
    std::fs::remove_file(env.store.blob_path(&layer.digest)).unwrap();
    let plan = env
        .solver()
        .plan(&std::sync::Arc::new(g.clone()), &[r], &env.opts())
        .unwrap();
    assert!(plan[&b] && !plan[&r]);
    let (res, events) = solve(&env.solver(), &g, &[r], &env.opts());
    let out = res.unwrap();
    assert_eq!(started(&events), vec![r]);
    assert!(env.store.has_blob(&out[&r].layers.last().unwrap().digest));
}

#[test]
fn a_shared_input_runs_once() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let shared = run(&mut g, b, "echo s > /s");
    let left = run(&mut g, shared, "cat /s > /l");
    let right = run(&mut g, shared, "cat /s > /r");
    let (res, events) = solve(&env.solver(), &g, &[left, right, shared], &env.opts());
    let out = res.unwrap();
    let starts = events
        .iter()
        .filter(|e| matches!(e, Event::Started { vertex, .. } if *vertex == shared))
        .count();
    assert_eq!(starts, 1);
    // both branches build on the shared step's layer
    assert_eq!(out[&left].layers[..2], out[&shared].layers[..]);
    assert_eq!(out[&right].layers[..2], out[&shared].layers[..]);
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&right]).join("r")).unwrap(),
        "s\n"
    );
}

#[test]
fn an_insecure_run_needs_the_builds_permission_and_then_runs_unfiltered() {
    use rbuild_graph::{ExecOp, NetworkMode, Op, SecurityMode};
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let sandboxed = run(&mut g, b, "true");
    let insecure = g.add(
        Op::Exec(ExecOp {
            args: vec![
                "/bin/sh".into(),
                "-c".into(),
                "grep Seccomp: /proc/self/status > /seccomp".into(),
            ],
            env: [("PATH".to_string(), "/bin".to_string())].into(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::Host,
            mounts: vec![],
            security: SecurityMode::Insecure,
            settings: Default::default(),
            platform: None,
        }),
        vec![sandboxed],
        meta("RUN --security=insecure grep"),
    );
    // Refused before anything runs, naming the step.
    let (res, events) = solve(&env.solver(), &g, &[insecure], &env.opts());
    match res {
        Err(SolveError::Step { vertex, cause, .. }) => {
            assert_eq!(vertex, insecure);
            let message = cause.to_string();
            assert!(message.contains("--allow security.insecure"), "{message}");
        }
        other => panic!("expected the insecure step refused, got {other:?}"),
    }
    assert!(started(&events).is_empty(), "{events:?}");

    let mut opts = env.opts();
    opts.allow_insecure = true;
    let (res, events) = solve(&env.solver(), &g, &[insecure], &opts);
    let out = res.unwrap();
    assert_eq!(
        std::fs::read_to_string(env.top(&out[&insecure]).join("seccomp")).unwrap(),
        "Seccomp:\t0\n"
    );
    // A RUN reports its peak memory where the machine has a memory cgroup.
    let peak = events.iter().find_map(|e| match e {
        Event::Done {
            vertex,
            peak_memory,
            ..
        } if *vertex == sandboxed => Some(*peak_memory),
        _ => None,
    });
    assert!(matches!(peak, Some(Some(n)) if n > 0), "{peak:?}");
}

/// Steps that add no layer hold their input's chain itself, cold and cached alike, so the
/// outcomes of a long build cost one chain per layer made, not one copy per step (issue 10:
/// a 10,000-step no-op rebuild kept a copy of the chain per step).
#[test]
fn steps_that_add_no_layer_share_their_input_chain() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let layered = run(&mut g, b, "echo 1 > /one");
    let mut quiet = Vec::new();
    let mut last = layered;
    for i in 0..4 {
        last = run(
            &mut g,
            last,
            &format!("test -f /one && echo {i} >/dev/null"),
        );
        quiet.push(last);
    }
    for pass in ["cold", "cached"] {
        let (res, events) = solve(&env.solver(), &g, &[last], &env.opts());
        let out = res.unwrap();
        if pass == "cached" {
            assert!(started(&events).is_empty(), "{events:?}");
        }
        assert_eq!(out[&layered].layers.len(), 2, "{pass}");
        assert!(
            !std::sync::Arc::ptr_eq(&out[&layered].layers, &out[&b].layers),
            "{pass}: a step that made a layer has a chain of its own"
        );
        for q in &quiet {
            assert!(
                std::sync::Arc::ptr_eq(&out[q].layers, &out[&layered].layers),
                "{pass}: a step that made no layer shares its input's chain"
            );
        }
    }
}
