//! Which findings count: the `# check=` parser directive, the `BUILDKIT_DOCKERFILE_CHECK`
//! build arg (which replaces the directive, as in BuildKit), and `# check=` comments right
//! above one instruction (which add skipped rules for that instruction only).
//!
//! The syntax is BuildKit's, so existing Dockerfiles carry over: up to three `;`-separated
//! options, `skip=Rule1,Rule2` or `skip=all`, `error=true|false`, `experimental=...`.

use std::collections::BTreeSet;

/// The build arg that overrides the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// A parsed check setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// Rule names given to `skip=` (unknown names are kept and match nothing).
    pub skip: BTreeSet<String>,
    /// `error=true`: a finding fails the build.
    pub error: bool,
    /// Rule names given to `experimental=` (none of rbuild's rules is experimental; kept so
    /// that configs written for BuildKit parse).
    pub experimental: BTreeSet<String>,
}

/// A `# check=` value rbuild cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A part without `=`, or a key other than skip, error and experimental.
    #[error("invalid check option {0:?}")]
    Option(String),
    /// `error=` with something else than a boolean.
    #[error("invalid check option {0:?}: error takes true or false")]
    Bool(String),
}

impl CheckConfig {
    /// Parses `skip=A,B;error=true` (surrounding blanks ignored; empty: the defaults).
    pub fn parse(text: &str) -> Result<CheckConfig, ConfigError> {
        let mut config = CheckConfig::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(config);
        }
        // BuildKit splits into at most three parts: a fourth `;` stays in the third value.
        for part in text.splitn(3, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ConfigError::Option(part.to_string()));
            };
            let value = value.trim();
            let names =
                || -> BTreeSet<String> { value.split(',').map(|n| n.trim().to_string()).collect() };
            match key.trim() {
                "skip" if value == "all" => config.skip_all = true,
                "skip" => config.skip = names(),
                "experimental" => config.experimental = names(),
                "error" => {
                    config.error =
                        parse_go_bool(value).ok_or_else(|| ConfigError::Bool(part.to_string()))?
                }
                other => return Err(ConfigError::Option(other.to_string())),
            }
        }
        Ok(config)
    }

    /// Whether findings of `rule` are dropped.
    pub fn skips(&self, rule: &str) -> bool {
        self.skip_all || self.skip.contains(rule)
    }

    /// `self` with the rules `other` skips skipped too (a comment above an instruction can
    /// only silence more, never turn `error` on or off).
    pub fn with_skips_of(&self, other: &CheckConfig) -> CheckConfig {
        let mut merged = self.clone();
        merged.skip_all |= other.skip_all;
        merged.skip.extend(other.skip.iter().cloned());
        merged
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The check setting of a comment above an instruction (`check=skip=Rule // why`), if the
/// comment is one: the name is matched case-insensitively and the value ends at the first
/// blank, so a remark may follow. A comment that does not parse is ignored, as in BuildKit.
pub fn from_comment(comment: &str) -> Option<CheckConfig> {
    let (name, value) = comment.split_once('=')?;
    let name = name.trim();
    if !name.eq_ignore_ascii_case("check") {
        return None;
    }
    let value = value.trim();
    let value = value.split(' ').next().unwrap_or(value);
    CheckConfig::parse(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_syntax() {
        let c = CheckConfig::parse("skip=FromAsCasing, StageNameCasing;error=true").unwrap();
        assert!(c.error && !c.skip_all);
        assert!(c.skips("FromAsCasing") && c.skips("StageNameCasing"));
        assert!(!c.skips("UndefinedVar"));
        let c = CheckConfig::parse(" skip=all ").unwrap();
        assert!(c.skips("Anything") && !c.error);
        assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
        assert!(CheckConfig::parse("error=1").unwrap().error);
        assert!(CheckConfig::parse("experimental=all;error=false").is_ok());
        assert_eq!(
            CheckConfig::parse("skip").unwrap_err(),
            ConfigError::Option("skip".into())
        );
        assert_eq!(
            CheckConfig::parse("warn=true").unwrap_err().to_string(),
            "invalid check option \"warn\""
        );
        assert_eq!(
            CheckConfig::parse("error=yes").unwrap_err(),
            ConfigError::Bool("error=yes".into())
        );
    }

    #[test]
    fn comments_above_an_instruction() {
        let c = from_comment("check=skip=SecretsUsedInArgOrEnv // allowed here").unwrap();
        assert!(c.skips("SecretsUsedInArgOrEnv"));
        assert!(from_comment("CHECK = skip=all").unwrap().skip_all);
        assert_eq!(from_comment("a comment = not a check"), None);
        assert_eq!(from_comment("check=bogus"), None);
        let merged = CheckConfig::parse("error=true")
            .unwrap()
            .with_skips_of(&from_comment("check=skip=A;error=false").unwrap());
        assert!(merged.error && merged.skips("A"));
    }
}
