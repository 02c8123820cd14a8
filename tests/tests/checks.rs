//! Build checks in real builds: a build lists its findings when it ends and its image is
//! the one a build without checks makes; `# check=error=true` stops a build before any step
//! runs; `--check` judges a base image's platform from the store.
//! Needs root and busybox-static (scripts/install-deps.sh).

use rbuild_tests::{Env, executed, plain_steps};
use std::path::Path;
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn image_id(o: &Output) -> String {
    text(&o.stdout).trim().to_string()
}

const WITH_FINDINGS: &str = "FROM busybox:latest as base\nENV greeting hello\nRUN echo $greeting > /greeting\nCMD cat /greeting\n";

#[test]
fn a_build_lists_its_findings_at_the_end_and_they_change_nothing() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("warned", &[("Dockerfile", WITH_FINDINGS)]);
    let o = env.ok(&["build", "--progress=plain", "-t", "warned:1", p(&ctx)]);
    let err = text(&o.stderr);
    let tail = err
        .split("\n3 build check warnings (rbuild build --check shows them in full):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary at the end:\n{err}"));
    assert!(tail.contains(" - FromAsCasing: "), "{tail}");
    assert!(tail.contains(" - LegacyKeyValueFormat: "), "{tail}");
    assert!(tail.contains(" - JSONArgsRecommended: "), "{tail}");
    assert!(tail.contains("Dockerfile:1)"), "{tail}");

    // The same Dockerfile with every check skipped makes the same image, and says nothing.
    let quiet = env.context(
        "quiet",
        &[("Dockerfile", &format!("# check=skip=all\n{WITH_FINDINGS}"))],
    );
    let a = env.ok(&["build", "-q", p(&ctx)]);
    let b = env.ok(&["build", "--progress=plain", p(&quiet)]);
    assert!(
        !text(&b.stderr).contains("build check"),
        "{}",
        text(&b.stderr)
    );
    let b = env.ok(&["build", "-q", p(&quiet)]);
    assert_eq!(image_id(&a), image_id(&b));
    assert!(
        text(&a.stderr).is_empty(),
        "-q prints no summary: {}",
        text(&a.stderr)
    );
}

#[test]
fn error_true_stops_the_build_before_anything_runs() {
    let env = Env::new();
    env.busybox_base();
    let df = format!("# check=error=true\n{WITH_FINDINGS}");
    let ctx = env.context("strict", &[("Dockerfile", &df)]);
    let o = env.run(&["build", "--progress=plain", "-t", "strict:1", p(&ctx)]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "build checks failed (FromAsCasing, JSONArgsRecommended, LegacyKeyValueFormat)"
        ),
        "{err}"
    );
    assert!(
        err.contains(" - FromAsCasing: "),
        "the findings are listed: {err}"
    );
    assert!(
        executed(&plain_steps(&err), "echo").is_empty(),
        "nothing ran: {err}"
    );
    assert!(!env.run(&["inspect", "strict:1"]).status.success());

    // Fixed, it builds.
    let fixed = "# check=error=true\nFROM busybox:latest AS base\nENV greeting=hello\nRUN echo $greeting > /greeting\nCMD [\"cat\", \"/greeting\"]\n";
    let ctx = env.context("fixed", &[("Dockerfile", fixed)]);
    env.ok(&["build", "--progress=plain", "-t", "strict:1", p(&ctx)]);
}

#[test]
fn check_judges_the_base_image_platform_from_the_store() {
    let env = Env::new();
    env.busybox_base();
    // The store's busybox is built for the host; ask for another architecture.
    let other = if std::env::consts::ARCH == "aarch64" {
        "amd64"
    } else {
        "arm64"
    };
    let df = format!("FROM --platform=linux/{other} busybox:latest AS {other}-tools\nRUN true\n");
    let ctx = env.context("platform", &[("Dockerfile", &df)]);
    let o = env.run(&["build", "--check", p(&ctx)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("InvalidBaseImagePlatform: base image busybox:latest is for linux/"),
        "{out}"
    );
    assert!(
        out.contains(&format!("but this stage is built for linux/{other}")),
        "{out}"
    );
    assert!(out.contains("Check complete, 1 warning found."), "{out}");

    let same = "FROM busybox:latest\nRUN true\n";
    let ctx = env.context("same", &[("Dockerfile", same)]);
    let o = env.run(&["build", "--check", p(&ctx)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}
