//! Base images: what lowering asks about an image reference (its config and manifest
//! digest), the error a resolver may give, and the per-build cache of the answers.

use super::Lowerer;
use crate::Diagnostic;
use crate::ast::Span;
use rbuild_graph::Platform;
use rbuild_graph::image::ImageConfig;

/// Looks up image configs for FROM and `--from` image references.
pub trait ImageResolver {
    /// Config (and manifest digest, if known) of an image reference for `platform`; Ok(None) when
    /// unknown (lowering then uses an empty config and digest None — the solver reports the
    /// missing image later).
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError>;
}

/// What a resolver knows about an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedImage {
    pub digest: Option<String>,
    pub config: ImageConfig,
}

/// An error of the store or registry behind a resolver (the frontend knows neither's types).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a resolver could not answer. Lowering reports it at the instruction that named the
/// image, as `failed to resolve image REF: <this>`.
///
/// Each message already includes the underlying error's, so no `source()` chain is kept:
/// a printer walking the chain (`{:#}`) would otherwise repeat it.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The local image store could not be read.
    #[error("{0}")]
    Store(BoxError),
    /// No registry client could be set up.
    #[error("{0}")]
    Client(BoxError),
    /// The image is not local and its registry could not resolve it.
    // Said after `failed to resolve image REFERENCE`: the reference is not repeated.
    #[error("not in the local store, and pulling it failed: {error}")]
    Pull { reference: String, error: BoxError },
    /// The image's config is not valid JSON.
    #[error("image {reference}: config is not valid JSON: {error}")]
    Config {
        reference: String,
        error: serde_json::Error,
    },
}

/// A resolver that knows no images (tests, `--dry-run` without a store).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, _: &str, _: &Platform) -> Result<Option<ResolvedImage>, ResolveError> {
        Ok(None)
    }
}

impl Lowerer<'_> {
    /// Asks the resolver once per reference and platform (across all targets of a build).
    pub(super) fn resolve_image(
        &mut self,
        reference: &str,
        platform: &Platform,
        span: Span,
    ) -> Result<Option<ResolvedImage>, Diagnostic> {
        let key = (reference.to_string(), platform.clone());
        if let Some(r) = self.images.get(&key) {
            return Ok(r.clone());
        }
        let r = self.resolver.resolve(reference, platform).map_err(|e| {
            self.err(
                span,
                "",
                format!("failed to resolve image {reference}: {e}"),
            )
            .help("check the image name and tag, and that the registry is reachable")
        })?;
        self.images.insert(key, r.clone());
        Ok(r)
    }
}
