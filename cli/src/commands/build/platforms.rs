//! A build for several platforms, after the solve: each target's images (one per
//! platform, exported without a name) become one image index stored under the target's
//! tags; `--push` sends each index as one reference; `--output type=oci` writes the index,
//! `type=local` one directory per platform (`linux_arm64_v8/`), and what holds one
//! platform only (`type=docker`, `type=tar`) is refused before the build starts.

use super::{attestations, outputs};
use crate::flags::hiargs::Build;
use crate::flags::output_spec::Kind;
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::index::StoredIndex;
use rbuild_cache::push::push_index;
use rbuild_cache::registry::RegistryClient;
use rbuild_cache::{Store, StoredImage};
use rbuild_graph::{BuildGraph, Platform};
use std::io::Write;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Whether the build makes an index (several platforms, or attestations beside the image).
pub fn several(build: &Build) -> bool {
    build.platforms.len() > 1 || build.attestations.any()
}

/// Refuses, before anything runs, what cannot hold several platforms (or attestations).
pub fn check(build: &Build) -> Result<()> {
    if !several(build) {
        return Ok(());
    }
    let list: Vec<String> = build.platforms.iter().map(|p| p.to_string()).collect();
    for output in &build.outputs {
        let kind = match output.kind {
            Kind::Docker(_) => "docker",
            Kind::Tar(_) => "tar",
            Kind::Oci(_) | Kind::Local(_) | Kind::Store => continue,
        };
        if build.platforms.len() <= 1 {
            bail!(
                "--output type={kind} holds one image and no attestations, and this build adds them (--provenance, --sbom or --attest): use type=oci (an image index), or leave the attestations out"
            );
        }
        bail!(
            "--output type={kind} holds one platform, and this build makes {}: use type=oci (an image index) or type=local (a directory per platform), or build one --platform",
            list.join(", ")
        );
    }
    Ok(())
}

/// One index per target, of its image for each platform, stored under its tags.
/// `built` is platform-major, as lowering gave the targets.
pub fn make_indexes(
    store: &Store,
    build: &Build,
    built: &[StoredImage],
    graph: &BuildGraph,
    times: &attestations::Times,
) -> Result<Vec<StoredIndex>> {
    let host = [Platform::host()];
    let platforms = match build.platforms.as_slice() {
        [] => &host[..],
        given => given,
    };
    let targets = built.len() / platforms.len();
    let mut out = Vec::new();
    for t in 0..targets {
        let tags = build.target_tags.get(t).cloned().unwrap_or_default();
        let mut manifests = Vec::new();
        let mut attested = Vec::new();
        for (p, platform) in platforms.iter().enumerate() {
            let Some(img) = built.get(p * targets + t) else {
                continue;
            };
            manifests.push(img.manifest_digest.clone());
            let name = tags.first().map(String::as_str);
            if let Some(a) =
                attestations::for_image(store, build, graph, times, img, platform, name)?
            {
                attested.push(a);
            }
        }
        let digest = store
            .put_index_with(&manifests, &attested, &tags)
            .context("cannot store the image index")?;
        let index = match tags.first() {
            Some(tag) => store.index(tag)?,
            None => store.index(&digest)?,
        }
        .ok_or_else(|| anyhow!("the index {digest} is missing from the store"))?;
        if !build.quiet {
            eprintln!(
                "image index {digest} ({}{}){}",
                index.platform_names().join(", "),
                match index.attestations.len() {
                    0 => String::new(),
                    n => format!("; {n} attestation manifest(s)"),
                },
                if tags.is_empty() {
                    String::new()
                } else {
                    format!(" named {}", tags.join(", "))
                }
            );
        }
        out.push(index);
    }
    Ok(out)
}

/// `--push`: every tag of every target, its index as one reference.
pub fn push(
    runtime: &Runtime,
    client: &RegistryClient,
    store: &Store,
    build: &Build,
    indexes: &[StoredIndex],
) -> Result<()> {
    for (index, tags) in indexes.iter().zip(&build.target_tags) {
        for tag in tags {
            let report = runtime
                .block_on(push_index(store, client, index, tag, Arc::new(|_| {})))
                .with_context(|| format!("cannot push {tag}"))?;
            if !build.quiet {
                eprintln!(
                    "pushed {tag}: index {} ({} blob(s) uploaded, {} already present, {} mounted)",
                    report.manifest_digest, report.pushed, report.skipped, report.mounted
                );
            }
        }
    }
    Ok(())
}

/// The last target's `--output`s and `--iidfile` (the index digest); `-q` prints each
/// index digest.
pub fn finish(
    store: &Store,
    build: &Build,
    built: &[StoredImage],
    indexes: &[StoredIndex],
) -> Result<()> {
    if build.quiet {
        for index in indexes {
            println!("{}", index.digest);
        }
    }
    let index = indexes
        .last()
        .ok_or_else(|| anyhow!("no target was built"))?;
    let tags = build.target_tags.last().cloned().unwrap_or_default();
    let targets = built.len() / build.platforms.len().max(1);
    for output in &build.outputs {
        match &output.kind {
            Kind::Store => {}
            Kind::Oci(dest) => {
                let mut w = outputs::open(dest)?;
                store.write_oci_index_archive(index, &tags, &mut w)?;
                w.flush()?;
            }
            // One platform (an index for its attestations): its files, as without them.
            Kind::Local(_) if build.platforms.len() <= 1 => {
                if let Some(image) = built.last() {
                    outputs::write(store, image, &tags, &output.kind)?;
                }
            }
            Kind::Local(dest) => {
                for (p, platform) in build.platforms.iter().enumerate() {
                    let Some(image) = built.get(p * targets + targets - 1) else {
                        continue;
                    };
                    let dir = dest.join(platform.to_string().replace('/', "_"));
                    outputs::write(store, image, &tags, &Kind::Local(dir))?;
                }
            }
            Kind::Docker(_) | Kind::Tar(_) => check(build)?,
        }
    }
    if let Some(path) = &build.iidfile {
        std::fs::write(path, &index.digest)
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    Ok(())
}
