//! BuildKit's shell-expansion conformance tables (envVarTest, wordsTest), run against
//! `rbuild_frontend::shell::Lexer`. Format: ../../shared/conformance/README.md.

use rbuild_frontend::shell::Lexer;
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

fn fixture(root: &Path, name: &str) -> String {
    let path = root.join("buildkit/shell").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

struct Outcome {
    passed: usize,
    total: usize,
    skipped: usize,
    failures: Vec<String>,
}

fn run_env_var_test(root: &Path) -> Outcome {
    let env: HashMap<&str, &str> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .collect();
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let lex = Lexer::new('\\');
    let mut out = Outcome {
        passed: 0,
        total: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    for (n, line) in fixture(root, "envVarTest").lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            3,
            "envVarTest:{}: malformed line {line:?}",
            n + 1
        );
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "W" => {
                out.skipped += 1;
                continue;
            }
            "A" | "U" => {}
            other => panic!("envVarTest:{}: unknown platform {other:?}", n + 1),
        }
        out.total += 1;
        let got = lex.expand_word(input, &lookup);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), e) => e != "error" && v == e,
            (Err(_), _) => false,
        };
        if ok {
            out.passed += 1;
        } else {
            out.failures.push(format!(
                "envVarTest:{}: {input:?}: got {got:?}, expected {expected:?}",
                n + 1
            ));
        }
    }
    out
}

fn run_words_test(root: &Path) -> Outcome {
    let mut env: HashMap<String, String> = HashMap::new();
    let lex = Lexer::new('\\');
    let mut out = Outcome {
        passed: 0,
        total: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    for (n, line) in fixture(root, "wordsTest").lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.insert(k.to_string(), v.to_string());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            2,
            "wordsTest:{}: malformed line {line:?}",
            n + 1
        );
        let input = fields[0].trim();
        let expected: Vec<String> = fields[1]
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        out.total += 1;
        let got = lex.expand_words(input, &|k| env.get(k).cloned());
        let ok = match &got {
            Ok(words) => *words == expected,
            Err(_) => expected == ["error"],
        };
        if ok {
            out.passed += 1;
        } else {
            out.failures.push(format!(
                "wordsTest:{}: {input:?}: got {got:?}, expected {expected:?}",
                n + 1
            ));
        }
    }
    out
}

#[test]
fn buildkit_shell_conformance() {
    let Some(root) =
        common::conformance_dir_or_skip("shell_conformance::buildkit_shell_conformance")
    else {
        return;
    };
    let ev = run_env_var_test(&root);
    let wt = run_words_test(&root);
    // Written to the stderr handle, not with eprintln!, so that libtest's
    // capture does not hide the counts from CI's log.
    let _ = writeln!(
        std::io::stderr(),
        "shell conformance: envVarTest {}/{} (W skipped: {}), wordsTest {}/{}",
        ev.passed,
        ev.total,
        ev.skipped,
        wt.passed,
        wt.total
    );
    // Guard against a fixture that silently stopped being read.
    assert!(ev.total > 200 && wt.total > 20, "fixtures look truncated");
    let failures: Vec<String> = ev.failures.into_iter().chain(wt.failures).collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
