//! Long layer chains: one overlay takes up to the kernel's 500 layers through the new
//! mount API (and about 200 through mount(2)), whiteouts and opaque dirs included, in a
//! RUN and on the host. Needs root and overlayfs.

mod common;

use common::{Fixture, exec, layer_stack, layer_stack_check};
use rbuild_executor::{
    ExecError, MountApi, OVL_MAX_STACK, OverlayMount, SpecError, max_lower_layers,
};
use std::path::{Path, PathBuf};

fn dirs(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (u, w, m) = (root.join("hu"), root.join("hw"), root.join("hm"));
    for p in [&u, &w, &m] {
        std::fs::create_dir_all(p).unwrap();
    }
    (u, w, m)
}

/// The superblock options of the mount on `target`, from mountinfo.
fn super_options(target: &Path) -> String {
    let needle = format!(" {} ", target.display());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.contains(&needle)).expect("mounted");
    line.rsplit(' ').next().unwrap_or_default().to_string()
}

fn read_stack(root: &Path, n: usize) {
    let count = std::fs::read_dir(root.join("layers")).unwrap().count();
    assert_eq!(count, n - 2, "every layer's file but the deleted one");
    assert_eq!(
        std::fs::read_to_string(root.join(format!("layers/f{}", n - 1))).unwrap(),
        format!("{}", n - 1)
    );
    assert!(!root.join("layers/f5").exists());
    assert!(!root.join("gone/a").exists() && root.join("gone/b").exists());
    let opq: Vec<_> = std::fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(opq, ["upper"]);
}

#[test]
fn this_kernel_takes_lowerdir_plus() {
    // The CI machines run 6.8+; on an older kernel the fallback test below still runs.
    if MountApi::current() == MountApi::LowerdirPlus {
        assert_eq!(max_lower_layers(), OVL_MAX_STACK);
    } else {
        assert!(max_lower_layers() >= 200);
    }
}

#[test]
fn run_sees_every_layer_of_the_longest_stack() {
    let f = Fixture::new();
    let n = max_lower_layers();
    let mut spec = f.spec("");
    spec.lowerdirs = layer_stack(&f, n);
    let (script, expected) = layer_stack_check(n);
    spec.args[2] = script;
    let o = exec(&spec).unwrap();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, expected.as_str()),
        "{}",
        o.stderr
    );
}

#[test]
fn one_layer_more_is_a_clear_error() {
    let f = Fixture::new();
    let mut spec = f.spec("true");
    let n = max_lower_layers() + 1;
    spec.lowerdirs = (0..n).map(|i| f.dir.path().join(format!("l{i}"))).collect();
    let e = exec(&spec).err().expect("must fail");
    assert!(
        matches!(e, ExecError::InvalidSpec(SpecError::TooManyLayers(k)) if k == n),
        "{e:?}"
    );
}

#[test]
fn host_overlay_of_the_longest_stack_through_either_api() {
    for api in [MountApi::current(), MountApi::Legacy] {
        let f = Fixture::new();
        let n = api.max_lowers();
        let stack = layer_stack(&f, n);
        let scratch = tempfile::tempdir().unwrap();
        let (u, w, m) = dirs(scratch.path());
        {
            let mnt = OverlayMount::mount_with(api, &stack, &u, &w, &m).unwrap();
            read_stack(mnt.path(), n);
            let opts = super_options(&m);
            assert!(opts.contains("volatile"), "{opts}");
            std::fs::write(mnt.path().join("new"), "n").unwrap();
        }
        assert_eq!(std::fs::read(u.join("new")).unwrap(), b"n");
        let more: Vec<PathBuf> = stack.iter().chain(&stack[..1]).cloned().collect();
        let e = OverlayMount::mount_with(api, &more, &u, &w, &m).expect_err("too many");
        assert!(
            matches!(e, ExecError::InvalidSpec(SpecError::TooManyLayers(k)) if k == n + 1),
            "{api:?}: {e:?}"
        );
    }
}

#[test]
fn a_missing_layer_is_named() {
    let f = Fixture::new();
    let scratch = tempfile::tempdir().unwrap();
    let (u, w, m) = dirs(scratch.path());
    let lowers = vec![f.base(), f.dir.path().join("no-such-layer")];
    for api in [MountApi::current(), MountApi::Legacy] {
        let e = OverlayMount::mount_with(api, &lowers, &u, &w, &m).expect_err("missing");
        assert!(e.to_string().contains("no-such-layer"), "{api:?}: {e}");
    }
}
