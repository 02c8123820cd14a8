//! Build checks: one test per rule (a Dockerfile that triggers it, with the rule, line and
//! message, and one that does not), the `# check=` settings, and which stages a build
//! checks compared with `--call check`.

use rbuild_frontend::calls;
use rbuild_frontend::lint::LintReport;
use rbuild_frontend::lower::{
    ImageResolver, LowerOptions, NoImages, ResolveError, ResolvedImage, lower_targets,
};
use rbuild_graph::Platform;
use rbuild_graph::image::ImageConfig;
use std::collections::BTreeMap;

fn opts() -> LowerOptions {
    LowerOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..Default::default()
    }
}

fn check_with(src: &str, o: &LowerOptions, r: &dyn ImageResolver) -> LintReport {
    let report = calls::check(src, o, &[], r);
    if let Some(e) = &report.error {
        panic!("the check failed:\n{e}\n--- Dockerfile\n{src}");
    }
    report
}

/// Every finding as (rule, line, message).
fn findings(src: &str) -> Vec<(&'static str, usize, String)> {
    list(&check_with(src, &opts(), &NoImages))
}

fn list(r: &LintReport) -> Vec<(&'static str, usize, String)> {
    r.findings
        .iter()
        .map(|f| (f.rule.name(), f.location.line, f.message.clone()))
        .collect()
}

/// The findings of one rule, as (line, message).
fn of(rule: &str, src: &str) -> Vec<(usize, String)> {
    findings(src)
        .into_iter()
        .filter(|(r, _, _)| *r == rule)
        .map(|(_, l, m)| (l, m))
        .collect()
}

fn one(line: usize, message: &str) -> Vec<(usize, String)> {
    vec![(line, message.to_string())]
}

#[test]
fn stage_name_casing() {
    assert_eq!(
        of("StageNameCasing", "FROM scratch AS BadName\n"),
        one(1, "stage name 'BadName' is not lower-case")
    );
    assert!(
        of(
            "StageNameCasing",
            "FROM scratch AS good-name\nFROM good-name\n"
        )
        .is_empty()
    );
}

#[test]
fn from_as_casing() {
    assert_eq!(
        of("FromAsCasing", "FROM scratch AS a\nFROM scratch as b\n"),
        one(2, "'as' is not cased like 'FROM'")
    );
    assert_eq!(
        of("FromAsCasing", "from scratch AS a\n"),
        one(1, "'AS' is not cased like 'from'")
    );
    assert!(of("FromAsCasing", "FROM scratch AS a\nfrom scratch as b\n").is_empty());
    // A mixed-case FROM is ConsistentInstructionCasing's finding, not this rule's.
    assert!(of("FromAsCasing", "From scratch as a\n").is_empty());
}

#[test]
fn no_empty_continuation() {
    let src = "FROM scratch\nCOPY a \\\n\n  b\nCOPY a \\\n  # a comment is fine\n  b\n";
    assert_eq!(
        of("NoEmptyContinuation", src),
        one(3, "empty line inside a continued instruction")
    );
    assert!(of("NoEmptyContinuation", "FROM scratch\nCOPY a \\\n  b\n").is_empty());
}

#[test]
fn consistent_instruction_casing() {
    assert_eq!(
        of(
            "ConsistentInstructionCasing",
            "FROM scratch\ncopy a /a\nCOPY b /b\n"
        ),
        one(
            2,
            "'copy' is not upper-case like most instructions of this Dockerfile"
        )
    );
    assert_eq!(
        of(
            "ConsistentInstructionCasing",
            "from scratch\nCOPY a /a\ncopy b /b\n"
        ),
        one(
            2,
            "'COPY' is not lower-case like most instructions of this Dockerfile"
        )
    );
    assert_eq!(
        of(
            "ConsistentInstructionCasing",
            "From scratch\nFROM scratch\n"
        ),
        one(
            1,
            "'From' is not upper-case like most instructions of this Dockerfile"
        )
    );
    assert!(of("ConsistentInstructionCasing", "from scratch\ncopy a /a\n").is_empty());
    // The global ARGs before the first FROM do not count.
    assert!(of("ConsistentInstructionCasing", "arg A=1\nFROM scratch\n").is_empty());
}

