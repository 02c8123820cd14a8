//! The build's history for explaining cache misses: which build this is (context,
//! Dockerfile, target), its last record loaded before the solve (this store's, else the
//! imported cache's), and this build's saved after it. Explanations never fail a build:
//! a record that cannot be read or written is a warning.

use super::actions::Plan;
use super::inputs::Inputs;
use crate::flags::hiargs::{Build, Dockerfile};
use rbuild_cache::Store;
use rbuild_cache::remote_cache::ImportedCache;
use rbuild_solver::explain::{BuildHistory, BuildIdent};
use std::path::Path;
use std::sync::Arc;

/// The identity of each target of `build`, in target order. The context is named by its
/// canonical path (two checkouts keep two histories); the Dockerfile by its path relative
/// to the context when it is inside it (so a record found in an exported cache matches
/// the same Dockerfile on another machine).
pub fn idents(build: &Build, inputs: &Inputs) -> Vec<BuildIdent> {
    let context = std::fs::canonicalize(&inputs.context).unwrap_or_else(|_| inputs.context.clone());
    let dockerfile = match &build.dockerfile {
        Dockerfile::Stdin => "-".to_string(),
        Dockerfile::File(path) => dockerfile_name(&context, path),
    };
    let context = context.to_string_lossy();
    let targets: Vec<&str> = if build.targets.is_empty() {
        vec![""]
    } else {
        build.targets.iter().map(String::as_str).collect()
    };
    targets
        .into_iter()
        .map(|t| BuildIdent::new(&context, &dockerfile, t))
        .collect()
}

fn dockerfile_name(context: &Path, path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match path.strip_prefix(context) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

/// The history of `plan`'s targets, or None (with a warning unless `quiet`) when the
/// store's records cannot be read.
pub fn load(
    build: &Build,
    inputs: &Inputs,
    store: &Store,
    plan: &Plan,
    imported: Option<&ImportedCache>,
) -> Option<Arc<BuildHistory>> {
    let targets: Vec<_> = plan
        .exports
        .iter()
        .copied()
        .zip(idents(build, inputs))
        .collect();
    match BuildHistory::load(store, plan.graph.clone(), &targets, imported) {
        Ok(h) => Some(Arc::new(h)),
        Err(e) => {
            if !build.quiet {
                eprintln!(
                    "WARNING: cannot read the last build's record ({e}); cache misses are not explained"
                );
            }
            None
        }
    }
}

/// Saves this build's record for the next one; a failure is a warning.
pub fn save(history: Option<&BuildHistory>, store: &Store, quiet: bool) {
    if let Some(h) = history
        && let Err(e) = h.save(store)
        && !quiet
    {
        eprintln!(
            "WARNING: cannot save this build's record ({e}); the next build cannot explain its cache misses"
        );
    }
}
