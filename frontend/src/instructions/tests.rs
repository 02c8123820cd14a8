//! Unit tests of `instructions.rs`: flags, arity and forms of each instruction.

use super::*;

#[test]
fn csv_mount_fields() {
    assert_eq!(
        csv_fields("type=cache,target=/x"),
        vec!["type=cache", "target=/x"]
    );
    assert_eq!(csv_fields("\"target=/a,b\",ro"), vec!["target=/a,b", "ro"]);
}

#[test]
fn quotes_scan_like_the_shell() {
    assert_eq!(unterminated_quote("\"abc", '\\'), Some(('"', 0)));
    assert_eq!(unterminated_quote("a'b", '\\'), Some(('\'', 1)));
    assert_eq!(unterminated_quote("\"a\\\"b\"", '\\'), None);
    assert_eq!(unterminated_quote("'a\\'", '\\'), None);
    assert_eq!(unterminated_quote("a\\\"b", '\\'), None);
    assert_eq!(unterminated_quote("\"it's\"", '\\'), None);
}

#[test]
fn onbuild_text() {
    assert_eq!(strip_onbuild("onbuild  RUN x"), "RUN x");
    assert_eq!(strip_onbuild("ONBUILD"), "");
}

fn typed(src: &str) -> Vec<Command> {
    let df = crate::parser::parse(src).unwrap();
    instructions(&df, src)
        .unwrap()
        .into_iter()
        .map(|i| i.command)
        .collect()
}

#[test]
fn copy_with_heredoc_sources() {
    let cmds =
        typed("COPY --chmod=755 --link <<-EOT a.txt <<'RAW' /dst/\n\techo $X\n\tEOT\n$Y\nRAW\n");
    let Command::Copy(spec) = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!(spec.sources, vec!["a.txt"]);
    assert_eq!(spec.dest, "/dst/");
    assert_eq!((spec.chmod.as_deref(), spec.link), (Some("755"), true));
    let hd: Vec<_> = spec
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.content.as_str(), h.expand))
        .collect();
    assert_eq!(hd, vec![("EOT", "echo $X\n", true), ("RAW", "$Y\n", false)]);
}

#[test]
fn run_forms_and_mounts() {
    let cmds = typed(
        "RUN --mount=type=cache,target=/root/.cache --network=none <<EOF\nmake\nEOF\nRUN [\"a\", \"b\"]\n",
    );
    let Command::Run {
        command,
        heredocs,
        mounts,
        network,
        ..
    } = &cmds[0]
    else {
        panic!()
    };
    assert_eq!(command, &CommandLine::Shell("<<EOF".into()));
    assert_eq!(heredocs[0].content, "make\n");
    assert_eq!(
        mounts[0].fields,
        vec![
            ("type".into(), "cache".into()),
            ("target".into(), "/root/.cache".into())
        ]
    );
    assert_eq!(network.as_deref(), Some("none"));
    assert!(
        matches!(&cmds[1], Command::Run { command: CommandLine::Exec(v), .. } if v == &["a", "b"])
    );
}

#[test]
fn env_arg_label_from() {
    let cmds = typed(
        "FROM --platform=linux/amd64 img AS Build\nENV A=1 B=\"x y\"\nENV C legacy value\nARG V=1 W\nLABEL k=v\n",
    );
    assert_eq!(
        cmds[0],
        Command::From {
            image: "img".into(),
            stage_name: Some("build".into()),
            platform: Some("linux/amd64".into())
        }
    );
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(
        cmds[1],
        Command::Env(vec![kv("A", "1"), kv("B", "\"x y\"")])
    );
    assert_eq!(cmds[2], Command::Env(vec![kv("C", "legacy value")]));
    assert_eq!(
        cmds[3],
        Command::Arg(vec![("V".into(), Some("1".into())), ("W".into(), None)])
    );
    assert_eq!(cmds[4], Command::Label(vec![kv("k", "v")]));
}

#[test]
fn healthcheck_forms() {
    let cmds = typed(
        "HEALTHCHECK NONE\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f x\nHEALTHCHECK CMD [\"a\", \"b\"]\n",
    );
    assert_eq!(
        cmds[0],
        Command::Healthcheck(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        })
    );
    let Command::Healthcheck(h) = &cmds[1] else {
        panic!()
    };
    assert_eq!(h.test, vec!["CMD-SHELL", "curl -f x"]);
    assert_eq!(
        (h.interval.as_deref(), h.retries.as_deref()),
        (Some("5s"), Some("3"))
    );
    let Command::Healthcheck(h) = &cmds[2] else {
        panic!()
    };
    assert_eq!(h.test, vec!["CMD", "a", "b"]);
}

#[test]
fn onbuild_trigger_text_reparses() {
    let cmds = typed("ONBUILD RUN echo hi\nonbuild  COPY <<EOF /x\nbody\nEOF\n");
    assert_eq!(cmds[0], Command::Onbuild("RUN echo hi".into()));
    let Command::Onbuild(text) = &cmds[1] else {
        panic!()
    };
    assert_eq!(text, "COPY <<EOF /x\nbody\nEOF");
    let again = typed(text);
    let Command::Copy(spec) = &again[0] else {
        panic!()
    };
    assert_eq!(spec.heredocs[0].content, "body\n");
}
