//! The image resolver lowering asks for each `FROM` (and `--from` image): the local store,
//! or the image's registry when it is missing there (or always, with `--pull`).

use crate::shared::registry;
use rbuild_cache::Store;
use rbuild_cache::registry::RegistryClient;
use rbuild_frontend::lower::{ImageResolver, ResolveError, ResolvedImage};
use rbuild_graph::Platform;
use rbuild_graph::image::ImageConfig;
use std::cell::OnceCell;
use tokio::runtime::Runtime;

/// Only the manifest and config are fetched here, what lowering needs; the image-source
/// vertex fetches the layers when the solve reaches it. The manifest digest pins the
/// cache key.
pub struct StoreResolver<'a> {
    store: &'a Store,
    /// How to reach registries (the runtime and `--insecure-registry` hosts); None: only
    /// what is local.
    pull: Option<(&'a Runtime, &'a [String])>,
    always_pull: bool,
    /// Made on first use: setting up TLS reads every CA certificate, which a build of
    /// local images should not pay for. The solve reuses it to pull.
    client: OnceCell<RegistryClient>,
}

impl<'a> StoreResolver<'a> {
    /// Resolves in `store`, and through `pull` when given: in the registry when the image
    /// is not local, or every time when `always_pull`.
    pub fn new(
        store: &'a Store,
        pull: Option<(&'a Runtime, &'a [String])>,
        always_pull: bool,
    ) -> Self {
        StoreResolver {
            store,
            pull,
            always_pull,
            client: OnceCell::new(),
        }
    }

    /// The registry client, if a resolve needed one.
    pub fn into_client(self) -> Option<RegistryClient> {
        self.client.into_inner()
    }

    fn client(&self, insecure: &[String]) -> Result<&RegistryClient, ResolveError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        // `{:#}`: the whole anyhow chain, as the message always said.
        let c = registry::client(insecure)
            .map_err(|e| ResolveError::Client(format!("{e:#}").into()))?;
        Ok(self.client.get_or_init(|| c))
    }
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        let want = rbuild_solver::ops::source::registry_platform(platform);
        let local = match self.store.image_for(reference, &want) {
            Ok(img) => img,
            // An index here without the platform: the registry may have it.
            Err(rbuild_cache::CacheError::NoPlatform { .. }) => None,
            Err(e) => return Err(ResolveError::Store(e.into())),
        };
        // A local image of another platform is used only when the registry has nothing
        // better (a build for several platforms asks once per platform).
        let fits = local
            .as_ref()
            .is_some_and(|img| platform_fits(&img.config, platform));
        let (config, digest) = match (local, &self.pull) {
            (Some(img), _) if fits && !self.always_pull => (img.config, img.manifest_digest),
            (local, Some((runtime, insecure))) => {
                let client = self.client(insecure)?;
                let platform = rbuild_solver::ops::source::registry_platform(platform);
                let resolved =
                    runtime.block_on(rbuild_cache::pull::resolve(client, reference, &platform));
                match (resolved, local) {
                    (Ok(remote), _) => (remote.config, remote.manifest_digest),
                    // A local image is still usable when the registry cannot be reached.
                    (Err(_), Some(img)) => (img.config, img.manifest_digest),
                    (Err(e), None) => {
                        return Err(ResolveError::Pull {
                            reference: reference.to_string(),
                            error: e.into(),
                        });
                    }
                }
            }
            (Some(img), None) => (img.config, img.manifest_digest),
            (None, None) => return Ok(None),
        };
        let config: ImageConfig =
            serde_json::from_slice(&config).map_err(|error| ResolveError::Config {
                reference: reference.to_string(),
                error,
            })?;
        Ok(Some(ResolvedImage {
            digest: Some(digest),
            config,
        }))
    }
}

/// Whether an image whose config is `config` is for `platform` (a config that names no
/// platform fits any).
fn platform_fits(config: &[u8], platform: &Platform) -> bool {
    let want = rbuild_solver::ops::source::registry_platform(platform);
    rbuild_cache::oci::config_platform(config)
        .is_none_or(|have| rbuild_cache::registry::platform::matches(&want, &have))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_image_fits_its_own_platform() {
        let arm =
            br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let p = |a: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(str::to_string),
        };
        assert!(platform_fits(arm, &p("arm64", Some("v8"))));
        assert!(platform_fits(arm, &p("arm64", None)));
        assert!(!platform_fits(arm, &p("amd64", None)));
        assert!(platform_fits(b"{}", &p("amd64", None)));
    }
}
