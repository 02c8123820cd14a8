//! Source ops: scratch (the empty filesystem), the local build context (read by the steps
//! that select from it, see [`local_context`]), and an image, from the local store or
//! pulled from its registry.

use crate::error::{SolveError, StepFailure};
use crate::op::{RuntimeKey, SolveOp, StepContext, Work};
use crate::outcome::Outcome;
use crate::progress::{human_size, short_digest};
use rbuild_cache::StoredImage;
use rbuild_cache::pull::{PullEvent, PullProgress};
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::image::ImageConfig;
use rbuild_graph::{Op, Platform};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The empty filesystem.
pub struct ScratchSource;

impl SolveOp for ScratchSource {
    fn execute(self: Arc<Self>, _step: Arc<StepContext>) -> Work<Outcome> {
        Work::Done(Ok(Outcome::default()))
    }
}

/// Input 0's chain with the chains of the other inputs stacked on it (`COPY --link`):
/// nothing to compute, the layers are reused as they are.
pub struct MergeStep;

impl SolveOp for MergeStep {
    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        let n = step.graph.vertex(step.vertex).inputs.len();
        let layers: Vec<_> = (0..n)
            .flat_map(|i| step.input(i).layers.iter().cloned().collect::<Vec<_>>())
            .collect();
        Work::Done(Ok(Outcome {
            layers: layers.into(),
            ..Default::default()
        }))
    }
}

/// A local directory: nothing to do of its own; the steps that read it hash and copy
/// what they select ([`local_context`]).
pub struct LocalSource;

impl SolveOp for LocalSource {
    fn execute(self: Arc<Self>, _step: Arc<StepContext>) -> Work<Outcome> {
        Work::Done(Ok(Outcome::default()))
    }
}

/// A local source as steps read it: its directory on the host and its `.dockerignore`
/// patterns.
pub(crate) struct LocalContext {
    pub dir: PathBuf,
    pub ignore: Arc<Patterns>,
}

/// When input `input` of the step is a local source: its directory (from the solve's
/// options) and its parsed `.dockerignore` patterns (parsed once per solver; a pattern
/// that does not parse fails the step, naming it).
pub(crate) fn local_context(
    step: &StepContext,
    input: usize,
    what: &'static str,
) -> Result<Option<LocalContext>, SolveError> {
    let src = step.input_vertex(input, what)?;
    let Op::Local { name, exclude } = &step.graph.vertex(src).op else {
        return Ok(None);
    };
    let dir = match (name.as_str(), &step.opts.context_dir) {
        ("context", Some(d)) => d.clone(),
        (named, _) => match step.opts.named_dirs.get(named) {
            Some(d) => d.clone(),
            None => return Err(step.fail(StepFailure::NoLocalDir { name: name.clone() })),
        },
    };
    let ignore = step
        .services
        .ignore_patterns(exclude)
        .map_err(|e| step.fail(StepFailure::IgnorePattern(e)))?;
    Ok(Some(LocalContext { dir, ignore }))
}

/// An image's filesystem and config: the local image (the pinned manifest when there is
/// one, else the reference's), or else pulled from its registry with a line per layer.
pub struct ImageSource {
    reference: String,
    digest: Option<String>,
    platform: Platform,
    /// The local image found while computing the key (None: it has to be pulled).
    local: OnceLock<Option<StoredImage>>,
}

impl ImageSource {
    pub(crate) fn new(reference: &str, digest: Option<&str>, platform: &Platform) -> Self {
        ImageSource {
            reference: reference.to_string(),
            digest: digest.map(str::to_string),
            platform: platform.clone(),
            local: OnceLock::new(),
        }
    }

    /// The local image: the pinned manifest when there is one (what lowering resolved;
    /// another image under the same tag is not it), else the reference's.
    fn find_local(&self, step: &StepContext) -> Result<Option<StoredImage>, SolveError> {
        let name = self.digest.as_deref().unwrap_or(&self.reference);
        Ok(step.store().image(name)?)
    }

