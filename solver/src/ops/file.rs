//! COPY / ADD / WORKDIR: actions performed on an overlay of input 0's chain; the upper dir
//! becomes the new layer. Every destination path is resolved inside the rootfs, never on
//! the host. The runtime key adds the content digest of what each COPY selects from the
//! context; ADD's archives are in [`super::archive`].

use super::archive::{open_archive, unpack};
use super::filecopy::copy_file;
use super::git;
use super::http::{self, Body, Remote};
use super::place::{
    ActionError, CopyOpts, Placer, SourceRoot, clear_non_dir, in_root, in_root_nofollow, lchown,
    mkdir_all_in_root, other, set_mode, set_times,
};
use super::relink::Relink;
use super::rootfs::{
    commit_step, commit_step_linked, copy_rootfs, mkdir, mount_lowers, step_dirs, view_chain,
};
use super::source::local_context;
use crate::context::{self, Filter};
use crate::error::{SolveError, StepFailure};
use crate::op::{RuntimeKey, SolveOp, StepContext, Work};
use crate::outcome::Outcome;
use crate::wildcard::expand_wildcard;
use rbuild_graph::chmod::ModeSet;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::{
    base_name, clean_abs, clean_rel, copy_target, dest_is_dir, has_wildcard,
};
use rbuild_graph::{CopyAction, CopySource, FileAction, FileOp, Owner};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A COPY/ADD/WORKDIR step.
pub struct FileStep {
    op: FileOp,
    /// Per action, its `--exclude` patterns (parsed once, when the op is resolved).
    excludes: Vec<Patterns>,
    /// `ADD http(s)://` actions as their key found them, by action index (the step then
    /// copies the body that key was made of).
    remotes: Mutex<HashMap<usize, Remote>>,
    /// `ADD <git URL>` actions: the commit their key was made of, by action index.
    commits: Mutex<HashMap<usize, String>>,
}

/// Where the checkout of git action `i` is among a step's copy sources (past any input).
const GIT_SOURCE: usize = usize::MAX / 2;

impl FileStep {
    /// The step for `op`; an `--exclude` pattern that does not parse is its error.
    pub(crate) fn new(op: &FileOp) -> Result<Self, StepFailure> {
        let excludes = op
            .actions
            .iter()
            .map(|a| match a {
                FileAction::Copy(c) => Patterns::from_list(&c.exclude),
                _ => Ok(Patterns::default()),
            })
            .collect::<Result<_, _>>()
            .map_err(StepFailure::ExcludePattern)?;
        Ok(FileStep {
            op: op.clone(),
            excludes,
            remotes: Mutex::default(),
            commits: Mutex::default(),
        })
    }

