//! The push action: input 0's image goes to a registry, a line per blob, the manifest
//! last (see `rbuild_cache::push` for skipping, mounting and resuming).

use crate::error::{SolveError, StepFailure};
use crate::op::{SolveOp, StepContext, Work};
use crate::outcome::Outcome;
use crate::progress::{human_size, say, short_digest};
use rbuild_cache::push::{PushEvent, PushProgress, PushReport, push_with_progress};
use rbuild_cache::registry::PushStatus;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The line shown when a blob is done.
pub fn blob_line(digest: &str, size: u64, status: PushStatus, took: f64) -> String {
    let d = short_digest(digest);
    match status {
        PushStatus::Uploaded => format!("{d} pushed {} {took:.1}s", human_size(size)),
        PushStatus::AlreadyExists => format!("{d} exists"),
        PushStatus::Mounted => format!("{d} mounted"),
    }
}

/// The summary line: what went up and what did not need to.
pub fn summary(report: &PushReport) -> String {
    format!(
        "pushed {} blob(s) ({}), {} already present, {} mounted",
        report.pushed,
        human_size(report.bytes),
        report.skipped,
        report.mounted
    )
}

/// Sends input 0's image (an export or a local image source) to a registry.
pub struct PushAction {
    reference: String,
}

impl PushAction {
    pub(crate) fn new(reference: &str) -> Self {
        PushAction {
            reference: reference.to_string(),
        }
    }

    /// Pushes the image of input 0 (its manifest must be in the store).
    async fn push(&self, step: &StepContext) -> Result<Outcome, SolveError> {
        let reference = &self.reference;
        let input = step.input(0);
        let manifest = input
            .image
            .as_deref()
            .ok_or_else(|| step.fail(StepFailure::NotAnImage { action: "push" }))?;
        let client = step
            .opts
            .registry
            .as_ref()
            .ok_or_else(|| step.fail(StepFailure::NoRegistry))?;
        step.say("pushing layers".into());
        let begun: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (events, v) = (step.events.clone(), step.vertex);
        let progress: PushProgress = Arc::new(move |e| match e {
            PushEvent::BlobStarted { digest, .. } => {
                if let Ok(mut b) = begun.lock() {
                    b.insert(digest, Instant::now());
                }
            }
            PushEvent::BlobDone {
                digest,
                size,
                status,
            } => {
                let took = begun
                    .lock()
                    .ok()
                    .and_then(|b| b.get(&digest).map(|t| t.elapsed().as_secs_f64()))
                    .unwrap_or(0.0);
                say(&events, v, blob_line(&digest, size, status, took));
            }
            PushEvent::Manifest { digest, .. } => {
                say(&events, v, format!("pushing manifest {digest}"))
            }
        });
        let report = push_with_progress(step.store(), client, manifest, reference, progress)
            .await
            .map_err(|source| {
                step.fail(StepFailure::Push {
                    reference: reference.clone(),
                    source: Box::new(source),
                })
            })?;
        step.say(summary(&report));
        Ok(Outcome {
            layers: input.layers,
            config: input.config,
            image: Some(report.manifest_digest.clone()),
            pushed: Some(report),
            ..Default::default()
        })
    }
}

impl SolveOp for PushAction {
    fn cacheable(&self) -> bool {
        false
    }

    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        Work::future(async move { self.push(&step).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_lines_and_summary() {
        let d = "sha256:0123456789abcdef0000";
        assert_eq!(
            blob_line(d, 1_500_000, PushStatus::Uploaded, 0.25),
            "sha256:0123456789ab pushed 1.5MB 0.2s"
        );
        assert_eq!(
            blob_line(d, 1, PushStatus::AlreadyExists, 0.0),
            "sha256:0123456789ab exists"
        );
        assert_eq!(
            blob_line(d, 1, PushStatus::Mounted, 0.0),
            "sha256:0123456789ab mounted"
        );
        let r = PushReport {
            pushed: 2,
            bytes: 2000,
            skipped: 1,
            mounted: 0,
            ..Default::default()
        };
        assert_eq!(
            summary(&r),
            "pushed 2 blob(s) (2.0kB), 1 already present, 0 mounted"
        );
    }
}
