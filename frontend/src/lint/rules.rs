//! The rule table: every build check rbuild knows, with BuildKit's rule names (what
//! `# check=skip=` lists and JSON output carries), a one-line description, and the help
//! printed when a finding has none more specific.

use serde::Serialize;

/// A rule, by name. The discriminant is the rule's index in [`RULES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RuleId {
    StageNameCasing,
    FromAsCasing,
    NoEmptyContinuation,
    ConsistentInstructionCasing,
    DuplicateStageName,
    ReservedStageName,
    JSONArgsRecommended,
    MaintainerDeprecated,
    UndefinedArgInFrom,
    WorkdirRelativePath,
    UndefinedVar,
    MultipleInstructionsDisallowed,
    LegacyKeyValueFormat,
    InvalidBaseImagePlatform,
    RedundantTargetPlatform,
    SecretsUsedInArgOrEnv,
    InvalidDefaultArgInFrom,
    FromPlatformFlagConstDisallowed,
    CopyIgnoredFile,
    ExposeProtoCasing,
    ExposeInvalidFormat,
}

/// What a rule is called and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    /// BuildKit's name, e.g. `StageNameCasing`.
    pub name: &'static str,
    /// What the rule wants, in one line.
    pub description: &'static str,
    /// What to do about a finding, when the finding does not say something more precise.
    pub help: &'static str,
}

impl RuleId {
    /// The rule's entry in [`RULES`].
    pub fn rule(self) -> &'static Rule {
        &RULES[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.rule().name
    }

    /// The rule called `name` (exact spelling, as `# check=skip=` takes it).
    pub fn by_name(name: &str) -> Option<RuleId> {
        RULES.iter().find(|r| r.name == name).map(|r| r.id)
    }
}

macro_rules! rule {
    ($id:ident, $description:expr, $help:expr) => {
        Rule {
            id: RuleId::$id,
            name: stringify!($id),
            description: $description,
            help: $help,
        }
    };
}

/// Every rule, in [`RuleId`] order.
pub const RULES: [Rule; 21] = [
    rule!(
        StageNameCasing,
        "Stage names should be lower-case",
        "write the stage name in lower case (stage names are matched case-insensitively)"
    ),
    rule!(
        FromAsCasing,
        "The AS keyword should be cased like the FROM before it",
        "write `FROM image AS name` or `from image as name`"
    ),
    rule!(
        NoEmptyContinuation,
        "Empty lines inside a continued instruction are deprecated and will become an error",
        "remove the empty line, or turn it into a comment"
    ),
    rule!(
        ConsistentInstructionCasing,
        "Instruction keywords should be all upper-case or all lower-case, like the rest of the file",
        "write every instruction keyword in the same case"
    ),
    rule!(
        DuplicateStageName,
        "Stage names should be unique",
        "give each stage a name of its own"
    ),
    rule!(
        ReservedStageName,
        "Stage names should not be words FROM and --from already give a meaning (scratch, context)",
        "rename the stage"
    ),
    rule!(
        JSONArgsRecommended,
        "ENTRYPOINT and CMD should use the JSON (exec) form, so the program itself receives signals",
        "write the command as a JSON array, e.g. [\"prog\", \"arg\"], or set SHELL if a shell is wanted"
    ),
    rule!(
        MaintainerDeprecated,
        "MAINTAINER is deprecated: name the image's author with a label",
        "use LABEL org.opencontainers.image.authors=\"name <mail>\" instead"
    ),
    rule!(
        UndefinedArgInFrom,
        "FROM should only use ARGs declared before the first FROM (or predefined ones)",
        "declare the ARG above the first FROM, or fix its name"
    ),
    rule!(
        WorkdirRelativePath,
        "A relative WORKDIR, with no absolute WORKDIR before it, depends on the base image's working directory",
        "make the path absolute"
    ),
    rule!(
        UndefinedVar,
        "Variables should be defined (ARG, ENV, or the base image's ENV) before they are used",
        "declare it with ARG or ENV before this instruction, or fix its name"
    ),
    rule!(
        MultipleInstructionsDisallowed,
        "CMD, ENTRYPOINT and HEALTHCHECK should appear at most once per stage: only the last one counts",
        "remove all but the last one"
    ),
    rule!(
        LegacyKeyValueFormat,
        "ENV and LABEL should be written key=value, not in the legacy `key value` form",
        "write key=value, quoting a value that contains spaces"
    ),
    rule!(
        InvalidBaseImagePlatform,
        "The base image should be built for the platform the stage is built for",
        "use an image (or tag) that has the expected platform, or set FROM --platform"
    ),
    rule!(
        RedundantTargetPlatform,
        "FROM --platform=$TARGETPLATFORM says what FROM does anyway",
        "remove the --platform flag"
    ),
    rule!(
        SecretsUsedInArgOrEnv,
        "ARG and ENV should not carry secrets: their values stay in the image and its history",
        "pass the secret with RUN --mount=type=secret instead"
    ),
    rule!(
        InvalidDefaultArgInFrom,
        "With their default values, the global ARGs should give FROM a valid image name",
        "give the ARG a default value, or write ${NAME:-default} in the FROM"
    ),
    rule!(
        FromPlatformFlagConstDisallowed,
        "FROM --platform should not be a constant: the image then builds for one platform only",
        "drop --platform (and pass it to the build), use $BUILDPLATFORM, or name the stage after its platform"
    ),
    rule!(
        CopyIgnoredFile,
        "COPY and ADD should not name files .dockerignore leaves out of the context",
        "remove the pattern from .dockerignore (or add a ! exception), or stop copying the file"
    ),
    rule!(
        ExposeProtoCasing,
        "EXPOSE protocols should be lower-case",
        "write the protocol in lower case, e.g. 80/tcp"
    ),
    rule!(
        ExposeInvalidFormat,
        "EXPOSE takes container ports only, without an IP address or a host port; this will become an error",
        "expose the container port alone (publish ports when running the container)"
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_indexed_by_rule_id() {
        for (i, r) in RULES.iter().enumerate() {
            assert_eq!(r.id as usize, i, "{}", r.name);
            assert_eq!(RuleId::by_name(r.name), Some(r.id));
        }
        assert_eq!(RuleId::UndefinedVar.name(), "UndefinedVar");
        assert_eq!(RuleId::by_name("undefinedvar"), None);
    }
}
