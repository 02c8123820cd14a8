//! Step 2 of a build: the Dockerfile lowered into one graph for every target, base images
//! resolved in the store or their registry on the way.

use super::inputs::Inputs;
use crate::flags::hiargs::Build;
use crate::shared::resolver::StoreResolver;
use anyhow::{Result, anyhow};
use rbuild_cache::Store;
use rbuild_cache::registry::RegistryClient;
use rbuild_frontend::lower::{self, LowerOptions, LoweredTargets};
use rbuild_graph::Platform;
use tokio::runtime::Runtime;

/// The lowered targets, and the registry client if resolving a base image needed one (the
/// solve reuses it to pull).
pub struct Lowered {
    pub targets: LoweredTargets,
    pub client: Option<RegistryClient>,
}

/// Lowers against `store` (none: a dry run with no store yet, where every image is
/// unknown), reaching registries through `pull` (a runtime and the `--insecure-registry`
/// hosts) when given.
pub fn lower(
    build: &Build,
    inputs: &Inputs,
    store: Option<&Store>,
    pull: Option<(&Runtime, &[String])>,
) -> Result<Lowered> {
    let opts = options(build, inputs);
    let (lowered, client) = match store {
        Some(s) => {
            let resolver =
                StoreResolver::new(s, pull, build.always_pull).with_stages_of(&inputs.source);
            let lowered = lower::lower_targets_for(
                &inputs.source,
                &opts,
                &build.targets,
                &build.platforms,
                &resolver,
            );
            (lowered, resolver.into_client())
        }
        None => (
            lower::lower_targets_for(
                &inputs.source,
                &opts,
                &build.targets,
                &build.platforms,
                &lower::NoImages,
            ),
            None,
        ),
    };
    Ok(Lowered {
        targets: lowered.map_err(|d| anyhow!("{d}"))?,
        client,
    })
}

/// What lowering is told about this build (the targets are given apart).
pub fn options(build: &Build, inputs: &Inputs) -> LowerOptions {
    LowerOptions {
        dockerfile_name: inputs.dockerfile_name.clone(),
        target: None,
        build_args: build.build_args.clone(),
        platform: build
            .platforms
            .first()
            .cloned()
            .unwrap_or_else(Platform::host),
        build_platform: Platform::host(),
        ignore_patterns: inputs.ignore.clone(),
        default_network: build.network,
        named_contexts: inputs.contexts.named.clone(),
        run_settings: build.run_settings.clone(),
    }
}
