//! The build's cache glue: the metadata of every `--cache-from` source read before the
//! solve (lazily: no layer blob), and the `--cache-to` exports written after it.

use crate::flags::cache_spec::{CacheFrom, CacheTo};
use crate::flags::hiargs::Build;
use anyhow::{Context, Result, bail};
use rbuild_cache::Store;
use rbuild_cache::registry::{Reference, RegistryClient};
use rbuild_cache::remote_cache::{self, CacheConfig, CacheSource, ImportedCache};
use rbuild_graph::{BuildGraph, VertexId};
use rbuild_solver::cache_export::{CacheMode, export_records};
use rbuild_solver::cache_mounts::graph_cache_mounts;
use rbuild_solver::ops::mounts::cache_mount_dir;
use rbuild_solver::{Outcome, SolveOptions, Solver};
use std::collections::HashMap;
use std::sync::Arc;

/// Before the solve: the `--cache-from` sources, unless `--no-cache` (or there is no
/// registry client, which a build with `--cache-from` always has). Warnings go to stderr.
pub fn import_for(
    build: &Build,
    runtime: &tokio::runtime::Runtime,
    client: Option<&RegistryClient>,
) -> Option<Arc<ImportedCache>> {
    let client = client.filter(|_| !build.cache.from.is_empty() && !build.no_cache)?;
    import(runtime, client, &build.cache.from, &mut |w| {
        eprintln!("{w}")
    })
}

/// Step 5, after the solve: the `--cache-to` exports, then what the import brought in,
/// noted unless `-q`. Outcomes are remembered for cache records imported lazily.
pub fn export_for(build: &Build, store: &Store, solved: &Built) -> Result<()> {
    if build.cache.to.is_empty() && build.cache.from.is_empty() {
        return Ok(());
    }
    export(store, solved, &build.cache.to, &mut |n| {
        if !build.quiet {
            eprintln!("{n}")
        }
    })?;
    solved.solver.remember_outcomes(solved.outcomes)?;
    if let Some(imported) = &solved.opts.imported
        && !build.quiet
    {
        eprintln!("{}", import_summary(imported));
    }
    Ok(())
}

/// Reads the metadata of every `--cache-from` source (no layer blob). A source that cannot
/// be read is a warning and the build goes on without it, as with docker.
pub fn import(
    runtime: &tokio::runtime::Runtime,
    client: &RegistryClient,
    from: &[CacheFrom],
    warn: &mut dyn FnMut(String),
) -> Option<Arc<ImportedCache>> {
    if from.is_empty() {
        return None;
    }
    let mut imported = ImportedCache::new();
    for spec in from {
        let got = match spec {
            CacheFrom::Local { src, tag } => remote_cache::load_local(src, tag)
                .map(|cfg| (CacheSource::Local(src.clone()), cfg))
                .map_err(anyhow::Error::from),
            CacheFrom::Registry { reference } => Reference::parse(reference)
                .map_err(anyhow::Error::from)
                .and_then(|r| {
                    let cfg = runtime
                        .block_on(remote_cache::load_registry_shared(client, &r))
                        .map_err(anyhow::Error::from)?;
                    let source = CacheSource::Registry {
                        client: client.clone(),
                        reference: r,
                    };
                    Ok((source, cfg))
                }),
        };
        match got {
            Ok((source, cfg)) => imported.add(source, cfg),
            Err(e) => warn(format!(
                "WARNING: cannot import cache from {}: {e}; building without it",
                describe_from(spec)
            )),
        }
    }
    Some(Arc::new(imported))
}

fn describe_from(spec: &CacheFrom) -> String {
    match spec {
        CacheFrom::Local { src, .. } => format!("type=local,src={}", src.display()),
        CacheFrom::Registry { reference } => format!("type=registry,ref={reference}"),
    }
}

/// The one-line summary printed after a build that imported cache.
pub fn import_summary(imported: &ImportedCache) -> String {
    let (blobs, bytes) = imported.fetched();
    format!(
        "imported cache: {} records, fetched {blobs} blobs ({bytes} bytes)",
        imported.len()
    )
}

/// What a build hands the cache export.
pub struct Built<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub client: &'a RegistryClient,
    pub solver: &'a Solver,
    pub opts: &'a SolveOptions,
    pub graph: &'a BuildGraph,
    pub outcomes: &'a HashMap<VertexId, Outcome>,
    /// Where `mode=min` starts: the last target's final step, one per platform.
    pub roots: &'a [VertexId],
}

