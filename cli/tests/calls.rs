//! `--call check|outline|targets` and `--check` through the binary: what they print (text
//! and JSON), their exit status (buildx's: 1 when the check finds anything, unless
//! `ignorestatus=true`; 1 always under `error=true`), and that they build nothing and create
//! no store. Nothing here needs root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .env("RBUILD_ROOT", root)
        .args(args)
        .output()
        .expect("run rbuild")
}

/// A context with `files`, and a store root that does not exist.
fn ctx(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        std::fs::write(dir.path().join(p), c).unwrap();
    }
    let root = dir.path().join("no-root-yet");
    (dir, root)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CLEAN: &str = "FROM busybox AS base\nCOPY f /f\n";
const TWO_FINDINGS: &str = "FROM busybox as base\nCOPY f /f\nMAINTAINER me\n";

#[test]
fn check_exit_codes_follow_buildx() {
    let (dir, root) = ctx(&[("Dockerfile", CLEAN), ("f", "x")]);
    let c = dir.path().to_str().unwrap();
    let o = rbuild(&root, &["build", "--check", c]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "Check complete, no warnings found.\n");
    assert!(!root.exists(), "a check must not create a store");

    let (dir, root) = ctx(&[("Dockerfile", TWO_FINDINGS), ("f", "x")]);
    let c = dir.path().to_str().unwrap();
    let o = rbuild(&root, &["build", "--check", c]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "findings make the status 1: {}",
        err(&o)
    );
    let text = out(&o);
    assert!(
        text.contains("Dockerfile:1:14: FromAsCasing: 'as' is not cased like 'FROM'"),
        "{text}"
    );
    assert!(
        text.contains("  1 | FROM busybox as base\n    |              ^\n"),
        "{text}"
    );
    assert!(
        text.contains("Dockerfile:3:1: MaintainerDeprecated"),
        "{text}"
    );
    assert!(text.contains("  help: "), "{text}");
    assert!(
        text.ends_with("\nCheck complete, 2 warnings found.\n"),
        "{text}"
    );

    // `--call check` is the same; ignorestatus keeps the status 0.
    let o = rbuild(&root, &["build", "--call", "check,ignorestatus=true", c]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("2 warnings found"));
}

#[test]
fn check_with_error_true_fails_whatever_ignorestatus_says() {
    let df = format!("# check=error=true\n{TWO_FINDINGS}");
    let (dir, root) = ctx(&[("Dockerfile", &df), ("f", "x")]);
    let c = dir.path().to_str().unwrap();
    let o = rbuild(&root, &["build", "--call=check,ignorestatus=true", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("2 warnings found"), "{}", out(&o));
    assert!(
        err(&o).contains("build checks failed (FromAsCasing, MaintainerDeprecated)"),
        "{}",
        err(&o)
    );
    // Skipping the rules in the build arg form clears it.
    let o = rbuild(
        &root,
        &[
            "build",
            "--check",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=FromAsCasing,MaintainerDeprecated",
            c,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
}

#[test]
fn check_json_is_buildkits_shape() {
    let (dir, root) = ctx(&[("Dockerfile", TWO_FINDINGS), ("f", "x")]);
    let c = dir.path().to_str().unwrap();
    let o = rbuild(&root, &["build", "--check", "--format", "json", c]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let w = &v["warnings"];
    assert_eq!(w.as_array().map(Vec::len), Some(2));
    assert_eq!(w[0]["ruleName"], "FromAsCasing");
    assert_eq!(w[0]["location"]["ranges"][0]["start"]["line"], 1);
    assert_eq!(w[1]["ruleName"], "MaintainerDeprecated");
    assert!(w[1]["detail"].is_string() && w[1]["description"].is_string());
    assert!(
        v["sources"][0]["filename"]
            .as_str()
            .unwrap()
            .ends_with("Dockerfile")
    );
    assert!(v.get("buildError").is_none());

    // A Dockerfile that cannot be lowered: the findings and the error, status 1.
    let (dir, root) = ctx(&[("Dockerfile", "FROM busybox as a\nCOPY --from=$X a b\n")]);
    let o = rbuild(
        &root,
        &[
            "build",
            "--call",
            "check,format=json",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["warnings"][0]["ruleName"], "FromAsCasing");
    assert!(
        v["buildError"]["message"]
            .as_str()
            .unwrap()
            .contains("--from")
    );
}

const OUTLINE: &str = "# VERSION is the release to package
ARG VERSION=1.2.3

# build compiles the server
FROM busybox AS build
ARG GOFLAGS=-trimpath
RUN --mount=type=secret,id=netrc,required=true make

# app is the image that ships
FROM scratch AS app
ARG VERSION
COPY --from=build /bin/server /server
";

#[test]
fn outline_and_targets_in_text_and_json() {
    let (dir, root) = ctx(&[("Dockerfile", OUTLINE)]);
    let c = dir.path().to_str().unwrap();
    let o = rbuild(
        &root,
        &["build", "--call", "outline", "--build-arg", "GOFLAGS=-v", c],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "TARGET:      app\nDESCRIPTION: is the image that ships\n\n\
         BUILD ARG   VALUE   DESCRIPTION\n\
         VERSION     1.2.3   is the release to package\n\
         GOFLAGS     -v\n\n\
         SECRET   REQUIRED\nnetrc    true\n\n"
    );
    let o = rbuild(
        &root,
        &[
            "build",
            "--call=outline,format=json",
            "--target",
            "build",
            c,
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "build");
    assert_eq!(v["description"], "compiles the server");
    assert_eq!(v["args"][0]["name"], "GOFLAGS");
    assert_eq!(v["args"][0]["value"], "-trimpath");
    assert_eq!(v["secrets"][0]["name"], "netrc");

    let o = rbuild(&root, &["build", "--call", "targets", c]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "TARGET        DESCRIPTION\nbuild         compiles the server\napp (default) is the image that ships\n"
    );
    let o = rbuild(
        &root,
        &["build", "--call", "targets", "--format", "json", c],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["targets"][1]["name"], "app");
    assert_eq!(v["targets"][1]["default"], true);
    assert_eq!(v["targets"][0]["base"], "busybox");
    assert!(!root.exists(), "calls must not create a store");
}

#[test]
fn call_flags_that_do_not_go_together() {
    let (dir, root) = ctx(&[("Dockerfile", CLEAN)]);
    let c = dir.path().to_str().unwrap();
    for (args, message) in [
        (
            &["--check", "--call", "outline"][..],
            "--check is --call check",
        ),
        (
            &["--call", "check", "--dry-run"][..],
            "--call and --dry-run",
        ),
        (
            &["--call", "targets", "--format", "dot"][..],
            "--format dot is for --dry-run",
        ),
        (
            &["--call", "frobnicate"][..],
            "build, check, outline and targets",
        ),
    ] {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        all.push(c);
        let o = rbuild(&root, &all);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(err(&o).contains(message), "{args:?}: {}", err(&o));
    }
}
