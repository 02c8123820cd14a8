//! Lowering a Dockerfile to the build graph: stages, --target, ARG scoping,
//! config, COPY/RUN/WORKDIR vertices and the diagnostics of bad input.

use rbuild_frontend::Diagnostic;
use rbuild_frontend::lower::{
    ImageResolver, LowerOptions, Lowered, NoImages, ResolveError, ResolvedImage, lower,
};
use rbuild_graph::image::{ContainerConfig, ImageConfig};
use rbuild_graph::{
    BuildGraph, CopySource, ExecOp, FileAction, MountKind, NetworkMode, Op, Platform, SecurityMode,
    VertexId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn amd64() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

fn opts() -> LowerOptions {
    LowerOptions {
        dockerfile_name: "ctx/Dockerfile".into(),
        target: None,
        build_args: BTreeMap::new(),
        platform: amd64(),
        build_platform: amd64(),
        ignore_patterns: vec![],
        ..Default::default()
    }
}

fn build_with(src: &str, o: &LowerOptions, r: &dyn ImageResolver) -> Result<Lowered, Diagnostic> {
    lower(src, o, r)
}

fn build(src: &str) -> Lowered {
    match build_with(src, &opts(), &NoImages) {
        Ok(l) => l,
        Err(d) => panic!("lowering failed:\n{d}"),
    }
}

fn fail(src: &str, o: &LowerOptions) -> Diagnostic {
    match build_with(src, o, &NoImages) {
        Ok(_) => panic!("lowering should have failed:\n{src}"),
        Err(d) => d,
    }
}

/// Descriptions of the vertices in the graph, in order.
fn descriptions(g: &BuildGraph) -> Vec<String> {
    g.iter().map(|(_, v)| v.meta.description.clone()).collect()
}

fn find(g: &BuildGraph, needle: &str) -> VertexId {
    g.iter()
        .find(|(_, v)| v.meta.description.contains(needle))
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no vertex {needle:?} in {:#?}", descriptions(g)))
}

fn exec(g: &BuildGraph, needle: &str) -> ExecOp {
    match &g.vertex(find(g, needle)).op {
        Op::Exec(e) => e.clone(),
        other => panic!("{needle:?} is not an exec: {other:?}"),
    }
}

fn file_actions(g: &BuildGraph, needle: &str) -> Vec<FileAction> {
    match &g.vertex(find(g, needle)).op {
        Op::File(f) => f.actions.clone(),
        other => panic!("{needle:?} is not a file op: {other:?}"),
    }
}

/// A resolver with fixed configs.
struct Images(HashMap<String, ResolvedImage>);

impl ImageResolver for Images {
    fn resolve(
        &self,
        reference: &str,
        _: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        Ok(self.0.get(reference).cloned())
    }
}

fn image_with(reference: &str, config: ContainerConfig) -> Images {
    let mut m = HashMap::new();
    m.insert(
        reference.to_string(),
        ResolvedImage {
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            config: ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                config,
                history: vec![rbuild_graph::image::History {
                    created_by: Some("/bin/sh -c #(nop) ADD file:123 in /".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        },
    );
    Images(m)
}

const FOUR_STAGES: &str = "\
ARG V=1
FROM alpine AS base
RUN echo base
FROM base AS build
ARG V
RUN make V=$V
FROM alpine AS test
RUN echo test
FROM scratch AS final
COPY --from=build /out /out
";

#[test]
fn target_lowers_only_the_stages_it_needs() {
    let mut o = opts();
    o.target = Some("final".into());
    let l = build_with(FOUR_STAGES, &o, &NoImages).unwrap();
    let d = descriptions(&l.graph);
    assert_eq!(
        d,
        [
            "[base 1/2] FROM docker.io/library/alpine:latest",
            "[base 2/2] RUN echo base",
            "[build 1/1] RUN make V=1",
            "",
            "[final 1/1] COPY --from=build /out /out",
        ]
    );
    // Nothing unreachable was added.
    assert_eq!(l.graph.reachable(&[l.target.root]).len(), l.graph.len());
    assert!(
        l.graph
            .iter()
            .all(|(_, v)| v.meta.stage.as_deref() != Some("test"))
    );
    assert_eq!(l.target.stage_name.as_deref(), Some("final"));
    assert_eq!(l.target.stage_index, 3);
    assert!(l.context.is_none());

    o.target = Some("TEST".into());
    let l = build_with(FOUR_STAGES, &o, &NoImages).unwrap();
    assert_eq!(
        descriptions(&l.graph),
        [
            "[test 1/2] FROM docker.io/library/alpine:latest",
            "[test 2/2] RUN echo test"
        ]
    );
    assert_eq!(l.target.stage_index, 2);
}

/// Per vertex description, its cache key.
fn keys(l: &Lowered) -> BTreeMap<String, String> {
    l.graph
        .iter()
        .map(|(id, v)| {
            let name = if v.meta.description.is_empty() {
                v.op.kind().to_string()
            } else {
                v.meta.description.clone()
            };
            (name, l.graph.key(id).to_hex())
        })
        .collect()
}

#[test]
fn build_arg_changes_exactly_the_vertices_that_see_it() {
    let src = "\
ARG V=1
FROM alpine AS a
RUN echo before
ARG V
RUN echo a
COPY x /x
FROM alpine AS b
RUN echo b
FROM a
COPY --from=b /y /y
RUN echo final
";
    let mut o = opts();
    o.build_args.insert("V".into(), "1".into());
    let one = keys(&build_with(src, &o, &NoImages).unwrap());
    o.build_args.insert("V".into(), "2".into());
    let two = keys(&build_with(src, &o, &NoImages).unwrap());
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        two.keys().collect::<Vec<_>>()
    );
    let changed: BTreeSet<&str> = one
        .iter()
        .filter(|(k, v)| two[*k] != **v)
        .map(|(k, _)| k.as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        "[a 3/4] RUN echo a",
        "[a 4/4] COPY x /x",
        "[stage-2 1/2] COPY --from=b /y /y",
        "[stage-2 2/2] RUN echo final",
    ]
    .into_iter()
    .collect();
    assert_eq!(changed, expected, "all keys: {one:#?}");
    // Unchanged: the base image, the RUN before the ARG, stage b, the context.
    assert!(one.contains_key("[a 2/4] RUN echo before"));
    assert!(one.contains_key("[internal] load build context"));
}

#[test]
fn formatting_does_not_change_cache_keys() {
    let a = "\
FROM alpine AS build
ENV A=1 B=2
RUN echo hello world
COPY src/ /app/
FROM build
RUN make
";
    let b = "\
# a comment
FROM   alpine   AS   build

# another
ENV A=1 \\
    B=2
RUN echo \\
hello world

COPY   src/   /app/
FROM build
# trailing
RUN make
";
    let ka: Vec<String> = build(a)
        .graph
        .iter()
        .map(|(id, _)| build(a).graph.key(id).to_hex())
        .collect();
    let lb = build(b);
    let kb: Vec<String> = lb
        .graph
        .iter()
        .map(|(id, _)| lb.graph.key(id).to_hex())
        .collect();
    assert_eq!(ka, kb);
    // Lines in the metadata do follow the formatting.
    assert_eq!(
        lb.graph.vertex(find(&lb.graph, "RUN echo")).meta.lines,
        Some((7, 8))
    );
}

#[test]
fn arg_scoping() {
    let src = "\
ARG G=global
ARG UNSET
FROM alpine
RUN echo one
ARG G
ARG D=default
ARG O=default
ARG UNSET
RUN echo two
";
    let mut o = opts();
    o.build_args.insert("O".into(), "cli".into());
    o.build_args.insert("UNDECLARED".into(), "x".into());
    o.build_args
        .insert("http_proxy".into(), "http://proxy:3128".into());
    let l = build_with(src, &o, &NoImages).unwrap();
    let one = exec(&l.graph, "RUN echo one");
    assert_eq!(
        one.env.get("G"),
        None,
        "a global ARG is not seen before it is redeclared"
    );
    assert_eq!(one.env.get("http_proxy"), Some("http://proxy:3128"));
    assert_eq!(one.env.get("UNDECLARED"), None);
    let two = exec(&l.graph, "RUN echo two");
    assert_eq!(two.env.get("G"), Some("global"));
    assert_eq!(two.env.get("D"), Some("default"));
    assert_eq!(two.env.get("O"), Some("cli"));
    assert_eq!(two.env.get("UNSET"), None, "declared without any value");
    // ARGs never reach the image config.
    let env = &l.target.config.config.env;
    assert!(
        env.iter()
            .all(|e| !e.starts_with("G=") && !e.starts_with("D=")),
        "{env:?}"
    );
    assert_eq!(
        env,
        &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    // History records the ARGs a RUN saw.
    let runs: Vec<&str> = l
        .target
        .history
        .iter()
        .filter_map(|h| h.entry.created_by.as_deref())
        .filter(|c| c.starts_with("RUN"))
        .collect();
    assert_eq!(
        runs,
        [
            "RUN /bin/sh -c echo one # buildkit",
            "RUN |4 G=global D=default O=cli UNSET= /bin/sh -c echo two # buildkit"
        ]
    );
}

#[test]
fn stage_args_do_not_leak_into_other_stages_but_follow_from_stage() {
    let src = "\
FROM alpine AS a
ARG X=1
FROM alpine AS b
RUN echo b
FROM a
RUN --mount=from=b,target=/b echo c
";
    let l = build(src);
    assert_eq!(exec(&l.graph, "RUN echo b").env.get("X"), None);
    assert_eq!(exec(&l.graph, "echo c").env.get("X"), Some("1"));
}

#[test]
fn predefined_args_in_from_and_stage() {
    let src = "\
ARG TAG=3.19
FROM --platform=$BUILDPLATFORM alpine:$TAG AS tools
RUN echo $TARGETARCH
ARG TARGETARCH
RUN echo arch
FROM busybox:$TARGETARCH
COPY --from=tools /x /x
";
    let mut o = opts();
    o.build_args.insert("TAG".into(), "3.20".into());
    let l = build_with(src, &o, &NoImages).unwrap();
    let refs: Vec<String> = l
        .graph
        .iter()
        .filter_map(|(_, v)| match &v.op {
            Op::Image {
                reference,
                platform,
                ..
            } => Some(format!("{reference} {platform}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        refs,
        [
            "docker.io/library/alpine:3.20 linux/amd64",
            "docker.io/library/busybox:amd64 linux/amd64"
        ]
    );
    // Not declared in the stage: not in the environment (the shell sees it unset).
    assert_eq!(
        exec(&l.graph, "echo $TARGETARCH").env.get("TARGETARCH"),
        None
    );
    assert_eq!(
        exec(&l.graph, "RUN echo arch").env.get("TARGETARCH"),
        Some("amd64")
    );
}

#[test]
fn entrypoint_clears_inherited_cmd_but_not_its_own_stage_cmd() {
    let base = image_with(
        "docker.io/library/nginx:latest",
        ContainerConfig {
            cmd: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
            env: vec!["PATH=/usr/bin:/bin".into(), "NGINX=1".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        },
    );
    let l = build_with("FROM nginx\nENTRYPOINT [\"/entry\"]\n", &opts(), &base).unwrap();
    let c = &l.target.config.config;
    assert_eq!(c.entrypoint.as_deref(), Some(&["/entry".to_string()][..]));
    assert_eq!(c.cmd, None);
    assert_eq!(c.env, ["PATH=/usr/bin:/bin", "NGINX=1"]);
    assert_eq!(c.working_dir, "/srv");
    // Base history first, without a vertex.
    assert_eq!(l.target.history.len(), 2);
    assert_eq!(l.target.history[0].vertex, None);
    assert_eq!(
        l.target.history[1].entry.created_by.as_deref(),
        Some("ENTRYPOINT [\"/entry\"]")
    );
    assert!(l.target.history[1].entry.empty_layer);
    assert!(l.target.config.history.is_empty());

    let l = build_with(
        "FROM nginx\nCMD [\"-v\"]\nENTRYPOINT /entry\n",
        &opts(),
        &base,
    )
    .unwrap();
    let c = &l.target.config.config;
    assert_eq!(c.cmd.as_deref(), Some(&["-v".to_string()][..]));
    assert_eq!(
        c.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into(), "/entry".into()][..])
    );

    let l = build("FROM alpine AS a\nCMD [\"x\"]\nFROM a\nENTRYPOINT [\"y\"]\n");
    assert_eq!(l.target.config.config.cmd, None);
}

#[test]
fn config_instructions_build_the_image_config() {
    let src = "\
FROM alpine
ENV APP=/opt/app PORT=8080
LABEL org.example.v=$PORT \"two words\"=yes
EXPOSE $PORT 53/udp
VOLUME /data $APP/cache
USER app:app
SHELL [\"/bin/bash\", \"-c\"]
CMD run --port $PORT
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=1m30s --timeout=5s --retries=3 CMD curl -f http://localhost/
MAINTAINER someone@example.com
ONBUILD RUN echo triggered
";
    let l = build(src);
    let cfg = &l.target.config;
    let c = &cfg.config;
    assert_eq!(cfg.author.as_deref(), Some("someone@example.com"));
    assert_eq!(
        c.env,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP=/opt/app",
            "PORT=8080"
        ]
    );
    assert_eq!(
        c.labels.get("org.example.v").map(String::as_str),
        Some("8080")
    );
    assert_eq!(c.labels.get("two words").map(String::as_str), Some("yes"));
    assert_eq!(
        c.exposed_ports.keys().collect::<Vec<_>>(),
        ["53/udp", "8080/tcp"]
    );
    assert_eq!(
        c.volumes.keys().collect::<Vec<_>>(),
        ["/data", "/opt/app/cache"]
    );
    assert_eq!(c.user, "app:app");
    assert_eq!(c.shell, ["/bin/bash", "-c"]);
    // CMD's text is not expanded: the shell does that at run time.
    assert_eq!(
        c.cmd.as_deref(),
        Some(
            &[
                "/bin/bash".to_string(),
                "-c".into(),
                "run --port $PORT".into()
            ][..]
        )
    );
    assert_eq!(c.stop_signal, "SIGQUIT");
    let hc = c.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!(hc.interval, 90_000_000_000);
    assert_eq!(hc.timeout, 5_000_000_000);
    assert_eq!(hc.retries, 3);
    assert_eq!(c.on_build, ["RUN echo triggered"]);
    assert_eq!(
        (cfg.os.as_str(), cfg.architecture.as_str()),
        ("linux", "amd64")
    );
    // Metadata only: the image vertex is the whole graph.
    assert_eq!(l.graph.len(), 1);
    assert!(
        l.target
            .history
            .iter()
            .all(|h| h.vertex.is_none() && h.entry.empty_layer)
    );
}

#[test]
fn onbuild_of_an_earlier_stage_fires_once() {
    let src = "\
FROM alpine AS base
ONBUILD RUN echo from-trigger
ONBUILD ENV TRIGGERED=1
RUN echo base
FROM base
RUN echo child
";
    let l = build(src);
    let d = descriptions(&l.graph);
    assert_eq!(
        d,
        [
            "[base 1/2] FROM docker.io/library/alpine:latest",
            "[base 2/2] RUN echo base",
            "[stage-1 1/3] ONBUILD RUN echo from-trigger",
            // BuildKit counts every trigger in the total but numbers only filesystem steps.
            "[stage-1 2/3] RUN echo child",
        ]
    );
    let child = exec(&l.graph, "RUN echo child");
    assert_eq!(child.env.get("TRIGGERED"), Some("1"));
    // The trigger ran before the stage's own instructions and is not inherited further.
    let trig = find(&l.graph, "from-trigger");
    assert_eq!(
        l.graph.vertex(find(&l.graph, "RUN echo child")).inputs,
        [trig]
    );
    assert!(l.target.config.config.on_build.is_empty());
    assert_eq!(l.graph.vertex(trig).meta.lines, Some((5, 5)));
}

#[test]
fn onbuild_of_a_resolved_image_fires_and_can_copy_from_a_stage() {
    let src = "\
FROM alpine AS assets
RUN echo assets
FROM example.com/onbuild-base:1
RUN echo after
";
    let base = image_with(
        "example.com/onbuild-base:1",
        ContainerConfig {
            on_build: vec!["COPY --from=assets /a /a".into(), "RUN echo trig".into()],
            ..Default::default()
        },
    );
    let mut o = opts();
    o.target = None;
    let l = build_with(src, &o, &base).unwrap();
    let copy = find(&l.graph, "ONBUILD COPY --from=assets /a /a");
    let assets = find(&l.graph, "RUN echo assets");
    assert_eq!(l.graph.vertex(copy).inputs[1], assets);
    let trig = find(&l.graph, "ONBUILD RUN echo trig");
    assert_eq!(l.graph.vertex(trig).inputs, [copy]);
    assert_eq!(
        l.graph.vertex(find(&l.graph, "RUN echo after")).inputs,
        [trig]
    );
    assert!(l.target.config.config.on_build.is_empty());
    match &l.graph.vertex(find(&l.graph, "FROM example.com")).op {
        Op::Image { digest, .. } => assert_eq!(
            digest.as_deref(),
            Some(&*format!("sha256:{}", "ab".repeat(32)))
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn env_and_arg_precedence_follows_order_like_buildkit() {
    let src = "\
FROM alpine
ARG A=arg
ENV A=env
ENV B=env
ARG B=arg
RUN echo
";
    let l = build(src);
    let e = exec(&l.graph, "RUN echo");
    // ENV after ARG overrides it; an ARG declared after an ENV is what RUN sees.
    assert_eq!(e.env.get("A"), Some("env"));
    assert_eq!(e.env.get("B"), Some("arg"));
    // The image keeps only ENV values.
    assert_eq!(l.target.config.config.env_get("B"), Some("env"));
}

#[test]
fn workdir_creates_directories_and_joins_relative_paths() {
    let src = "\
FROM alpine
USER 1000:1000
WORKDIR /app
WORKDIR sub/../src
RUN pwd
COPY a.txt .
COPY b.txt rel/
WORKDIR /
";
    let l = build(src);
    let g = &l.graph;
    match file_actions(g, "WORKDIR /app").as_slice() {
        [
            FileAction::Mkdir {
                path,
                mode,
                make_parents,
                owner,
            },
        ] => {
            assert_eq!(path, "/app");
            assert_eq!(*mode, 0o755);
            assert!(*make_parents);
            assert_eq!(owner.as_ref().map(|o| o.user.as_str()), Some("1000"));
        }
        other => panic!("{other:?}"),
    }
    match file_actions(g, "WORKDIR sub").as_slice() {
        [FileAction::Mkdir { path, .. }] => assert_eq!(path, "/app/src"),
        other => panic!("{other:?}"),
    }
    let run = exec(g, "RUN pwd");
    assert_eq!(run.cwd, "/app/src");
    assert_eq!(run.user, "1000:1000");
    let dest = |n: &str| match &file_actions(g, n)[0] {
        FileAction::Copy(c) => c.dest.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(dest("COPY a.txt"), "/app/src/");
    assert_eq!(dest("COPY b.txt"), "/app/src/rel/");
    assert_eq!(l.target.config.config.working_dir, "/");
    // image, 2 mkdirs, RUN, context, 2 COPYs: WORKDIR / makes no vertex.
    assert_eq!(g.len(), 7);
}

#[test]
fn copy_from_index_name_and_image() {
    let src = "\
FROM alpine AS first
RUN echo first
FROM alpine AS second
RUN echo second
FROM scratch
COPY --from=0 /one /one
COPY --from=SECOND /two /two
COPY --from=busybox:1.36 /bin/busybox /bin/
COPY --chown=1:2 --chmod=0755 ctx.txt /ctx
ADD archive.tar /x/
";
    let l = build(src);
    let g = &l.graph;
    let first = find(g, "RUN echo first");
    let second = find(g, "RUN echo second");
    assert_eq!(g.vertex(find(g, "--from=0")).inputs[1], first);
    assert_eq!(g.vertex(find(g, "--from=SECOND")).inputs[1], second);
    let img = g.vertex(find(g, "--from=busybox")).inputs[1];
    match &g.vertex(img).op {
        Op::Image { reference, .. } => assert_eq!(reference, "docker.io/library/busybox:1.36"),
        other => panic!("{other:?}"),
    }
    match file_actions(g, "--from=busybox").as_slice() {
        [FileAction::Copy(c)] => {
            assert_eq!(
                c.source,
                CopySource::Input {
                    input: 1,
                    path: "/bin/busybox".into()
                }
            );
            assert_eq!(c.dest, "/bin/");
            assert!(!c.unpack_archive);
        }
        other => panic!("{other:?}"),
    }
    let ctx = l
        .context
        .expect("COPY from the context adds the Local vertex");
    assert!(matches!(&g.vertex(ctx).op, Op::Local { name, .. } if name == "context"));
    assert_eq!(g.vertex(find(g, "ctx.txt")).inputs[1], ctx);
    match file_actions(g, "ctx.txt").as_slice() {
        [FileAction::Copy(c)] => {
            assert_eq!(c.mode, Some(0o755));
            let o = c.owner.as_ref().unwrap();
            assert_eq!((o.user.as_str(), o.group.as_deref()), ("1", Some("2")));
        }
        other => panic!("{other:?}"),
    }
    match file_actions(g, "ADD archive.tar").as_slice() {
        [FileAction::Copy(c)] => assert!(c.unpack_archive),
        other => panic!("{other:?}"),
    }
    // Each COPY's history step points at its vertex.
    let copy_steps = l
        .target
        .history
        .iter()
        .filter(|h| h.vertex.is_some())
        .count();
    assert_eq!(copy_steps, 5);
}

#[test]
fn heredoc_copy_becomes_inline_data() {
    let src = "\
FROM alpine
ENV NAME=world
COPY <<EOF <<'RAW' /etc/
hello $NAME
EOF
keep $NAME
RAW
";
    let l = build(src);
    let actions = file_actions(&l.graph, "COPY <<EOF");
    let inline: Vec<(String, String, u32)> = actions
        .iter()
        .map(|a| match a {
            FileAction::Copy(c) => match &c.source {
                CopySource::Inline { data, mode } => (c.dest.clone(), data.clone(), *mode),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        inline,
        [
            ("/etc/EOF".to_string(), "hello world\n".to_string(), 0o644),
            ("/etc/RAW".to_string(), "keep $NAME\n".to_string(), 0o644),
        ]
    );
    assert_eq!(l.graph.vertex(find(&l.graph, "COPY <<EOF")).inputs.len(), 1);
    assert!(l.context.is_none());
}

#[test]
fn run_forms_mounts_and_network() {
    let src = "\
FROM alpine AS deps
RUN echo deps
FROM alpine
WORKDIR /w
RUN --mount=type=cache,target=/root/.cache --mount=from=deps,source=/out,target=mnt --network=none make
RUN [\"/bin/echo\", \"$HOME\"]
RUN --mount=type=secret,id=tok --mount=type=tmpfs,target=/t cat /run/secrets/tok
RUN <<EOF
echo one
echo two
EOF
";
    let l = build(src);
    let g = &l.graph;
    let make = exec(g, "make");
    assert_eq!(make.network, NetworkMode::None);
    assert_eq!(make.args, ["/bin/sh", "-c", "make"]);
    assert_eq!(make.mounts.len(), 2);
    assert_eq!(make.mounts[0].target, "/root/.cache");
    assert!(
        matches!(&make.mounts[0].kind, MountKind::Cache { id, sharing, .. } if id == "/root/.cache" && sharing == "shared")
    );
    assert_eq!(make.mounts[1].target, "/w/mnt");
    match &make.mounts[1].kind {
        MountKind::Bind {
            input,
            source,
            readonly,
        } => {
            assert_eq!(
                g.vertex(find(g, "make")).inputs[*input],
                find(g, "RUN echo deps")
            );
            assert_eq!(source, "/out");
            assert!(*readonly);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(exec(g, "/bin/echo").args, ["/bin/echo", "$HOME"]);
    let sec = exec(g, "cat /run/secrets/tok");
    assert!(
        matches!(&sec.mounts[0].kind, MountKind::Secret { id, mode: 0o400, .. } if id == "tok")
    );
    assert_eq!(sec.mounts[0].target, "/run/secrets/tok");
    assert!(matches!(&sec.mounts[1].kind, MountKind::Tmpfs { .. }));
    let here = exec(g, "RUN <<EOF");
    assert_eq!(here.args, ["/bin/sh", "-c", "echo one\necho two\n"]);
    assert!(
        g.vertex(find(g, "RUN <<EOF"))
            .meta
            .description
            .ends_with("RUN <<EOF (echo one...)")
    );
}

#[test]
fn secret_and_ssh_mounts_carry_every_option_with_dockers_defaults() {
    let src = "\
FROM alpine
RUN --mount=type=secret,id=npm/tok,required=true,mode=0440,uid=1,gid=2 a
RUN --mount=type=secret,id=tok,env=TOKEN b
RUN --mount=type=secret,id=tok,env=TOKEN,target=/k c
RUN --mount=type=ssh,target=/s --mount=type=ssh,id=gh,required,mode=0666,uid=7 d
";
    let l = build(src);
    let g = &l.graph;
    let a = exec(g, "RUN --mount=type=secret,id=npm/tok");
    assert_eq!(a.mounts[0].target, "/run/secrets/tok");
    assert_eq!(
        a.mounts[0].kind,
        MountKind::Secret {
            id: "npm/tok".into(),
            required: true,
            mode: 0o440,
            uid: 1,
            gid: 2,
            env: None
        }
    );
    let b = exec(g, "env=TOKEN b");
    assert_eq!(b.mounts[0].target, "", "env= alone makes no file");
    assert!(matches!(&b.mounts[0].kind,
        MountKind::Secret { env: Some(e), required: false, mode: 0o400, uid: 0, gid: 0, .. } if e == "TOKEN"));
    assert_eq!(exec(g, "target=/k c").mounts[0].target, "/k");
    let d = exec(g, "type=ssh,target=/s");
    assert_eq!(d.mounts[0].target, "/s");
    assert_eq!(
        d.mounts[0].kind,
        MountKind::Ssh {
            id: "default".into(),
            required: false,
            mode: 0o600,
            uid: 0,
            gid: 0
        }
    );
    // Numbered among all the step's ssh mounts, as BuildKit's LLB numbers them.
    assert_eq!(d.mounts[1].target, "/run/buildkit/ssh_agent.1");
    assert_eq!(
        d.mounts[1].kind,
        MountKind::Ssh {
            id: "gh".into(),
            required: true,
            mode: 0o666,
            uid: 7,
            gid: 0
        }
    );
}

// ---- bad input ----

fn assert_diag(d: &Diagnostic, message: &str, line: usize) {
    assert_eq!(d.message, message, "full diagnostic:\n{d}");
    assert_eq!(d.line, line, "full diagnostic:\n{d}");
    assert_eq!(d.file.as_deref(), Some("ctx/Dockerfile"));
    assert!(d.help.is_some(), "no help in:\n{d}");
}

#[test]
fn no_from_is_an_error() {
    let d = fail("ARG A=1\n", &opts());
    assert_diag(&d, "no build stage in Dockerfile", 1);
    assert!(d.help.as_deref().unwrap().contains("FROM"));
}

#[test]
fn instruction_before_from_is_an_error() {
    let d = fail("ARG A=1\nRUN echo\nFROM alpine\n", &opts());
    assert_diag(&d, "RUN instruction before the first FROM", 2);
    assert_eq!(d.column, 1);
}

#[test]
fn unknown_stage_in_from_flag_is_an_error() {
    let d = fail(
        "FROM alpine AS build\nFROM alpine\nCOPY --from=Bu!ld /a /a\n",
        &opts(),
    );
    assert_diag(&d, "unknown stage \"Bu!ld\"", 3);
    assert_eq!(d.column, 13);
    assert!(d.help.as_deref().unwrap().contains("stages: build"));
}

/// The image references of a lowered graph, in order.
fn image_refs(l: &Lowered) -> Vec<String> {
    l.graph
        .iter()
        .filter_map(|(_, v)| match &v.op {
            Op::Image { reference, .. } => Some(reference.clone()),
            _ => None,
        })
        .collect()
}

/// FROM and `--from` use the registry client's reference parser (rbuild-reference). Where
/// the frontend's former parser disagreed with it, Docker's behaviour is kept; each bad
/// reference gets the message it always had plus, in the help, what is wrong with it.
#[test]
fn image_references_follow_dockers_grammar() {
    // Docker Hub's API host is not an alias of docker.io (only index.docker.io is).
    let l = build("FROM registry-1.docker.io/library/alpine\n");
    assert_eq!(
        image_refs(&l),
        ["registry-1.docker.io/library/alpine:latest"]
    );
    let l = build("FROM index.docker.io/alpine\n");
    assert_eq!(image_refs(&l), ["docker.io/library/alpine:latest"]);
    // A long path under a registry host: the limit is on the path alone.
    let long = "a".repeat(250);
    let l = build(&format!("FROM registry.example.com/{long}:1\n"));
    assert_eq!(image_refs(&l), [format!("registry.example.com/{long}:1")]);
    for (from, why) in [
        // Digests: sha256 with 64 lowercase hex digits (the former parser took any case,
        // any length from 32 and any algorithm).
        (
            format!("busybox@sha256:{}", "A".repeat(64)),
            "sha256 needs 64 lowercase hex characters",
        ),
        (
            format!("busybox@sha512:{}", "a".repeat(128)),
            "unsupported digest algorithm \"sha512\" (only sha256)",
        ),
        // Hosts: DNS names, IPv4 or bracketed IPv6 (the registry client took `_`).
        (
            "my_registry.example.com/app".to_string(),
            "invalid registry host",
        ),
        // `library/` counts towards Docker's 255 characters.
        (long.clone(), "repository name longer than 255 characters"),
    ] {
        let d = fail(&format!("FROM {from}\n"), &opts());
        assert_diag(
            &d,
            &format!("FROM {from:?}: not an earlier stage nor a valid image reference"),
            1,
        );
        let help = d.help.as_deref().unwrap();
        assert!(help.contains(why), "{from}: {help}");
    }
    let d = fail("FROM alpine\nCOPY --from=a_b.io/x /a /a\n", &opts());
    assert_diag(&d, "unknown stage \"a_b.io/x\"", 2);
    assert!(d.help.as_deref().unwrap().contains("invalid registry host"));
}

#[test]
fn a_stage_cannot_use_itself_or_a_later_stage() {
    let d = fail("FROM alpine AS a\nCOPY --from=a /x /x\n", &opts());
    assert_diag(&d, "stage \"a\" depends on itself", 2);
    let d = fail(
        "FROM alpine AS a\nRUN --mount=from=b,target=/b true\nFROM alpine AS b\n",
        &opts(),
    );
    assert_diag(
        &d,
        "stage \"a\" uses stage \"b\", which is defined after it",
        2,
    );
    let d = fail("FROM alpine\nCOPY --from=1 /x /x\nFROM alpine\n", &opts());
    assert_diag(
        &d,
        "stage \"stage-0\" uses stage \"stage-1\", which is defined after it",
        2,
    );
}

#[test]
fn missing_target_lists_the_stages() {
    let mut o = opts();
    o.target = Some("prod".into());
    let d = fail(FOUR_STAGES, &o);
    assert_eq!(d.message, "target stage \"prod\" could not be found");
    assert_eq!(d.help.as_deref(), Some("stages: base, build, test, final"));
    assert_eq!(d.file.as_deref(), Some("ctx/Dockerfile"));
}

#[test]
fn malformed_variable_points_at_the_column() {
    let d = fail("FROM alpine\nENV A=${B\n", &opts());
    assert_eq!(d.line, 2, "{d}");
    assert!(d.message.starts_with("failed to expand"), "{d}");
    assert!(d.column >= 5, "{d}");
    assert!(d.help.is_some());
}

#[test]
fn run_security_insecure_is_in_the_op_and_sandbox_is_the_default() {
    let src = "FROM scratch\nRUN --security=insecure a\nRUN --security=sandbox b\nRUN c\n";
    let g = build(src).graph;
    assert_eq!(
        exec(&g, "RUN --security=insecure a").security,
        SecurityMode::Insecure
    );
    for needle in ["RUN --security=sandbox b", "RUN c"] {
        assert_eq!(exec(&g, needle).security, SecurityMode::Sandbox, "{needle}");
    }
    let d = fail("FROM alpine\nRUN --security=privileged true\n", &opts());
    assert_diag(&d, "unsupported security mode \"privileged\"", 2);
}

#[test]
fn bad_chmod_network_and_mount() {
    let d = fail("FROM alpine\nCOPY --chmod=999 a /a\n", &opts());
    assert_diag(
        &d,
        "invalid chmod parameter: '999'. it should be octal string and between 0 and 07777",
        2,
    );
    assert_eq!(d.column, 6);
    let d = fail("FROM alpine\n\nRUN --network=bridge true\n", &opts());
    assert_diag(&d, "unsupported network mode \"bridge\"", 3);
    let d = fail(
        "FROM alpine\nRUN --mount=type=nfs,target=/x true\n",
        &opts(),
    );
    assert_diag(
        &d,
        "invalid --mount: unsupported mount type \"nfs\" (use bind, cache, tmpfs, secret or ssh)",
        2,
    );
    let d = fail(
        "FROM alpine\nADD --checksum=abc https://example.com/r.git#main /x\n",
        &opts(),
    );
    assert_diag(&d, "invalid --checksum \"abc\" for a git source", 2);
    let d = fail("FROM alpine\nCOPY https://example.com/x.tgz /x\n", &opts());
    assert_diag(&d, "source can't be a URL for COPY", 2);
    let d = fail(
        "FROM alpine\nADD --checksum=sha256:12 https://example.com/x /x\n",
        &opts(),
    );
    assert_diag(&d, "invalid --checksum \"sha256:12\"", 2);
    let d = fail("FROM alpine\nADD --checksum=sha256:12 a.txt /x\n", &opts());
    assert_diag(&d, "--checksum requires HTTP(S) or Git sources", 2);
}

#[test]
fn add_from_a_url_downloads_into_the_destination() {
    let sum = format!("sha256:{}", "ab".repeat(32));
    let src = format!(
        "FROM alpine\nADD https://example.com/d/x.tgz /opt/\nADD --checksum={sum} --chmod=644 http://h/f?v=1 /f\n"
    );
    let l = build(&src);
    let g = &l.graph;
    type Download = (String, Option<String>, String, String, Option<u32>);
    let https: Vec<Download> = g
        .iter()
        .filter_map(|(_, v)| match &v.op {
            Op::File(f) => Some(f.actions.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|a| match a {
            FileAction::Copy(c) => match c.source {
                CopySource::Http {
                    url,
                    checksum,
                    filename,
                } => Some((url, checksum, filename, c.dest, c.mode)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        https,
        [
            (
                "https://example.com/d/x.tgz".to_string(),
                None,
                "x.tgz".to_string(),
                "/opt/".to_string(),
                None
            ),
            (
                "http://h/f?v=1".to_string(),
                Some(sum),
                "f".to_string(),
                "/f".to_string(),
                Some(0o644)
            ),
        ]
    );
    assert!(l.context.is_none(), "a URL is not read from the context");

    let l = build("FROM alpine\nADD --keep-git-dir https://h/o/r.git#v1:docs /src\n");
    let git: Vec<CopySource> = l
        .graph
        .iter()
        .filter_map(|(_, v)| match &v.op {
            Op::File(f) => Some(f.actions.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|a| match a {
            FileAction::Copy(c) => Some(c.source),
            _ => None,
        })
        .collect();
    assert_eq!(
        git,
        [CopySource::Git {
            remote: "https://h/o/r.git".into(),
            reference: Some("v1".into()),
            subdir: Some("docs".into()),
            keep_git_dir: true,
            checksum: None,
        }]
    );
}

#[test]
fn onbuild_cannot_chain_or_wrap_from() {
    let d = fail("FROM alpine\nONBUILD ONBUILD RUN x\n", &opts());
    assert_eq!(d.line, 2, "{d}");
    let d = fail("FROM alpine\nONBUILD FROM busybox\n", &opts());
    assert_eq!(d.line, 2, "{d}");
}

#[test]
fn run_heredoc_script_forms() {
    let src = "\
FROM alpine
RUN <<EOF
#!/usr/bin/env python3
print('hi')
EOF
RUN cat <<EOF > /x
hello $HOME
EOF
";
    let l = build(src);
    let g = &l.graph;
    // A script with a shebang is mounted read-only and executed.
    let script = exec(g, "python3");
    assert_eq!(script.args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    let v = g.vertex(find(g, "python3"));
    match &script.mounts[..] {
        [m] => {
            assert_eq!(m.target, "/dev/pipes");
            let MountKind::Bind {
                input, readonly, ..
            } = &m.kind
            else {
                panic!("{m:?}")
            };
            assert!(*readonly);
            match &g.vertex(v.inputs[*input]).op {
                Op::File(f) => match &f.actions[..] {
                    [FileAction::Copy(c)] => {
                        assert_eq!(c.dest, "/EOF");
                        assert_eq!(
                            c.source,
                            CopySource::Inline {
                                data: "#!/usr/bin/env python3\nprint('hi')\n".into(),
                                mode: 0o755
                            }
                        );
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // A command with a heredoc: the shell gets the command and the body verbatim.
    assert_eq!(
        exec(g, "RUN cat").args,
        ["/bin/sh", "-c", "cat <<EOF > /x\nhello $HOME\nEOF"]
    );
}

/// A resolver that cannot reach the registry.
struct Unreachable;

impl ImageResolver for Unreachable {
    fn resolve(
        &self,
        reference: &str,
        _: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        Err(ResolveError::Pull {
            reference: reference.to_string(),
            error: "connection refused".into(),
        })
    }
}

#[test]
fn resolver_errors_point_at_the_from_that_names_the_image() {
    let d = match build_with(
        "FROM scratch\nRUN true\nFROM alpine:3\n",
        &opts(),
        &Unreachable,
    ) {
        Ok(_) => panic!("lowering should have failed"),
        Err(d) => d,
    };
    assert_diag(
        &d,
        "failed to resolve image docker.io/library/alpine:3: not in the local store, and \
         pulling it failed: connection refused",
        3,
    );
}

#[test]
fn unknown_base_image_gets_an_empty_config_for_the_platform() {
    // A sha256 digest has 64 hex digits (Docker refuses fewer).
    let l = build(
        "FROM example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nRUN true\n",
    );
    match &l.graph.vertex(find(&l.graph, "FROM")).op {
        Op::Image {
            reference,
            digest,
            platform,
        } => {
            assert_eq!(
                reference,
                "example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            );
            assert_eq!(digest, &None);
            assert_eq!(platform, &amd64());
        }
        other => panic!("{other:?}"),
    }
    let c = &l.target.config;
    assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
    assert_eq!(l.target.history.len(), 1);
    assert_eq!(l.target.history[0].vertex, Some(l.target.root));
    assert_eq!(
        l.target.history[0].entry.created_by.as_deref(),
        Some("RUN /bin/sh -c true # buildkit")
    );
}

#[test]
fn healthcheck_none_and_copy_exclude() {
    let l = build("FROM alpine\nHEALTHCHECK NONE\nCOPY --exclude=*.log --exclude=tmp/ . /app/\n");
    let hc = l.target.config.config.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["NONE"]);
    assert_eq!((hc.interval, hc.retries), (0, 0));
    match file_actions(&l.graph, "COPY --exclude").as_slice() {
        [FileAction::Copy(c)] => {
            assert_eq!(c.exclude, ["*.log", "tmp/"]);
            assert_eq!(
                c.source,
                CopySource::Input {
                    input: 1,
                    path: "/".into()
                }
            );
            assert_eq!(c.dest, "/app/");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn build_network_default_applies_to_runs_without_their_own() {
    let src = "FROM scratch\nRUN a\nRUN --network=host b\n";
    let mut o = opts();
    o.default_network = rbuild_graph::NetworkMode::None;
    let l = build_with(src, &o, &NoImages).unwrap();
    let nets: Vec<_> = l
        .graph
        .iter()
        .filter_map(|(_, v)| match &v.op {
            rbuild_graph::Op::Exec(e) => Some(e.network),
            _ => None,
        })
        .collect();
    assert_eq!(
        nets,
        [
            rbuild_graph::NetworkMode::None,
            rbuild_graph::NetworkMode::Host
        ]
    );
}

#[test]
fn symbolic_chmod_and_parents_lower_to_the_copy() {
    let src = "\
FROM alpine
COPY --chmod=u+x,go-w a /a
COPY --parents --chmod=a+X x/./y/*.txt /out/
COPY --parents foo1/foo2/bar /
";
    let l = build(src);
    let g = &l.graph;
    match file_actions(g, "COPY --chmod=u+x,go-w").as_slice() {
        [FileAction::Copy(c)] => {
            assert_eq!(c.mode, None);
            assert_eq!(c.chmod.as_deref(), Some("u+x,go-w"));
            assert_eq!(c.parents, None);
        }
        other => panic!("{other:?}"),
    }
    match file_actions(g, "x/./y").as_slice() {
        [FileAction::Copy(c)] => {
            assert_eq!(
                c.source,
                CopySource::Input {
                    input: 1,
                    path: "/x".into()
                }
            );
            assert_eq!(c.parents.as_deref(), Some("y/*.txt"));
            assert_eq!(c.chmod.as_deref(), Some("a+X"));
        }
        other => panic!("{other:?}"),
    }
    match file_actions(g, "foo1/foo2/bar").as_slice() {
        [FileAction::Copy(c)] => {
            assert_eq!(
                c.source,
                CopySource::Input {
                    input: 1,
                    path: "/".into()
                }
            );
            assert_eq!(c.parents.as_deref(), Some("foo1/foo2/bar"));
        }
        other => panic!("{other:?}"),
    }
    let history: Vec<String> = l
        .target
        .history
        .iter()
        .filter_map(|h| h.entry.created_by.clone())
        .collect();
    assert!(
        history
            .iter()
            .any(|h| h.starts_with("COPY --parents --chmod=a+X x/./y/*.txt")),
        "{history:?}"
    );
}

#[test]
fn bad_symbolic_chmod_names_the_line() {
    let d = fail("FROM alpine\n\nCOPY --chmod=u+q a /a\n", &opts());
    assert_diag(
        &d,
        "invalid chmod parameter: 'u+q': expected r, w, x, X, s, t, u, g, o, +, -, = or ',' at character 3",
        3,
    );
    let d = fail("FROM alpine\nADD --chmod=64a a /a\n", &opts());
    assert_diag(
        &d,
        "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777",
        2,
    );
}

#[test]
fn copy_link_copies_onto_scratch_and_merges() {
    let src = "\
FROM alpine AS a
RUN echo a
COPY --link --chown=1000:1000 f.txt /app/
FROM alpine AS b
RUN echo b
COPY --link --chown=1000:1000 f.txt /app/
COPY --link --chmod=755 f.txt /plain/
COPY --from=a /app/f.txt /from-a
";
    let l = build(src);
    let g = &l.graph;
    let merges: Vec<_> = g
        .iter()
        .filter(|(_, v)| matches!(v.op, Op::Merge))
        .map(|(id, v)| (id, v.clone()))
        .collect();
    assert_eq!(merges.len(), 2, "{:#?}", descriptions(g));
    // Both stages share the one copy, made on scratch.
    let copy = merges[0].1.inputs[1];
    assert_eq!(merges[1].1.inputs[1], copy);
    assert!(matches!(g.vertex(g.vertex(copy).inputs[0]).op, Op::Scratch));
    assert_eq!(merges[0].1.inputs[0], find(g, "RUN echo a"));
    assert!(merges[1].1.meta.description.contains("LINK COPY --link"));
    // --chmod turns --link off (as BuildKit).
    let plain = find(g, "/plain/");
    assert!(matches!(g.vertex(plain).op, Op::File(_)));
    let d = fail("FROM alpine\nCOPY --link --chown=app f /x\n", &opts());
    assert_diag(
        &d,
        "COPY --link --chown=app: a name is looked up in the stage's /etc/passwd and /etc/group, which a linked copy does not read",
        2,
    );
}
