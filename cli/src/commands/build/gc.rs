//! The cache policy applied after each build (`rbuild_cache::gc::policy`): read before
//! the build starts, so a bad setting fails at once, applied once the outputs are
//! written. A build that added nothing costs nothing; progress says what was freed.

use crate::shared::progress;
use anyhow::{Context, Result};
use rbuild_cache::gc::units::human;
use rbuild_cache::{GcPolicy, Store};

/// The policy of the store at `store`'s root (its `gc.toml`, then `RBUILD_GC*`).
pub fn policy(store: &Store) -> Result<GcPolicy> {
    GcPolicy::load(store.root(), |k| std::env::var(k).ok()).context("the cache policy")
}

/// Applies `policy`; a failure is a warning, not a failed build (the image is written).
pub fn apply(store: &Store, policy: &GcPolicy, mode: progress::Mode) {
    match store.gc_after_build(policy) {
        Ok(Some(report)) if mode != progress::Mode::Quiet => {
            let s = report.swept;
            eprintln!(
                "#gc freed {} ({} cache records, {} blobs, {} snapshots): build cache {} (limit {})",
                human(s.bytes),
                s.records,
                s.blobs,
                s.snapshots,
                human(report.cache_bytes.unwrap_or(0)),
                human(policy.limit(store.root())),
            );
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: the cache policy could not run: {e}"),
    }
}
