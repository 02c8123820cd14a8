//! Op implementations, one module each (sources, exec, file; the export/push/run
//! actions).

pub mod exec;
pub mod file;
pub mod push;
pub mod run;
pub mod source;

use crate::solve::{Inner, Outcome, SolveError};
use rbuild_cache::{Layer, Store, copysnap};
use std::path::{Path, PathBuf};

/// Snapshot dirs of a layer chain, bottom first.
pub(crate) fn snapshots(store: &Store, chain: &[Layer]) -> Result<Vec<PathBuf>, SolveError> {
    chain
        .iter()
        .map(|l| store.snapshot(l).map_err(SolveError::from))
        .collect()
}

/// Materializes `chain` twice for the copying snapshotter: `base` (hard links, never
/// written) and `root` (a real copy the step changes). The diff of the two is the layer.
pub(crate) fn copy_rootfs(
    store: &Store,
    chain: &[Layer],
    base: &Path,
    root: &Path,
) -> Result<(), SolveError> {
    let lowers = snapshots(store, chain)?;
    let refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let io = |what: &Path| {
        let what = format!("copying layers to {}", what.display());
        move |source| SolveError::Io { what, source }
    };
    copysnap::materialize(&refs, base, true).map_err(io(base))?;
    copysnap::materialize(&[base], root, false).map_err(io(root))?;
    Ok(())
}

/// The outcome of a step that changed a rootfs: its upper dir becomes a layer on top of
/// `base` (none when nothing changed). On the copying snapshotter the changes of `root`
/// over `copy_base` are first written into `upper` in overlay form.
pub(crate) fn commit_step(
    inner: &Inner,
    base: Vec<Layer>,
    (copy_base, root): (&Path, &Path),
    upper: &Path,
) -> Result<Outcome, SolveError> {
    if inner.copying {
        diff_rootfs(copy_base, root, upper)?;
    }
    let mut layers = base;
    if let Some(layer) = inner.store.commit_layer(upper)? {
        layers.push(layer);
    }
    Ok(Outcome {
        layers,
        ..Default::default()
    })
}

/// The layer diff of a copied rootfs, written into `upper` in overlay form.
fn diff_rootfs(base: &Path, root: &Path, upper: &Path) -> Result<(), SolveError> {
    copysnap::diff(base, root, upper).map_err(|source| SolveError::Io {
        what: format!("computing the changes of {}", root.display()),
        source,
    })
}

/// A step's scratch space under the store's tmp/: the dir itself (removed on drop) and
/// fresh `upper/` and `work/` dirs for the overlay whose upper becomes the layer.
pub(crate) fn step_dirs(
    store: &Store,
    prefix: &str,
) -> Result<(tempfile::TempDir, PathBuf, PathBuf), SolveError> {
    let tmp = store.tmp_dir(prefix)?;
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    mkdir(&upper)?;
    mkdir(&work)?;
    Ok((tmp, upper, work))
}

pub(crate) fn mkdir(dir: &Path) -> Result<(), SolveError> {
    std::fs::create_dir_all(dir).map_err(|source| SolveError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })
}

/// A view of a layer chain on the host whose changes are thrown away: an overlay with a
/// throwaway upper in `scratch`, or an empty dir for an empty chain. Keep the returned mount
/// alive while reading. With the copying snapshotter the chain is materialized instead
/// (hard links when nobody will write to it).
pub(crate) fn view_chain(
    store: &Store,
    chain: &[Layer],
    scratch: &Path,
    copying: bool,
    writable: bool,
) -> Result<(PathBuf, Option<rbuild_executor::OverlayMount>), SolveError> {
    let mnt = scratch.join("mnt");
    mkdir(&mnt)?;
    if chain.is_empty() {
        return Ok((mnt, None));
    }
    let lowers = snapshots(store, chain)?;
    if copying {
        let refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
        copysnap::materialize(&refs, &mnt, !writable).map_err(|source| SolveError::Io {
            what: format!("copying layers to {}", mnt.display()),
            source,
        })?;
        return Ok((mnt, None));
    }
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    mkdir(&upper)?;
    mkdir(&work)?;
    let m = rbuild_executor::OverlayMount::mount(&lowers, &upper, &work, &mnt)
        .map_err(|e| SolveError::Internal(format!("mounting overlay at {}: {e}", mnt.display())))?;
    Ok((mnt, Some(m)))
}
