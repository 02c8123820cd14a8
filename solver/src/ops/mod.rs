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
mod filecopy;
mod git;
mod http;
pub mod mounts;
mod parents;
mod place;
pub mod push;
mod relink;
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
        Op::Merge => Arc::new(source::MergeStep),
        Op::Export(op) => Arc::new(export::ExportAction::new(op)),
        Op::Push { reference } => Arc::new(push::PushAction::new(reference)),
        Op::Run(op) => Arc::new(run::RunAction::new(op)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::{ExecMount, ExecOp, ExportOp, FileOp, MountKind, Platform, RunOp};

    fn exec(mounts: Vec<ExecMount>) -> Op {
        Op::Exec(ExecOp {
            args: vec!["true".into()],
            env: Default::default(),
            cwd: "/".into(),
            user: String::new(),
            network: Default::default(),
            mounts,
            security: Default::default(),
            settings: Default::default(),
            platform: None,
        })
    }

    /// A no-op rebuild of many RUN steps must not pay a thread hand-off per step: only
    /// keys that read files or the store block.
    #[test]
    fn only_keys_that_read_files_or_the_store_block() {
        let bind = ExecMount {
            target: "/src".into(),
            kind: MountKind::Bind {
                input: 1,
                source: String::new(),
                readonly: true,
            },
        };
        let tmpfs = ExecMount {
            target: "/tmp".into(),
            kind: MountKind::Tmpfs { size: None },
        };
        let image = Op::Image {
            reference: "x".into(),
            digest: None,
            platform: Platform::host(),
        };
        let local = Op::Local {
            name: "context".into(),
            exclude: vec![],
        };
        let blocking = |op: &Op| resolve(op).unwrap().key_blocks();
        assert!(!blocking(&exec(vec![])));
        assert!(!blocking(&exec(vec![tmpfs])));
        assert!(blocking(&exec(vec![bind])));
        assert!(blocking(&Op::File(FileOp { actions: vec![] })));
        assert!(blocking(&image));
        assert!(!blocking(&Op::Scratch) && !blocking(&local));
        let export = Op::Export(Box::new(ExportOp {
            config: Default::default(),
            history: vec![],
            tags: vec![],
            inline_cache: false,
            squash: false,
            annotations: Default::default(),
        }));
        let push = Op::Push {
            reference: "r".into(),
        };
        for action in [export, push, Op::Run(RunOp::default())] {
            let op = resolve(&action).unwrap();
            assert!(!op.key_blocks() && !op.cacheable(), "{action:?}");
        }
    }
}