#[test]
fn duplicate_stage_name() {
    assert_eq!(
        of(
            "DuplicateStageName",
            "FROM scratch AS b\nFROM scratch AS B\n"
        ),
        one(2, "stage name 'b' is already used by the stage on line 1")
    );
    assert!(
        of(
            "DuplicateStageName",
            "FROM scratch AS b1\nFROM scratch AS b2\n"
        )
        .is_empty()
    );
}

#[test]
fn reserved_stage_name() {
    assert_eq!(
        findings("FROM scratch AS scratch\nFROM busybox AS context\n")
            .into_iter()
            .filter(|f| f.0 == "ReservedStageName")
            .map(|f| f.1)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        of("ReservedStageName", "FROM scratch AS scratch\n"),
        one(
            1,
            "'scratch' already means something to FROM and --from; it should not name a stage"
        )
    );
    assert!(of("ReservedStageName", "FROM scratch\nFROM scratch AS a\n").is_empty());
}

#[test]
fn json_args_recommended() {
    assert_eq!(
        of("JSONArgsRecommended", "FROM scratch\nCMD mycommand\n"),
        one(
            2,
            "CMD in shell form runs under /bin/sh -c, which does not pass signals on to the program"
        )
    );
    assert_eq!(
        of(
            "JSONArgsRecommended",
            "FROM scratch\nENTRYPOINT my command\n"
        )
        .len(),
        1
    );
    assert!(of("JSONArgsRecommended", "FROM scratch\nCMD [\"mycommand\"]\n").is_empty());
    // An explicit SHELL, also in the stage built on, says the shell is wanted.
    let src = "FROM scratch AS base\nSHELL [\"/bin/bash\", \"-c\"]\nFROM base\nCMD mycommand\n";
    assert!(of("JSONArgsRecommended", src).is_empty());
}

#[test]
fn maintainer_deprecated() {
    assert_eq!(
        of(
            "MaintainerDeprecated",
            "FROM scratch\nMAINTAINER me@example.org\n"
        ),
        one(2, "MAINTAINER is deprecated")
    );
    let src = "FROM scratch\nLABEL org.opencontainers.image.authors=\"me@example.org\"\n";
    assert!(of("MaintainerDeprecated", src).is_empty());
}

#[test]
fn undefined_arg_in_from() {
    // The empty platform then fails the build too: the finding comes with the error.
    let r = calls::check(
        "FROM --platform=$BULIDPLATFORM scratch\n",
        &opts(),
        &[],
        &NoImages,
    );
    assert_eq!(
        list(&r),
        [("UndefinedArgInFrom", 1, "FROM uses ARG 'BULIDPLATFORM', which is not declared before the first FROM (did you mean BUILDPLATFORM?)".to_string())]
    );
    assert!(r.error.is_some());
    assert_eq!(
        of(
            "UndefinedArgInFrom",
            "ARG tag=latest\nFROM busybox:${tag}${version} AS b\n"
        ),
        one(
            2,
            "FROM uses ARG 'version', which is not declared before the first FROM"
        )
    );
    for good in [
        "ARG base=scratch\nFROM $base\n",
        "FROM --platform=$BUILDPLATFORM scratch\n",
        "ARG DEBUG\nFROM scratch${DEBUG}\n",
        "ARG DEBUG\nFROM scra${DEBUG:-tch}\n",
    ] {
        assert!(of("UndefinedArgInFrom", good).is_empty(), "{good}");
    }
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        of("WorkdirRelativePath", "FROM scratch\nWORKDIR app/\n"),
        one(
            2,
            "WORKDIR 'app/' is relative, and no absolute WORKDIR comes before it"
        )
    );
    // The first WORKDIR of the stage chain decides; later relative ones build on it.
    let src = "FROM scratch AS a\nWORKDIR /app\nFROM a AS b\nWORKDIR subdir/\n";
    assert!(of("WorkdirRelativePath", src).is_empty());
}

