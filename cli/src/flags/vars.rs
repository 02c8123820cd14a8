//! `--build-arg` and `-e` values: `KEY=VALUE` as given, a bare `KEY` taken from rbuild's
//! own environment (docker's rule for both).

use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// `--build-arg` entries; a bare `KEY` that is not set in the environment is left out.
pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                bail!("--build-arg {arg:?}: the name is empty; write --build-arg NAME=VALUE")
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// `-e` entries as `K=V`: `K` alone takes rbuild's own value, or is left out when unset.
pub fn resolve_env(overrides: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in overrides {
        if e.is_empty() || e.starts_with('=') {
            bail!("-e {e:?}: the variable name is empty; write -e NAME=VALUE");
        }
        if e.contains('=') {
            out.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            out.push(format!("{e}={v}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_take_values_or_the_environment() {
        // SAFETY: single-threaded test setting a variable only it reads.
        unsafe { std::env::set_var("RBUILD_TEST_ARG", "from-env") };
        let got = parse_build_args(&[
            "A=1".into(),
            "B=".into(),
            "RBUILD_TEST_ARG".into(),
            "UNSET_X_Y".into(),
        ])
        .unwrap();
        assert_eq!(got.get("A").map(String::as_str), Some("1"));
        assert_eq!(got.get("B").map(String::as_str), Some(""));
        assert_eq!(
            got.get("RBUILD_TEST_ARG").map(String::as_str),
            Some("from-env")
        );
        assert!(!got.contains_key("UNSET_X_Y"));
        assert!(parse_build_args(&["=x".into()]).is_err());
    }

    #[test]
    fn env_entries() {
        // SAFETY: single-threaded test setting a variable only it reads.
        unsafe { std::env::set_var("RBUILD_RUN_TEST_VAR", "v") };
        assert_eq!(
            resolve_env(&[
                "A=1".into(),
                "C=".into(),
                "RBUILD_RUN_TEST_VAR".into(),
                "RBUILD_UNSET_Q".into()
            ])
            .unwrap(),
            ["A=1", "C=", "RBUILD_RUN_TEST_VAR=v"]
        );
        assert!(resolve_env(&["=x".into()]).is_err());
        assert!(resolve_env(&["".into()]).is_err());
    }
}
