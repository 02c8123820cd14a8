//! `--call FUNC[,format=json][,ignorestatus=true]` (and `--check`, its shorthand for
//! `--call check`), buildx's spelling: evaluate the Dockerfile instead of building it.
//! `check` runs the build checks, `outline` lists the build args and secrets a target uses,
//! `targets` lists the stages; `build` (the default) builds.

use super::lowargs::GraphFormat;
use anyhow::{Result, bail};

/// What `--call` asks for instead of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFunction {
    /// The build checks (buildx's `check`, also spelled `lint`).
    Check,
    Outline,
    Targets,
}

/// A `--call` other than `build`, settled with `--check` and `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub function: CallFunction,
    /// `format=json` (or `--format json`): BuildKit's JSON instead of text.
    pub json: bool,
    /// `ignorestatus=true`: findings of `check` do not make the exit status 1.
    pub ignore_status: bool,
}

/// Parses a `--call` value; `None` for `build`.
pub fn parse_call(value: &str) -> Result<Option<Call>> {
    let mut function = None;
    let mut json = false;
    let mut ignore_status = false;
    for field in value.split(',').map(str::trim) {
        match field.split_once('=') {
            Some(("format", f)) => json = f == "json",
            Some(("ignorestatus", v)) => {
                ignore_status = match v {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => bail!("--call {value:?}: ignorestatus takes true or false, not {v:?}"),
                }
            }
            Some(_) => {
                bail!("--call {value:?}: unknown field {field:?} (use format= or ignorestatus=)")
            }
            None if function.is_some() => bail!("--call {value:?}: more than one function"),
            None => function = Some(field),
        }
    }
    let function = match function.unwrap_or("build") {
        "build" => return Ok(None),
        "check" | "lint" => CallFunction::Check,
        "outline" => CallFunction::Outline,
        "targets" => CallFunction::Targets,
        other => bail!("--call {other:?}: rbuild can call build, check, outline and targets"),
    };
    Ok(Some(Call {
        function,
        json,
        ignore_status,
    }))
}

/// The call of a build, from `--call`, `--check` and `--format` together.
pub fn settle(call: Option<&str>, check: bool, format: GraphFormat) -> Result<Option<Call>> {
    let mut settled = match call {
        Some(v) => parse_call(v)?,
        None => None,
    };
    if check {
        match settled {
            None if call.is_none() => {
                settled = Some(Call {
                    function: CallFunction::Check,
                    json: false,
                    ignore_status: false,
                })
            }
            Some(c) if c.function == CallFunction::Check => {}
            _ => bail!("--check is --call check: give one of them"),
        }
    }
    if let Some(c) = &mut settled {
        match format {
            GraphFormat::Json => c.json = true,
            GraphFormat::Text => {}
            GraphFormat::Dot => bail!("--format dot is for --dry-run; --call prints text or json"),
        }
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_spellings() {
        let c = parse_call("check").unwrap().unwrap();
        assert_eq!(
            (c.function, c.json, c.ignore_status),
            (CallFunction::Check, false, false)
        );
        let c = parse_call("outline,format=json").unwrap().unwrap();
        assert_eq!((c.function, c.json), (CallFunction::Outline, true));
        let c = parse_call("lint,ignorestatus=true").unwrap().unwrap();
        assert_eq!((c.function, c.ignore_status), (CallFunction::Check, true));
        assert_eq!(parse_call("build").unwrap(), None);
        assert!(parse_call("frobnicate").is_err());
        assert!(parse_call("check,colour=red").is_err());
        assert!(parse_call("check,targets").is_err());
    }

    #[test]
    fn check_and_format_settle_with_call() {
        let c = settle(None, true, GraphFormat::Json).unwrap().unwrap();
        assert_eq!((c.function, c.json), (CallFunction::Check, true));
        assert!(
            settle(Some("check"), true, GraphFormat::Text)
                .unwrap()
                .is_some()
        );
        assert!(settle(Some("outline"), true, GraphFormat::Text).is_err());
        assert!(settle(Some("targets"), false, GraphFormat::Dot).is_err());
        assert_eq!(settle(None, false, GraphFormat::Dot).unwrap(), None);
    }
}
