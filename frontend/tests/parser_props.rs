//! Robustness: no input makes the parser, the dumper or the typed layer
//! panic, and what they accept is structurally sound.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use rbuild_frontend::dump::dump;
mod common;

use rbuild_frontend::instructions::instructions;
use rbuild_frontend::parser::parse;

/// Every fixture Dockerfile under `root`.
fn fixtures(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [
        "buildkit/parser/testfiles",
        "buildkit/parser/testfiles-negative",
        "realworld",
    ] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(s) = fs::read_to_string(e.path().join("Dockerfile")) {
                out.push(s);
            }
        }
    }
    assert!(
        out.len() > 200,
        "fixtures not found under {}",
        root.display()
    );
    out
}

/// Runs the whole pipeline and checks the invariants of an accepted file.
fn exercise(src: &str) {
    let Ok(df) = parse(src) else { return };
    let lines = src.split_inclusive('\n').count().max(1);
    for n in &df.nodes {
        assert!(n.span.start_line >= 1 && n.span.start_line <= n.span.end_line);
        assert!(
            n.span.end_line <= lines,
            "span {:?} past {lines} lines",
            n.span
        );
    }
    let text = dump(&df);
    assert_eq!(text.lines().count(), df.nodes.len());
    let _ = instructions(&df, src);
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "\\",
                "`",
                "\"",
                "'",
                "[",
                "]",
                "<<",
                "<<-EOF",
                "\n",
                "\r\n",
                "#",
                "# escape=`\n",
                "--",
                "--x=",
                "${",
                "=",
                "\t",
                "EOF\n",
                "\u{feff}",
                "é",
                "\\\n",
                " ",
            ])
            .prop_map(str::to_string)
        )
            .prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut s = src.to_string();
    for m in muts {
        let len = s.len().max(1);
        match m {
            Mutation::Delete(a, n) => {
                let start = floor_boundary(&s, a % len);
                let end = floor_boundary(&s, start + n);
                s.replace_range(start..end, "");
            }
            Mutation::Insert(a, t) => {
                let at = floor_boundary(&s, a % len);
                s.insert_str(at, t);
            }
            Mutation::SwapLines(a, b) => {
                let mut lines: Vec<&str> = s.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let (i, j) = (a % lines.len(), b % lines.len());
                    lines.swap(i, j);
                }
                s = lines.concat();
            }
            Mutation::Truncate(a) => {
                let at = floor_boundary(&s, a % len);
                s.truncate(at);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        exercise(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn dockerfile_alphabet_never_panics(
        s in "((FROM|RUN|COPY|ADD|ENV|ARG|LABEL|ONBUILD|HEALTHCHECK|CMD|SHELL|onbuild|Run) |[a-z=\"' \\t\\\\`\\[\\]{},<>$#-]|\n|<<EOF|EOF\n|--[a-z]+=?){0,60}"
    ) {
        exercise(&s);
    }
}

/// Fixtures with a few random edits. Not in `proptest!`: whether the fixtures are there is
/// decided once, before any case runs (an absent directory skips or, under CI, fails once).
#[test]
fn mutated_fixtures_never_panic() {
    let Some(root) = common::conformance_dir_or_skip("parser_props::mutated_fixtures_never_panic")
    else {
        return;
    };
    let all = fixtures(&root);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let cases = (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation(), 1..6),
    );
    let outcome = runner.run(&cases, |(idx, muts)| {
        exercise(&apply(&all[idx.index(all.len())], &muts));
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn pathological_inputs_never_panic() {
    let deep_json = format!("CMD {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let deep_subst = format!("RUN <<{}\n", "${a:-".repeat(50_000));
    let long_continuation = "RUN a \\\n".repeat(20_000);
    for s in [
        deep_json.as_str(),
        deep_subst.as_str(),
        long_continuation.as_str(),
        "\\",
        "\u{feff}",
        "\u{feff}\\\n",
        "RUN <<",
        "RUN <<\"",
        "COPY <<EOF\n",
        "ONBUILD ONBUILD ONBUILD",
        "ENV ==",
        "HEALTHCHECK \u{a0}CMD x",
        "FROM a\r\nRUN b\\\r\nc\r\n",
    ] {
        exercise(s);
    }
}
