//! Golden test: the graph, static cache keys, image configs and history that a representative
//! multi-stage Dockerfile lowers to, pinned byte for byte in `golden/multistage.txt`.
//!
//! Cache keys are what a user's cache is addressed by: a refactor of lowering must not change
//! a single one. When a change of keys is intended, regenerate the file with
//! `RBUILD_UPDATE_GOLDEN=1 cargo test -p rbuild-frontend --test golden_keys` and say why in
//! the commit.

use rbuild_frontend::lower::{
    ImageResolver, LowerOptions, LoweredTargets, ResolveError, ResolvedImage, TargetImage, lower,
    lower_targets,
};
use rbuild_graph::image::{ContainerConfig, History, ImageConfig};
use rbuild_graph::{BuildGraph, NetworkMode, Platform};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Every instruction kind, several stages, ARG scoping, ONBUILD (of a stage and of an image),
/// every RUN mount type, heredocs in all their RUN/COPY forms, `--from` by name, index and
/// image, and metadata instructions after the last filesystem change.
const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=alpine:3.20
ARG VERSION=1.0
FROM ${BASE} AS base
ARG VERSION
ENV APP_HOME=/app PATH=/app/bin:$PATH
LABEL org.example.version=$VERSION maintainer="me"
WORKDIR $APP_HOME
RUN --mount=type=cache,target=/var/cache/apk,sharing=locked apk add make
ONBUILD RUN echo fired in $APP_HOME
USER 1000:1000

FROM base AS build
ARG VERSION
ARG HTTP_PROXY
COPY --chown=1000:1000 --chmod=0644 src/ ./src/
COPY --exclude=*.md docs/ /docs/
RUN --mount=type=bind,source=Makefile,target=Makefile \
    --mount=type=secret,id=token \
    --mount=type=ssh \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --network=none \
    make VERSION=$VERSION
RUN <<EOF
set -e
echo heredoc > /out.txt
EOF
RUN <<EOF
#!/bin/sh
echo script
EOF
RUN cat <<A <<B > /ab
a
A
b
B
COPY <<EOF /etc/motd
hello $VERSION
EOF
ADD archive.tar.gz /opt/

FROM busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa AS tools
RUN ["echo", "exec form"]
WORKDIR /

FROM example.com/team/onbuilder:2 AS triggered
RUN echo after triggers

