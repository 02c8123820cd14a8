//! RUN: the executor over input 0's layer chain; the upper dir becomes the new layer.

use super::{commit_step, copy_rootfs, snapshots, step_dirs, view_chain};
use crate::progress::{Event, LastLines};
use crate::solve::{Inner, Outcome, SolveError, SolveOptions, describe};
use rbuild_executor::{
    CancelToken, CgroupOptions, ExecError, Mount, MountSource, Network, RunSpec, Security,
};
use rbuild_graph::paths::clean_rel;
use rbuild_graph::{BuildGraph, ExecOp, MountKind, NetworkMode, Op, SecurityMode, VertexId};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc::UnboundedSender;

/// Lines of output kept for the error of a failed RUN.
const TAIL_LINES: usize = 10;

/// The container's hostname, as BuildKit's sandbox has a fixed one.
const HOSTNAME: &str = "rbuild";

/// Runs one Exec vertex (blocking) and returns its outcome and the peak memory of its
/// processes (where its cgroup measured it).
pub(crate) fn run(
    inner: &Inner,
    graph: &BuildGraph,
    v: VertexId,
    inputs: &[Outcome],
    opts: &SolveOptions,
    cancel: &CancelToken,
    events: &UnboundedSender<Event>,
) -> Result<(Outcome, Option<u64>), SolveError> {
    let vertex = graph.vertex(v);
    let Op::Exec(op) = &vertex.op else {
        return Err(SolveError::Internal(
            "exec::run on a non-exec vertex".into(),
        ));
    };
    let store = &inner.store;
    let base = inputs.first().cloned().unwrap_or_default();
    let (tmp, upper, work) = step_dirs(store, "exec-")?;
    // Copying snapshotter: the step runs on a copy of the rootfs, diffed afterwards.
    let (copy_base, copy_root) = (tmp.path().join("base"), tmp.path().join("rootfs"));
    let lowerdirs = if inner.copying {
        copy_rootfs(store, &base.layers, &copy_base, &copy_root)?;
        Vec::new()
    } else {
        snapshots(store, &base.layers)?
    };

    // Host-side views for binds from other vertices; dropped (unmounted) after the run.
    let mut views = Vec::new();
    let mut mounts = Vec::new();
    let mut locks = Vec::new();
    let mut to_lock: Vec<PathBuf> = Vec::new();
    for (i, m) in op.mounts.iter().enumerate() {
        match &m.kind {
            MountKind::Bind {
                input,
                source,
                readonly,
            } => {
                let src_vertex = vertex.inputs.get(*input).ok_or_else(|| {
                    SolveError::step(graph, v, format!("mount input {input} does not exist"))
                })?;
                let root = match &graph.vertex(*src_vertex).op {
                    Op::Local { name, exclude } => {
                        let ctx = inner.local_dir(name, opts)?;
                        if *readonly && exclude.is_empty() {
                            ctx
                        } else {
                            // What the step sees is the context as sent: without the
                            // .dockerignored files, and never written through to the host.
                            let view = tmp.path().join(format!("bind-{i}"));
                            local_view(&ctx, &clean_rel(source), exclude, &view, *readonly)
                                .map_err(|e| {
                                    SolveError::step(graph, v, format!("mount of {source:?}: {e}"))
                                })?;
                            let mounts_root = view.clone();
                            // `view` holds just the source subtree.
                            mounts.push(Mount {
                                target: m.target.clone(),
                                source: MountSource::Bind {
                                    source: mounts_root,
                                    readonly: *readonly,
                                },
                            });
                            continue;
                        }
                    }
                    _ => {
                        let chain = &inputs.get(*input).cloned().unwrap_or_default().layers;
                        let scratch = tmp.path().join(format!("bind-{i}"));
                        let (mnt, guard) =
                            view_chain(store, chain, &scratch, inner.copying, !*readonly)?;
                        views.push(guard);
                        mnt
                    }
                };
                let host = resolve(&root, &clean_rel(source)).map_err(|e| {
                    SolveError::step(graph, v, format!("mount source {source:?}: {e}"))
                })?;
                mounts.push(Mount {
                    target: m.target.clone(),
                    source: MountSource::Bind {
                        source: host,
                        readonly: *readonly,
                    },
                });
            }
            MountKind::Cache {
                id,
                sharing,
                from,
                source,
                mode,
                uid,
                gid,
            } => {
                let step_err = |e: std::io::Error| {
                    SolveError::step(graph, v, format!("cache mount {id:?}: {e}"))
                };
                // A cache seeded from another vertex is a different cache than a plain one.
                let seed_vertex = from.and_then(|i| vertex.inputs.get(i).copied());
                let key = match seed_vertex {
                    Some(s) => format!("{id}\0{}", graph.key(s)),
                    None => id.clone(),
                };
                let mut dir = cache_mount_dir(store.root(), &key);
                if !dir.is_dir() {
                    let seed = match (*from, seed_vertex) {
                        (Some(i), Some(s)) => {
                            let root = match &graph.vertex(s).op {
                                Op::Local { name, .. } => inner.local_dir(name, opts)?,
                                _ => {
                                    let chain = &inputs.get(i).cloned().unwrap_or_default().layers;
                                    let scratch = tmp.path().join(format!("seed-{i}"));
                                    let (mnt, guard) =
                                        view_chain(store, chain, &scratch, inner.copying, false)?;
                                    views.push(guard);
                                    mnt
                                }
                            };
                            Some(resolve(&root, &clean_rel(source)).map_err(step_err)?)
                        }
                        _ => None,
                    };
                    prepare_cache_dir(&dir, *mode, *uid, *gid, seed.as_deref())
                        .map_err(step_err)?;
                }
                let lock_file = || std::fs::File::create(dir.with_extension("lock"));
                match sharing.as_str() {
                    // One user at a time across threads and processes sharing this
                    // root; taken below, in a fixed order, so two steps never deadlock.
                    "locked" => to_lock.push(dir.with_extension("lock")),
                    "private" => {
                        // In use by another step: this one gets a fresh, throwaway cache.
                        let f = lock_file().map_err(step_err)?;
                        if f.try_lock().is_ok() {
                            locks.push(f);
                        } else {
                            let fresh = tmp.path().join(format!("cache-{i}"));
                            prepare_cache_dir(&fresh, *mode, *uid, *gid, None).map_err(step_err)?;
                            dir = fresh;
                        }
                    }
                    _ => {}
                }
                mounts.push(Mount {
                    target: m.target.clone(),
                    source: MountSource::Bind {
                        source: dir,
                        readonly: false,
                    },
                });
            }
            MountKind::Tmpfs { size } => mounts.push(Mount {
                target: m.target.clone(),
                source: MountSource::Tmpfs { size: *size },
            }),
            MountKind::Secret { id, required, .. } | MountKind::Ssh { id, required } => {
                if *required {
                    return Err(SolveError::step(
                        graph,
                        v,
                        format!("secret/ssh {id:?} is required but rbuild has none to provide"),
                    ));
                }
            }
        }
    }

    to_lock.sort();
    to_lock.dedup();
    for path in to_lock {
        let lock = std::fs::File::create(&path)
            .and_then(|f| f.lock().map(|_| f))
            .map_err(|e| SolveError::step(graph, v, format!("locking {}: {e}", path.display())))?;
        locks.push(lock);
    }
    let spec = run_spec(op, lowerdirs, upper.clone(), work, mounts);
    let mut tail = LastLines::new(TAIL_LINES);
    let mut output = |stream, data: &[u8]| {
        tail.push(data);
        let _ = events.send(Event::Log {
            vertex: v,
            stream,
            data: data.to_vec(),
        });
    };
    let result = if inner.copying {
        rbuild_executor::run_in_dir(&copy_root, &spec, cancel, &mut output)
    } else {
        rbuild_executor::run(&spec, cancel, &mut output)
    };
    drop(views);
    drop(locks);
    let exit = match result {
        Ok(exit) => exit,
        Err(ExecError::Cancelled) => return Err(SolveError::Cancelled),
        Err(e) => return Err(SolveError::step(graph, v, e.to_string())),
    };
    if let Some(message) = exit.warning.clone() {
        warn_once(inner, v, message, events);
    }
    if cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    if exit.code != 0 {
        return Err(SolveError::RunFailed {
            vertex: v,
            description: describe(graph, v),
            lines: vertex.meta.lines,
            exit_code: exit.code,
            last_output: tail.finish(),
            note: exit.limit_note(),
        });
    }
    let outcome = commit_step(inner, base.layers, (&copy_base, &copy_root), &upper)?;
    Ok((outcome, exit.peak_memory))
}

