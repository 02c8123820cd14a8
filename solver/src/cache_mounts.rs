//! Cache mounts that travel with the cache (`--cache-to …,cache-mounts=true`): the ids of
//! the plain `RUN --mount=type=cache` mounts of a graph, and the restore of an imported
//! mount's content the first time a step mounts it on this root (lazily: a build whose
//! steps all come from the cache fetches nothing).

use crate::error::{SolveError, StepFailure};
use crate::ops::mounts::cache_mount_dir;
use crate::options::SolveOptions;
use crate::services::Services;
use rbuild_graph::{BuildGraph, MountKind, Op, VertexId};
use std::collections::BTreeSet;

/// The ids of the cache mounts `v` uses that are not seeded from another vertex (those
/// are keyed by that vertex too and rebuilt from it).
pub fn plain_cache_mounts(graph: &BuildGraph, v: VertexId) -> Vec<String> {
    let Op::Exec(exec) = &graph.vertex(v).op else {
        return Vec::new();
    };
    exec.mounts
        .iter()
        .filter_map(|m| match &m.kind {
            MountKind::Cache { id, from: None, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Every plain cache mount id of `graph`.
pub fn graph_cache_mounts(graph: &BuildGraph) -> BTreeSet<String> {
    graph
        .iter()
        .flat_map(|(v, _)| plain_cache_mounts(graph, v))
        .collect()
}

/// Before step `v` runs: each cache mount it uses that this root has never had, and that
/// the imported cache carries, is fetched and unpacked into place.
pub(crate) async fn restore(
    services: &Services,
    opts: &SolveOptions,
    graph: &BuildGraph,
    v: VertexId,
) -> Result<(), SolveError> {
    let Some(imported) = &opts.imported else {
        return Ok(());
    };
    let store = &services.store;
    for id in plain_cache_mounts(graph, v) {
        let dir = cache_mount_dir(store.root(), &id);
        let Some(layer) = imported.mount_layer(&id).cloned() else {
            continue;
        };
        if dir.is_dir() {
            continue;
        }
        let fail = |e: std::io::Error| {
            SolveError::step(
                graph,
                v,
                StepFailure::CacheMount {
                    id: id.clone(),
                    source: std::io::Error::other(format!("restoring the imported content: {e}")),
                },
            )
        };
        services
            .ensure_layers(std::slice::from_ref(&layer), opts)
            .await
            .map_err(|e| fail(std::io::Error::other(e)))?;
        let (store, blob) = (store.clone(), store.blob_path(&layer.digest));
        let unpacked = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // Unpacked beside the store's other scratch dirs, then renamed into place: a
            // step of another build mounting it meanwhile sees all of it or none.
            let tmp = store
                .tmp_dir("cache-mount")
                .map_err(std::io::Error::other)?;
            let staged = tmp.path().join("content");
            rbuild_cache::extract_layer(&blob, &staged).map_err(std::io::Error::other)?;
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match std::fs::rename(&staged, &dir) {
                Ok(()) => Ok(()),
                // Restored (or created) by another step first: that one stays.
                Err(_) if dir.is_dir() => Ok(()),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("rename into {}: {e}", dir.display()),
                )),
            }
        })
        .await
        .map_err(|e| fail(std::io::Error::other(e)))?;
        unpacked.map_err(fail)?;
    }
    Ok(())
}