#[test]
fn undefined_var() {
    assert_eq!(
        of(
            "UndefinedVar",
            "FROM scratch\nCOPY $foo .\nARG foo=bar\nCOPY $foo .\n"
        ),
        one(2, "'$foo' is not defined at this point")
    );
    let src =
        "FROM scratch\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nCOPY $DIR_ASSET .\n";
    assert_eq!(
        of("UndefinedVar", src),
        one(
            4,
            "'$DIR_ASSET' is not defined at this point (did you mean $DIR_ASSETS?)"
        )
    );
    assert_eq!(
        of("UndefinedVar", "FROM scratch\nENV PATH=$PAHT:/tmp/bin\n"),
        one(
            2,
            "'$PAHT' is not defined at this point (did you mean $PATH?)"
        )
    );
    for good in [
        // Declared without a value: defined, only empty.
        "FROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n",
        // Declared in the stage built on.
        "FROM scratch AS base\nARG foo=Dockerfile\nFROM base\nCOPY $foo .\n",
        // The shell expands RUN, not the Dockerfile.
        "FROM scratch\nRUN echo $PATH $nothing\n",
    ] {
        assert!(of("UndefinedVar", good).is_empty(), "{good}");
    }
}

#[test]
fn multiple_instructions_disallowed() {
    let src = "FROM scratch\nENTRYPOINT [\"/a\"]\nENTRYPOINT [\"/b\"]\nCMD [\"/a\"]\nCOPY x /x\nCMD [\"/b\"]\nHEALTHCHECK CMD [\"/a\"]\nHEALTHCHECK CMD [\"/b\"]\n";
    assert_eq!(
        of("MultipleInstructionsDisallowed", src),
        vec![
            (
                2,
                "this ENTRYPOINT has no effect: the ENTRYPOINT on line 3 replaces it".to_string()
            ),
            (
                4,
                "this CMD has no effect: the CMD on line 6 replaces it".to_string()
            ),
            (
                7,
                "this HEALTHCHECK has no effect: the HEALTHCHECK on line 8 replaces it".to_string()
            ),
        ]
    );
    // Each stage has its own: a stage built on another may replace its CMD.
    let src = "FROM scratch AS a\nCMD [\"/a\"]\nFROM a AS b\nCMD [\"/b\"]\n";
    assert!(of("MultipleInstructionsDisallowed", src).is_empty());
}

#[test]
fn legacy_key_value_format() {
    let src = "FROM scratch\nENV testkey value\nLABEL key value\n";
    assert_eq!(
        of("LegacyKeyValueFormat", src),
        vec![
            (
                2,
                "ENV is written in the legacy \"ENV key value\" form".to_string()
            ),
            (
                3,
                "LABEL is written in the legacy \"LABEL key value\" form".to_string()
            ),
        ]
    );
    assert!(
        of(
            "LegacyKeyValueFormat",
            "FROM scratch\nENV testkey=value\nLABEL key=value\n"
        )
        .is_empty()
    );
}

/// A resolver whose images are all built for linux/arm64.
struct Arm64Images;

impl ImageResolver for Arm64Images {
    fn resolve(&self, _: &str, _: &Platform) -> Result<Option<ResolvedImage>, ResolveError> {
        Ok(Some(ResolvedImage {
            digest: None,
            config: ImageConfig {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into()),
                ..Default::default()
            },
        }))
    }
}

#[test]
fn invalid_base_image_platform() {
    let r = check_with("FROM busybox:1\n", &opts(), &Arm64Images);
    assert_eq!(
        list(&r),
        [(
            "InvalidBaseImagePlatform",
            1,
            "base image busybox:1 is for linux/arm64/v8, but this stage is built for linux/amd64"
                .to_string()
        )]
    );
    // Asked for, it is what the stage is built for (a constant --platform is another rule).
    let r = check_with(
        "FROM --platform=linux/arm64 busybox:1 AS arm64\n",
        &opts(),
        &Arm64Images,
    );
    assert!(list(&r).is_empty(), "{:?}", list(&r));
}

