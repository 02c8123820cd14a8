//! Shared helpers: a store with a busybox base image, graph builders, event collection.
#![allow(dead_code)]

use rbuild_cache::Store;
use rbuild_graph::{
    BuildGraph, CopyAction, CopySource, ExecOp, FileAction, FileOp, NetworkMode, Op, Owner,
    Platform, VertexId, VertexMeta,
};
use rbuild_solver::{Event, Outcome, SolveError, SolveOptions, Solver};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const BASE: &str = "bbase:latest";

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "touch", "mkdir", "sleep", "id", "stat", "test", "true", "false",
    "readlink", "rm", "cp", "env", "printf",
];

/// A store in a temp dir holding `bbase:latest`: busybox with applets, /etc/passwd with
/// root and app(1000), a group `app`, and two absolute symlinks for COPY tests:
/// `/lnk -> /realdir` and `/esc -> /rbuild-host-escape-check`.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub ctx: PathBuf,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("realdir")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    std::os::unix::fs::symlink("/realdir", rootfs.join("lnk")).unwrap();
    std::os::unix::fs::symlink("/rbuild-host-escape-check", rootfs.join("esc")).unwrap();
    let layer = store.commit_layer(&rootfs).unwrap().unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created_by": "busybox base"}]
    });
    store
        .put_image(
            serde_json::to_vec(&config).unwrap().as_slice(),
            &[layer],
            &[BASE.to_string()],
        )
        .unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    Env { dir, store, ctx }
}

impl Env {
    pub fn solver(&self) -> Solver {
        Solver::new(self.store.clone())
    }

    pub fn opts(&self) -> SolveOptions {
        SolveOptions {
            context_dir: Some(self.ctx.clone()),
            ..Default::default()
        }
    }

    /// Entries left in the store's tmp dir.
    pub fn tmp_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.store.root().join("tmp")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }

    /// The snapshot dir of the top layer of an outcome.
    pub fn top(&self, o: &Outcome) -> PathBuf {
        self.store.snapshot(o.layers.last().unwrap()).unwrap()
    }
}

pub fn meta(d: &str) -> VertexMeta {
    VertexMeta {
        description: d.to_string(),
        stage: None,
        lines: Some((1, 1)),
    }
}

pub fn base(g: &mut BuildGraph) -> VertexId {
    g.add(
        Op::Image {
            reference: BASE.into(),
            digest: None,
            platform: Platform::host(),
        },
        vec![],
        meta("FROM bbase"),
    )
}

pub fn context(g: &mut BuildGraph) -> VertexId {
    g.add(
        Op::Local {
            name: "context".into(),
            exclude: vec![],
        },
        vec![],
        meta("context"),
    )
}

pub fn run(g: &mut BuildGraph, input: VertexId, cmd: &str) -> VertexId {
    g.add(
        Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: [("PATH", "/bin")].into(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::Host,
            mounts: vec![],
            security: Default::default(),
            settings: Default::default(),
            platform: None,
        }),
        vec![input],
        meta(&format!("RUN {cmd}")),
    )
}

pub fn copy_action(input: usize, src: &str, dest: &str) -> CopyAction {
    CopyAction {
        source: CopySource::Input {
            input,
            path: src.into(),
        },
        dest: dest.into(),
        owner: None,
        mode: None,
        allow_wildcard: true,
        unpack_archive: false,
        chmod: None,
        parents: None,
        exclude: vec![],
    }
}

/// COPY from the context (input 1) into `fs` (input 0).
pub fn copy(g: &mut BuildGraph, fs: VertexId, ctx: VertexId, actions: Vec<CopyAction>) -> VertexId {
    let desc = format!(
        "COPY {:?}",
        actions.iter().map(|a| a.dest.clone()).collect::<Vec<_>>()
    );
    g.add(
        Op::File(FileOp {
            actions: actions.into_iter().map(FileAction::Copy).collect(),
        }),
        vec![fs, ctx],
        meta(&desc),
    )
}

pub fn owner(user: &str, group: Option<&str>) -> Owner {
    Owner {
        user: user.into(),
        group: group.map(str::to_string),
    }
}

/// Solves on a fresh multi-thread runtime and returns the result with every event.
pub fn solve(
    solver: &Solver,
    graph: &BuildGraph,
    roots: &[VertexId],
    opts: &SolveOptions,
) -> (Result<HashMap<VertexId, Outcome>, SolveError>, Vec<Event>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let graph = Arc::new(graph.clone());
    let r = rt.block_on(solver.solve(graph, roots, opts, tx));
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (r, events)
}

pub fn started(events: &[Event]) -> Vec<VertexId> {
    let mut v: Vec<VertexId> = events
        .iter()
        .filter_map(|e| match e {
            Event::Started { vertex, .. } => Some(*vertex),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

pub fn cached(events: &[Event]) -> Vec<VertexId> {
    let mut v: Vec<VertexId> = events
        .iter()
        .filter_map(|e| match e {
            Event::Cached { vertex } => Some(*vertex),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Sets a file's mtime `secs` seconds in the past (so the stat cache remembers it).
pub fn age(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
        .unwrap();
}