FROM scratch AS final
COPY --from=build /app/bin/ /bin/
COPY --from=tools /bin/busybox /bin/
COPY --from=1 /out.txt /
COPY --from=alpine:3.20 /etc/os-release /etc/
RUN --mount=type=bind,from=tools,target=/t --mount=type=cache,id=c,from=build,source=/app,target=/c,uid=1,gid=2,mode=0700 ls /t
SHELL ["/bin/sh", "-ec"]
EXPOSE 80 443/tcp 53/udp 8000-8001
VOLUME /data ["/logs"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=3 CMD wget -q localhost
ENTRYPOINT ["/bin/app"]
CMD app --serve "$APP_HOME"
MAINTAINER someone
"#;

fn amd64() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

fn opts() -> LowerOptions {
    let mut build_args = BTreeMap::new();
    build_args.insert("VERSION".to_string(), "2.0".to_string());
    build_args.insert("HTTP_PROXY".to_string(), "http://proxy:3128".to_string());
    build_args.insert("no_proxy".to_string(), "localhost".to_string());
    LowerOptions {
        dockerfile_name: "ctx/Dockerfile".into(),
        target: None,
        build_args,
        platform: amd64(),
        build_platform: amd64(),
        ignore_patterns: vec!["*.md".into(), "!README.md".into()],
        default_network: NetworkMode::Host,
        named_contexts: BTreeMap::new(),
        run_settings: Default::default(),
    }
}

/// Known images: alpine with an ENV and history, and an image whose ONBUILD triggers fire.
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

fn images() -> Images {
    let image = |digest: &str, config: ContainerConfig, history: &[&str]| ResolvedImage {
        digest: Some(format!("sha256:{}", digest.repeat(32))),
        config: ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config,
            history: history
                .iter()
                .map(|h| History {
                    created_by: Some(h.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    };
    let mut m = HashMap::new();
    m.insert(
        "docker.io/library/alpine:3.20".to_string(),
        image(
            "a1",
            ContainerConfig {
                env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into(), "A=1".into()],
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            },
            &[
                "ADD alpine-minirootfs.tar.gz / # buildkit",
                "CMD [\"/bin/sh\"]",
            ],
        ),
    );
    m.insert(
        "example.com/team/onbuilder:2".to_string(),
        image(
            "0b",
            ContainerConfig {
                on_build: vec![
                    "COPY --from=build /out.txt /from-build.txt".into(),
                    "ENV TRIGGERED=yes".into(),
                ],
                ..Default::default()
            },
            &["ADD rootfs.tar /"],
        ),
    );
    Images(m)
}

fn render_graph(out: &mut String, g: &BuildGraph) {
    for (id, v) in g.iter() {
        let inputs: Vec<String> = v.inputs.iter().map(|i| i.0.to_string()).collect();
        writeln!(
            out,
            "#{} {} {} inputs=[{}] stage={} lines={}\n    {}",
            id.0,
            g.key(id).to_hex(),
            v.op.kind(),
            inputs.join(","),
            v.meta.stage.as_deref().unwrap_or("-"),
            v.meta
                .lines
                .map_or("-".to_string(), |(a, b)| format!("{a}-{b}")),
            v.meta.description,
        )
        .unwrap();
    }
}

fn render_target(out: &mut String, g: &BuildGraph, t: &TargetImage) {
    writeln!(
        out,
        "target {:?} (stage {}) root #{} {}",
        t.stage_name,
        t.stage_index,
        t.root.0,
        g.key(t.root).to_hex()
    )
    .unwrap();
    writeln!(out, "{}", serde_json::to_string_pretty(&t.config).unwrap()).unwrap();
    for h in &t.history {
        writeln!(
            out,
            "  history vertex={} empty_layer={} comment={:?} {:?}",
            h.vertex.map_or("-".to_string(), |v| v.0.to_string()),
            h.entry.empty_layer,
            h.entry.comment,
            h.entry.created_by,
        )
        .unwrap();
    }
}

fn render_all(out: &mut String, l: &LoweredTargets) {
    render_graph(out, &l.graph);
    writeln!(out, "context {:?}", l.context.map(|c| c.0)).unwrap();
    for t in &l.targets {
        render_target(out, &l.graph, t);
    }
}

/// Everything pinned, in one text: the default target alone, then three targets together.
fn actual() -> String {
    let resolver = images();
    let mut out = String::from("== lower (default target)\n");
    let one = lower(DOCKERFILE, &opts(), &resolver).unwrap_or_else(|d| panic!("{d}"));
    render_all(
        &mut out,
        &LoweredTargets {
            graph: one.graph,
            targets: vec![one.target],
            context: one.context,
            lint: one.lint,
        },
    );

    out.push_str("== lower_targets [build, triggered, final, tools]\n");
    let targets: Vec<String> = ["build", "triggered", "final", "tools"]
        .map(String::from)
        .into();
    let many =
        lower_targets(DOCKERFILE, &opts(), &targets, &resolver).unwrap_or_else(|d| panic!("{d}"));
    render_all(&mut out, &many);
    out
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/multistage.txt")
}

#[test]
fn multistage_keys_and_images_are_pinned() {
    let got = actual();
    let path = golden_path();
    if std::env::var_os("RBUILD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (RBUILD_UPDATE_GOLDEN=1 writes it)", path.display()));
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "lowering changed at line {} of {}:\n  want: {:?}\n  got:  {:?}",
            first + 1,
            path.display(),
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}