    /// Pulls the image (or takes it from the store, should it have arrived since the key
    /// was computed).
    async fn pull(&self, step: &StepContext) -> Result<Outcome, SolveError> {
        let reference = &self.reference;
        if let Some(img) = self.find_local(step)? {
            // Resolved in the registry to a manifest the store has under another name (or
            // an older image under this one): the tag now names what was resolved, as
            // after a pull. A reference that cannot be a tag (`x@sha256:…`) is left alone.
            let tag = rbuild_cache::normalize_tag(reference);
            if self.digest.is_some() && !img.tags.contains(&tag) {
                let _ = step.store().tag_image(&img.manifest_digest, reference);
            }
            return image_outcome(step, &img);
        }
        let Some(client) = &step.opts.registry else {
            return Err(SolveError::ImageNotFound {
                reference: reference.to_string(),
            });
        };
        let fail = |source| {
            step.fail(StepFailure::Pull {
                reference: reference.clone(),
                source: Box::new(source),
            })
        };
        let platform = registry_platform(&self.platform);
        let remote = match &self.digest {
            Some(d) => rbuild_cache::pull::resolve_pinned(client, reference, d, &platform).await,
            None => rbuild_cache::pull::resolve(client, reference, &platform).await,
        }
        .map_err(fail)?;
        step.say(format!(
            "resolve {reference}: {} ({} layers)",
            remote.manifest_digest,
            remote.layers.len()
        ));
        let (events, v) = (step.events.clone(), step.vertex);
        let progress: PullProgress = Arc::new(move |e| {
            let line = match e {
                PullEvent::Fetched { digest, size } => {
                    format!("{} fetched {}", short_digest(&digest), human_size(size))
                }
                PullEvent::Present { digest } => {
                    format!("{} already present", short_digest(&digest))
                }
            };
            crate::progress::say(&events, v, line);
        });
        let tag = rbuild_cache::normalize_tag(reference);
        let img = rbuild_cache::pull::fetch(step.store(), client, &remote, &[tag], progress)
            .await
            .map_err(fail)?;
        step.say(format!("pulled, digest {}", img.manifest_digest));
        image_outcome(step, &img)
    }
}

impl SolveOp for ImageSource {
    /// Looks in the store.
    fn key_blocks(&self) -> bool {
        true
    }

    /// The manifest digest: a pinned one is the key even before it is pulled.
    fn cache_key(&self, step: &StepContext, key: &mut RuntimeKey) -> Result<(), SolveError> {
        let local = self.find_local(step)?;
        let manifest = match (&local, &self.digest) {
            (_, Some(d)) => d.clone(),
            (Some(img), None) => img.manifest_digest.clone(),
            (None, None) => {
                return Err(SolveError::ImageNotFound {
                    reference: self.reference.clone(),
                });
            }
        };
        key.add(b"image\0").add_shown("manifest", &manifest);
        let _ = self.local.set(local);
        Ok(())
    }

    /// An image source answered from the cache still names its manifest.
    fn cache_hit(&self, outcome: &mut Outcome) {
        outcome.image = self
            .local
            .get()
            .and_then(|l| l.as_ref())
            .map(|i| i.manifest_digest.clone())
            .or_else(|| self.digest.clone());
    }

    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        if let Some(Some(img)) = self.local.get() {
            return Work::Done(image_outcome(&step, img));
        }
        Work::future(async move { self.pull(&step).await })
    }
}

/// The outcome of an image source: its layers, its config and its manifest digest.
fn image_outcome(step: &StepContext, img: &StoredImage) -> Result<Outcome, SolveError> {
    let config: ImageConfig = serde_json::from_slice(&img.config).map_err(|source| {
        step.fail(StepFailure::ImageConfig {
            digest: img.config_digest.clone(),
            source,
        })
    })?;
    Ok(Outcome {
        layers: img.layers.as_slice().into(),
        config: Some(config),
        created: 0,
        image: Some(img.manifest_digest.clone()),
        ..Default::default()
    })
}

/// The graph's platform as the registry client names it.
pub fn registry_platform(p: &rbuild_graph::Platform) -> rbuild_cache::registry::Platform {
    p.into()
}
