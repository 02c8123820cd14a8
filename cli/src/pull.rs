//! `rbuild pull`: a graph of one image source, solved: the manifest is resolved in the
//! registry, the vertex fetches the layers the store lacks.

use crate::args::Progress;
use crate::oneshot::{self, Show, Source};
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_cache::registry::{ClientOptions, RegistryClient};
use rbuild_graph::BuildGraph;
use rbuild_solver::SolveOptions;
use std::path::Path;
use std::process::ExitCode;

pub fn client(insecure: &[String]) -> Result<RegistryClient> {
    RegistryClient::new(ClientOptions {
        insecure: insecure.to_vec(),
        ..ClientOptions::default()
    })
    .context("cannot set up the registry client")
}

pub fn pull_cmd(
    root: &Path,
    reference: &str,
    insecure: &[String],
    quiet: bool,
) -> Result<ExitCode> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut graph = BuildGraph::new();
    let source = Source {
        runtime: &runtime,
        store: &store,
        registry: Some(insecure),
        always: true,
    };
    let Some((v, client)) = oneshot::image_vertex(&mut graph, &source, reference)
        .with_context(|| format!("cannot pull {reference}"))?
    else {
        bail!("cannot pull {reference}: no registry answered for it");
    };
    // Always fetched: a cache record of the same manifest must not stand in for it (the
    // point is the image and its tag in the store).
    let opts = SolveOptions {
        no_cache: true,
        ..Default::default()
    };
    let show = Show {
        progress: if quiet {
            Progress::Quiet
        } else {
            Progress::Plain
        },
        hidden: vec![],
        cached: true,
    };
    let outcomes = oneshot::solve(&runtime, &store, graph, &[v], opts, client, show)
        .map_err(|e| anyhow!("cannot pull {reference}: {e}"))?;
    let digest = outcomes
        .get(&v)
        .and_then(|o| o.image.clone())
        .unwrap_or_default();
    if quiet {
        println!("{reference}");
    } else {
        println!("{reference}: pulled, digest {digest}");
    }
    Ok(ExitCode::SUCCESS)
}
