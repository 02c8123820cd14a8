//! The image resolver lowering asks for each `FROM` (and `--from` image): the local store,
//! or the image's registry when it is missing there (or always, with `--pull`).

use crate::shared::registry;
use crate::shared::suggest::closest;
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
    /// The Dockerfile's stage names, for "did you mean stage build" when `--from=buidl`
    /// is no image either.
    stages: Vec<String>,
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
            stages: Vec::new(),
        }
    }

    /// Knows the Dockerfile's stage names (`FROM … AS NAME`) to suggest one.
    pub fn with_stages_of(mut self, source: &str) -> Self {
        self.stages = stage_names(source);
        self
    }

    /// What `reference` may have meant, when pulling it failed: a stage of the Dockerfile
    /// or a local image with a close name.
    fn hint(&self, reference: &str) -> Option<String> {
        let familiar = rbuild_cache::familiar_name(reference);
        let bare = familiar.strip_suffix(":latest").unwrap_or(familiar);
        if let Some(stage) = closest(bare, self.stages.iter().map(String::as_str)) {
            return Some(format!("did you mean the stage {stage} (--from={stage})?"));
        }
        let local = self.store.images().ok()?;
        let names: Vec<&str> = local
            .iter()
            .flat_map(|i| i.tags.iter().map(|t| rbuild_cache::familiar_name(t)))
            .collect();
        close_name(familiar, &names).map(|n| format!("did you mean the local image {n}?"))
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
                        let error = match self.hint(reference) {
                            Some(h) => format!("{h} (the registry: {e})").into(),
                            None => e.into(),
                        };
                        return Err(ResolveError::Pull {
                            reference: reference.to_string(),
                            error,
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

/// `name:tag` → (name, tag); `latest` when there is no tag.
fn split_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (name, "latest"),
    }
}

/// A local name that `want` looks like a typo of: the same repository and a close tag (of
/// three characters or more: `x:2` is no typo of `x:1`), or the same tag and a close
/// repository.
fn close_name<'a>(want: &str, names: &[&'a str]) -> Option<&'a str> {
    let (repo, tag) = split_tag(want);
    names.iter().copied().find(|n| {
        let (r, t) = split_tag(n);
        if r == repo {
            tag.len() >= 3 && t != tag && closest(tag, [t]).is_some()
        } else {
            t == tag && closest(repo, [r]).is_some()
        }
    })
}

/// The names of a Dockerfile's stages (`FROM image AS name`); none when it does not parse.
pub fn stage_names(source: &str) -> Vec<String> {
    let Ok(df) = rbuild_frontend::parser::parse(source) else {
        return Vec::new();
    };
    df.nodes
        .iter()
        .filter(|n| n.keyword == "from")
        .filter_map(|n| match n.args.as_slice() {
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_lowercase()),
            _ => None,
        })
        .collect()
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
    fn typos_of_local_names() {
        let local = [
            "bbase:latest",
            "x:1",
            "busybox:latest",
            "127.0.0.1:5000/app:1",
        ];
        assert_eq!(close_name("bbase:lates", &local), Some("bbase:latest"));
        assert_eq!(close_name("busybx:latest", &local), Some("busybox:latest"));
        assert_eq!(
            close_name("127.0.0.1:5000/ap:1", &local),
            Some("127.0.0.1:5000/app:1")
        );
        assert_eq!(close_name("x:2", &local), None);
        assert_eq!(close_name("other:latest", &local), None);
    }

    #[test]
    fn stages_are_named_by_as() {
        let df = "FROM busybox AS Build\nRUN true\nFROM build as test\nFROM scratch\n";
        assert_eq!(stage_names(df), ["build", "test"]);
    }

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
