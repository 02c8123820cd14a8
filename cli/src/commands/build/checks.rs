//! The build checks of a build: under `# check=error=true` the findings stop it before
//! anything runs; otherwise they are listed, short, when it ends (succeeded or not), as
//! buildx does. `rbuild build --check` shows them in full.

use crate::shared::progress;
use anyhow::{Result, anyhow};
use rbuild_frontend::lint::LintReport;

/// Fails the build when the check settings say findings are errors.
pub fn enforce(report: &LintReport) -> Result<()> {
    match report.violation() {
        Some(e) => {
            eprint!("{}", report.summary());
            Err(anyhow!("{e}"))
        }
        None => Ok(()),
    }
}

/// The findings, one line each, on stderr (nothing with `-q` or `--progress=quiet`).
pub fn print_summary(report: &LintReport, mode: progress::Mode) {
    if report.findings.is_empty() || mode == progress::Mode::Quiet {
        return;
    }
    let n = report.findings.len();
    let noun = if n == 1 { "warning" } else { "warnings" };
    eprintln!("\n{n} build check {noun} (rbuild build --check shows them in full):");
    eprint!("{}", report.summary());
}
