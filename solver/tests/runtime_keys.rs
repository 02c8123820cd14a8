//! Runtime cache keys are part of the store's format: a store made by one rbuild version
//! must answer a rebuild by the next one. These are the keys of a fixed graph and
//! context; a change here means every existing cache misses (bump `RUNTIME_DOMAIN` then).

mod common;

use common::*;
use rbuild_graph::{BuildGraph, Op, VertexMeta};
use std::os::unix::fs::PermissionsExt;

#[test]
fn runtime_keys_are_pinned() {
    let env = env();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    std::fs::create_dir(env.ctx.join("d")).unwrap();
    std::fs::write(env.ctx.join("a.txt"), "pinned\n").unwrap();
    std::fs::write(env.ctx.join("d/x"), "x").unwrap();
    std::os::unix::fs::symlink("x", env.ctx.join("d/l")).unwrap();
    mode(&env.ctx.join("a.txt"), 0o644);
    mode(&env.ctx.join("d"), 0o755);
    mode(&env.ctx.join("d/x"), 0o600);

    let mut g = BuildGraph::new();
    let scratch = g.add(Op::Scratch, vec![], VertexMeta::default());
    let ctx = context(&mut g);
    let mut excluding = copy_action(1, "d", "/d/");
    excluding.exclude = vec!["l".into()];
    let cp = copy(
        &mut g,
        scratch,
        ctx,
        vec![copy_action(1, "a.txt", "/a.txt"), excluding],
    );
    let out = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap();
    let key = |v| out[&v].cache_key.clone().unwrap();
    // The same as rbuild before the op interface computed (checked against it).
    assert_eq!(
        key(scratch),
        "1efb6a83ee14a99698d633d9c8421a71f7e233fbfb890ceb5c8685c919a93700"
    );
    assert_eq!(
        key(ctx),
        "f0649fc48489503e621c13fb6f880539c7e9c2df8e18038dd17fc8fa7419b7f4"
    );
    // Static key, input keys, then per COPY from the context its index and the digest of
    // what it selects (`--exclude` and file modes included).
    assert_eq!(
        key(cp),
        "a7fa4f5ef2b35557031906c4f902ddc4c11f5585936b98d976a831f3e82a0b1d"
    );
}
