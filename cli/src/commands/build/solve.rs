//! Step 4 of a build: one solve of every root, its events printed as they come, Ctrl-C
//! cancelling it; a failure shown with the Dockerfile lines it came from.

use super::inputs::Inputs;
use crate::flags::hiargs::Build;
use crate::shared::progress::{self, Printer};
use rbuild_graph::{BuildGraph, VertexId};
use rbuild_solver::{Outcome, SolveError, SolveOptions, Solver};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// The solve's options before the registry and imported cache are known.
pub fn options(build: &Build, inputs: &Inputs) -> SolveOptions {
    SolveOptions {
        no_cache: build.no_cache,
        context_dir: Some(inputs.context.clone()),
        cancel: rbuild_executor::CancelToken::new(),
        ..Default::default()
    }
}

/// Solves `roots` of `graph`, printing progress in `mode`.
pub fn solve(
    runtime: &Runtime,
    solver: &Solver,
    graph: &Arc<BuildGraph>,
    roots: &[VertexId],
    opts: &SolveOptions,
    mode: progress::Mode,
) -> Result<HashMap<VertexId, Outcome>, SolveError> {
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = Printer::new(mode, graph.clone());
        let printing = tokio::spawn(printer.consume(rx));
        let cancel = opts.cancel.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        });
        let solved = solver.solve(graph.clone(), roots, opts, tx).await;
        ctrl_c.abort();
        let _ = printing.await;
        solved
    })
}

/// A failed step as BuildKit shows it: its last output, then the Dockerfile
/// lines it came from (marked `>>>`), then the error naming file and line.
pub fn explain_failure(err: &SolveError, dockerfile: &str, source: &str) -> String {
    let (lines, output): (Option<(usize, usize)>, &[String]) = match err {
        SolveError::RunFailed {
            lines, last_output, ..
        } => (*lines, last_output),
        SolveError::MissingContextFile { lines, .. } | SolveError::Step { lines, .. } => {
            (*lines, &[])
        }
        _ => (None, &[]),
    };
    let mut out = String::new();
    if !output.is_empty() {
        out.push_str("------ last output:\n");
        for l in output {
            out.push_str(&format!("  {l}\n"));
        }
        out.push_str("------\n");
    }
    let Some((start, end)) = lines else {
        return format!("{out}{err}");
    };
    out.push_str(&format!("{dockerfile}:{start}\n"));
    let text: Vec<&str> = source.lines().collect();
    let from = start.saturating_sub(3).max(1);
    for n in from..=end.min(text.len()) {
        let mark = if n >= start { ">>>" } else { "   " };
        out.push_str(&format!("  {n:>4} | {mark} {}\n", text[n - 1]));
    }
    out.push_str(&format!("{dockerfile}:{start}: {err}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_show_output_and_the_dockerfile_lines() {
        let err = SolveError::RunFailed {
            vertex: VertexId(3),
            description: "[2/2] RUN false".into(),
            lines: Some((2, 2)),
            exit_code: 1,
            last_output: vec!["oops".into()],
        };
        let text = explain_failure(&err, "ctx/Dockerfile", "FROM scratch\nRUN false\n");
        assert!(text.contains("  oops\n"), "{text}");
        assert!(text.contains("     2 | >>> RUN false"), "{text}");
        assert!(text.ends_with("ctx/Dockerfile:2: [2/2] RUN false: process did not complete successfully: exit code: 1"), "{text}");
    }
}
