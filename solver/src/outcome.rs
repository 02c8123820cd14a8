//! The result of one vertex ([`Outcome`]) and its cache record, in both directions.

use crate::error::SolveError;
use rbuild_cache::{CacheRecord, Layer, SharedRecord};
use rbuild_graph::image::ImageConfig;
use std::sync::Arc;

/// The result of one vertex.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The filesystem as a layer chain, bottom first. Shared: a step that added no layer
    /// holds its input's chain, so the outcomes of a long build cost one chain per layer
    /// made, not one per step.
    pub layers: Arc<[Layer]>,
    /// The image config, for image sources.
    pub config: Option<ImageConfig>,
    /// When this result was first produced (unix seconds, from its cache record), so a
    /// fully cached rebuild exports the very same image.
    pub created: u64,
    /// The runtime cache key (hex) the result is recorded under; set by the scheduler
    /// (never for actions).
    pub cache_key: Option<String>,
    /// The manifest digest, for image sources, exports and pushes.
    pub image: Option<String>,
    /// What a push did.
    pub pushed: Option<rbuild_cache::push::PushReport>,
    /// The exit status of a run.
    pub exit_code: Option<i32>,
    /// The most memory a RUN step's processes used (where its cgroup measured it): part
    /// of its progress, never of its cache record.
    pub peak_memory: Option<u64>,
}

impl Outcome {
    /// The outcome a cache record stands for (its layers, config and creation time). When
    /// its layer chain is the one of an outcome in `like` (a step that added no layer has
    /// its input's), that chain is shared instead of copied.
    pub(crate) fn from_record(
        record: CacheRecord,
        like: &[Outcome],
    ) -> Result<Outcome, serde_json::Error> {
        let config = record
            .config
            .map(serde_json::from_value::<ImageConfig>)
            .transpose()?;
        let layers = match like.iter().find(|o| *o.layers == *record.layers) {
            Some(o) => o.layers.clone(),
            None => record.layers.into(),
        };
        Ok(Outcome {
            layers,
            config,
            created: record.created,
            ..Default::default()
        })
    }

    /// The outcome a local cache record stands for (its chain stays shared).
    pub(crate) fn from_shared(record: SharedRecord) -> Result<Outcome, serde_json::Error> {
        let config = record
            .config
            .map(serde_json::from_value::<ImageConfig>)
            .transpose()?;
        Ok(Outcome {
            layers: record.layers,
            config,
            created: record.created,
            ..Default::default()
        })
    }

    /// The cache record of this outcome: what a later build needs to reuse it.
    pub(crate) fn record(&self) -> Result<CacheRecord, SolveError> {
        let config = self
            .config
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            // An ImageConfig always serializes; failing here is a bug.
            .map_err(|e| SolveError::Internal(format!("serializing an image config: {e}")))?;
        Ok(CacheRecord {
            layers: self.layers.to_vec(),
            config,
            created: self.created,
        })
    }
}