    /// Performs the actions (blocking) and commits what they changed.
    fn apply(&self, step: &StepContext) -> Result<Outcome, SolveError> {
        let base = step.input(0);
        let (tmp, upper, work) = step_dirs(step, "file-")?;
        let mnt = tmp.path().join("root");
        mkdir(step, &mnt)?;
        let copy_base = tmp.path().join("base");
        let root_mount = if step.services.copying {
            copy_rootfs(step, &base.layers, &copy_base, &mnt)?;
            None
        } else {
            let mut lowers = mount_lowers(step, &base.layers)?;
            if lowers.is_empty() {
                let empty = tmp.path().join("empty");
                mkdir(step, &empty)?;
                lowers.push(empty);
            }
            let mount = rbuild_executor::OverlayMount::mount(&lowers, &upper, &work, &mnt)
                .map_err(|source| {
                    step.fail(StepFailure::Mount {
                        what: "the rootfs".into(),
                        source,
                    })
                })?;
            Some(mount)
        };

        // Read-only views of the other inputs that actions copy from.
        let mut views = Vec::new();
        let mut sources: HashMap<usize, SourceRoot> = HashMap::new();
        for action in &self.op.actions {
            let FileAction::Copy(CopyAction {
                source: CopySource::Input { input, .. },
                ..
            }) = action
            else {
                continue;
            };
            if sources.contains_key(input) {
                continue;
            }
            let root = match local_context(step, *input, "copy source")? {
                Some(ctx) => SourceRoot {
                    dir: ctx.dir,
                    ignore: ctx.ignore,
                    from_context: true,
                },
                None => {
                    let chain = step.input(*input).layers;
                    let scratch = tmp.path().join(format!("src-{input}"));
                    let (dir, guard) = view_chain(step, &chain, &scratch, false)?;
                    views.push(guard);
                    SourceRoot {
                        dir,
                        ignore: Arc::default(),
                        from_context: false,
                    }
                }
            };
            sources.insert(*input, root);
        }

        // Downloads first: a body that fails its checksum stops the step before any write.
        let mut bodies: HashMap<usize, Body> = HashMap::new();
        for (i, action) in self.op.actions.iter().enumerate() {
            if let FileAction::Copy(CopyAction {
                source: CopySource::Http { url, checksum, .. },
                ..
            }) = action
            {
                let known = self.remotes.lock().ok().and_then(|m| m.get(&i).cloned());
                let body = http::body(step, url, checksum.as_deref(), known.as_ref())
                    .map_err(|f| step.fail(f))?;
                bodies.insert(i, body);
            }
        }

        // Git checkouts, each a copy source of its own, owned by root as context files are.
        for (i, action) in self.op.actions.iter().enumerate() {
            if let FileAction::Copy(c) = action
                && matches!(c.source, CopySource::Git { .. })
            {
                let known = self.commits.lock().ok().and_then(|m| m.get(&i).cloned());
                let dir = git::tree(step, &c.source, known, &tmp.path().join(format!("git-{i}")))?;
                sources.insert(
                    GIT_SOURCE + i,
                    SourceRoot {
                        dir,
                        ignore: Arc::default(),
                        from_context: true,
                    },
                );
            }
        }

        // One copy from the context on an overlay runs incrementally (see relink.rs).
        let identity = relink_identity(step);
        let mut relink = match self.op.actions.as_slice() {
            [FileAction::Copy(c)]
                if !step.services.copying
                    && c.parents.is_none()
                    && matches!(&c.source, CopySource::Input { input, .. }
                        if sources.get(input).is_some_and(|s| s.from_context)) =>
            {
                let prev = step.store().copy_record(&identity);
                Some(Relink::new(&step.services.hasher, prev, &upper))
            }
            _ => None,
        };

        for (i, (action, exclude)) in self.op.actions.iter().zip(&self.excludes).enumerate() {
            if step.cancel.is_cancelled() {
                return Err(SolveError::Cancelled);
            }
            let r = match action {
                FileAction::Copy(c) if matches!(c.source, CopySource::Git { .. }) => {
                    let tree = CopyAction {
                        source: CopySource::Input {
                            input: GIT_SOURCE + i,
                            path: "/".into(),
                        },
                        allow_wildcard: false,
                        ..c.clone()
                    };
                    copy(&mnt, &tree, exclude, &sources, None, None)
                }
                FileAction::Copy(c) => {
                    copy(&mnt, c, exclude, &sources, bodies.get(&i), relink.as_mut())
                }
                FileAction::Mkdir {
                    path,
                    mode,
                    make_parents,
                    owner,
                } => make_dir(&mnt, path, *mode, *make_parents, owner.as_ref()),
                FileAction::Rm {
                    path,
                    allow_not_found,
                } => remove(&mnt, path, *allow_not_found),
            };
            r.map_err(|e| match e {
                ActionError::NotFound(path) => {
                    step.context_error(context::ContextError::NotFound { path })
                }
                ActionError::Context(c) => step.context_error(c),
                ActionError::Failed(f) => step.fail(f),
            })?;
        }
        drop(views);
        drop(root_mount);
        let Some(mut relink) = relink else {
            return commit_step(step, base.layers, (&copy_base, &mnt), &upper);
        };
        let done = relink.finish(step.opts.epoch).map_err(|source| {
            step.fail(StepFailure::Io {
                what: format!("linking unchanged files into {}", upper.display()),
                source,
            })
        })?;
        if !done.linked.is_empty() {
            step.say(format!(
                "{} unchanged files linked from the previous layer, {} copied",
                done.linked.len(),
                done.copied
            ));
        }
        let copied = (copy_base.as_path(), mnt.as_path());
        let outcome = commit_step_linked(step, base.layers.clone(), copied, &upper, done.linked)?;
        if let Some(layer) = outcome
            .layers
            .last()
            .filter(|_| outcome.layers.len() > base.layers.len())
        {
            // Only a hint for the next run: failing to write it loses nothing.
            let _ = step.store().put_copy_record(
                &identity,
                &layer.digest,
                &layer.diff_id,
                &relink.record(),
            );
        }
        Ok(outcome)
    }
}

impl SolveOp for FileStep {
    /// Hashes the context files its copies select.
    fn key_blocks(&self) -> bool {
        true
    }

