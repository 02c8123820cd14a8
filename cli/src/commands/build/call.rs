//! `--call check|outline|targets` (and `--check`): the Dockerfile evaluated instead of
//! built. Base images are looked up in the store when there is one, never in a registry:
//! like `--dry-run`, a call downloads nothing (and creates no store).
//!
//! Exit status as buildx's: `check` exits 1 when it finds anything (0 with
//! `ignorestatus=true`), and 1 whatever `ignorestatus` says when the checks' settings say
//! `error=true` or the Dockerfile cannot be read; `outline` and `targets` exit 0.

use super::inputs::Inputs;
use super::lower;
use crate::flags::call_spec::{Call, CallFunction};
use crate::flags::hiargs::{Build, Global};
use crate::shared::resolver::StoreResolver;
use crate::shared::store;
use anyhow::{Result, anyhow};
use rbuild_cache::Store;
use rbuild_frontend::lower::{ImageResolver, NoImages};
use rbuild_frontend::{calls, outline};
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// Runs the call and prints its result on stdout.
pub fn run(global: &Global, build: &Build, inputs: &Inputs, call: Call) -> Result<ExitCode> {
    // A call on a root that does not exist yet must not create one.
    let store = if global.root.exists() {
        Some(store::open(&global.root)?)
    } else {
        None
    };
    match call.function {
        CallFunction::Check => check(build, inputs, store.as_ref(), call),
        CallFunction::Outline => outline(build, inputs, store.as_ref(), call),
        CallFunction::Targets => targets(inputs, call),
    }
}

/// Local images only (see the module doc).
fn with_resolver<T>(store: Option<&Store>, f: impl FnOnce(&dyn ImageResolver) -> T) -> T {
    match store {
        Some(s) => f(&StoreResolver::new(s, None, false)),
        None => f(&NoImages),
    }
}

fn check(build: &Build, inputs: &Inputs, store: Option<&Store>, call: Call) -> Result<ExitCode> {
    let opts = lower::options(build, inputs);
    let mut report = with_resolver(store, |r| {
        calls::check(&inputs.source, &opts, &build.targets, r)
    });
    // Under error=true the findings are an error too (BuildKit's buildError).
    if report.error.is_none() {
        report.error = report.violation();
    }
    if call.json {
        emit(&json(&report.json(&inputs.source))?)?;
    } else {
        let summary = match report.findings.len() {
            0 if report.error.is_none() => "Check complete, no warnings found.\n".to_string(),
            0 => String::new(),
            1 => "\nCheck complete, 1 warning found.\n".to_string(),
            n => format!("\nCheck complete, {n} warnings found.\n"),
        };
        emit(&(report.render(&inputs.source) + &summary))?;
    }
    if let Some(e) = report.error {
        // JSON carries the error already; the exit status still says it.
        return if call.json {
            Ok(ExitCode::FAILURE)
        } else {
            Err(anyhow!("{e}"))
        };
    }
    Ok(if report.findings.is_empty() || call.ignore_status {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn outline(build: &Build, inputs: &Inputs, store: Option<&Store>, call: Call) -> Result<ExitCode> {
    // One outline per --target (the last stage when none is given).
    let targets: Vec<Option<String>> = if build.targets.is_empty() {
        vec![None]
    } else {
        build.targets.iter().cloned().map(Some).collect()
    };
    let mut texts = Vec::new();
    let mut jsons: Vec<String> = Vec::new();
    for target in targets {
        let opts = rbuild_frontend::lower::LowerOptions {
            target,
            ..lower::options(build, inputs)
        };
        let o = with_resolver(store, |r| calls::outline(&inputs.source, &opts, r))
            .map_err(|d| anyhow!("{d}"))?;
        texts.push(o.to_text());
        jsons.push(json(&o.json(&inputs.source))?);
    }
    // Several targets: one JSON document each, as a JSON array.
    if call.json && jsons.len() > 1 {
        emit(&format!("[\n{}\n]\n", jsons.join(",\n").trim_end()))?;
    } else if call.json {
        emit(&jsons.concat())?;
    } else {
        emit(&texts.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn targets(inputs: &Inputs, call: Call) -> Result<ExitCode> {
    let t =
        outline::targets(&inputs.source, &inputs.dockerfile_name).map_err(|d| anyhow!("{d}"))?;
    if call.json {
        emit(&json(&t.json(&inputs.source))?)?;
    } else {
        emit(&t.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Pretty JSON, with a final newline.
fn json(value: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Writes to stdout; a reader that went away (`| head`) is not an error of the call.
fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
