//! `--metadata-file`: the build's result as JSON, with buildx's keys for the image
//! (`containerimage.digest`, `containerimage.config.digest`, `image.name`) and, under
//! `rbuild.cache.misses`, why each step that ran missed the cache.

use anyhow::{Context, Result};
use rbuild_cache::StoredImage;
use rbuild_graph::{BuildGraph, VertexId};
use rbuild_solver::explain::{BuildHistory, Miss};
use serde_json::{Map, Value, json};
use std::path::Path;

/// What a miss says in machine-readable form: per cause its kind, its words (other steps
/// named by their description) and the step it names, if any.
pub fn reasons(graph: &BuildGraph, miss: &Miss) -> Vec<(String, String, Option<VertexId>)> {
    let name = |v: VertexId| step_name(graph, v);
    let mut out: Vec<(String, String, Option<VertexId>)> = Vec::new();
    for c in &miss.causes {
        let text = c.text(&name);
        if !out.iter().any(|(_, t, _)| *t == text) {
            out.push((c.kind().to_string(), text, c.steps()));
        }
    }
    out
}

/// How a step is named in JSON: its description.
fn step_name(graph: &BuildGraph, v: VertexId) -> String {
    let d = &graph.vertex(v).meta.description;
    if d.is_empty() {
        format!("#{}", v.0)
    } else {
        d.clone()
    }
}

/// A reason as JSON: `{kind, text}`, and `vertex` when it names another step.
pub fn reason_json((kind, text, vertex): (String, String, Option<VertexId>)) -> Value {
    let mut r = json!({"kind": kind, "text": text});
    if let Some(v) = vertex {
        r["vertex"] = json!(v.0);
    }
    r
}

/// The misses of a build as `rbuild.cache.misses` lists them: one entry per step that ran.
pub fn misses(graph: &BuildGraph, history: &BuildHistory) -> Value {
    history
        .misses()
        .into_iter()
        .map(|(v, miss)| {
            let reasons: Vec<Value> = reasons(graph, &miss).into_iter().map(reason_json).collect();
            json!({
                "step": graph.vertex(v).meta.description,
                "vertex": v.0,
                "reasons": reasons,
            })
        })
        .collect()
}

/// Writes the metadata of a build whose last target is `image` (named `tags`); for
/// several platforms, `index` is the digest of the target's image index, which is then the
/// image's digest (and there is no one config), as buildx writes it.
pub fn write(
    path: &Path,
    image: &StoredImage,
    index: Option<&str>,
    tags: &[String],
    graph: &BuildGraph,
    history: Option<&BuildHistory>,
) -> Result<()> {
    let mut m = Map::new();
    match index {
        Some(d) => {
            m.insert("containerimage.digest".into(), json!(d));
        }
        None => {
            m.insert("containerimage.digest".into(), json!(image.manifest_digest));
            m.insert(
                "containerimage.config.digest".into(),
                json!(image.config_digest),
            );
        }
    }
    if !tags.is_empty() {
        m.insert("image.name".into(), json!(tags.join(",")));
    }
    if let Some(h) = history {
        m.insert("rbuild.cache.misses".into(), misses(graph, h));
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(m))?;
    bytes.push(b'\n');
    std::fs::write(path, bytes)
        .with_context(|| format!("cannot write --metadata-file {}", path.display()))
}
