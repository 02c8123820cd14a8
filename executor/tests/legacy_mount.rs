//! The RUN sandbox where the new mount API is missing (`RBUILD_OVERLAY_API=legacy`
//! stands in for an older kernel): the child mounts the layers with mount(2), named
//! `/proc/self/fd/N`, as many as fit in one page. One test in its own binary, since
//! the interface is chosen once per process. Needs root and overlayfs.

mod common;

use common::{Fixture, exec, layer_stack, layer_stack_check};
use rbuild_executor::{ExecError, MountApi, SpecError, max_lower_layers};

#[test]
fn run_over_the_longest_stack_mount_2_takes() {
    // SAFETY: the only test of this binary, before any thread reads the environment.
    unsafe { std::env::set_var("RBUILD_OVERLAY_API", "legacy") };
    assert_eq!(MountApi::current(), MountApi::Legacy);
    let n = max_lower_layers();
    assert!((200..500).contains(&n), "{n}");
    let f = Fixture::new();
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

    spec.lowerdirs.push(f.base());
    let e = exec(&spec).err().expect("one layer too many");
    assert!(
        matches!(e, ExecError::InvalidSpec(SpecError::TooManyLayers(k)) if k == n + 1),
        "{e:?}"
    );
}