#[test]
fn redundant_target_platform() {
    assert_eq!(
        of(
            "RedundantTargetPlatform",
            "FROM --platform=$TARGETPLATFORM scratch\n"
        ),
        one(
            1,
            "--platform=$TARGETPLATFORM is the platform FROM uses anyway"
        )
    );
    assert_eq!(
        of(
            "RedundantTargetPlatform",
            "FROM --platform=${TARGETPLATFORM} scratch\n"
        ),
        one(
            1,
            "--platform=${TARGETPLATFORM} is the platform FROM uses anyway"
        )
    );
    assert!(
        of(
            "RedundantTargetPlatform",
            "FROM --platform=$BUILDPLATFORM scratch\n"
        )
        .is_empty()
    );
}

#[test]
fn secrets_used_in_arg_or_env() {
    let src = "FROM scratch\nARG SECRET_PASSPHRASE\nENV password=bar public_token=x\nARG super_duper_secret_token=foo AUTH_MODULE_VERSION=1\nENV git_key= apikey_file=f\n";
    assert_eq!(
        of("SecretsUsedInArgOrEnv", src),
        vec![
            (2, "ARG 'SECRET_PASSPHRASE' looks like it holds a secret, which would stay in the image".to_string()),
            (3, "ENV 'password' looks like it holds a secret, which would stay in the image".to_string()),
            (4, "ARG 'super_duper_secret_token' looks like it holds a secret, which would stay in the image".to_string()),
            (5, "ENV 'git_key' looks like it holds a secret, which would stay in the image".to_string()),
        ]
    );
    assert!(
        of(
            "SecretsUsedInArgOrEnv",
            "FROM scratch\nARG keyboard=1\nENV monkey=2\n"
        )
        .is_empty()
    );
}

#[test]
fn invalid_default_arg_in_from() {
    let mut o = opts();
    o.build_args = BTreeMap::from([("VERSION".to_string(), "latest".to_string())]);
    let r = check_with("ARG VERSION\nFROM busybox:$VERSION\n", &o, &NoImages);
    assert_eq!(
        list(&r),
        [(
            "InvalidDefaultArgInFrom",
            2,
            "with the default values of its ARGs, FROM busybox:$VERSION gives 'busybox:', which is not a valid image name".to_string()
        )]
    );
    for good in [
        "ARG VERSION=latest\nFROM busybox:${VERSION}\n",
        "ARG VARIANT\nFROM busybox:stable${VARIANT}\n",
        "ARG TAG\nFROM alpine:${TAG:-3.14}\n",
    ] {
        assert!(list(&check_with(good, &o, &NoImages)).is_empty(), "{good}");
    }
}

#[test]
fn from_platform_flag_const_disallowed() {
    assert_eq!(
        of(
            "FromPlatformFlagConstDisallowed",
            "FROM --platform=linux/amd64 scratch\n"
        ),
        one(1, "FROM --platform is the constant 'linux/amd64'")
    );
    for good in [
        "FROM --platform=linux/amd64 scratch AS my_amd64_stage\n",
        "FROM --platform=linux/amd64 scratch AS linux\n",
        "FROM --platform=$BUILDPLATFORM scratch\n",
    ] {
        assert!(
            of("FromPlatformFlagConstDisallowed", good).is_empty(),
            "{good}"
        );
    }
}

#[test]
fn copy_ignored_file() {
    let with_ignore = |patterns: &[&str]| LowerOptions {
        ignore_patterns: patterns.iter().map(|p| p.to_string()).collect(),
        ..opts()
    };
    let src = "FROM scratch\nCOPY Dockerfile .\nADD ./Dockerfile /windy\n";
    let r = check_with(src, &with_ignore(&["Dockerfile"]), &NoImages);
    assert_eq!(
        list(&r),
        [
            ("CopyIgnoredFile", 2, "COPY source 'Dockerfile' is excluded by .dockerignore, so it is not in the context".to_string()),
            ("CopyIgnoredFile", 3, "ADD source 'Dockerfile' is excluded by .dockerignore, so it is not in the context".to_string()),
        ]
    );
    // The context root counts only for a pattern excluding everything.
    let root = "FROM scratch\nCOPY . .\n";
    assert_eq!(
        list(&check_with(root, &with_ignore(&["*"]), &NoImages)).len(),
        1
    );
    for (src, patterns) in [
        (root, &[".*"][..]),
        // With exceptions, only the files could tell.
        (
            "FROM scratch\nCOPY ./Dockerfile .\n",
            &["**", "!Dockerfile"][..],
        ),
        // Another stage is not the context.
        (
            "FROM scratch AS base\nCOPY x /foobar\nFROM base\nCOPY --from=base /foobar /y\n",
            &["foobar"][..],
        ),
    ] {
        assert!(
            list(&check_with(src, &with_ignore(patterns), &NoImages)).is_empty(),
            "{src}"
        );
    }
}

