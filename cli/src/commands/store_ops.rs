//! Commands that change or move what the store holds: `load` (a file or stdin), `save`,
//! `tag`, `rmi` (names or IDs), `prune` (docker's `builder prune`) and `system df`.

use crate::flags::hiargs::{Global, Load, Prune, Rmi, Save, Tag};
use crate::shared::store;
use anyhow::{Context, Result, bail};
use rbuild_solver::progress::human_size;
use std::collections::HashSet;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

/// Imports the images of an archive or layout (stdin without `-i`); prints their names.
pub fn load(global: &Global, load: &Load) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let names = match &load.input {
        Some(input) => store
            .load(input)
            .with_context(|| format!("cannot load {}", input.display()))?,
        None => {
            if std::io::stdin().is_terminal() {
                bail!(
                    "rbuild load reads an image archive from stdin, which is a terminal: give -i FILE or redirect it (rbuild load < image.tar)"
                );
            }
            let tmp = store.tmp_dir("load-stdin")?;
            let path = tmp.path().join("archive");
            let mut file = std::fs::File::create(&path)?;
            std::io::copy(&mut std::io::stdin().lock(), &mut file)
                .context("cannot read the archive from stdin")?;
            drop(file);
            store
                .load(&path)
                .context("cannot load the archive read from stdin")?
        }
    };
    for n in names {
        println!("Loaded image: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one image as a `docker save` tarball, to `-o FILE` or stdout.
pub fn save(global: &Global, save: &Save) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let name = &save.image;
    let Some(img) = store.image(name)? else {
        bail!(
            "no image {name:?} in {}; `rbuild images` lists them",
            global.root.display()
        );
    };
    // Saved by a name, the archive carries that name; by ID, none (as docker).
    let wanted = rbuild_cache::normalize_tag(name);
    let tags: Vec<String> = img.tags.iter().filter(|t| **t == wanted).cloned().collect();
    match &save.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = BufWriter::new(file);
            store.write_docker_archive(&img, &tags, &mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        None => {
            let mut w = BufWriter::new(std::io::stdout().lock());
            store.write_docker_archive(&img, &tags, &mut w)?;
            w.flush()?;
        }
    }
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

/// Removes names, or every name of an image given by ID (with `-f` when it has several);
/// every name that is not there is reported together at the end (not with `-f`).
pub fn rmi(global: &Global, rmi: &Rmi) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let mut missing = Vec::new();
    for n in &rmi.images {
        if store.remove_tag(n)? {
            println!("Untagged: {n}");
            continue;
        }
        let Some(img) = store.image(n)? else {
            missing.push(n.as_str());
            continue;
        };
        if img.tags.len() > 1 && !rmi.force {
            bail!(
                "image {n} has several names ({}): remove them by name, or add -f to remove them all",
                img.tags.join(", ")
            );
        }
        if img.tags.is_empty() {
            bail!("image {n} has no name to remove: rbuild prune frees unnamed images");
        }
        for t in &img.tags {
            if store.remove_tag(t)? {
                println!("Untagged: {t}");
            }
        }
    }
    if !missing.is_empty() && !rmi.force {
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

/// Bytes on disk under `dir` (each hard-linked file once).
fn disk_bytes(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            total += disk_bytes(&e.path(), seen);
        } else if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
    }
    total
}

/// `system df`: what images take (their blobs, each once) and what the rest of the store
/// (the build cache: snapshots, records, untagged blobs) takes.
pub fn disk_usage(global: &Global) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let images = store.images()?;
    let mut blobs = HashSet::new();
    let mut image_bytes = 0;
    for img in &images {
        for l in &img.layers {
            if blobs.insert(l.digest.clone()) {
                image_bytes += l.size;
            }
        }
    }
    let named = images.iter().filter(|i| !i.tags.is_empty()).count();
    let total = disk_bytes(&global.root, &mut HashSet::new());
    let records = std::fs::read_dir(global.root.join("records")).map_or(0, |d| d.count());
    let cache = total.saturating_sub(image_bytes);
    let rows = [
        "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE".to_string(),
        format!(
            "Images\t{}\t{named}\t{}\t0B (0%)",
            images.len(),
            human_size(image_bytes)
        ),
        format!(
            "Build Cache\t{records}\t0\t{}\t{}",
            human_size(cache),
            human_size(cache)
        ),
    ];
    crate::shared::template::print(&crate::shared::template::align(&rows))?;
    Ok(ExitCode::SUCCESS)
}