    /// The content digest of exactly what each COPY from the context selects.
    fn cache_key(&self, step: &StepContext, key: &mut RuntimeKey) -> Result<(), SolveError> {
        for (i, (action, exclude)) in self.op.actions.iter().zip(&self.excludes).enumerate() {
            let FileAction::Copy(copy) = action else {
                continue;
            };
            if let CopySource::Http { url, checksum, .. } = &copy.source {
                let r = http::resolve(step, url, checksum.as_deref()).map_err(|f| step.fail(f))?;
                key.add(&(i as u64).to_le_bytes())
                    .add_shown(&format!("a{i}:content"), &r.digest)
                    .add(b"\0")
                    .add_shown(
                        &format!("a{i}:Last-Modified"),
                        r.last_modified.as_deref().unwrap_or(""),
                    );
                if let Ok(mut m) = self.remotes.lock() {
                    m.insert(i, r);
                }
                continue;
            }
            if let CopySource::Git {
                remote,
                reference,
                checksum,
                ..
            } = &copy.source
            {
                let agent = step.opts.ssh.socket("default");
                let commit = git::resolve(remote, reference.as_deref(), checksum.as_deref(), agent)
                    .map_err(|f| step.fail(f))?;
                key.add(&(i as u64).to_le_bytes())
                    .add(b"git\0")
                    .add_shown(&format!("a{i}:commit"), &commit);
                if let Ok(mut m) = self.commits.lock() {
                    m.insert(i, commit);
                }
                continue;
            }
            let CopySource::Input { input, path } = &copy.source else {
                continue;
            };
            let Some(ctx) = local_context(step, *input, "copy source")? else {
                continue;
            };
            let filter = Filter {
                ignore: &ctx.ignore,
                copy_exclude: exclude,
            };
            let mut entries = key.wants_entries().then(Vec::new);
            let selection = parents_selection(path, copy.parents.as_deref());
            let d = match step.services.hasher.digest_listed(
                &ctx.dir,
                &selection,
                copy.allow_wildcard,
                &filter,
                entries.as_mut(),
            ) {
                Ok(d) => d,
                // `--parents` with wildcards may select nothing: that copies nothing.
                Err(context::ContextError::NotFound { .. })
                    if copy
                        .parents
                        .as_deref()
                        .is_some_and(|p| has_wildcard(p) || has_wildcard(path)) =>
                {
                    [0; 32]
                }
                Err(e) => return Err(step.context_error(e)),
            };
            key.add(&(i as u64).to_le_bytes())
                .add_selection(&format!("a{i}:content"), &d, entries);
        }
        super::rootfs::epoch_key(step, key);
        Ok(())
    }

    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        Work::blocking(move || self.apply(&step))
    }
}

/// What finds a COPY step's previous layer (its copy record): the step's static key,
/// which names the instruction and what it builds on, not the context's content.
fn relink_identity(step: &StepContext) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"rbuild relink v1\0");
    h.update(&step.graph.key(step.vertex).0);
    *h.finalize().as_bytes()
}

/// uid/gid of an `--chown` owner (or WORKDIR's USER), by BuildKit's rules
/// ([`rbuild_executor::users::resolve_chown`]), names looked up in the target rootfs.
/// `flag` names the owner in an error (`--chown`, or `USER` for WORKDIR).
fn resolve_owner(root: &Path, owner: &Owner, flag: &str) -> Result<(u32, u32), ActionError> {
    let spec = match &owner.group {
        Some(g) => format!("{}:{g}", owner.user),
        None => owner.user.clone(),
    };
    rbuild_executor::users::resolve_chown_in_rootfs(&owner.user, owner.group.as_deref(), root)
        .map_err(|e| other(format!("{flag}={spec}"), e))
}

/// What a `COPY --parents` selects from the context, for its key: the source path joined
/// with the pattern (wildcards expanded as a source's are) or, when the pattern has `**`
/// (which a source path cannot express), with the part of it before its first wildcard.
/// The directories on the way, which the copy creates with their own modes, are not in it.
fn parents_selection(path: &str, pattern: Option<&str>) -> String {
    let below = match pattern {
        Some(p) if !p.contains("**") => p.to_string(),
        Some(p) => super::parents::literal_prefix(p),
        None => String::new(),
    };
    if below.is_empty() {
        path.to_string()
    } else {
        format!("{}/{below}", path.trim_end_matches('/'))
    }
}

