//! The build graph: content-addressed operations and their inputs.
//!
//! The frontend adds vertices with [`BuildGraph::add`]; identical vertices
//! (same op, same inputs) are stored once, so they are solved once. Every
//! vertex has a static [`CacheKey`]: blake3 over a canonical encoding of its op
//! and the keys of its inputs. Facts known only while solving (the content of
//! context files a COPY selects, a pulled manifest's digest) are folded in by
//! the solver on top of this key.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Index of a vertex in its [`BuildGraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VertexId(pub usize);

/// A 32-byte blake3 digest identifying a vertex's result.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

impl Serialize for CacheKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// OS / architecture / variant, as in OCI image indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine rbuild runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8".to_string())),
            "arm" => ("arm", Some("v7".to_string())),
            "x86" => ("386", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant,
        }
    }
}

impl Platform {
    /// The same platform as the registry client names it.
    pub fn to_registry(&self) -> rbuild_cache::registry::Platform {
        rbuild_cache::registry::Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Host,
    None,
}

/// `uid[:gid]` or `name[:group]`, resolved inside the target rootfs when used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What a RUN mount is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A bind of (a subpath of) another vertex's result; `input` indexes `Vertex::inputs`.
    Bind {
        input: usize,
        source: String,
        readonly: bool,
    },
    /// A persistent cache directory, kept across builds, never part of a layer.
    Cache {
        id: String,
        sharing: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<usize>,
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Secret {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        id: String,
        required: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecMount {
    pub target: String,
    pub kind: MountKind,
}

/// A RUN: input 0 is the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// The process environment (image ENV plus build ARGs), sorted by key.
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    /// As written in USER (`name`, `uid`, `uid:gid`, …); empty means root.
    pub user: String,
    pub network: NetworkMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ExecMount>,
}

/// Where a file action reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CopySource {
    /// A path or wildcard pattern in `Vertex::inputs[input]`'s result.
    Input { input: usize, path: String },
    /// Inline bytes (a heredoc).
    Inline { data: String, mode: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyAction {
    pub source: CopySource,
    /// Absolute destination inside input 0's filesystem. A trailing `/` means "into this directory".
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// `--chmod` as parsed octal mode bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Wildcards in `source` are expanded; no match is an error unless allowed.
    pub allow_wildcard: bool,
    /// ADD: a local tar archive is extracted into `dest`.
    pub unpack_archive: bool,
    /// Patterns (`--exclude`) not copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    Copy(CopyAction),
    Mkdir {
        path: String,
        mode: u32,
        make_parents: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Owner>,
    },
    Rm {
        path: String,
        allow_not_found: bool,
    },
}

/// COPY / ADD / WORKDIR: input 0 is the filesystem changed; others are copy sources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileOp {
    pub actions: Vec<FileAction>,
}

/// One history entry of an exported image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExportStep {
    pub entry: crate::image::History,
    /// Indexes `Vertex::inputs`: the step whose diff over its input 0 is this entry's
    /// layer. None: a metadata-only step or an entry inherited from the base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<usize>,
}

/// Writes input 0's filesystem as an image of the store: config (history, rootfs,
/// created), manifest, tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExportOp {
    /// The stage's config; export fills in rootfs, history and created.
    pub config: crate::image::ImageConfig,
    pub history: Vec<ExportStep>,
    pub tags: Vec<String>,
    /// `--cache-to type=inline`: the cache records of the image's own steps go into its
    /// config, so the image is written once, with them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline_cache: bool,
}

/// Runs a throwaway container of input 0's image (an export or an image source), with
/// rbuild's stdin/stdout/stderr; its exit status is the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct RunOp {
    /// Replaces the image's CMD (not its ENTRYPOINT) when not empty.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces ENTRYPOINT and drops CMD; `""` means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// `K=V` entries over the image's Env.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub network: NetworkMode,
    /// Feed rbuild's stdin to the process; otherwise it reads /dev/null.
    pub stdin: bool,
    /// What to call the image in messages.
    pub name: String,
}

/// One operation of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The empty filesystem.
    Scratch,
    /// An image's filesystem (and config). `digest` pins the manifest when known.
    Image {
        reference: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        platform: Platform,
    },
    /// A local directory (the build context); only files the consumers select are read.
    Local {
        name: String,
        /// `.dockerignore` patterns, in order (with `!` exceptions).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
    },
    Exec(ExecOp),
    File(FileOp),
    /// Actions (never cached, run every time they are reached): export, push, run.
    Export(Box<ExportOp>),
    /// Sends input 0's image (an export or a local image source) to `reference`.
    Push {
        reference: String,
    },
    Run(RunOp),
}

impl Op {
    /// A short name for listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Scratch => "scratch",
            Op::Image { .. } => "image",
            Op::Local { .. } => "local",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Export(_) => "export",
            Op::Push { .. } => "push",
            Op::Run(_) => "run",
        }
    }

    /// Whether this op acts on the world (writes an image, pushes, runs a container)
    /// rather than computing a filesystem: its result is never looked up in or written to
    /// the cache.
    pub fn is_action(&self) -> bool {
        matches!(self, Op::Export(_) | Op::Push { .. } | Op::Run(_))
    }
}

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
}

/// Domain separation for cache keys; bump when the encoding changes.
const KEY_DOMAIN: &[u8] = b"rbuild cache key v1\0";

/// The static cache key of `op` over inputs with keys `inputs`.
pub fn cache_key(op: &Op, inputs: &[CacheKey]) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(KEY_DOMAIN);
    // serde_json over structs and BTreeMaps is a canonical encoding: field
    // order is fixed by the type, map keys are sorted.
    let encoded = serde_json::to_vec(op).expect("ops always serialize");
    h.update(&(encoded.len() as u64).to_le_bytes());
    h.update(&encoded);
    h.update(&(inputs.len() as u64).to_le_bytes());
    for k in inputs {
        h.update(&k.0);
    }
    CacheKey(*h.finalize().as_bytes())
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

    fn exec(cmd: &str) -> Op {
        Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: BTreeMap::new(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::Host,
            mounts: vec![],
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
    fn reachable_is_only_what_roots_need() {
        let mut g = BuildGraph::new();
        let s = g.add(Op::Scratch, vec![], VertexMeta::default());
        let a = g.add(exec("a"), vec![s], VertexMeta::default());
        let _b = g.add(exec("b"), vec![s], VertexMeta::default());
        assert_eq!(g.reachable(&[a]), vec![s, a]);
    }
}