/// Sends `message` unless this solver already has.
fn warn_once(inner: &Inner, v: VertexId, message: String, events: &UnboundedSender<Event>) {
    let first = inner
        .warned
        .lock()
        .map(|mut w| w.insert(message.clone()))
        .unwrap_or(false);
    if first {
        let _ = events.send(Event::Warning { vertex: v, message });
    }
}

/// The executor's spec for an Exec op.
fn run_spec(
    op: &ExecOp,
    lowerdirs: Vec<PathBuf>,
    upperdir: PathBuf,
    workdir: PathBuf,
    mounts: Vec<Mount>,
) -> RunSpec {
    // Allowed or not was settled before the solve started (`--allow security.insecure`).
    let security = match op.security {
        SecurityMode::Sandbox => Security::Sandbox,
        SecurityMode::Insecure => Security::Insecure,
    };
    RunSpec {
        lowerdirs,
        upperdir,
        workdir,
        args: op.args.clone(),
        env: op.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: if op.cwd.is_empty() {
            "/".into()
        } else {
            op.cwd.clone()
        },
        user: op.user.clone(),
        network: match op.network {
            NetworkMode::Host => Network::Host,
            NetworkMode::None => Network::None,
        },
        hostname: HOSTNAME.into(),
        mounts,
        stdin: false,
        security,
        rlimits: Vec::new(),
        cgroup: CgroupOptions::default(),
    }
}

