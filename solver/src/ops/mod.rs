//! The op implementations, one module each, and [`resolve`], which the scheduler is given
//! to find them:
//!
//! - [`source`]: scratch, the local context, images (local, or pulled from their registry);
//! - [`exec`] (RUN) with its mounts in [`mounts`]; [`file`] (COPY/ADD/WORKDIR) with ADD's
//!   archives in [`archive`];
//! - the actions [`export`] (the image: config, history, manifest, tags), [`push`] and
//!   [`run`] (a throwaway container);
//! - [`rootfs`]: a step's filesystem (snapshots of a chain, scratch dirs, host views,
//!   committing the upper dir), on overlays or on the store's copying snapshotter
//!   (`rbuild_cache::copysnap`) where overlayfs cannot be used.

pub mod archive;
pub mod exec;
pub mod export;
pub mod file;
pub mod mounts;
pub mod push;
pub mod rootfs;
pub mod run;
pub mod source;

use crate::error::StepFailure;
use crate::op::SolveOp;
use rbuild_graph::Op;
use std::sync::Arc;

/// The implementation of `op` (the scheduler's [`Resolver`](crate::op::Resolver)).
pub(crate) fn resolve(op: &Op) -> Result<Arc<dyn SolveOp>, StepFailure> {
    Ok(match op {
        Op::Scratch => Arc::new(source::ScratchSource),
        Op::Local { .. } => Arc::new(source::LocalSource),
        Op::Image {
            reference,
            digest,
            platform,
        } => Arc::new(source::ImageSource::new(
            reference,
            digest.as_deref(),
            platform,
        )),
        Op::Exec(op) => Arc::new(exec::ExecStep::new(op)),
        Op::File(op) => Arc::new(file::FileStep::new(op)?),
        Op::Export(op) => Arc::new(export::ExportAction::new(op)),
        Op::Push { reference } => Arc::new(push::PushAction::new(reference)),
        Op::Run(op) => Arc::new(run::RunAction::new(op)),
    })
}
