//! Store commands: load, images, inspect, rmi, prune.

use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_solver::progress::human_size;
use std::path::Path;
use std::process::ExitCode;

fn open(root: &Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("cannot open the store at {}", root.display()))
}

pub fn load(root: &Path, input: &Path, quiet: bool) -> Result<ExitCode> {
    let store = open(root)?;
    let names = store
        .load(input)
        .with_context(|| format!("cannot load {}", input.display()))?;
    if !quiet {
        for n in names {
            println!("Loaded image: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sha256:abcdef…` → the 12 hex digits docker shows as IMAGE ID.
fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub fn images(root: &Path, quiet: bool) -> Result<ExitCode> {
    let store = open(root)?;
    let mut rows = Vec::new();
    for img in store.images()? {
        let size: u64 = img.layers.iter().map(|l| l.size).sum();
        let tags = if img.tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            img.tags.clone()
        };
        for t in tags {
            let (repo, tag) = match t.rsplit_once(':') {
                Some((r, tg)) if !tg.contains('/') => (r.to_string(), tg.to_string()),
                _ => (t.clone(), "<none>".into()),
            };
            rows.push((repo, tag, short_id(&img.config_digest).to_string(), size));
        }
    }
    rows.sort();
    if quiet {
        for r in rows {
            println!("{}", r.2);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<40} {:<16} {:<14} {:>10}",
        "REPOSITORY", "TAG", "IMAGE ID", "SIZE"
    );
    for (repo, tag, id, size) in rows {
        println!("{repo:<40} {tag:<16} {id:<14} {:>10}", human_size(size));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(root: &Path, name: &str) -> Result<ExitCode> {
    let store = open(root)?;
    let img = store.image(name)?.ok_or_else(|| {
        anyhow!(
            "no image {name:?} in {}; `rbuild images` lists them",
            root.display()
        )
    })?;
    let config: serde_json::Value =
        serde_json::from_slice(&img.config).context("the stored config is not valid JSON")?;
    let out = serde_json::json!({
        "Id": img.config_digest,
        "RepoTags": img.tags,
        "ManifestDigest": img.manifest_digest,
        "Layers": img.layers,
        "Config": config,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(root: &Path, names: &[String]) -> Result<ExitCode> {
    let store = open(root)?;
    let mut missing = Vec::new();
    for n in names {
        if store.remove_tag(n)? {
            println!("Untagged: {n}");
        } else {
            missing.push(n.as_str());
        }
    }
    if !missing.is_empty() {
        bail!("no such image: {}", missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(root: &Path, all: bool) -> Result<ExitCode> {
    let store = open(root)?;
    let freed = store.prune(all)?;
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_like_docker() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
