//! Lowering for several platforms: one subgraph per platform in one graph, the vertices
//! that do not depend on the target platform shared, the predefined platform ARGs with
//! BuildKit's scoping, and RUN steps of a foreign platform marked with it.

use rbuild_frontend::lower::{LowerOptions, LoweredTargets, NoImages, lower_targets_for};
use rbuild_graph::{BuildGraph, Op, Platform, VertexId};

fn platform(arch: &str, variant: Option<&str>) -> Platform {
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
    }
}

fn lower(src: &str, platforms: &[Platform]) -> LoweredTargets {
    let opts = LowerOptions {
        platform: platform("amd64", None),
        build_platform: platform("amd64", None),
        ..Default::default()
    };
    match lower_targets_for(src, &opts, &[], platforms, &NoImages) {
        Ok(l) => l,
        Err(d) => panic!("lowering failed:\n{d}"),
    }
}

/// The RUN vertices whose command contains `needle`: (the platform ARGs in its
/// environment as `K=V` joined by spaces, its platform).
fn runs(g: &BuildGraph, needle: &str) -> Vec<(String, Option<String>)> {
    g.iter()
        .filter_map(|(_, v)| match &v.op {
            Op::Exec(e) if e.args.join(" ").contains(needle) => {
                let vars: Vec<String> = e
                    .env
                    .iter()
                    .filter(|(k, _)| k.starts_with("TARGET") || k.starts_with("BUILD"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                Some((vars.join(" "), e.platform.as_ref().map(Platform::to_string)))
            }
            _ => None,
        })
        .collect()
}

fn description(g: &BuildGraph, v: VertexId) -> String {
    g.vertex(v).meta.description.clone()
}

const CROSS: &str = "\
FROM --platform=$BUILDPLATFORM scratch AS builder
ARG TARGETARCH
COPY . /src
RUN build for=$TARGETARCH on=$BUILDARCH
RUN native step
FROM scratch
ARG TARGETPLATFORM
COPY --from=builder /src /out
RUN final $TARGETPLATFORM $TARGETARCH
";

#[test]
fn one_subgraph_per_platform_sharing_the_build_platform_stage() {
    let two = [platform("amd64", None), platform("arm64", Some("v8"))];
    let l = lower(CROSS, &two);
    assert_eq!(l.targets.len(), 2);
    assert_eq!(l.targets[0].platform, two[0]);
    assert_eq!(l.targets[1].platform, two[1]);
    assert_eq!(l.targets[0].config.architecture, "amd64");
    assert_eq!(l.targets[1].config.architecture, "arm64");
    assert_eq!(l.targets[1].config.variant.as_deref(), Some("v8"));
    // The builder stage runs on the build platform for each target, so natively; a stage
    // without `ARG BUILDARCH` does not see it (BuildKit's scoping).
    let builder = runs(&l.graph, "build for=");
    assert_eq!(
        builder,
        [
            ("TARGETARCH=amd64".to_string(), None),
            ("TARGETARCH=arm64".to_string(), None)
        ]
    );
    // A builder step that does not read the target platform is in the graph once.
    assert_eq!(
        runs(&l.graph, "native step").len(),
        2,
        "after a per-platform step"
    );
    // The final stage: one RUN per platform, the foreign one marked with its platform.
    let finals = runs(&l.graph, "final");
    assert_eq!(
        finals,
        [
            ("TARGETPLATFORM=linux/amd64".to_string(), None),
            (
                "TARGETPLATFORM=linux/arm64/v8".to_string(),
                Some("linux/arm64/v8".to_string())
            )
        ]
    );
    // The context is one vertex for both.
    let locals = l
        .graph
        .iter()
        .filter(|(_, v)| matches!(v.op, Op::Local { .. }))
        .count();
    assert_eq!(locals, 1);
    // Progress names of the foreign platform's steps say it.
    assert!(
        description(&l.graph, l.targets[1].root)
            .starts_with("[linux/arm64/v8 stage-1 2/2] RUN final linux/arm64/v8 $TARGETARCH"),
        "{}",
        description(&l.graph, l.targets[1].root)
    );
    assert!(
        description(&l.graph, l.targets[0].root).starts_with("[stage-1 2/2] RUN final linux/amd64")
    );
}

#[test]
fn a_platform_independent_stage_is_shared() {
    let src = "\
FROM --platform=$BUILDPLATFORM scratch AS tools
COPY . /src
RUN make tools
FROM scratch
COPY --from=tools /src /tools
";
    let two = [platform("amd64", None), platform("arm64", Some("v8"))];
    let l = lower(src, &two);
    assert_eq!(runs(&l.graph, "make tools"), [(String::new(), None)]);
    // The final stage copies only: the same vertex, two image configs.
    assert_eq!(l.targets[0].root, l.targets[1].root);
    assert_eq!(l.targets[0].config.architecture, "amd64");
    assert_eq!(l.targets[1].config.architecture, "arm64");
}

#[test]
fn global_platform_args_reach_from_and_stage_args_only_when_named() {
    let src = "\
ARG TARGETARCH
FROM scratch AS base-arm64
RUN echo in-stage
FROM base-$TARGETARCH
ARG TARGETOS TARGETVARIANT BUILDPLATFORM
RUN echo named
";
    let l = lower(src, &[platform("arm64", Some("v8"))]);
    assert_eq!(
        runs(&l.graph, "in-stage"),
        [(String::new(), Some("linux/arm64/v8".to_string()))]
    );
    assert_eq!(
        runs(&l.graph, "named"),
        [(
            "BUILDPLATFORM=linux/amd64 TARGETOS=linux TARGETVARIANT=v8".to_string(),
            Some("linux/arm64/v8".to_string())
        )]
    );
}

#[test]
fn from_platform_flag_picks_the_stage_platform() {
    let src = "\
FROM --platform=linux/arm64 scratch
RUN only-arm
";
    let l = lower(src, &[]);
    assert_eq!(
        runs(&l.graph, "only-arm"),
        [(String::new(), Some("linux/arm64/v8".to_string()))]
    );
    assert_eq!(l.targets[0].config.architecture, "arm64");
}
