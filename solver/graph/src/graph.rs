//! The build graph: content-addressed operations and their inputs.
//!
//! The frontend adds vertices with [`BuildGraph::add`]; identical vertices
//! (same op, same inputs) are stored once, so they are solved once. Every
//! vertex has a static [`CacheKey`]: blake3 over a canonical encoding of its op
//! and the keys of its inputs. Facts known only while solving (the content of
//! context files a COPY selects, a pulled manifest's digest) are folded in by
//! the solver on top of this key.

use crate::key::{CacheKey, cache_key};
use crate::op::Op;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Index of a vertex in its [`BuildGraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VertexId(pub usize);

/// Where a vertex came from; never part of its cache key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VertexMeta {
    /// What progress shows, e.g. `[build 2/4] RUN make`.
    pub description: String,
    /// The stage that first needed this vertex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Dockerfile lines (1-based, inclusive) of the instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    pub op: Op,
    pub inputs: Vec<VertexId>,
    pub meta: VertexMeta,
}

/// The graph the frontend produces and the solver runs.
#[derive(Debug, Clone, Default)]
pub struct BuildGraph {
    vertices: Vec<Vertex>,
    keys: Vec<CacheKey>,
    by_key: HashMap<CacheKey, VertexId>,
    /// Per RUN vertex, which of its environment's variables are build args (ARG, not
    /// ENV): how an explanation of a cache miss names them. Never part of a key.
    build_args: HashMap<VertexId, Vec<String>>,
}

impl BuildGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex, or returns the existing identical one (metadata of the first wins).
    pub fn add(&mut self, op: Op, inputs: Vec<VertexId>, meta: VertexMeta) -> VertexId {
        let input_keys: Vec<CacheKey> = inputs.iter().map(|i| self.keys[i.0]).collect();
        let key = cache_key(&op, &input_keys);
        if let Some(id) = self.by_key.get(&key) {
            return *id;
        }
        let id = VertexId(self.vertices.len());
        self.vertices.push(Vertex { op, inputs, meta });
        self.keys.push(key);
        self.by_key.insert(key, id);
        id
    }

    /// Notes which of `v`'s environment variables are build args (the first vertex's note
    /// wins, as its metadata does).
    pub fn mark_build_args(&mut self, v: VertexId, names: Vec<String>) {
        if !names.is_empty() {
            self.build_args.entry(v).or_insert(names);
        }
    }

    /// The build args among `v`'s environment variables.
    pub fn build_args(&self, v: VertexId) -> &[String] {
        self.build_args.get(&v).map_or(&[], Vec::as_slice)
    }

    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.vertices[id.0]
    }

    pub fn key(&self, id: VertexId) -> CacheKey {
        self.keys[id.0]
    }

    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// Vertices in insertion order, which is a topological order (inputs first).
    pub fn iter(&self) -> impl Iterator<Item = (VertexId, &Vertex)> {
        self.vertices
            .iter()
            .enumerate()
            .map(|(i, v)| (VertexId(i), v))
    }

    /// The vertices `roots` depend on (roots included), in topological order.
    pub fn reachable(&self, roots: &[VertexId]) -> Vec<VertexId> {
        let mut seen = vec![false; self.vertices.len()];
        let mut stack: Vec<VertexId> = roots.to_vec();
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut seen[v.0], true) {
                continue;
            }
            stack.extend(self.vertices[v.0].inputs.iter().copied());
        }
        (0..self.vertices.len())
            .filter(|i| seen[*i])
            .map(VertexId)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{ExecOp, NetworkMode, SecurityMode};

    fn exec(cmd: &str) -> Op {
        Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: Default::default(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::Host,
            mounts: vec![],
            security: SecurityMode::Sandbox,
            settings: Default::default(),
            platform: None,
        })
    }

    #[test]
    fn identical_vertices_are_stored_once() {
        let mut g = BuildGraph::new();
        let s = g.add(Op::Scratch, vec![], VertexMeta::default());
        let a = g.add(exec("true"), vec![s], VertexMeta::default());
        let b = g.add(
            exec("true"),
            vec![s],
            VertexMeta {
                description: "other".into(),
                ..Default::default()
            },
        );
        assert_eq!(a, b);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn key_changes_with_op_and_with_inputs() {
        let mut g = BuildGraph::new();
        let s = g.add(Op::Scratch, vec![], VertexMeta::default());
        let a = g.add(exec("a"), vec![s], VertexMeta::default());
        let b = g.add(exec("b"), vec![s], VertexMeta::default());
        let a_on_b = g.add(exec("a"), vec![b], VertexMeta::default());
        assert_ne!(g.key(a), g.key(b));
        assert_ne!(g.key(a), g.key(a_on_b));
    }

    #[test]
    fn only_an_insecure_run_encodes_its_security_mode() {
        // A sandboxed RUN keeps the key it had before the field existed.
        let Op::Exec(mut op) = exec("a") else {
            unreachable!()
        };
        let before = r#"{"op":"exec","args":["/bin/sh","-c","a"],"env":{},"cwd":"/","user":"","network":"host"}"#;
        assert_eq!(
            serde_json::to_string(&Op::Exec(op.clone())).unwrap(),
            before
        );
        let sandbox = crate::cache_key(&Op::Exec(op.clone()), &[]);
        op.security = SecurityMode::Insecure;
        let json = serde_json::to_string(&Op::Exec(op.clone())).unwrap();
        assert!(json.ends_with(r#""security":"insecure"}"#), "{json}");
        assert_ne!(crate::cache_key(&Op::Exec(op), &[]), sandbox);
    }

    #[test]
    fn reachable_is_only_what_roots_need() {
        let mut g = BuildGraph::new();
        let s = g.add(Op::Scratch, vec![], VertexMeta::default());
        let a = g.add(exec("a"), vec![s], VertexMeta::default());
        let _b = g.add(exec("b"), vec![s], VertexMeta::default());
        assert_eq!(g.reachable(&[a]), vec![s, a]);
    }
}
