//! `--cache-to type=local` merged with what the directory holds: builders sharing one
//! directory (a network file system, a CI cache volume) add their records to the cache
//! tagged there instead of replacing it. A lock file in the directory serialises the
//! read–merge–write of the builders on one host (and on file systems that pass `flock`
//! on). With `max-size`, blobs no tagged manifest names any more are removed.

use super::merge::{ExportOptions, now_ms};
use super::{
    CacheConfig, ExportSummary, MAX_CONFIG, MEDIA_TYPE_CACHE_CONFIG, RemoteCacheError,
    export_local, read_layout_blob,
};
use crate::Store;
use crate::error::IoContext;
use crate::oci::{parse_index, parse_manifest, ref_name};
use std::collections::HashSet;
use std::path::Path;

/// The lock file a merged local export holds while it reads and writes the directory.
pub const LOCK_FILE: &str = "rbuild-cache.lock";

/// The rbuild cache tagged exactly `tag` in the layout `dir`, if there is a readable one.
fn tagged_cache(dir: &Path, tag: &str) -> Option<CacheConfig> {
    let index = parse_index(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
    let desc = index
        .manifests()
        .iter()
        .find(|d| ref_name(d) == Some(tag))?;
    let manifest = read_layout_blob(dir, desc.digest().as_ref(), MAX_CONFIG).ok()?;
    let m = parse_manifest(&manifest).ok()?;
    if m.config().media_type().as_ref() != MEDIA_TYPE_CACHE_CONFIG {
        return None;
    }
    let config = read_layout_blob(dir, m.config().digest().as_ref(), MAX_CONFIG).ok()?;
    CacheConfig::parse(&config).ok()
}

/// Writes `cfg` to the layout `dest` under `tag`, merged with the cache already tagged
/// there (unless `merge=false`) and bounded by `max-size`. An unreadable old cache is
/// replaced, as an export without merging would.
pub fn export_local_merged(
    store: &Store,
    cfg: &CacheConfig,
    dest: &Path,
    tag: &str,
    opts: &ExportOptions,
) -> Result<ExportSummary, RemoteCacheError> {
    if !opts.merge {
        return export_local(store, cfg, dest, tag);
    }
    std::fs::create_dir_all(dest).ctx("create directory", dest)?;
    let lock_path = dest.join(LOCK_FILE);
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx("open", &lock_path)?;
    lock.lock().ctx("lock", &lock_path)?;
    let mut merged = cfg.clone();
    merged.touch_all(now_ms());
    if let Some(current) = tagged_cache(dest, tag) {
        merged.absorb(current);
    }
    if let Some(max) = opts.max_size {
        merged.bound(max);
    }
    let summary = export_local(store, &merged, dest, tag)?;
    if opts.max_size.is_some() {
        // What the bound dropped leaves the directory too.
        remove_unreferenced_blobs(dest)?;
    }
    drop(lock);
    Ok(summary)
}

/// Removes the blobs of the layout `dir` that no manifest tagged in its index.json names
/// (nor is one). Does nothing when a manifest cannot be read as an image manifest (an
/// index, a foreign document): what it names is then unknown.
fn remove_unreferenced_blobs(dir: &Path) -> Result<(), RemoteCacheError> {
    let Some(index) = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| parse_index(&b).ok())
    else {
        return Ok(());
    };
    let mut keep: HashSet<String> = HashSet::new();
    for d in index.manifests() {
        let Ok(bytes) = read_layout_blob(dir, d.digest().as_ref(), MAX_CONFIG) else {
            return Ok(());
        };
        let Ok(m) = parse_manifest(&bytes) else {
            return Ok(());
        };
        keep.insert(d.digest().digest().to_string());
        keep.insert(m.config().digest().digest().to_string());
        keep.extend(m.layers().iter().map(|l| l.digest().digest().to_string()));
    }
    let blobs = dir.join("blobs/sha256");
    let entries = std::fs::read_dir(&blobs).ctx("read directory", &blobs)?;
    for e in entries {
        let e = e.ctx("read directory", &blobs)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_blob = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_blob && !keep.contains(&name) {
            let p = e.path();
            std::fs::remove_file(&p).ctx("remove", &p)?;
        }
    }
    Ok(())
}