#[test]
fn expose_proto_casing() {
    assert_eq!(
        of(
            "ExposeProtoCasing",
            "FROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n"
        ),
        vec![
            (
                2,
                "protocol 'TcP' in EXPOSE '80/TcP' is not lower-case".to_string()
            ),
            (
                2,
                "protocol 'TCP' in EXPOSE '8080/TCP' is not lower-case".to_string()
            ),
        ]
    );
    assert!(
        of(
            "ExposeProtoCasing",
            "FROM scratch\nEXPOSE 80/tcp 53/udp 22\n"
        )
        .is_empty()
    );
}

#[test]
fn expose_invalid_format() {
    let src = "FROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n";
    assert_eq!(
        of("ExposeInvalidFormat", src),
        vec![
            // EXPOSE takes its ports in sorted order.
            (
                2,
                "EXPOSE '127.0.0.1:80:80' names an IP address or a host port".to_string()
            ),
            (
                2,
                "EXPOSE '5000:5000' names an IP address or a host port".to_string()
            ),
            (
                2,
                "EXPOSE '[::1]:8080:8080' names an IP address or a host port".to_string()
            ),
        ]
    );
    assert!(
        of(
            "ExposeInvalidFormat",
            "FROM scratch\nEXPOSE 8000 9000-9002/udp\n"
        )
        .is_empty()
    );
}

#[test]
fn check_directive_skips_and_errors() {
    let src = "FROM scratch as base\ncopy Dockerfile .\n";
    let rules = |s: &str| -> Vec<&str> { findings(s).into_iter().map(|f| f.0).collect() };
    assert_eq!(rules(src), ["FromAsCasing", "ConsistentInstructionCasing"]);
    assert!(rules(&format!("#check=skip=all\n{src}")).is_empty());
    assert_eq!(
        rules(&format!("# check=skip=ConsistentInstructionCasing\n{src}")),
        ["FromAsCasing"]
    );
    assert!(
        rules(&format!(
            "#check=skip=ConsistentInstructionCasing,FromAsCasing\n{src}"
        ))
        .is_empty()
    );

    // error=true: the findings fail the build; without findings it passes.
    let r = check_with(&format!("# check=error=true\n{src}"), &opts(), &NoImages);
    let err = r.violation().expect("error=true with findings fails");
    assert!(
        err.message
            .contains("ConsistentInstructionCasing, FromAsCasing"),
        "{}",
        err.message
    );
    assert_eq!(err.line, 2);
    let r = check_with("# check=error=true\nFROM scratch\n", &opts(), &NoImages);
    assert!(r.findings.is_empty() && r.violation().is_none());
    let r = check_with(src, &opts(), &NoImages);
    assert!(!r.findings.is_empty() && r.violation().is_none());

    // A comment right above an instruction skips rules for that instruction only.
    let src = "FROM scratch\n# check=skip=MaintainerDeprecated // kept for old tools\nMAINTAINER a\nMAINTAINER b\n";
    assert_eq!(
        findings(src),
        [(
            "MaintainerDeprecated",
            4,
            "MAINTAINER is deprecated".to_string()
        )]
    );

    // A setting rbuild cannot read is an error at the directive.
    let r = calls::check(
        "# check=skip=all;warn=true\nFROM scratch\n",
        &opts(),
        &[],
        &NoImages,
    );
    let e = r.error.expect("a bad directive fails the check");
    assert_eq!(
        (e.line, e.message.as_str()),
        (1, "# check= directive: invalid check option \"warn\"")
    );
}

