//! Where the conformance fixtures are, and what a test does when they are not there.
//!
//! They are `$RBUILD_CONFORMANCE_DIR` when set (scripts/test.sh sets it for a clone that is
//! not beside `shared/`), else `shared/conformance` beside the checkout. A clone on its own
//! has neither: the tests that read fixtures then say so in one line on stderr and pass, so
//! the README's test command is green anywhere. Under CI (`CI` set, and not `false` or `0`)
//! an absent fixture directory fails instead: CI must never skip them silently.

use std::io::Write;
use std::path::PathBuf;

fn conformance_dir() -> PathBuf {
    match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

/// The fixture directory for `test`, or None (after one line on stderr naming `test` and
/// why) when it is absent outside CI. Panics when it is absent under CI.
pub fn conformance_dir_or_skip(test: &str) -> Option<PathBuf> {
    let dir = conformance_dir();
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !in_ci(),
        "{test}: conformance fixtures not found at {} and CI is set, so they may not be \
         skipped; point RBUILD_CONFORMANCE_DIR at shared/conformance (scripts/test.sh finds \
         it beside the checkout or beside the repository it was cloned from)",
        dir.display()
    );
    // Through the stderr handle: libtest's capture would hide eprintln! from a passing test.
    // One write of the whole line, so that parallel tests' output cannot tear it, starting on
    // a line of its own (libtest may be mid-line, e.g. its `-q` dots).
    let line = format!(
        "\nSKIPPED {test}: conformance fixtures not found at {} (no shared/ beside this clone); \
         set RBUILD_CONFORMANCE_DIR to run it\n",
        dir.display()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    None
}
