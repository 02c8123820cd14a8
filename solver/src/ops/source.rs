//! Source ops: an image from the local store (Scratch and Local need no work).

use crate::image::ImageConfig;
use crate::solve::{Outcome, SolveError};
use rbuild_cache::StoredImage;

/// The outcome of an image source: its layers and its config.
pub(crate) fn image_outcome(img: &StoredImage) -> Result<Outcome, SolveError> {
    let config: ImageConfig = serde_json::from_slice(&img.config).map_err(|e| {
        SolveError::Internal(format!(
            "image config {} is not valid JSON: {e}",
            img.config_digest
        ))
    })?;
    Ok(Outcome {
        layers: img.layers.clone(),
        config: Some(config),
        created: 0,
        ..Default::default()
    })
}