#[test]
fn check_build_arg_replaces_the_directive() {
    let src = "#check=skip=all\nFROM scratch as base\ncopy Dockerfile .\n";
    let mut o = opts();
    o.build_args.insert(
        "BUILDKIT_DOCKERFILE_CHECK".into(),
        "skip=ConsistentInstructionCasing;error=true".into(),
    );
    let r = check_with(src, &o, &NoImages);
    assert_eq!(
        list(&r).iter().map(|f| f.0).collect::<Vec<_>>(),
        ["FromAsCasing"]
    );
    assert!(r.violation().is_some());
    o.build_args
        .insert("BUILDKIT_DOCKERFILE_CHECK".into(), "skip=all".into());
    let r = check_with("#check=error=true\nFROM scratch as base\n", &o, &NoImages);
    assert!(r.findings.is_empty() && r.violation().is_none());
}

#[test]
fn a_build_checks_the_stages_it_builds_and_the_file() {
    // Stage `a` is not built for the default target: its ENV is not checked by the build,
    // but the casing of every stage is. `--call check` checks every stage.
    let src = "FROM scratch AS a\nENV k v\nFROM scratch as b\nLABEL x y\n";
    let built = lower_targets(src, &opts(), &[], &NoImages).unwrap();
    assert_eq!(
        list(&built.lint)
            .iter()
            .map(|f| (f.0, f.1))
            .collect::<Vec<_>>(),
        [("FromAsCasing", 3), ("LegacyKeyValueFormat", 4)]
    );
    assert_eq!(
        findings(src).iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [
            ("LegacyKeyValueFormat", 2),
            ("FromAsCasing", 3),
            ("LegacyKeyValueFormat", 4)
        ]
    );
    // With a target, `--call check` checks what that target needs.
    let r = calls::check(src, &opts(), &["a".to_string()], &NoImages);
    assert_eq!(
        list(&r).iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [("LegacyKeyValueFormat", 2), ("FromAsCasing", 3)]
    );
}

#[test]
fn check_reports_what_it_found_before_an_error() {
    let src = "FROM scratch AS BadName\nMAINTAINER me\nCOPY --from=nowhere-$X a b\n";
    let r = calls::check(src, &opts(), &[], &NoImages);
    assert_eq!(
        list(&r).iter().map(|f| f.0).collect::<Vec<_>>(),
        ["StageNameCasing", "MaintainerDeprecated"]
    );
    assert!(r.error.is_some());
    let json = serde_json::to_value(r.json(src)).unwrap();
    assert!(
        json["buildError"]["message"]
            .as_str()
            .unwrap()
            .contains("--from")
    );
}

#[test]
fn findings_render_with_the_lines_a_caret_and_help() {
    let src = "FROM scratch AS BadName\nCOPY a \\\n  b\n";
    let r = check_with(src, &opts(), &NoImages);
    assert_eq!(
        r.render(src),
        "Dockerfile:1:17: StageNameCasing: stage name 'BadName' is not lower-case\n  1 | FROM scratch AS BadName\n    |                 ^\n  rule: Stage names should be lower-case\n  help: name the stage 'badname'\n"
    );
    let json = serde_json::to_value(r.json(src)).unwrap();
    let w = &json["warnings"][0];
    assert_eq!(w["ruleName"], "StageNameCasing");
    assert_eq!(w["description"], "Stage names should be lower-case");
    assert_eq!(w["detail"], "stage name 'BadName' is not lower-case");
    assert_eq!(w["location"]["ranges"][0]["start"]["line"], 1);
    assert_eq!(w["location"]["ranges"][0]["start"]["character"], 16);
    assert_eq!(json["sources"][0]["filename"], "Dockerfile");
    assert_eq!(
        r.summary(),
        " - StageNameCasing: stage name 'BadName' is not lower-case (Dockerfile:1)\n"
    );
}
