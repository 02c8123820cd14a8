//! Listings of a build graph for people (`text`), Graphviz (`dot`) and tools
//! (`json`): what `rbuild debug graph` and `--dry-run` print.
//!
//! Each listing covers the vertices the roots depend on, inputs first. The
//! optional `status` callback says per vertex whether its result would come
//! from the cache, and if not, why ([`Status`]); without it nothing is said about
//! caching.

use crate::{BuildGraph, CopySource, FileAction, MountKind, Op, Vertex, VertexId};
use serde_json::{Value, json};
use std::fmt::Write;

/// Hex digits of the cache key shown in text and dot listings.
const SHORT_KEY: usize = 12;

/// A one-line summary of what an op does (used when a vertex has no description).
fn op_summary(op: &Op) -> String {
    match op {
        Op::Scratch => "scratch".into(),
        Op::Image {
            reference,
            digest,
            platform,
        } => match digest {
            Some(d) => format!("{reference}@{d} ({platform})"),
            None => format!("{reference} ({platform})"),
        },
        Op::Local { name, exclude } => {
            if exclude.is_empty() {
                format!("local {name:?}")
            } else {
                format!("local {name:?} excluding {}", exclude.join(" "))
            }
        }
        Op::Exec(e) => {
            let mut s = format!("{:?}", e.args);
            if !e.mounts.is_empty() {
                let targets: Vec<String> = e
                    .mounts
                    .iter()
                    .map(|m| {
                        let kind = match &m.kind {
                            MountKind::Bind { .. } => "bind",
                            MountKind::Cache { .. } => "cache",
                            MountKind::Tmpfs { .. } => "tmpfs",
                            MountKind::Secret { .. } => "secret",
                            MountKind::Ssh { .. } => "ssh",
                        };
                        match &m.kind {
                            // `env=` without a target: no file, only the variable.
                            MountKind::Secret { env: Some(env), .. } if m.target.is_empty() => {
                                format!("{kind}:${env}")
                            }
                            _ => format!("{kind}:{}", m.target),
                        }
                    })
                    .collect();
                let _ = write!(s, " mounts {}", targets.join(","));
            }
            s
        }
        Op::File(f) => f
            .actions
            .iter()
            .map(|a| match a {
                FileAction::Copy(c) => match &c.source {
                    CopySource::Input { input, path } => {
                        format!("copy input{input}:{path} -> {}", c.dest)
                    }
                    CopySource::Inline { data, .. } => {
                        format!("write {} bytes -> {}", data.len(), c.dest)
                    }
                    CopySource::Http { url, .. } => format!("download {url} -> {}", c.dest),
                    CopySource::Git { remote, .. } => format!("git {remote} -> {}", c.dest),
                },
                FileAction::Mkdir { path, .. } => format!("mkdir {path}"),
                FileAction::Rm { path, .. } => format!("rm {path}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        Op::Merge => "merge: input 0's layers, then the others'".into(),
        Op::Export(e) if e.tags.is_empty() => "export image".into(),
        Op::Export(e) => format!("export image as {}", e.tags.join(", ")),
        Op::Push { reference } => format!("push to {reference}"),
        Op::Run(r) => format!("run {} {:?}", r.name, r.command),
    }
}

/// What a dry run predicts of a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Cached,
    /// It runs, for these reasons (`kind`, words), when known.
    Run(Vec<Reason>),
}

/// Why a vertex would run instead of coming from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// A stable name of the kind of cause (`content`, `parent`, `first-build`, …).
    pub kind: String,
    pub text: String,
}

/// The callback saying what a dry run predicts of each vertex.
pub type StatusOf<'a> = Option<&'a dyn Fn(VertexId) -> Status>;

fn label(v: &Vertex) -> String {
    if v.meta.description.is_empty() {
        op_summary(&v.op)
    } else {
        v.meta.description.clone()
    }
}

fn is_cached(status: StatusOf, id: VertexId) -> Option<bool> {
    status.map(|f| f(id) == Status::Cached)
}

fn reasons(status: StatusOf, id: VertexId) -> Vec<Reason> {
    match status.map(|f| f(id)) {
        Some(Status::Run(r)) => r,
        _ => Vec::new(),
    }
}

/// A readable list: id, op kind, short key, description, then inputs, lines and op details.
pub fn render_text(graph: &BuildGraph, roots: &[VertexId], status: StatusOf) -> String {
    let mut out = String::new();
    for id in graph.reachable(roots) {
        let v = graph.vertex(id);
        let key = graph.key(id).to_hex();
        let _ = write!(
            out,
            "#{:<3} {:<7} {} {}",
            id.0,
            v.op.kind(),
            &key[..SHORT_KEY],
            label(v)
        );
        match is_cached(status, id) {
            Some(true) => out.push_str("  [cached]"),
            Some(false) => out.push_str("  [run]"),
            None => {}
        }
        if roots.contains(&id) {
            out.push_str("  (root)");
        }
        out.push('\n');
        if !v.inputs.is_empty() {
            let inputs: Vec<String> = v.inputs.iter().map(|i| format!("#{}", i.0)).collect();
            let _ = writeln!(out, "       inputs: {}", inputs.join(", "));
        }
        if let Some((a, b)) = v.meta.lines {
            if a == b {
                let _ = writeln!(out, "       line: {a}");
            } else {
                let _ = writeln!(out, "       lines: {a}-{b}");
            }
        }
        if !v.meta.description.is_empty() {
            let _ = writeln!(out, "       op: {}", op_summary(&v.op));
        }
        for r in reasons(status, id) {
            let _ = writeln!(out, "       why: {}", r.text);
        }
    }
    out
}

fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A Graphviz digraph; edges point from an input to the vertex that uses it.
pub fn render_dot(graph: &BuildGraph, roots: &[VertexId], status: StatusOf) -> String {
    let mut out = String::from(
        "digraph build {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    let ids = graph.reachable(roots);
    for &id in &ids {
        let v = graph.vertex(id);
        let key = graph.key(id).to_hex();
        let text = format!("{}\n{} {}", label(v), v.op.kind(), &key[..SHORT_KEY]);
        let mut attrs = format!("label=\"{}\"", dot_escape(&text));
        match is_cached(status, id) {
            Some(true) => attrs.push_str(", style=filled, fillcolor=\"#d9ead3\""),
            Some(false) => attrs.push_str(", style=filled, fillcolor=\"#fce5cd\""),
            None => {}
        }
        if roots.contains(&id) {
            attrs.push_str(", peripheries=2");
        }
        let _ = writeln!(out, "  v{} [{attrs}];", id.0);
    }
    for &id in &ids {
        for (n, input) in graph.vertex(id).inputs.iter().enumerate() {
            let _ = writeln!(out, "  v{} -> v{} [label=\"{n}\"];", input.0, id.0);
        }
    }
    out.push_str("}\n");
    out
}

/// `[{id, op, inputs, cache_key, description, stage, lines, root, cached?, miss?}]`,
/// inputs first; `miss` lists why a vertex would run (`[{kind, text}]`).
pub fn render_json(graph: &BuildGraph, roots: &[VertexId], status: StatusOf) -> Value {
    let list = graph
        .reachable(roots)
        .into_iter()
        .map(|id| {
            let v = graph.vertex(id);
            let mut obj = json!({
                "id": id.0,
                "op": serde_json::to_value(&v.op).unwrap_or(Value::Null),
                "inputs": v.inputs.iter().map(|i| i.0).collect::<Vec<_>>(),
                "cache_key": graph.key(id).to_hex(),
                "description": v.meta.description,
                "stage": v.meta.stage,
                "lines": v.meta.lines.map(|(a, b)| vec![a, b]),
                "root": roots.contains(&id),
            });
            if let Some(c) = is_cached(status, id) {
                obj["cached"] = Value::Bool(c);
            }
            let why = reasons(status, id);
            if !why.is_empty() {
                obj["miss"] = why
                    .iter()
                    .map(|r| json!({"kind": r.kind, "text": r.text}))
                    .collect();
            }
            obj
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecOp, FileOp, NetworkMode, VertexMeta};

    fn sample() -> (BuildGraph, VertexId, VertexId) {
        let mut g = BuildGraph::new();
        let base = g.add(
            Op::Image {
                reference: "docker.io/library/alpine:latest".into(),
                digest: None,
                platform: crate::Platform {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    variant: None,
                },
            },
            vec![],
            VertexMeta {
                description: "[1/2] FROM docker.io/library/alpine:latest".into(),
                stage: None,
                lines: Some((1, 1)),
            },
        );
        let unused = g.add(Op::Scratch, vec![], VertexMeta::default());
        let run = g.add(
            Op::Exec(ExecOp {
                args: vec!["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()],
                env: Default::default(),
                cwd: "/".into(),
                user: String::new(),
                network: NetworkMode::Host,
                mounts: vec![],
                security: Default::default(),
                settings: Default::default(),
                platform: None,
            }),
            vec![base],
            VertexMeta {
                description: "[2/2] RUN echo \"hi\"".into(),
                stage: Some("build".into()),
                lines: Some((2, 3)),
            },
        );
        let _ = g.add(
            Op::File(FileOp {
                actions: vec![FileAction::Mkdir {
                    path: "/x".into(),
                    mode: 0o755,
                    make_parents: true,
                    owner: None,
                }],
            }),
            vec![unused],
            VertexMeta::default(),
        );
        (g, base, run)
    }

    fn cached_if(cached: bool) -> Status {
        if cached {
            Status::Cached
        } else {
            Status::Run(vec![Reason {
                kind: "first-build".into(),
                text: "first build".into(),
            }])
        }
    }

    #[test]
    fn text_lists_only_reachable_vertices_with_details() {
        let (g, base, run) = sample();
        let status = |id: VertexId| {
            if id == base {
                Status::Cached
            } else {
                Status::Run(vec![Reason {
                    kind: "parent".into(),
                    text: "parent step #0 changed".into(),
                }])
            }
        };
        let text = render_text(&g, &[run], Some(&status));
        let lines: Vec<&str> = text.lines().collect();
        let key = g.key(run).to_hex();
        assert_eq!(
            lines[0],
            format!(
                "#0   image   {} [1/2] FROM docker.io/library/alpine:latest  [cached]",
                &g.key(base).to_hex()[..12]
            )
        );
        assert_eq!(
            lines[3],
            format!(
                "#2   exec    {} [2/2] RUN echo \"hi\"  [run]  (root)",
                &key[..12]
            )
        );
        assert!(lines.contains(&"       inputs: #0"));
        assert!(lines.contains(&"       lines: 2-3"));
        assert!(lines.contains(&"       why: parent step #0 changed"));
        assert!(
            !text.contains("mkdir"),
            "unreachable vertex listed:\n{text}"
        );
        assert!(!text.contains("#1 "));
    }

    #[test]
    fn dot_has_nodes_edges_and_escapes() {
        let (g, base, run) = sample();
        let dot = render_dot(&g, &[run], None);
        assert!(dot.starts_with("digraph build {"));
        assert!(dot.contains("v0 -> v2 [label=\"0\"];"));
        assert!(dot.contains("RUN echo \\\"hi\\\""));
        assert!(!dot.contains("v1 "));
        assert!(!dot.contains("fillcolor"));
        let dot = render_dot(&g, &[run], Some(&|id| cached_if(id == base)));
        assert!(dot.contains("v0 [label=") && dot.contains("#d9ead3"));
    }

    #[test]
    fn json_carries_full_op_and_keys() {
        let (g, base, run) = sample();
        let v = render_json(&g, &[run], Some(&|id| cached_if(id != base)));
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1]["id"], 2);
        assert_eq!(arr[1]["op"]["op"], "exec");
        assert_eq!(arr[1]["op"]["args"][2], "echo \"hi\"");
        assert_eq!(arr[1]["inputs"], json!([0]));
        assert_eq!(arr[1]["cache_key"], g.key(run).to_hex());
        assert_eq!(arr[1]["lines"], json!([2, 3]));
        assert_eq!(arr[1]["stage"], "build");
        assert_eq!(arr[1]["cached"], true);
        assert_eq!(arr[1]["root"], true);
        assert_eq!(arr[0]["cached"], false);
        assert_eq!(
            arr[0]["miss"],
            json!([{"kind": "first-build", "text": "first build"}])
        );
        assert!(arr[1].get("miss").is_none());
        assert_eq!(arr[0]["op"]["reference"], "docker.io/library/alpine:latest");
        let plain = render_json(&g, &[run], None);
        assert!(plain[0].get("cached").is_none());
    }
}
