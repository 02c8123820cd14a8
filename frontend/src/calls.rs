//! `--call check` and `--call outline`: a Dockerfile lowered for what lowering observes on
//! the way (the build checks' findings, what a target reads), into a throwaway graph.
//! Above `lower`, `lint` and `outline`, which they drive: lowering calls the checks and the
//! outline's recorder, so these entry points cannot live in either without a cycle.

use crate::lint::{LintReport, Linter};
use crate::lower::{ImageResolver, LowerOptions, lower_for_check, lower_for_outline};
use crate::outline::{Capture, Outline};
use crate::{Diagnostic, parser};

/// `--call check`: the findings of every stage (or of the stages `targets` need, when
/// some are named), without building. A Dockerfile that cannot be lowered gives the
/// findings made before the error, and the error.
pub fn check(
    source: &str,
    opts: &LowerOptions,
    targets: &[String],
    resolver: &dyn ImageResolver,
) -> LintReport {
    let in_file = |d: Diagnostic| match d.file {
        Some(_) => d,
        None => d.in_file(opts.dockerfile_name.clone()),
    };
    let failed = |d: Diagnostic| LintReport {
        file: opts.dockerfile_name.clone(),
        findings: Vec::new(),
        error_on_findings: false,
        error: Some(in_file(d)),
    };
    let df = match parser::parse(source) {
        Ok(df) => df,
        Err(d) => return failed(d),
    };
    let linter = match Linter::new(&df, source, &opts.build_args, &opts.ignore_patterns) {
        Ok(l) => l,
        Err(d) => return failed(d),
    };
    let result = lower_for_check(&df, source, opts, targets, resolver, &linter);
    let mut report = linter.into_report(&opts.dockerfile_name);
    report.error = result.err().map(in_file);
    report
}

/// `--call outline`: what building `opts.target` (or the last stage) reads. Base images
/// are asked of `resolver`, since an ARG default may use an image's ENV.
pub fn outline(
    source: &str,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<Outline, Diagnostic> {
    let in_file = |d: Diagnostic| match d.file {
        Some(_) => d,
        None => d.in_file(opts.dockerfile_name.clone()),
    };
    let df = parser::parse(source).map_err(in_file)?;
    let capture = Capture::default();
    lower_for_outline(&df, source, opts, resolver, &capture).map_err(in_file)?;
    Ok(capture.into_inner().outline(&df))
}
