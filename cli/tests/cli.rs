//! The `rbuild` binary's surface: debug parse, --dry-run and bad-input errors.
//! Nothing here needs root or a store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .env("RBUILD_ROOT", root)
        .args(args)
        .output()
        .expect("run rbuild")
}

fn ctx(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
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

#[test]
fn debug_parse_prints_buildkit_dump() {
    let (dir, root) = ctx(&[(
        "Dockerfile",
        "from busybox AS b\nENV a=1 b=\"2 3\"\nRUN [\"echo\", \"hi\"]\n",
    )]);
    let o = rbuild(
        &root,
        &[
            "debug",
            "parse",
            dir.path().join("Dockerfile").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "(from \"busybox\" \"AS\" \"b\")\n(env \"a\" \"1\" \"=\" \"b\" \"\\\"2 3\\\"\" \"=\")\n(run \"echo\" \"hi\")\n"
    );
}

const FOUR: &str = "FROM busybox AS base\nRUN echo base > /base\nFROM base AS a\nRUN echo a > /a\nFROM busybox AS unused\nRUN echo unused\nFROM a AS final\nCOPY f /f\n";

#[test]
fn dry_run_lists_only_needed_vertices_in_every_format() {
    let (dir, root) = ctx(&[("Dockerfile", FOUR), ("f", "x")]);
    let c = dir.path().to_str().unwrap();
    let text = rbuild(&root, &["build", "--dry-run", c]);
    assert!(text.status.success(), "{}", err(&text));
    assert!(out(&text).contains("echo a"), "{}", out(&text));
    assert!(!out(&text).contains("echo unused"), "{}", out(&text));
    assert!(!root.exists(), "a dry run must not create a store");

    let json = rbuild(
        &root,
        &["build", "--dry-run", "--format", "json", "--target", "a", c],
    );
    assert!(json.status.success(), "{}", err(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let vs = v.as_array().expect("a list of vertices");
    assert!(
        vs.iter()
            .all(|x| x["cache_key"].as_str().is_some_and(|k| k.len() == 64))
    );
    let cmds = serde_json::to_string(vs).unwrap();
    assert!(cmds.contains("echo a") && !cmds.contains("COPY") && !cmds.contains("echo unused"));

    let dot = rbuild(&root, &["build", "--dry-run", "--format", "dot", c]);
    assert!(out(&dot).starts_with("digraph"), "{}", out(&dot));
}

#[test]
fn bad_dockerfiles_name_file_line_and_fix() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "FROM busybox\nRUNN echo\n",
            "Dockerfile:2",
            &["RUNN", "RUN"],
        ),
        ("RUN echo\n", "Dockerfile", &["FROM"]),
        (
            "FROM busybox\nCOPY --from=nosuchstage! /a /b\n",
            "Dockerfile:2",
            &["nosuchstage"],
        ),
        ("FROM busybox\nRUN <<EOF\necho\n", "Dockerfile:2", &["EOF"]),
    ];
    for (df, place, words) in cases {
        let (dir, root) = ctx(&[("Dockerfile", df)]);
        let o = rbuild(&root, &["build", "--dry-run", dir.path().to_str().unwrap()]);
        assert!(!o.status.success(), "{df:?} was accepted");
        let e = err(&o);
        assert!(e.contains(place), "{df:?}: {e}");
        for w in *words {
            assert!(e.contains(w), "{df:?}: {w:?} missing from {e}");
        }
        assert!(!e.contains("panicked"), "{e}");
    }
    let (dir, root) = ctx(&[("Dockerfile", FOUR)]);
    let o = rbuild(
        &root,
        &[
            "build",
            "--dry-run",
            "--target",
            "nope",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        err(&o).contains("nope") && err(&o).contains("final"),
        "{}",
        err(&o)
    );
}

#[test]
fn missing_context_is_a_clear_error() {
    let (dir, root) = ctx(&[]);
    let o = rbuild(&root, &["build", dir.path().join("nope").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(err(&o).contains("not a directory"), "{}", err(&o));
}

#[test]
fn root_flag_works_before_and_after_subcommands() {
    let (dir, root) = ctx(&[("Dockerfile", "FROM busybox\n")]);
    let r = root.to_str().unwrap();
    let c = dir.path().to_str().unwrap();
    for args in [
        vec!["--root", r, "build", "--dry-run", c],
        vec!["build", "--root", r, "--dry-run", c],
        vec!["--root", r, "--dry-run", c],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        assert!(out(&o).contains("FROM"), "{args:?}: {}", out(&o));
    }
    std::fs::create_dir_all(&root).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["--root", r, "images"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).starts_with("REPOSITORY"), "{}", out(&o));
}

/// Bad flag values: each is refused before anything is built, with the message and exit
/// status rbuild has always given (1 for rbuild's own checks, 2 for clap's usage errors).
#[test]
fn bad_flags_keep_their_messages_and_exit_codes() {
    let (dir, root) = ctx(&[("Dockerfile", "FROM scratch\n")]);
    let c = dir.path().to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["build", "--network=bogus", "--dry-run", c],
            1,
            "error: --network=bogus: rbuild supports host and none\n",
        ),
        (
            &["--network", "bridge", "--dry-run", c],
            1,
            "error: --network=bridge: rbuild supports host and none\n",
        ),
        (
            &["run", "--network", "bogus", "img"],
            1,
            "error: --network=bogus: rbuild supports host and none\n",
        ),
        (
            &["build", "--", "ls", c],
            1,
            "error: a command after `--` is only for --run: rbuild build --run [-- CMD…] CONTEXT\n",
        ),
        (
            &["build", "--push", c],
            1,
            "error: --push needs a name to push to: add -t REGISTRY/NAME:TAG\n",
        ),
        (
            &["build", "-t", "a=x", c],
            1,
            "error: -t \"a=x\": \"a\" is not a --target of this build; name one of the stages given with --target\n",
        ),
        (
            &["build", "--cache-to", "type=gha", c],
            1,
            "error: --cache-to: cache type \"gha\" is not supported; use type=local, type=registry or type=inline\n",
        ),
        (
            &["build", "--cache-from", "type=local", c],
            1,
            "error: --cache-from \"type=local\": type=local needs src=DIR\n",
        ),
        (
            &["build", "--build-arg", "=x", "--dry-run", c],
            1,
            "error: --build-arg \"=x\": the name is empty; write --build-arg NAME=VALUE\n",
        ),
        (
            &["run", "-e", "=x", "img"],
            1,
            "error: -e \"=x\": the variable name is empty; write -e NAME=VALUE\n",
        ),
    ];
    for (args, code, message) in cases {
        let o = rbuild(&root, args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", err(&o));
        assert_eq!(err(&o), *message, "{args:?}");
        assert!(out(&o).is_empty(), "{args:?}: {}", out(&o));
    }
    for (args, value) in [
        (&["build", "--progress=bogus", c][..], "bogus"),
        (&["run", "--pull", "sometimes", "img"][..], "sometimes"),
        (&["build", "--dry-run", "--format", "yaml", c][..], "yaml"),
    ] {
        let o = rbuild(&root, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(
            err(&o).starts_with(&format!("error: invalid value '{value}'")),
            "{args:?}: {}",
            err(&o)
        );
    }
    assert!(!root.exists(), "a refused command must not create a store");
}

#[test]
fn dockerfile_from_a_file_or_stdin_and_build_args() {
    let df = "FROM scratch\nARG A\nARG B=b\nLABEL a=$A b=$B\n";
    let (dir, root) = ctx(&[("other.Dockerfile", df), ("Dockerfile", "bad")]);
    let c = dir.path().to_str().unwrap();
    let f = dir.path().join("other.Dockerfile");
    let o = rbuild(
        &root,
        &[
            "build",
            "--dry-run",
            "--format",
            "json",
            "-f",
            f.to_str().unwrap(),
            "--build-arg",
            "A=1",
            c,
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let from_file = out(&o);

    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .env("RBUILD_ROOT", &root)
        .env("A", "1")
        .args(["build", "--dry-run", "--format", "json", "-f", "-"])
        .args(["--build-arg", "A", c])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(df.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), from_file, "same graph from stdin and the env's A");

    let o = rbuild(&root, &["build", "--dry-run", "-f", "nope", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).starts_with(
            "error: cannot read Dockerfile nope; name it with -f or put a Dockerfile in the context"
        ),
        "{}",
        err(&o)
    );
}
