//! The rules about FROM, which lowering runs for every stage as it expands the FROM lines
//! with the global ARGs (and, for InvalidBaseImagePlatform, once it has resolved the base
//! image of a stage it builds): UndefinedArgInFrom, InvalidDefaultArgInFrom,
//! RedundantTargetPlatform, FromPlatformFlagConstDisallowed, InvalidBaseImagePlatform.

use super::{Linter, Location, RuleId};
use crate::shell::Expansion;
use rbuild_graph::Platform;
use rbuild_graph::image::ImageConfig;
use std::collections::BTreeSet;

/// The best match for `name` among `options` within edit distance 2, compared
/// case-sensitively (variables are case-sensitive); an exact match means no suggestion.
pub(crate) fn did_you_mean<'o>(
    name: &str,
    options: impl IntoIterator<Item = &'o str>,
) -> Option<&'o str> {
    let mut best: Option<(usize, &str)> = None;
    for opt in options {
        if opt == name {
            return None;
        }
        let d = crate::parser::edit_distance(name, opt);
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, opt));
        }
    }
    best.map(|(_, o)| o)
}

/// UndefinedArgInFrom: the names a FROM word looked up that no global ARG declares and that
/// are not predefined. `known` holds both.
pub(crate) fn undeclared_args(
    lint: &Linter,
    at: Location,
    unmatched: &BTreeSet<String>,
    known: &BTreeSet<String>,
) {
    for name in unmatched.iter().filter(|n| !known.contains(*n)) {
        let suggestion = did_you_mean(name, known.iter().map(String::as_str));
        let mut message =
            format!("FROM uses ARG '{name}', which is not declared before the first FROM");
        if let Some(s) = suggestion {
            message.push_str(&format!(" (did you mean {s}?)"));
        }
        lint.report(RuleId::UndefinedArgInFrom, at, message, None);
    }
}

/// InvalidDefaultArgInFrom: the FROM image `raw` expanded with the global ARGs' default
/// values only (no build args) is `with_defaults`; None when that expansion failed (the
/// build reports failures of its own). `valid` says whether the result names an image.
pub(crate) fn default_base_name(
    lint: &Linter,
    at: Location,
    raw: &str,
    with_defaults: Option<&str>,
    valid: bool,
) {
    if with_defaults.is_some() && !valid {
        let shown = with_defaults.unwrap_or_default();
        lint.report(
            RuleId::InvalidDefaultArgInFrom,
            at,
            format!("with the default values of its ARGs, FROM {raw} gives '{shown}', which is not a valid image name"),
            None,
        );
    }
}

/// RedundantTargetPlatform and FromPlatformFlagConstDisallowed, over `FROM --platform=raw`
/// expanded into `exp`. `target_platform` is the value of TARGETPLATFORM; `parsed` the
/// platform `exp.value` names, if it names one.
pub(crate) fn platform_flag(
    lint: &Linter,
    at: Location,
    raw: &str,
    exp: &Expansion,
    target_platform: Option<&str>,
    stage_name: Option<&str>,
    parsed: Option<&Platform>,
) {
    // Only TARGETPLATFORM, alone and found: the flag says the default. (With other names in
    // the word, one of them may be empty; that is not redundant.)
    let only_target = exp.unmatched.is_empty()
        && exp.matched.len() == 1
        && exp.matched.contains("TARGETPLATFORM");
    if only_target && target_platform == Some(exp.value.as_str()) {
        lint.report(
            RuleId::RedundantTargetPlatform,
            at,
            format!("--platform={raw} is the platform FROM uses anyway"),
            None,
        );
    }
    // A word without any variable is a constant; a stage named after its os or
    // architecture (`build-amd64`) says it is meant for one platform.
    if exp.matched.is_empty()
        && exp.unmatched.is_empty()
        && let Some(p) = parsed
    {
        let name = stage_name.unwrap_or("");
        if !name.contains(p.os.as_str()) && !name.contains(p.architecture.as_str()) {
            lint.report(
                RuleId::FromPlatformFlagConstDisallowed,
                at,
                format!("FROM --platform is the constant '{}'", exp.value),
                None,
            );
        }
    }
}

/// InvalidBaseImagePlatform: the config of the base image `image` (as the FROM named it)
/// says another OS or architecture than `expected`. Configs that say none are not judged.
pub(crate) fn base_platform(
    lint: &Linter,
    at: Location,
    image: &str,
    expected: &Platform,
    config: &ImageConfig,
) {
    if config.os.is_empty() || config.architecture.is_empty() {
        return;
    }
    if config.os == expected.os && config.architecture == expected.architecture {
        return;
    }
    let actual = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    lint.report(
        RuleId::InvalidBaseImagePlatform,
        at,
        format!("base image {image} is for {actual}, but this stage is built for {expected}"),
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggestions_are_case_sensitive() {
        let opts = ["DIR_ASSETS", "DIR_CONFIG", "PATH"];
        assert_eq!(did_you_mean("DIR_ASSET", opts), Some("DIR_ASSETS"));
        assert_eq!(did_you_mean("PAHT", opts), Some("PATH"));
        assert_eq!(did_you_mean("path", opts), None);
        assert_eq!(did_you_mean("PATH", opts), None);
    }
}
