//! `rbuild push`: a local image and the push of it, as one small graph.
//!
//! A push is a vertex (see `rbuild_solver::ops::push`); its progress in plain mode reads
//! like a build step: `#N pushing REF`, one line per blob (`pushed`, `exists`,
//! `mounted`), `pushing manifest …`, a summary, `#N DONE 1.2s`.

use crate::flags::hiargs::{Global, Push};
use crate::shared::oneshot::{self, Show, Source};
use crate::shared::{registry, runtime, store};
use anyhow::{Result, anyhow, bail};
use rbuild_graph::BuildGraph;
use rbuild_graph::actions;
use rbuild_solver::SolveOptions;
use std::process::ExitCode;

/// Pushes a stored image; prints docker push's last line.
pub fn push(global: &Global, push: &Push) -> Result<ExitCode> {
    let reference = push.reference.as_str();
    let store = store::open(&global.root)?;
    let runtime = runtime::start(None)?;
    // An image index goes up with every platform's image, as one reference.
    if let Some(index) = store.index(reference)? {
        let client = registry::client(&global.insecure_registries)?;
        let report = runtime
            .block_on(rbuild_cache::push::push_index(
                &store,
                &client,
                &index,
                reference,
                std::sync::Arc::new(|_| {}),
            ))
            .map_err(|e| anyhow!("cannot push {reference}: {e}"))?;
        print_pushed(push, reference, &report);
        return Ok(ExitCode::SUCCESS);
    }
    let mut graph = BuildGraph::new();
    let source = Source {
        runtime: &runtime,
        store: &store,
        registry: None,
        always: false,
        platform: rbuild_graph::Platform::host(),
    };
    let Some((image, _)) = oneshot::image_vertex(&mut graph, &source, reference)? else {
        bail!(
            "cannot push {reference}: no image by that name in the local store; `rbuild images` lists them, `rbuild tag` names one"
        );
    };
    let vertex = actions::add_push(&mut graph, image, reference);
    let show = Show {
        progress: push.progress,
        hidden: vec![image],
        cached: false,
    };
    let client = registry::client(&global.insecure_registries)?;
    let outcomes = oneshot::solve(
        &runtime,
        &store,
        graph,
        &[vertex],
        SolveOptions::default(),
        Some(client),
        show,
    )
    .map_err(|e| oneshot::said_once(e, &format!("cannot push {reference}"), push.progress))?;
    let report = outcomes
        .get(&vertex)
        .and_then(|o| o.pushed.clone())
        .ok_or_else(|| anyhow!("the push of {reference} reported nothing"))?;
    print_pushed(push, reference, &report);
    Ok(ExitCode::SUCCESS)
}

/// docker push's last line (`-q`: the reference).
fn print_pushed(push: &Push, reference: &str, report: &rbuild_cache::push::PushReport) {
    if push.quiet {
        println!("{reference}");
    } else {
        println!(
            "{}: digest: {} size: {}",
            tag_of(reference),
            report.manifest_digest,
            report.manifest_size
        );
    }
}

/// The tag part of a reference (`latest` when there is none).
fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        Some((_, t)) => t.split('@').next().unwrap_or(t),
        None => "latest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_references() {
        assert_eq!(tag_of("127.0.0.1:5000/app:1"), "1");
        assert_eq!(tag_of("127.0.0.1:5000/app"), "latest");
        assert_eq!(tag_of("app:v2"), "v2");
    }
}
