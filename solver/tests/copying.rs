//! The copying snapshotter (the fallback where overlayfs cannot be used), forced on.

mod common;

use common::*;
use rbuild_graph::BuildGraph;
use rbuild_solver::Solver;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

#[test]
fn run_and_copy_without_overlay() {
    let env = env();
    std::fs::create_dir_all(env.ctx.join("dir/sub")).unwrap();
    std::fs::write(env.ctx.join("dir/sub/f"), "f").unwrap();
    let solver = Solver::with_snapshotter(env.store.clone(), true);
    assert!(solver.uses_copying_snapshotter());
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let r = run(
        &mut g,
        b,
        "echo hi > /made && rm /etc/group && mkdir -p /realdir/x",
    );
    let mut chown = copy_action(1, "dir", "/app/");
    chown.owner = Some(owner("app", None));
    let cp = copy(
        &mut g,
        r,
        c,
        vec![chown, copy_action(1, "dir/sub/f", "/lnk/")],
    );
    let noop = run(&mut g, cp, "cat /made /app/sub/f");
    let (res, events) = solve(&solver, &g, &[noop], &env.opts());
    let out = res.unwrap();
    let logs: String = events
        .iter()
        .filter_map(|e| match e {
            rbuild_solver::Event::Log { data, .. } => {
                Some(String::from_utf8_lossy(data).into_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(logs, "hi\nf");

    // RUN layer: the new file, a whiteout for the deleted one, the new dir; nothing else.
    assert_eq!(out[&r].layers.len(), 2);
    let run_layer = env.store.snapshot(&out[&r].layers[1]).unwrap();
    assert_eq!(
        std::fs::read_to_string(run_layer.join("made")).unwrap(),
        "hi\n"
    );
    let wh = std::fs::symlink_metadata(run_layer.join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!run_layer.join("etc/passwd").exists());
    assert!(!run_layer.join("bin").exists());
    assert!(run_layer.join("realdir/x").is_dir());

    // COPY layer: contents with --chown, dest symlink resolved inside the rootfs.
    let copy_layer = env.store.snapshot(&out[&cp].layers[2]).unwrap();
    let m = std::fs::metadata(copy_layer.join("app/sub/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(copy_layer.join("realdir/f")).unwrap(),
        "f"
    );
    assert!(!copy_layer.join("made").exists());

    // An exec that changes nothing adds no layer.
    assert_eq!(out[&noop].layers, out[&cp].layers);
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());

    // The cache works the same.
    let (res, events) = solve(&solver, &g, &[noop], &env.opts());
    res.unwrap();
    assert!(started(&events).is_empty());
}