/// Builds at `dest` the context subtree `rel` as a step may see it: `.dockerignore`d entries
/// left out; files hard-linked when the mount is read-only (copied when the context is on
/// another filesystem or the mount is writable, so writes never reach the user's files).
fn local_view(
    ctx: &Path,
    rel: &str,
    exclude: &[String],
    dest: &Path,
    readonly: bool,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let ignore = crate::solve::local_patterns(exclude);
    let none = rbuild_graph::dockerignore::Patterns::default();
    let filter = crate::context::Filter {
        ignore: &ignore,
        copy_exclude: &none,
    };
    let entries = crate::context::walk_source(ctx, rel, &filter).map_err(|e| e.to_string())?;
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for e in entries {
        let below = e
            .rel
            .strip_prefix(rel)
            .unwrap_or(&e.rel)
            .trim_start_matches('/');
        let to = if below.is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(below)
        };
        let ft = e.meta.file_type();
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|x| err(parent, x))?;
        }
        if ft.is_dir() {
            std::fs::create_dir_all(&to).map_err(|x| err(&to, x))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(e.meta.mode() & 0o7777))
                .map_err(|x| err(&to, x))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&e.path).map_err(|x| err(&e.path, x))?;
            std::os::unix::fs::symlink(target, &to).map_err(|x| err(&to, x))?;
        } else if ft.is_file() && (!readonly || std::fs::hard_link(&e.path, &to).is_err()) {
            std::fs::copy(&e.path, &to).map_err(|x| err(&to, x))?;
        }
    }
    if !dest.exists() {
        std::fs::create_dir_all(dest).map_err(|x| err(dest, x))?;
    }
    Ok(())
}

/// `path` inside `root` with symlinks resolved within it (the root itself for "").
fn resolve(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    if rel.is_empty() {
        return Ok(root.to_path_buf());
    }
    rbuild_executor::resolve_in_root(root, rel)
}

/// The persistent directory of a cache mount: a readable name plus a hash, so any id
/// (often a path like `/root/.cache`) maps to one safe directory name.
pub fn cache_mount_dir(store_root: &Path, id: &str) -> PathBuf {
    let readable: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let hash = blake3::hash(id.as_bytes()).to_hex();
    store_root
        .join("cache-mounts")
        .join(format!("{}-{}", readable.trim_matches('_'), &hash[..16]))
}

/// Creates a cache mount dir with its mode and owner the first time it is used, seeded
/// with a copy of `seed` (`--mount=type=cache,from=…,source=…`) when given.
fn prepare_cache_dir(
    dir: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    seed: Option<&Path>,
) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = dir.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    if let Some(seed) = seed.filter(|s| s.is_dir()) {
        rbuild_cache::copysnap::materialize(&[seed], &tmp, false)?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))?;
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another build created it first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_dirs_are_safe_and_distinct() {
        let root = Path::new("/r");
        let a = cache_mount_dir(root, "/root/.cache");
        let b = cache_mount_dir(root, "/root/.cache/");
        assert_ne!(a, b);
        assert_eq!(a.parent().unwrap(), Path::new("/r/cache-mounts"));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("root__cache-"), "{name}");
        assert!(
            !cache_mount_dir(root, "../../etc")
                .to_string_lossy()
                .contains("..")
        );
    }
}
