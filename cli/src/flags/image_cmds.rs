//! The settings of the store's commands in docker's shapes (`images`, `inspect`, `history`,
//! `rmi`, `load`, `save`, `image prune`), made from their low-level arguments: filters
//! read, values docker allows but rbuild cannot honour refused with what to use instead.

use super::lowargs::{HistoryArgs, ImagePruneArgs, ImagesArgs, InspectArgs, LoadArgs, RmiArgs};
use super::lowargs::{PruneArgs, SaveArgs};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// `rbuild load`.
#[derive(Debug)]
pub struct Load {
    /// None: stdin.
    pub input: Option<PathBuf>,
}

/// `rbuild save`.
#[derive(Debug)]
pub struct Save {
    pub image: String,
    /// None: stdout.
    pub output: Option<PathBuf>,
}

/// `rbuild images`.
#[derive(Debug, Default)]
pub struct Images {
    /// `REPOSITORY[:TAG]` patterns (the positional and `reference=` filters); any may match.
    pub references: Vec<String>,
    /// `dangling=true|false`.
    pub dangling: Option<bool>,
    pub quiet: bool,
    pub no_trunc: bool,
    pub digests: bool,
    pub format: Option<String>,
    /// `-a`: also the untagged platform images of image indexes.
    pub all: bool,
}

/// `rbuild inspect`.
#[derive(Debug)]
pub struct Inspect {
    pub images: Vec<String>,
    pub format: Option<String>,
}

/// `rbuild history`.
#[derive(Debug)]
pub struct History {
    pub image: String,
    pub quiet: bool,
    pub no_trunc: bool,
    pub human: bool,
    pub format: Option<String>,
}

/// `rbuild rmi`.
#[derive(Debug)]
pub struct Rmi {
    pub images: Vec<String>,
    /// `-f`: an ID with several names goes with all of them; missing names are no error.
    pub force: bool,
}

pub fn load(a: LoadArgs) -> Load {
    let _ = a.quiet;
    Load {
        input: a.input.filter(|p| p.as_os_str() != "-"),
    }
}

pub fn save(a: SaveArgs, stdout_is_terminal: bool) -> Result<Save> {
    if a.images.len() > 1 {
        bail!(
            "rbuild save writes one image per archive: run it once per image ({})",
            a.images.join(", ")
        );
    }
    let output = a.output.filter(|p| p.as_os_str() != "-");
    if output.is_none() && stdout_is_terminal {
        bail!(
            "refusing to write the image archive to a terminal: give -o FILE or redirect stdout (> image.tar)"
        );
    }
    Ok(Save {
        image: a.images.into_iter().next().unwrap_or_default(),
        output,
    })
}

pub fn images(a: ImagesArgs) -> Result<Images> {
    let mut out = Images {
        all: a.all,
        references: a.reference.into_iter().collect(),
        quiet: a.quiet,
        no_trunc: a.no_trunc,
        digests: a.digests,
        format: a.format,
        ..Images::default()
    };
    for f in &a.filters {
        match f.split_once('=') {
            Some(("reference", p)) => out.references.push(p.to_string()),
            Some(("dangling", "true")) => out.dangling = Some(true),
            Some(("dangling", "false")) => out.dangling = Some(false),
            _ => bail!(
                "--filter {f:?}: rbuild's images takes reference=PATTERN and dangling=true|false"
            ),
        }
    }
    Ok(out)
}

pub fn inspect(a: InspectArgs) -> Result<Inspect> {
    if let Some(k) = a.kind.as_deref().filter(|k| *k != "image") {
        bail!("--type {k}: rbuild has images only (no containers, networks or volumes)");
    }
    Ok(Inspect {
        images: a.images,
        format: a.format,
    })
}

pub fn history(a: HistoryArgs) -> History {
    History {
        image: a.image,
        quiet: a.quiet,
        no_trunc: a.no_trunc,
        human: a.human,
        format: a.format,
    }
}

pub fn rmi(a: RmiArgs) -> Rmi {
    Rmi {
        images: a.images,
        force: a.force,
    }
}

/// `image prune`: what no tagged image needs, as `prune`; `-a` would remove every image.
pub fn image_prune(a: ImagePruneArgs) -> Result<PruneArgs> {
    if a.all {
        bail!(
            "image prune -a would remove every image here (rbuild has no containers that keep one in use): remove images by name with rbuild rmi NAME…, then rbuild prune"
        );
    }
    Ok(PruneArgs {
        all: false,
        filters: a.filters,
        keep_storage: None,
        force: a.force,
    })
}

/// `prune`'s flags, as `docker builder prune` takes them.
pub fn prune_options(a: PruneArgs) -> Result<rbuild_cache::PruneOptions> {
    use rbuild_cache::gc::units;
    let mut until = None;
    for f in &a.filters {
        match f.split_once('=') {
            Some(("until", d)) => {
                until = Some(units::parse_duration(d).with_context(|| format!("--filter {f}"))?)
            }
            _ => bail!("--filter {f:?}: rbuild's prune takes only until=DURATION (e.g. until=24h)"),
        }
    }
    let keep_storage = a
        .keep_storage
        .as_deref()
        .map(units::parse_size)
        .transpose()
        .context("--keep-storage")?;
    let _ = a.force;
    Ok(rbuild_cache::PruneOptions {
        all: a.all,
        until,
        keep_storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_refusals() {
        let i = images(ImagesArgs {
            reference: Some("app".into()),
            quiet: false,
            all: true,
            no_trunc: false,
            digests: false,
            filters: vec!["reference=base:*".into(), "dangling=false".into()],
            format: None,
        })
        .unwrap();
        assert_eq!(i.references, ["app", "base:*"]);
        assert_eq!(i.dangling, Some(false));
        let bad = ImagesArgs {
            reference: None,
            quiet: false,
            all: false,
            no_trunc: false,
            digests: false,
            filters: vec!["label=x".into()],
            format: None,
        };
        assert!(images(bad).is_err());
        let two = SaveArgs {
            output: None,
            images: vec!["a".into(), "b".into()],
        };
        assert!(save(two, false).is_err());
        let one = |o: Option<&str>| SaveArgs {
            output: o.map(PathBuf::from),
            images: vec!["a".into()],
        };
        assert!(save(one(None), true).is_err());
        assert!(save(one(Some("-")), false).unwrap().output.is_none());
        assert!(save(one(Some("x.tar")), true).is_ok());
    }
}
