//! `--build-context` in lowering: which Dockerfile names a named context answers
//! (BuildKit's precedence: a context named like a stage replaces it; a `FROM`/`--from`
//! name that is no stage is a context before it is an image), and what each kind becomes.

use rbuild_frontend::lower::{LowerOptions, Lowered, NamedContext, NoImages, lower};
use rbuild_graph::{BuildGraph, Op};
use std::collections::BTreeMap;

fn with(contexts: &[(&str, NamedContext)]) -> LowerOptions {
    LowerOptions {
        named_contexts: contexts
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

fn build(src: &str, o: &LowerOptions) -> Lowered {
    lower(src, o, &NoImages).unwrap_or_else(|d| panic!("lowering failed:\n{d}"))
}

fn ops(g: &BuildGraph) -> Vec<Op> {
    g.iter().map(|(_, v)| v.op.clone()).collect()
}

fn images(g: &BuildGraph) -> Vec<String> {
    ops(g)
        .into_iter()
        .filter_map(|o| match o {
            Op::Image { reference, .. } => Some(reference),
            _ => None,
        })
        .collect()
}

fn locals(g: &BuildGraph) -> Vec<(String, Vec<String>)> {
    ops(g)
        .into_iter()
        .filter_map(|o| match o {
            Op::Local { name, exclude } => Some((name, exclude)),
            _ => None,
        })
        .collect()
}

fn image(r: &str) -> NamedContext {
    NamedContext::Image {
        reference: r.into(),
    }
}

#[test]
fn an_image_name_is_answered_by_a_context_in_its_short_form() {
    let o = with(&[("alpine", image("docker.io/library/busybox:1"))]);
    for from in ["alpine", "alpine:latest", "docker.io/library/alpine"] {
        let l = build(&format!("FROM {from}\nRUN true\n"), &o);
        assert_eq!(images(&l.graph), ["docker.io/library/busybox:1"], "{from}");
    }
    // Another tag is another name.
    let l = build("FROM alpine:3\nRUN true\n", &o);
    assert_eq!(images(&l.graph), ["docker.io/library/alpine:3"]);
}

#[test]
fn a_context_named_like_a_stage_replaces_it() {
    let o = with(&[("deps", image("docker.io/library/other:1"))]);
    let src = "FROM busybox AS deps\nRUN echo never\nFROM busybox\nCOPY --from=deps /x /x\n";
    let l = build(src, &o);
    assert!(
        !ops(&l.graph)
            .iter()
            .any(|o| matches!(o, Op::Exec(e) if e.args.iter().any(|a| a.contains("never")))),
        "the replaced stage's RUN is not lowered"
    );
    assert!(images(&l.graph).contains(&"docker.io/library/other:1".to_string()));
}

#[test]
fn a_directory_context_is_a_local_source_with_its_own_ignore_patterns() {
    let o = with(&[(
        "src",
        NamedContext::Dir {
            exclude: vec!["*.key".into()],
        },
    )]);
    let src = "FROM src AS s\nFROM scratch\nCOPY --from=src a /a\nCOPY --from=s /b /b\n";
    let l = build(src, &o);
    assert_eq!(
        locals(&l.graph),
        [("context:src".to_string(), vec!["*.key".to_string()])],
        "one Local for the context, never the main context's name"
    );
    assert!(l.context.is_none(), "the main context is not read");
}

#[test]
fn a_stage_name_wins_over_a_context_for_from_only_when_no_context_has_its_name() {
    // `--from=builder` is the stage when no context is named builder.
    let o = with(&[("other", image("docker.io/library/x:1"))]);
    let l = build(
        "FROM busybox AS builder\nRUN echo built\nFROM scratch\nCOPY --from=builder /x /x\n",
        &o,
    );
    assert!(!images(&l.graph).contains(&"docker.io/library/x:1".to_string()));
    let scratch = with(&[("busybox", NamedContext::Scratch)]);
    let l = build("FROM busybox\nCOPY a /a\n", &scratch);
    assert!(
        images(&l.graph).is_empty(),
        "docker-image://scratch is scratch"
    );
}
