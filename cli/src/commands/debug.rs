//! `rbuild debug parse`: a Dockerfile's AST in BuildKit's dump format.

use crate::flags::hiargs::DebugParse;
use anyhow::{Context, Result, anyhow};
use std::process::ExitCode;

/// Prints the AST of the file.
pub fn parse(args: &DebugParse) -> Result<ExitCode> {
    let file = &args.file;
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let df = rbuild_frontend::parser::parse(&source)
        .map_err(|d| anyhow!("{}", d.in_file(file.display().to_string())))?;
    print!("{}", rbuild_frontend::dump::dump(&df));
    Ok(ExitCode::SUCCESS)
}
