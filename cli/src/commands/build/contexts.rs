//! `--build-context`s read before lowering: a directory checked and its `.dockerignore`
//! read; an `oci-layout://` tag resolved to its manifest digest in the layout's
//! index.json, and (once the store is open) that image imported into the store untagged,
//! so the solve finds it by digest like any local image.

use crate::flags::context_spec::{BuildContext, ContextSource};
use anyhow::{Context, Result, bail};
use rbuild_cache::Store;
use rbuild_frontend::lower::NamedContext;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The prefix of a named directory context's `Op::Local` name (the frontend's).
const LOCAL_PREFIX: &str = "context:";

/// The named contexts, read.
#[derive(Default)]
pub struct Contexts {
    /// What lowering is told, by name.
    pub named: BTreeMap<String, NamedContext>,
    /// The directories of named directory contexts, by their `Op::Local` name.
    pub dirs: BTreeMap<String, PathBuf>,
    /// OCI layouts to import: (name, layout dir, manifest digest).
    layouts: Vec<(String, PathBuf, String)>,
}

/// Checks each `--build-context` and reads what lowering needs of it.
pub fn read(given: &[BuildContext]) -> Result<Contexts> {
    let mut out = Contexts::default();
    for c in given {
        let name = &c.name;
        let named = match &c.source {
            ContextSource::Dir(dir) => {
                if !dir.is_dir() {
                    bail!(
                        "--build-context {name}={}: not a directory; give an existing directory (or docker-image://REF, oci-layout://PATH)",
                        dir.display()
                    );
                }
                let exclude =
                    rbuild_graph::dockerignore::read_ignore_file(dir, std::path::Path::new("-"))
                        .with_context(|| {
                            format!("cannot read the .dockerignore of build context {name}")
                        })?;
                out.dirs
                    .insert(format!("{LOCAL_PREFIX}{name}"), dir.clone());
                NamedContext::Dir { exclude }
            }
            ContextSource::Image(r) if r.eq_ignore_ascii_case("scratch") => NamedContext::Scratch,
            ContextSource::Image(r) => {
                let parsed =
                    rbuild_cache::registry::reference::Reference::parse(r).with_context(|| {
                        format!(
                            "--build-context {name}=docker-image://{r}: not a valid image reference"
                        )
                    })?;
                NamedContext::Image {
                    reference: parsed.to_string(),
                }
            }
            ContextSource::OciLayout { path, tag, digest } => {
                let tag = tag.as_deref().or(digest.is_none().then_some("latest"));
                let (_, found) = rbuild_cache::layout_entry(path, tag, digest.as_deref())
                    .with_context(|| {
                        format!("--build-context {name}=oci-layout://{}", path.display())
                    })?;
                out.layouts
                    .push((name.clone(), path.clone(), found.clone()));
                NamedContext::Image { reference: found }
            }
        };
        out.named.insert(name.clone(), named);
    }
    Ok(out)
}

impl Contexts {
    /// Imports the OCI layout images into `store` (untagged); each context then names the
    /// manifest imported, or the index (every Linux platform of it) when the layout's entry
    /// is one.
    pub fn import(&mut self, store: &Store) -> Result<()> {
        for (name, dir, digest) in &self.layouts {
            let imported = store.import_layout_image(dir, digest).with_context(|| {
                format!(
                    "--build-context {name}: cannot import the image {digest} of {}",
                    dir.display()
                )
            })?;
            self.named.insert(
                name.clone(),
                NamedContext::Image {
                    reference: imported,
                },
            );
        }
        Ok(())
    }
}
