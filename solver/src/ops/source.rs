//! Source ops: an image, from the local store or pulled from its registry (Scratch and
//! Local need no work).

use crate::progress::{Event, human_size, say, short_digest};
use crate::solve::{Inner, Outcome, SolveError, SolveOptions};
use rbuild_cache::StoredImage;
use rbuild_cache::pull::{PullEvent, PullProgress};
use rbuild_graph::image::ImageConfig;
use rbuild_graph::{BuildGraph, Platform, VertexId};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// The outcome of an image source: its layers, its config and its manifest digest.
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
        image: Some(img.manifest_digest.clone()),
        ..Default::default()
    })
}

/// The image source `v`: the local image (the pinned manifest when there is one, else the
/// reference's), or else pulled from its registry with a line per layer.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn image(
    inner: &Inner,
    graph: &BuildGraph,
    v: VertexId,
    reference: &str,
    digest: Option<&str>,
    platform: &Platform,
    opts: &SolveOptions,
    events: &UnboundedSender<Event>,
) -> Result<Outcome, SolveError> {
    if let Some(img) = inner.local_image(reference, digest)? {
        // Resolved in the registry to a manifest the store has under another name (or an
        // older image under this one): the tag now names what was resolved, as after a
        // pull. A reference that cannot be a tag (`x@sha256:…`) is left alone.
        let tag = rbuild_cache::normalize_tag(reference);
        if digest.is_some() && !img.tags.contains(&tag) {
            let _ = inner.store.tag_image(&img.manifest_digest, reference);
        }
        return image_outcome(&img);
    }
    let Some(client) = &opts.registry else {
        return Err(SolveError::ImageNotFound {
            reference: reference.to_string(),
        });
    };
    let fail = |e: rbuild_cache::pull::PullError| {
        SolveError::step(graph, v, format!("pulling {reference}: {e}"))
    };
    let platform = registry_platform(platform);
    let remote = match digest {
        Some(d) => rbuild_cache::pull::resolve_pinned(client, reference, d, &platform).await,
        None => rbuild_cache::pull::resolve(client, reference, &platform).await,
    }
    .map_err(fail)?;
    say(
        events,
        v,
        format!(
            "resolve {reference}: {} ({} layers)",
            remote.manifest_digest,
            remote.layers.len()
        ),
    );
    let ev = events.clone();
    let progress: PullProgress = Arc::new(move |e| match e {
        PullEvent::Fetched { digest, size } => say(
            &ev,
            v,
            format!("{} fetched {}", short_digest(&digest), human_size(size)),
        ),
        PullEvent::Present { digest } => {
            say(&ev, v, format!("{} already present", short_digest(&digest)))
        }
    });
    let tag = rbuild_cache::normalize_tag(reference);
    let img = rbuild_cache::pull::fetch(&inner.store, client, &remote, &[tag], progress)
        .await
        .map_err(fail)?;
    say(events, v, format!("pulled, digest {}", img.manifest_digest));
    image_outcome(&img)
}

/// The graph's platform as the registry client names it.
pub fn registry_platform(p: &rbuild_graph::Platform) -> rbuild_cache::registry::Platform {
    rbuild_cache::registry::Platform::new(&p.os, &p.architecture, p.variant.as_deref())
}
