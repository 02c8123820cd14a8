//! `--build-arg` and `-e` values: `KEY=VALUE` as given, a bare `KEY` taken from rbuild's
//! own environment (docker's rule for both); `SOURCE_DATE_EPOCH` from either.

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

/// `SOURCE_DATE_EPOCH`: the build arg, or else the environment variable `env`, which is
/// then passed on as the build arg (as buildx does, so an `ARG SOURCE_DATE_EPOCH` sees it).
/// Empty means unset; anything but a number of seconds since 1970 is refused.
pub fn source_date_epoch(
    build_args: &mut BTreeMap<String, String>,
    env: Option<String>,
) -> Result<Option<i64>> {
    const KEY: &str = "SOURCE_DATE_EPOCH";
    let value = match (build_args.get(KEY), env) {
        (Some(v), _) => v.clone(),
        (None, Some(v)) if !v.trim().is_empty() => {
            build_args.insert(KEY.to_string(), v.clone());
            v
        }
        _ => return Ok(None),
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<i64>() {
        Ok(secs) if secs >= 0 => Ok(Some(secs)),
        _ => bail!(
            "SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970-01-01 UTC (as `date +%s` or `git log -1 --format=%ct` prints it)"
        ),
    }
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

    #[test]
    fn source_date_epoch_from_the_build_arg_or_the_environment() {
        let mut args = BTreeMap::new();
        assert_eq!(source_date_epoch(&mut args, None).unwrap(), None);
        assert_eq!(
            source_date_epoch(&mut args, Some(String::new())).unwrap(),
            None
        );
        assert!(args.is_empty());
        assert_eq!(
            source_date_epoch(&mut args, Some("1700000000".into())).unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(
            args["SOURCE_DATE_EPOCH"], "1700000000",
            "passed on as the build arg"
        );
        // The build arg wins over the environment.
        let mut args = BTreeMap::from([("SOURCE_DATE_EPOCH".to_string(), "5".to_string())]);
        assert_eq!(
            source_date_epoch(&mut args, Some("7".into())).unwrap(),
            Some(5)
        );
        for bad in ["yesterday", "-1", "1.5"] {
            let mut args = BTreeMap::from([("SOURCE_DATE_EPOCH".to_string(), bad.to_string())]);
            let e = source_date_epoch(&mut args, None).unwrap_err().to_string();
            assert!(e.contains("not a number of seconds since 1970"), "{e}");
        }
    }
}
