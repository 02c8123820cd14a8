//! Op implementations, one module each, and the COPY path rules they share.

pub mod exec;
pub mod file;
pub mod paths;
pub mod source;

use crate::solve::SolveError;
use rbuild_cache::{Layer, Store};
use std::path::{Path, PathBuf};

/// Snapshot dirs of a layer chain, bottom first.
pub(crate) fn snapshots(store: &Store, chain: &[Layer]) -> Result<Vec<PathBuf>, SolveError> {
    chain
        .iter()
        .map(|l| store.snapshot(l).map_err(SolveError::from))
        .collect()
}

/// Creates `dir` (and parents) or fails naming it.
pub(crate) fn mkdir(dir: &Path) -> Result<(), SolveError> {
    std::fs::create_dir_all(dir).map_err(|source| SolveError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })
}

/// A read-only view of a layer chain on the host: an overlay with a throwaway upper in
/// `scratch`, or an empty dir for an empty chain. Keep the returned mount alive while reading.
pub(crate) fn view_chain(
    store: &Store,
    chain: &[Layer],
    scratch: &Path,
) -> Result<(PathBuf, Option<rbuild_executor::OverlayMount>), SolveError> {
    let mnt = scratch.join("mnt");
    mkdir(&mnt)?;
    if chain.is_empty() {
        return Ok((mnt, None));
    }
    let lowers = snapshots(store, chain)?;
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    mkdir(&upper)?;
    mkdir(&work)?;
    let m = rbuild_executor::OverlayMount::mount(&lowers, &upper, &work, &mnt)
        .map_err(|e| SolveError::Internal(format!("mounting overlay at {}: {e}", mnt.display())))?;
    Ok((mnt, Some(m)))
}