impl Built<'_> {
    /// The records `mode` exports, with the explanation records of this build (so a
    /// build importing them can say why a step missed against it) and, with
    /// `cache_mounts`, the contents of the build's cache mounts (one layer each).
    fn records(&self, mode: CacheMode, store: &Store, cache_mounts: bool) -> Result<CacheConfig> {
        let mut records = std::collections::BTreeMap::new();
        for root in self.roots {
            records.extend(export_records(self.graph, self.outcomes, *root, mode)?);
        }
        let mut cfg = CacheConfig::new(records);
        if let Some(h) = &self.opts.history {
            cfg.explain = h.exported(store);
        }
        if cache_mounts {
            for id in graph_cache_mounts(self.graph) {
                let dir = cache_mount_dir(store.root(), &id);
                if !dir.is_dir() {
                    continue;
                }
                let layer = store
                    .archive_dir(&dir)
                    .with_context(|| format!("cannot archive cache mount {id:?}"))?;
                if let Some(layer) = layer {
                    cfg.mounts.insert(id, layer);
                }
            }
        }
        Ok(cfg)
    }

    /// Fetches the imported blobs an export needs and the destination lacks.
    fn fetch(&self, needed: &[rbuild_cache::Layer]) -> Result<()> {
        self.runtime
            .block_on(self.solver.ensure_layers(needed, self.opts))
            .context("cannot get the layers to export")
    }
}

/// Runs the local and registry `--cache-to` exports (inline metadata is written by the
/// export vertex, with the image).
/// A failure fails the build unless the entry says `ignore-error=true`.
pub fn export(
    store: &Store,
    built: &Built,
    to: &[CacheTo],
    note: &mut dyn FnMut(String),
) -> Result<()> {
    for spec in to {
        let (ignore_error, what) = match spec {
            CacheTo::Inline => continue,
            CacheTo::Local {
                dest, ignore_error, ..
            } => (*ignore_error, format!("type=local,dest={}", dest.display())),
            CacheTo::Registry {
                reference,
                ignore_error,
                ..
            } => (*ignore_error, format!("type=registry,ref={reference}")),
        };
        let result = export_one(store, built, spec);
        match result {
            Ok(s) => note(format!(
                "exported cache to {what}: {} records, {} blobs, manifest {}",
                s.records, s.blobs, s.manifest_digest
            )),
            Err(e) if ignore_error => note(format!(
                "WARNING: cache export to {what} failed (ignored): {e:#}"
            )),
            Err(e) => return Err(e.context(format!("cannot export the cache to {what}"))),
        }
    }
    Ok(())
}

fn export_one(store: &Store, built: &Built, spec: &CacheTo) -> Result<remote_cache::ExportSummary> {
    match spec {
        CacheTo::Inline => bail!("inline cache is written with the image"),
        CacheTo::Local {
            dest,
            tag,
            mode,
            share,
            cache_mounts,
            ..
        } => {
            let cfg = built.records(*mode, store, *cache_mounts)?;
            built.fetch(&remote_cache::needed_for_local(store, &cfg, dest))?;
            Ok(remote_cache::export_local_merged(
                store, &cfg, dest, tag, share,
            )?)
        }
        CacheTo::Registry {
            reference,
            mode,
            share,
            cache_mounts,
            ..
        } => {
            let cfg = built.records(*mode, store, *cache_mounts)?;
            let r = Reference::parse(reference)?;
            let needed = built.runtime.block_on(remote_cache::needed_for_registry(
                store,
                built.client,
                &r,
                &cfg,
            ))?;
            built.fetch(&needed)?;
            Ok(built
                .runtime
                .block_on(remote_cache::export_registry_shared(
                    store,
                    built.client,
                    &r,
                    &cfg,
                    share,
                ))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_sources_are_warnings() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let client = RegistryClient::new(Default::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut warnings = Vec::new();
        let imported = import(
            &rt,
            &client,
            &[CacheFrom::Local {
                src: dir.path().join("none"),
                tag: "latest".into(),
            }],
            &mut |w| warnings.push(w),
        )
        .unwrap();
        assert!(imported.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("cannot import cache from type=local"),
            "{}",
            warnings[0]
        );
        assert!(import(&rt, &client, &[], &mut |_| {}).is_none());
    }
}