fn copy(
    root: &Path,
    c: &CopyAction,
    copy_exclude: &Patterns,
    sources: &HashMap<usize, SourceRoot>,
    body: Option<&Body>,
    mut relink: Option<&mut Relink<'_>>,
) -> Result<(), ActionError> {
    let owner = c
        .owner
        .as_ref()
        .map(|o| resolve_owner(root, o, "--chown"))
        .transpose()?;
    let symbolic = c
        .chmod
        .as_deref()
        .map(ModeSet::parse)
        .transpose()
        .map_err(|e| other("--chmod", e))?;
    let mut opts = CopyOpts {
        owner,
        mode: c.mode,
        symbolic,
        explicit_owner: owner,
    };
    match &c.source {
        CopySource::Inline { data, mode } => {
            let dest = clean_abs(&c.dest);
            let parent = dest.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            mkdir_all_in_root(
                root,
                if parent.is_empty() { "/" } else { parent },
                opts.dir_mode(),
                owner.unwrap_or((0, 0)),
            )?;
            let host = in_root_nofollow(root, &dest)?;
            clear_non_dir(&host)?;
            std::fs::write(&host, data.as_bytes())
                .map_err(|e| other(format!("writing {dest}"), e))?;
            lchown(&host, owner.unwrap_or((0, 0)))?;
            set_mode(&host, opts.file_mode(*mode))?;
            Ok(())
        }
        CopySource::Http { url, filename, .. } => {
            let body = body.ok_or_else(|| other(http::redact(url), "the download is missing"))?;
            place_download(root, c, filename, body, &opts)
        }
        // Rewritten into a copy of its checkout by `apply`.
        CopySource::Git { remote, .. } => {
            Err(other(http::redact(remote), "git source not checked out"))
        }
        CopySource::Input { input, path } => {
            let src = sources.get(input).ok_or(StepFailure::MissingInput {
                what: "copy source",
                input: *input,
            })?;
            let filter = Filter {
                ignore: &src.ignore,
                copy_exclude,
            };
            let matches = if src.from_context {
                context::match_sources(&src.dir, path, c.allow_wildcard, &filter)?
            } else {
                let rel = clean_rel(path);
                let m = if c.allow_wildcard && has_wildcard(&rel) {
                    expand_wildcard(&src.dir, &rel, &|_| false).map_err(|e| other(path, e))?
                } else if rel.is_empty()
                    || rbuild_executor::resolve_in_root(&src.dir, &rel)
                        .map(|p| p.symlink_metadata().is_ok())
                        .unwrap_or(false)
                {
                    vec![rel]
                } else {
                    vec![]
                };
                if m.is_empty() {
                    return Err(ActionError::NotFound(path.clone()));
                }
                m
            };
            if src.from_context {
                opts.owner = owner.or(Some((0, 0)));
            }
            if let Some(pattern) = &c.parents {
                return super::parents::copy_parents(root, src, c, pattern, &filter, &opts);
            }
            let dest_dir = dest_is_dir(&c.dest, matches.len());
            for m in &matches {
                copy_one(
                    root,
                    src,
                    m,
                    c,
                    dest_dir,
                    &filter,
                    &opts,
                    relink.as_deref_mut(),
                )?;
            }
            Ok(())
        }
    }
}

/// An `ADD http(s)://` body written at the destination: into it when it ends in `/` or is
/// a directory, else as it; mode 0600 unless `--chmod` (as docker), root unless `--chown`,
/// mtime from `Last-Modified` when the server sent one.
fn place_download(
    root: &Path,
    c: &CopyAction,
    filename: &str,
    body: &Body,
    opts: &CopyOpts,
) -> Result<(), ActionError> {
    let owner = opts.owner.unwrap_or((0, 0));
    let into_dir =
        c.dest.ends_with('/') || in_root(root, &c.dest).map(|p| p.is_dir()).unwrap_or(false);
    let dest = if into_dir {
        format!("{}/{filename}", clean_abs(&c.dest).trim_end_matches('/'))
    } else {
        clean_abs(&c.dest)
    };
    let parent = dest.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    mkdir_all_in_root(
        root,
        if parent.is_empty() { "/" } else { parent },
        opts.dir_mode(),
        owner,
    )?;
    let host = in_root_nofollow(root, &dest)?;
    clear_non_dir(&host)?;
    copy_file(&body.path, &host).map_err(|e| other(format!("writing {dest}"), e))?;
    lchown(&host, owner)?;
    set_mode(&host, opts.file_mode(0o600))?;
    if let Some(t) = body.mtime {
        rbuild_fsutil::time::set_mtime_nofollow(&host, t)
            .map_err(|e| other(format!("setting the mtime of {dest}"), e))?;
    }
    Ok(())
}

