//! `RUN --mount`: binds of the context or of other vertices' results, persistent cache
//! directories, tmpfs, secrets (read now from where `--secret` says, handed to the
//! executor, which writes them on a tmpfs private to the step) and SSH agent sockets (a
//! socket of the step's own in front of the `--ssh` agent), prepared for the executor.
//! A secret or agent the build was not given is skipped, or fails the step when the
//! mount says `required`.

use super::rootfs::view_chain;
use super::source::{LocalContext, local_context};
use crate::context::{Filter, walk_source};
use crate::error::{SolveError, StepFailure};
use crate::op::StepContext;
use crate::ssh::proxy::AgentProxy;
use rbuild_executor::{Mount, MountSource, OverlayMount, SecretValue};
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::clean_rel;
use rbuild_graph::{ExecMount, MountKind};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What must stay alive while the command runs: host views of other inputs (unmounted
/// when dropped), the locks of shared cache mounts and the step's SSH agent sockets.
pub(crate) struct MountGuards {
    _views: Vec<Option<OverlayMount>>,
    _locks: Vec<File>,
    _agents: Vec<AgentProxy>,
}

/// What the executor gets for a step's mounts.
pub(crate) struct Prepared {
    pub mounts: Vec<Mount>,
    /// `env=` secrets: the variables to set, with their values.
    pub secret_env: Vec<(String, SecretValue)>,
    pub guards: MountGuards,
}

/// The executor's mounts for `mounts`, with their guards. Scratch space (views, private
/// caches) goes under `tmp`.
pub(crate) fn prepare(
    step: &StepContext,
    mounts: &[ExecMount],
    tmp: &Path,
) -> Result<Prepared, SolveError> {
    let mut views = Vec::new();
    let mut out = Vec::new();
    let mut locks = Vec::new();
    let mut agents = Vec::new();
    let mut secret_env = Vec::new();
    let mut to_lock: Vec<PathBuf> = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let source = match &m.kind {
            MountKind::Bind {
                input,
                source,
                readonly,
            } => bind(step, (i, *input), source, *readonly, tmp, &mut views)?,
            MountKind::Cache {
                id,
                sharing,
                from,
                source,
                mode,
                uid,
                gid,
            } => {
                let step_err = |source: std::io::Error| {
                    step.fail(StepFailure::CacheMount {
                        id: id.clone(),
                        source,
                    })
                };
                // A cache seeded from another vertex is a different cache than a plain one.
                let seed_input = from.filter(|i| step.graph.vertex(step.vertex).inputs.len() > *i);
                let key = match seed_input {
                    Some(i) => format!("{id}\0{}", step.graph.key(step.input_vertex(i, "cache")?)),
                    None => id.clone(),
                };
                let mut dir = cache_mount_dir(step.store().root(), &key);
                if !dir.is_dir() {
                    let seed = match seed_input {
                        Some(i) => {
                            let root = match local_context(step, i, "cache")? {
                                Some(ctx) => ctx.dir,
                                None => {
                                    let scratch = tmp.join(format!("seed-{i}"));
                                    let chain = step.input(i).layers;
                                    let (mnt, guard) = view_chain(step, &chain, &scratch, false)?;
                                    views.push(guard);
                                    mnt
                                }
                            };
                            Some(resolve(&root, &clean_rel(source)).map_err(step_err)?)
                        }
                        None => None,
                    };
                    prepare_cache_dir(&dir, *mode, *uid, *gid, seed.as_deref())
                        .map_err(step_err)?;
                }
                let lock_file = || File::create(dir.with_extension("lock"));
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
                            let fresh = tmp.join(format!("cache-{i}"));
                            prepare_cache_dir(&fresh, *mode, *uid, *gid, None).map_err(step_err)?;
                            dir = fresh;
                        }
                    }
                    _ => {}
                }
                MountSource::Bind {
                    source: dir,
                    readonly: false,
                }
            }
            MountKind::Tmpfs { size } => MountSource::Tmpfs { size: *size },
            MountKind::Secret {
                id,
                required,
                mode,
                uid,
                gid,
                env,
            } => {
                let value = step
                    .opts
                    .secrets
                    .value(id)
                    .map_err(|e| step.fail(StepFailure::Secret(e)))?;
                let Some(value) = value else {
                    if *required {
                        return Err(step.fail(StepFailure::MissingSecret { id: id.clone() }));
                    }
                    continue;
                };
                if let Some(name) = env {
                    secret_env.push((name.clone(), value.clone()));
                }
                // `env=` without a target: no file.
                if m.target.is_empty() {
                    continue;
                }
                MountSource::Secret {
                    value,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                }
            }
            MountKind::Ssh {
                id,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(upstream) = step.opts.ssh.socket(id) else {
                    if *required {
                        return Err(step.fail(StepFailure::MissingSsh { id: id.clone() }));
                    }
                    continue;
                };
                let proxy = AgentProxy::start(upstream, *mode, *uid, *gid).map_err(|source| {
                    step.fail(StepFailure::SshSocket {
                        id: id.clone(),
                        source,
                    })
                })?;
                let source = proxy.socket().to_path_buf();
                agents.push(proxy);
                MountSource::Bind {
                    source,
                    readonly: false,
                }
            }
        };
        out.push(Mount {
            target: m.target.clone(),
            source,
        });
    }

    to_lock.sort();
    to_lock.dedup();
    for path in to_lock {
        let lock = File::create(&path)
            .and_then(|f| f.lock().map(|_| f))
            .map_err(|source| {
                step.fail(StepFailure::Lock {
                    path: path.display().to_string(),
                    source,
                })
            })?;
        locks.push(lock);
    }
    Ok(Prepared {
        mounts: out,
        secret_env,
        guards: MountGuards {
            _views: views,
            _locks: locks,
            _agents: agents,
        },
    })
}

