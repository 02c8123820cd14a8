//! A step's filesystem: the snapshot dirs of a layer chain, the step's scratch dirs, host
//! views of other inputs, and committing what the step changed as a new layer; on
//! overlays, or on copies where overlayfs cannot be used (`rbuild_cache::copysnap`).
//!
//! An overlay's lower dirs come from [`mount_lowers`]: a chain longer than one mount
//! takes on this kernel (`rbuild_executor::max_lower_layers`) mounts over a flattened
//! snapshot of its bottom layers, which the store makes once and keeps.

use crate::error::{SolveError, StepFailure};
use crate::op::{RuntimeKey, StepContext};
use crate::outcome::Outcome;
use rbuild_cache::{Layer, copysnap};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Snapshot dirs of a layer chain, bottom first.
pub(crate) fn snapshots(step: &StepContext, chain: &[Layer]) -> Result<Vec<PathBuf>, SolveError> {
    chain
        .iter()
        .map(|l| step.store().snapshot(l).map_err(|e| step.fail(e)))
        .collect()
}

/// The lower dirs, bottom first, of an overlay of `chain` on this kernel: its snapshots,
/// with a flattened prefix in place of the bottom ones when there are too many.
pub(crate) fn mount_lowers(
    step: &StepContext,
    chain: &[Layer],
) -> Result<Vec<PathBuf>, SolveError> {
    step.store()
        .mount_lowers(chain, rbuild_executor::max_lower_layers())
        .map_err(|e| step.fail(e))
}

fn io(step: &StepContext, what: String) -> impl FnOnce(std::io::Error) -> SolveError + '_ {
    move |source| step.fail(StepFailure::Io { what, source })
}

/// Materializes `chain` twice for the copying snapshotter: `base` (hard links, never
/// written) and `root` (a real copy the step changes). The diff of the two is the layer.
pub(crate) fn copy_rootfs(
    step: &StepContext,
    chain: &[Layer],
    base: &Path,
    root: &Path,
) -> Result<(), SolveError> {
    let lowers = snapshots(step, chain)?;
    let refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let copying_to = |p: &Path| format!("copying layers to {}", p.display());
    copysnap::materialize(&refs, base, true).map_err(io(step, copying_to(base)))?;
    copysnap::materialize(&[base], root, false).map_err(io(step, copying_to(root)))?;
    Ok(())
}

/// The outcome of a step that changed a rootfs: its upper dir becomes a layer on top of
/// `base` (none when nothing changed). On the copying snapshotter the changes of `root`
/// over `copy_base` are first written into `upper` in overlay form.
pub(crate) fn commit_step(
    step: &StepContext,
    base: Arc<[Layer]>,
    copied: (&Path, &Path),
    upper: &Path,
) -> Result<Outcome, SolveError> {
    commit_step_linked(step, base, copied, upper, HashSet::new())
}

/// [`commit_step`] of an upper dir holding hard links to other snapshots' files, by
/// (dev, inode) in `linked` (already on disk: not fsynced again).
pub(crate) fn commit_step_linked(
    step: &StepContext,
    base: Arc<[Layer]>,
    (copy_base, root): (&Path, &Path),
    upper: &Path,
    linked: HashSet<(u64, u64)>,
) -> Result<Outcome, SolveError> {
    if step.services.copying {
        let what = format!("computing the changes of {}", root.display());
        copysnap::diff(copy_base, root, upper).map_err(io(step, what))?;
    }
    let layers = match step
        .store()
        .commit_layer_linked(upper, step.opts.epoch, linked)
        .map_err(|e| step.fail(e))?
    {
        Some(layer) => base.iter().cloned().chain([layer]).collect(),
        None => base,
    };
    Ok(Outcome {
        layers,
        ..Default::default()
    })
}

/// Adds `SOURCE_DATE_EPOCH` to the runtime key of a step that commits a layer: its
/// layer's times are clamped to it (see [`commit_step`]). Without one the key is as it
/// always was.
pub(crate) fn epoch_key(step: &StepContext, key: &mut RuntimeKey) {
    if let Some(e) = step.opts.epoch {
        key.add(b"epoch\0").add(&e.to_le_bytes());
    }
}

/// A step's scratch space under the store's tmp/: the dir itself (removed on drop) and
/// fresh `upper/` and `work/` dirs for the overlay whose upper becomes the layer.
pub(crate) fn step_dirs(
    step: &StepContext,
    prefix: &str,
) -> Result<(tempfile::TempDir, PathBuf, PathBuf), SolveError> {
    let tmp = step.store().tmp_dir(prefix).map_err(|e| step.fail(e))?;
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    mkdir(step, &upper)?;
    mkdir(step, &work)?;
    Ok((tmp, upper, work))
}

pub(crate) fn mkdir(step: &StepContext, dir: &Path) -> Result<(), SolveError> {
    std::fs::create_dir_all(dir).map_err(io(step, format!("creating {}", dir.display())))
}

/// A view of a layer chain on the host whose changes are thrown away: an overlay with a
/// throwaway upper in `scratch`, or an empty dir for an empty chain. Keep the returned mount
/// alive while reading. With the copying snapshotter the chain is materialized instead
/// (hard links when nobody will write to it).
pub(crate) fn view_chain(
    step: &StepContext,
    chain: &[Layer],
    scratch: &Path,
    writable: bool,
) -> Result<(PathBuf, Option<rbuild_executor::OverlayMount>), SolveError> {
    let mnt = scratch.join("mnt");
    mkdir(step, &mnt)?;
    if chain.is_empty() {
        return Ok((mnt, None));
    }
    if step.services.copying {
        let lowers = snapshots(step, chain)?;
        let refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
        let what = format!("copying layers to {}", mnt.display());
        copysnap::materialize(&refs, &mnt, !writable).map_err(io(step, what))?;
        return Ok((mnt, None));
    }
    let lowers = mount_lowers(step, chain)?;
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    mkdir(step, &upper)?;
    mkdir(step, &work)?;
    let m =
        rbuild_executor::OverlayMount::mount(&lowers, &upper, &work, &mnt).map_err(|source| {
            step.fail(StepFailure::Mount {
                what: format!("an overlay at {}", mnt.display()),
                source,
            })
        })?;
    Ok((mnt, Some(m)))
}
