//! The parser against BuildKit's parser fixtures and ~235 real-world
//! Dockerfiles: every dump must match `result` byte for byte, every negative
//! fixture must be rejected, and line ranges must match BuildKit's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rbuild_frontend::dump::dump;
use rbuild_frontend::instructions::instructions;
use rbuild_frontend::parser::parse;

mod common;
use common::conformance_dir_or_skip;

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// First differing line of two dumps, for the failure report.
fn first_diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        let (el, al) = (e.get(i).copied(), a.get(i).copied());
        if el != al {
            return format!(
                "  line {}:\n    expected: {}\n    actual:   {}",
                i + 1,
                el.unwrap_or("<none>"),
                al.unwrap_or("<none>")
            );
        }
    }
    "  (only trailing newline differs)".into()
}

/// Parses every `Dockerfile` under `dir/*/` and compares with `result`.
fn check_positive(dir: &Path, typed: bool, failures: &mut Vec<String>) -> (usize, usize) {
    let dirs = subdirs(dir);
    let mut ok = 0;
    for d in &dirs {
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes = fs::read(d.join("Dockerfile")).expect("Dockerfile");
        let expected = fs::read_to_string(d.join("result")).expect("result");
        let Ok(src) = String::from_utf8(bytes) else {
            failures.push(format!("{name}: Dockerfile is not UTF-8"));
            continue;
        };
        match parse(&src) {
            Ok(df) => {
                let got = dump(&df);
                // Real Dockerfiles must also convert to typed instructions (some
                // BuildKit parser fixtures are deliberately not buildable).
                let typed_err = if typed {
                    instructions(&df, &src).err()
                } else {
                    None
                };
                if let Some(e) = typed_err {
                    failures.push(format!("{name}: typed instructions rejected it: {e}"));
                } else if got == expected {
                    ok += 1;
                } else {
                    failures.push(format!(
                        "{name}: dump differs\n{}",
                        first_diff(&expected, &got)
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: rejected: {e}")),
        }
    }
    (ok, dirs.len())
}

#[test]
fn parser_conformance() {
    let Some(root) = conformance_dir_or_skip("parser_conformance::parser_conformance") else {
        return;
    };
    let mut failures = Vec::new();
    let (bk_ok, bk_total) = check_positive(
        &root.join("buildkit/parser/testfiles"),
        false,
        &mut failures,
    );
    let (rw_ok, rw_total) = check_positive(&root.join("realworld"), true, &mut failures);

    let negative = subdirs(&root.join("buildkit/parser/testfiles-negative"));
    let mut neg_ok = 0;
    for d in &negative {
        let src = fs::read_to_string(d.join("Dockerfile")).expect("Dockerfile");
        match parse(&src) {
            Err(_) => neg_ok += 1,
            Ok(df) => failures.push(format!(
                "{}: accepted but must be rejected:\n{}",
                d.display(),
                dump(&df)
            )),
        }
    }
    // Through the stderr handle: libtest's capture would hide println! from CI's log.
    let _ = writeln!(
        std::io::stderr(),
        "parser conformance: {bk_ok}/{bk_total} buildkit, {rw_ok}/{rw_total} realworld, {neg_ok}/{} negative",
        negative.len()
    );
    // Guard against an empty or moved fixture tree passing vacuously.
    assert!(
        bk_total >= 30 && rw_total >= 200 && negative.len() >= 4,
        "fixtures missing"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn line_ranges_match_buildkit() {
    // Expected ranges from BuildKit's TestParseIncludesLineNumbers.
    let Some(root) = conformance_dir_or_skip("parser_conformance::line_ranges_match_buildkit")
    else {
        return;
    };
    let src = fs::read_to_string(root.join("buildkit/parser/testfile-line/Dockerfile"))
        .expect("testfile-line");
    let df = parse(&src).expect("parses");
    let ranges: Vec<(usize, usize)> = df
        .nodes
        .iter()
        .map(|n| (n.span.start_line, n.span.end_line))
        .collect();
    assert_eq!(ranges, vec![(5, 5), (11, 12), (17, 31)]);
    assert_eq!(df.nodes[1].original, "ENV GOPATH /go");
}

/// Parse throughput on ~20 MB built by repeating the real-world fixtures.
/// Run with `cargo test --release -p rbuild-frontend --test parser_conformance -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run in release mode"]
fn parse_throughput() {
    let Some(root) = conformance_dir_or_skip("parser_conformance::parse_throughput") else {
        return;
    };
    let mut corpus = String::new();
    let sources: Vec<String> = subdirs(&root.join("realworld"))
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("Dockerfile")).ok())
        // Directives only count at the top; keep the corpus one valid file.
        .filter(|s| !s.to_lowercase().contains("escape="))
        .collect();
    while corpus.len() < 20 << 20 {
        for s in &sources {
            corpus.push_str(s);
            if !s.ends_with('\n') {
                corpus.push('\n');
            }
        }
    }
    let start = std::time::Instant::now();
    let df = parse(&corpus).expect("corpus parses");
    let parse_secs = start.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let out = dump(&df);
    let dump_secs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let typed = instructions(&df, &corpus).expect("typed");
    let typed_secs = t.elapsed().as_secs_f64();
    let mb = corpus.len() as f64 / (1 << 20) as f64;
    println!(
        "parse: {mb:.1} MB, {} instructions in {parse_secs:.3}s = {:.1} MB/s; dump {:.1} MB/s; typed {:.1} MB/s",
        df.nodes.len(),
        mb / parse_secs,
        mb / dump_secs,
        mb / typed_secs
    );
    assert_eq!(typed.len(), df.nodes.len());
    assert!(!out.is_empty());
}
