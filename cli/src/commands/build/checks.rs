//! The build checks of a build: under `# check=error=true` the findings stop it before
//! anything runs; otherwise they are listed, short, when it ends (succeeded or not), as
//! buildx does. `rbuild build --check` shows them in full. A `--build-arg` no ARG
//! declares gets docker's warning at the end too.

use crate::shared::progress;
use anyhow::{Result, anyhow};
use rbuild_frontend::lint::LintReport;
use std::collections::{BTreeMap, BTreeSet};

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

/// Build args every build takes without an ARG (docker's proxy variables, BuildKit's
/// `SOURCE_DATE_EPOCH`); `BUILDKIT_*` ones are settings of the frontend.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SOURCE_DATE_EPOCH",
];

/// The `--build-arg`s no ARG of the Dockerfile declares, sorted (empty when the
/// Dockerfile does not parse: the build said so already).
pub fn unused_build_args(source: &str, given: &BTreeMap<String, String>) -> Vec<String> {
    let Ok(df) = rbuild_frontend::parser::parse(source) else {
        return Vec::new();
    };
    let declared: BTreeSet<&str> = df
        .nodes
        .iter()
        .filter(|n| n.keyword == "arg")
        .flat_map(|n| n.args.iter())
        .map(|a| a.split('=').next().unwrap_or(a))
        .collect();
    given
        .keys()
        .filter(|k| !declared.contains(k.as_str()))
        .filter(|k| !PREDEFINED_ARGS.contains(&k.to_ascii_uppercase().as_str()))
        .filter(|k| !k.starts_with("BUILDKIT_"))
        .cloned()
        .collect()
}

/// docker's warning about build args no ARG took, on stderr (not with `-q`).
pub fn warn_unused_args(source: &str, given: &BTreeMap<String, String>, mode: progress::Mode) {
    let unused = unused_build_args(source, given);
    if unused.is_empty() || mode == progress::Mode::Quiet {
        return;
    }
    eprintln!(
        "[Warning] One or more build-args [{}] were not consumed",
        unused.join(" ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_without_an_arg_are_unused() {
        let given: BTreeMap<String, String> = [
            "A",
            "B",
            "GLOBAL",
            "http_proxy",
            "BUILDKIT_INLINE_CACHE",
            "SOURCE_DATE_EPOCH",
        ]
        .iter()
        .map(|k| (k.to_string(), "1".to_string()))
        .collect();
        let df = "ARG GLOBAL=x\nFROM scratch\nARG A\nARG C=3 D\n";
        assert_eq!(unused_build_args(df, &given), ["B"]);
        assert!(unused_build_args("FROM scratch\nARG A B GLOBAL", &given).is_empty());
    }
}
