//! `rbuild check`: verifies the store and, with `--repair`, drops what is broken. Prints
//! one line per finding, then a summary; exits 1 when the store is inconsistent and was
//! not repaired (as fsck says "errors left").

use crate::flags::hiargs::{Check, Global};
use anyhow::{Context, Result};
use rbuild_cache::Store;
use rbuild_cache::check::{CheckOptions, Severity};
use std::process::ExitCode;

pub fn check(global: &Global, check: &Check) -> Result<ExitCode> {
    let opts = CheckOptions {
        repair: check.repair,
    };
    let report = Store::check(&global.root, &opts)
        .with_context(|| format!("cannot check the store at {}", global.root.display()))?;
    for f in &report.findings {
        let kind = match f.severity {
            Severity::Problem => "problem",
            Severity::Note => "note",
        };
        let action = if report.repaired {
            f.action.clone()
        } else {
            format!("--repair: {}", f.action)
        };
        println!("{kind}: {}: {} ({action})", f.subject, f.what);
    }
    let problems = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .count();
    println!(
        "checked {} blobs, {} cache records, {} images, {} snapshots: {}",
        report.blobs,
        report.records,
        report.images,
        report.snapshots,
        match (problems, report.repaired) {
            (0, _) => "consistent".to_string(),
            (n, true) => format!("{n} problems repaired"),
            (n, false) =>
                format!("{n} problems; run `rbuild check --repair` to drop what is broken"),
        }
    );
    Ok(if problems > 0 && !report.repaired {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
