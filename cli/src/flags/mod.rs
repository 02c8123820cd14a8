//! The command line, read once: clap reads the low-level arguments (`lowargs`), which are
//! settled into the typed settings each command runs with (`hiargs`). Values of flags
//! with a syntax of their own are read by the modules beside them (`--cache-to/--cache-from`,
//! `--call`, `--output`, `--target` and `-t`, `--build-arg`, `--label`/`--annotation`/the
//! attestation flags in `image_spec`, `--add-host`/`--ulimit`/`--shm-size`/`--cgroup-parent`
//! in `run_settings`).

pub mod cache_spec;
pub mod call_spec;
pub mod context_spec;
pub mod hiargs;
mod image_spec;
mod lowargs;
pub mod output_spec;
mod run_settings;
mod secret_spec;
mod targets;
mod vars;

use anyhow::{Result, anyhow};
use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
pub use hiargs::HiArgs;

/// Reads the process's arguments. `--help`, `--version` and usage errors end the process
/// here, as clap does (usage errors with status 2); a flag that clap read but rbuild
/// refuses is an error for the caller to report.
pub fn parse() -> Result<HiArgs> {
    let low = match lowargs::LowArgs::try_parse() {
        Ok(low) => low,
        Err(e) => return Err(refused_network(&e).unwrap_or_else(|| e.exit())),
    };
    HiArgs::from_low(low)
}

/// `--network` took any text before it was a closed set, and refused an unknown mode with
/// its own message and status 1; both are kept.
fn refused_network(e: &clap::Error) -> Option<anyhow::Error> {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    let value = text(ContextKind::InvalidValue)?;
    (e.kind() == ErrorKind::InvalidValue && arg.starts_with("--network "))
        .then(|| anyhow!("--network={value}: rbuild supports host and none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_networks_keep_their_message() {
        for args in [
            &["rbuild", "--network", "bridge", "."][..],
            &["rbuild", "build", "--network=bridge"][..],
            &["rbuild", "run", "--network", "bridge", "img"][..],
        ] {
            let e = lowargs::LowArgs::try_parse_from(args).unwrap_err();
            let refused = refused_network(&e).expect("a --network error");
            assert_eq!(
                refused.to_string(),
                "--network=bridge: rbuild supports host and none"
            );
        }
        let e = lowargs::LowArgs::try_parse_from(["rbuild", "--progress=x"]).unwrap_err();
        assert!(refused_network(&e).is_none());
    }
}