/// Copies one matched source (file, dir contents, or symlink) to its place under `root`;
/// with `relink`, unchanged files left to be linked (see [`super::relink`]).
#[allow(clippy::too_many_arguments)]
fn copy_one(
    root: &Path,
    src: &SourceRoot,
    matched: &str,
    c: &CopyAction,
    dest_dir: bool,
    filter: &Filter,
    opts: &CopyOpts,
    mut relink: Option<&mut Relink<'_>>,
) -> Result<(), ActionError> {
    let entries = context::walk_source(&src.dir, matched, filter)?;
    let Some(top) = entries.first() else {
        return Err(ActionError::NotFound(matched.to_string()));
    };
    let dest_clean = clean_abs(&c.dest);
    let parent_owner = opts.owner.unwrap_or((0, 0));

    if c.unpack_archive
        && top.meta.is_file()
        && let Some(reader) = open_archive(&top.path)
    {
        let dir = mkdir_all_in_root(root, &dest_clean, 0o755, parent_owner)?;
        return Ok(unpack(reader, matched, &dir, opts.explicit_owner)?);
    }

    let dest_exists_dir = in_root(root, &dest_clean)
        .map(|p| p.is_dir())
        .unwrap_or(false);
    let target = copy_target(
        &c.dest,
        dest_dir,
        dest_exists_dir,
        base_name(matched),
        top.meta.is_dir(),
    );
    // The directory that receives the entry is created up front (0755 or an octal
    // --chmod's bits, the --chown owner or root, as BuildKit's MkdirAll): `dest/`, or for
    // a directory the destination itself, which then takes only the source's times.
    let parent = if top.meta.is_dir() {
        target.clone()
    } else {
        target
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default()
    };
    let created_top = top.meta.is_dir() && !in_root(root, &target).is_ok_and(|p| p.is_dir());
    let mut top_dir = None;
    if dest_dir || top.meta.is_dir() || !parent.is_empty() {
        let dir = mkdir_all_in_root(
            root,
            if parent.is_empty() { "/" } else { &parent },
            opts.dir_mode(),
            parent_owner,
        )?;
        top_dir = created_top.then_some(dir);
    }

    let digests = match relink.as_deref() {
        Some(r) => r.digests(&src.dir, &entries)?,
        None => Vec::new(),
    };
    let mut placer = Placer::default();
    for (i, e) in entries.iter().enumerate() {
        let below = e
            .rel
            .strip_prefix(matched)
            .unwrap_or(&e.rel)
            .trim_start_matches('/');
        let dest_path = if below.is_empty() {
            target.clone()
        } else if target == "/" {
            format!("/{below}")
        } else {
            format!("{target}/{below}")
        };
        // The top of the copy is the destination itself: an existing one keeps its metadata.
        let relink = relink
            .as_deref_mut()
            .map(|r| (r, digests.get(i).copied().flatten()));
        placer.place(
            root,
            e,
            &dest_path,
            opts,
            parent_owner,
            !below.is_empty(),
            relink,
        )?;
    }
    placer.finish();
    if let Some(dir) = top_dir {
        set_times(&dir, &top.meta);
    }
    Ok(())
}

/// WORKDIR: creates `path` (and parents when asked) inside the rootfs.
fn make_dir(
    root: &Path,
    path: &str,
    mode: u32,
    make_parents: bool,
    owner: Option<&Owner>,
) -> Result<(), ActionError> {
    let owner = owner
        .map(|o| resolve_owner(root, o, "USER"))
        .transpose()?
        .unwrap_or((0, 0));
    let clean = clean_abs(path);
    if !make_parents {
        let host = in_root_nofollow(root, &clean)?;
        if host.is_dir() {
            return Ok(());
        }
        std::fs::create_dir(&host).map_err(|e| other(format!("creating {clean}"), e))?;
        set_mode(&host, mode)?;
        return lchown(&host, owner);
    }
    mkdir_all_in_root(root, &clean, mode, owner).map(|_| ())
}

/// Removes `path` inside the rootfs (a directory with its contents).
fn remove(root: &Path, path: &str, allow_not_found: bool) -> Result<(), ActionError> {
    let clean = clean_abs(path);
    let host = in_root_nofollow(root, &clean)?;
    match std::fs::symlink_metadata(&host) {
        Err(_) if allow_not_found => Ok(()),
        Err(_) => Err(ActionError::NotFound(clean)),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(&host).map_err(|e| other(format!("removing {clean}"), e))
        }
        Ok(_) => std::fs::remove_file(&host).map_err(|e| other(format!("removing {clean}"), e)),
    }
}
