//! Imported cache records: answered without their blobs, fetched only when asked for.

mod common;

use common::*;
use rbuild_cache::remote_cache::{self, CacheConfig, CacheSource, ImportedCache};
use rbuild_graph::{BuildGraph, Op, VertexMeta};
use rbuild_solver::Event;
use rbuild_solver::cache_export::{CacheMode, export_records};
use std::sync::Arc;

#[test]
fn imported_records_answer_lazily_and_are_kept_once_local() {
    let (a, b) = (env(), env());
    for e in [&a, &b] {
        std::fs::write(e.ctx.join("one.txt"), "one\n").unwrap();
        std::fs::write(e.ctx.join("two.txt"), "two two\n").unwrap();
    }
    let mut g = BuildGraph::new();
    let scratch = g.add(Op::Scratch, vec![], VertexMeta::default());
    let ctx = context(&mut g);
    let c1 = copy(
        &mut g,
        scratch,
        ctx,
        vec![copy_action(1, "one.txt", "/one")],
    );
    let c2 = copy(&mut g, c1, ctx, vec![copy_action(1, "two.txt", "/two")]);

    let (solved, _) = solve(&a.solver(), &g, &[c2], &a.opts());
    let outs_a = solved.unwrap();
    let cfg = CacheConfig::new(export_records(&g, &outs_a, c2, CacheMode::Max).unwrap());
    assert_eq!(cfg.records.len(), 4);
    let dir = a.dir.path().join("cache");
    remote_cache::export_local(&a.store, &cfg, &dir, "latest").unwrap();

    let mut imported = ImportedCache::new();
    imported.add(
        CacheSource::Local(dir.clone()),
        remote_cache::load_local(&dir, "latest").unwrap(),
    );
    let imported = Arc::new(imported);
    let opts = rbuild_solver::SolveOptions {
        imported: Some(imported.clone()),
        ..b.opts()
    };
    let solver = b.solver();
    let (solved, events) = solve(&solver, &g, &[c2], &opts);
    let outs_b = solved.unwrap();
    assert!(
        events.iter().all(|e| matches!(e, Event::Cached { .. })),
        "{events:?}"
    );
    assert_eq!(events.len(), 4);
    let top = &outs_b[&c2];
    assert_eq!(top.layers, outs_a[&c2].layers);
    assert_eq!(top.created, outs_a[&c2].created);
    // Nothing was fetched, and a result without its blobs is not recorded locally.
    assert_eq!(imported.fetched(), (0, 0));
    assert!(top.layers.iter().all(|l| !b.store.has_blob(&l.digest)));
    let key = top.cache_key.clone().unwrap();
    assert!(b.store.record_get(&key).unwrap().is_none());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(solver.ensure_layers(&top.layers, &opts))
        .unwrap();
    let size: u64 = top.layers.iter().map(|l| l.size).sum();
    assert_eq!(imported.fetched(), (2, size));
    assert_eq!(std::fs::read(b.top(top).join("two")).unwrap(), b"two two\n");
    solver.remember_outcomes(&outs_b).unwrap();
    assert_eq!(
        b.store.record_get(&key).unwrap().unwrap().layers,
        *top.layers
    );

    // Without the import, a missing blob is an error, not a silent miss.
    let other = env();
    let err = rt
        .block_on(other.solver().ensure_layers(&top.layers, &other.opts()))
        .unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
}
