//! Commands on the local image store: load, images, inspect, tag, rmi, prune.

use crate::flags::hiargs::{Global, Images, Inspect, Load, Prune, Rmi, Tag};
use crate::shared::store;
use anyhow::{Context, Result, anyhow, bail};
use rbuild_solver::progress::human_size;
use std::process::ExitCode;

/// Imports the images of an archive or layout; prints their names unless `-q`.
pub fn load(global: &Global, load: &Load) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let input = &load.input;
    let names = store
        .load(input)
        .with_context(|| format!("cannot load {}", input.display()))?;
    if !load.quiet {
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

/// Lists the stored images as docker does: a row per name, sorted.
pub fn images(global: &Global, images: &Images) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
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
    // Image indexes (builds for several platforms): the index digest, the platforms
    // where the size goes.
    let mut index_rows = Vec::new();
    for index in store.indexes()? {
        for t in &index.tags {
            let (repo, tag) = match t.rsplit_once(':') {
                Some((r, tg)) if !tg.contains('/') => (r.to_string(), tg.to_string()),
                _ => (t.clone(), "<none>".into()),
            };
            let platforms = index.platform_names().join(",");
            index_rows.push((repo, tag, short_id(&index.digest).to_string(), platforms));
        }
    }
    index_rows.sort();
    rows.sort();
    if images.quiet {
        for r in rows {
            println!("{}", r.2);
        }
        for r in index_rows {
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
    for (repo, tag, id, platforms) in index_rows {
        println!(
            "{repo:<40} {tag:<16} {id:<14} {:>10}  index: {platforms}",
            ""
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an image's digests, names, layers and config as one JSON object.
pub fn inspect(global: &Global, inspect: &Inspect) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let name = &inspect.image;
    if let Some(index) = store.index(name)? {
        let manifests: Vec<serde_json::Value> = index
            .manifests
            .iter()
            .map(|(d, p)| {
                serde_json::json!({
                    "Digest": d,
                    "Platform": rbuild_cache::registry::platform::name(p),
                })
            })
            .collect();
        let out = serde_json::json!({
            "Id": index.digest,
            "RepoTags": index.tags,
            "MediaType": "application/vnd.oci.image.index.v1+json",
            "Platforms": index.platform_names(),
            "Manifests": manifests,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let img = store.image(name)?.ok_or_else(|| {
        anyhow!(
            "no image {name:?} in {}; `rbuild images` lists them",
            global.root.display()
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

/// `rbuild tag SOURCE TARGET`.
pub fn tag(global: &Global, tag: &Tag) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let (source, target) = (&tag.source, &tag.target);
    store
        .tag_image(source, target)
        .with_context(|| format!("cannot tag {source} as {target}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Removes names; every name that is not there is reported together at the end.
pub fn rmi(global: &Global, rmi: &Rmi) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let mut missing = Vec::new();
    for n in &rmi.images {
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

/// Frees what no image needs, and the cache records the options let go (with `-a`, the
/// whole build cache; `--filter until=`, what was not used for that long;
/// `--keep-storage`, the least recently used until the rest fits).
pub fn prune(global: &Global, prune: &Prune) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let report = store.prune(&prune.options)?;
    let s = report.swept;
    println!(
        "Removed {} cache records, {} blobs, {} snapshots",
        s.records, s.blobs, s.snapshots
    );
    if let Some(left) = report.cache_bytes {
        println!("Build cache now: {}", human_size(left));
    }
    println!("Total reclaimed space: {}", human_size(s.bytes));
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