/// The source of a bind mount (mount `index` of the step, from its input `input`): the
/// context as sent (without `.dockerignore`d files, never written through to the host),
/// or a view of another vertex's result.
fn bind(
    step: &StepContext,
    (index, input): (usize, usize),
    source: &str,
    readonly: bool,
    tmp: &Path,
    views: &mut Vec<Option<OverlayMount>>,
) -> Result<MountSource, SolveError> {
    let root = match local_context(step, input, "mount")? {
        Some(ctx) if readonly && ctx.ignore.is_empty() => ctx.dir,
        Some(ctx) => {
            // `view` holds just the source subtree.
            let view = tmp.join(format!("bind-{index}"));
            local_view(&ctx, &clean_rel(source), &view, readonly).map_err(|e| {
                step.fail(StepFailure::BindMount {
                    path: source.to_string(),
                    source: Box::new(e),
                })
            })?;
            return Ok(MountSource::Bind {
                source: view,
                readonly,
            });
        }
        None => {
            let chain = step.input(input).layers;
            let scratch = tmp.join(format!("bind-{index}"));
            let (mnt, guard) = view_chain(step, &chain, &scratch, !readonly)?;
            views.push(guard);
            mnt
        }
    };
    let host = resolve(&root, &clean_rel(source)).map_err(|e| {
        step.fail(StepFailure::MountSource {
            path: source.to_string(),
            source: e,
        })
    })?;
    Ok(MountSource::Bind {
        source: host,
        readonly,
    })
}

/// Builds at `dest` the context subtree `rel` as a step may see it: `.dockerignore`d entries
/// left out; files hard-linked when the mount is read-only (copied when the context is on
/// another filesystem or the mount is writable, so writes never reach the user's files).
fn local_view(
    ctx: &LocalContext,
    rel: &str,
    dest: &Path,
    readonly: bool,
) -> Result<(), StepFailure> {
    use std::os::unix::fs::MetadataExt;
    let none = Patterns::default();
    let filter = Filter {
        ignore: &ctx.ignore,
        copy_exclude: &none,
    };
    let entries = walk_source(&ctx.dir, rel, &filter).map_err(StepFailure::Context)?;
    let err = |p: &Path| {
        let what = p.display().to_string();
        move |source| StepFailure::Io { what, source }
    };
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
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        if ft.is_dir() {
            std::fs::create_dir_all(&to).map_err(err(&to))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(e.meta.mode() & 0o7777))
                .map_err(err(&to))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&e.path).map_err(err(&e.path))?;
            std::os::unix::fs::symlink(target, &to).map_err(err(&to))?;
        } else if ft.is_file() && (!readonly || std::fs::hard_link(&e.path, &to).is_err()) {
            std::fs::copy(&e.path, &to).map_err(err(&to))?;
        }
    }
    if !dest.exists() {
        std::fs::create_dir_all(dest).map_err(err(dest))?;
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
    // Unique per call, not only per process: two steps of one build creating the same
    // cache at once must not remove each other's half-made directory.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.with_extension(format!("new-{}-{n}", std::process::id()));
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
