//! COPY / ADD / WORKDIR: actions performed on an overlay of input 0's chain; the upper dir
//! becomes the new layer. Every destination path is resolved inside the rootfs, never on
//! the host. The runtime key adds the content digest of what each COPY selects from the
//! context; ADD's archives are in [`super::archive`].

use super::archive::{open_archive, unpack};
use super::git;
use super::http::{self, Body, Remote};
use super::rootfs::{commit_step, copy_rootfs, mkdir, mount_lowers, step_dirs, view_chain};
use super::source::local_context;
use crate::context::{self, Filter};
use crate::error::{SolveError, StepFailure};
use crate::op::{RuntimeKey, SolveOp, StepContext, Work};
use crate::outcome::Outcome;
use crate::wildcard::expand_wildcard;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::{
    base_name, clean_abs, clean_rel, copy_target, dest_is_dir, has_wildcard,
};
use rbuild_graph::{CopyAction, CopySource, FileAction, FileOp, Owner};
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
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

/// Where a copy reads from.
struct SourceRoot {
    dir: PathBuf,
    ignore: Arc<Patterns>,
    /// Context files belong to root in the image (as with docker); stage files keep owners.
    from_context: bool,
}

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
                    copy(&mnt, &tree, exclude, &sources, None)
                }
                FileAction::Copy(c) => copy(&mnt, c, exclude, &sources, bodies.get(&i)),
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
        commit_step(step, base.layers, (&copy_base, &mnt), &upper)
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
            let d = step
                .services
                .hasher
                .digest_listed(
                    &ctx.dir,
                    path,
                    copy.allow_wildcard,
                    &filter,
                    entries.as_mut(),
                )
                .map_err(|e| step.context_error(e))?;
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

/// Why an action failed.
#[derive(Debug)]
enum ActionError {
    /// A source that is not there (reported as the CLI's missing-file error).
    NotFound(String),
    Context(context::ContextError),
    Failed(StepFailure),
}

impl From<context::ContextError> for ActionError {
    fn from(e: context::ContextError) -> Self {
        ActionError::Context(e)
    }
}

impl From<StepFailure> for ActionError {
    fn from(e: StepFailure) -> Self {
        ActionError::Failed(e)
    }
}

/// An action that failed while doing `what`.
fn other(
    what: impl std::fmt::Display,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ActionError {
    ActionError::Failed(StepFailure::Action {
        what: what.to_string(),
        source: e.into(),
    })
}

/// `path` (absolute in the rootfs) resolved inside `root`, symlinks followed within it.
fn in_root(root: &Path, path: &str) -> Result<PathBuf, ActionError> {
    let clean = clean_abs(path);
    if clean == "/" {
        return Ok(root.to_path_buf());
    }
    rbuild_executor::resolve_in_root(root, &clean)
        .map_err(|e| other(format!("resolving {clean}"), e))
}

/// The host path for `path` whose parent is resolved inside `root` but whose last component
/// is not followed (it is about to be replaced or created).
fn in_root_nofollow(root: &Path, path: &str) -> Result<PathBuf, ActionError> {
    let clean = clean_abs(path);
    if clean == "/" {
        return Ok(root.to_path_buf());
    }
    let (parent, name) = clean.rsplit_once('/').unwrap_or(("", &clean));
    Ok(in_root(root, if parent.is_empty() { "/" } else { parent })?.join(name))
}

/// uid/gid of an `--chown` owner, looked up in the target rootfs.
fn resolve_owner(root: &Path, owner: &Owner) -> Result<(u32, u32), ActionError> {
    let spec = match &owner.group {
        Some(g) => format!("{}:{g}", owner.user),
        None => owner.user.clone(),
    };
    let u = rbuild_executor::users::resolve_in_rootfs(&spec, root)
        .map_err(|e| other(format!("--chown={spec}"), e))?;
    Ok((u.uid, u.gid))
}

/// Creates the directory `path` (absolute in the rootfs) and its missing parents, each
/// resolved inside the root, with `mode` and `owner`. Existing directories are left alone.
fn mkdir_all_in_root(
    root: &Path,
    path: &str,
    mode: u32,
    owner: (u32, u32),
) -> Result<PathBuf, ActionError> {
    let clean = clean_abs(path);
    let mut prefix = String::new();
    let mut host = root.to_path_buf();
    for comp in clean.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(comp);
        host = in_root(root, &prefix)?;
        match std::fs::metadata(&host) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(ActionError::Failed(StepFailure::NotADirectory {
                    path: prefix,
                }));
            }
            Err(_) => {
                std::fs::create_dir(&host).map_err(|e| other(format!("creating {prefix}"), e))?;
                set_mode(&host, mode)?;
                lchown(&host, owner)?;
            }
        }
    }
    Ok(host)
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ActionError> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| other(format!("chmod {}", p.display()), e))
}

fn lchown(p: &Path, (uid, gid): (u32, u32)) -> Result<(), ActionError> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .map_err(|e| other(format!("chown {}", p.display()), e))
}

/// Sets atime/mtime of `p` (not following a symlink).
fn set_times(p: &Path, meta: &std::fs::Metadata) {
    // Times are best effort: a failure here does not change what the layer holds.
    let _ = rbuild_fsutil::time::copy_times_nofollow(p, meta);
}

/// Removes whatever non-directory is at `p` so a new entry can take its place.
fn clear_non_dir(p: &Path) -> Result<(), ActionError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).map_err(|e| other(format!("replacing {}", p.display()), e))
        }
        Ok(_) => {
            std::fs::remove_file(p).map_err(|e| other(format!("replacing {}", p.display()), e))
        }
        Err(_) => Ok(()),
    }
}

/// Copy options for one action.
struct CopyOpts {
    /// `--chown`, or root for context files; None keeps the source's owner.
    owner: Option<(u32, u32)>,
    /// `--chmod`.
    mode: Option<u32>,
    /// `--chown` as given (archives keep their owners without it).
    explicit_owner: Option<(u32, u32)>,
}

fn copy(
    root: &Path,
    c: &CopyAction,
    copy_exclude: &Patterns,
    sources: &HashMap<usize, SourceRoot>,
    body: Option<&Body>,
) -> Result<(), ActionError> {
    let owner = c
        .owner
        .as_ref()
        .map(|o| resolve_owner(root, o))
        .transpose()?;
    match &c.source {
        CopySource::Inline { data, mode } => {
            let dest = clean_abs(&c.dest);
            let parent = dest.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            mkdir_all_in_root(
                root,
                if parent.is_empty() { "/" } else { parent },
                0o755,
                owner.unwrap_or((0, 0)),
            )?;
            let host = in_root_nofollow(root, &dest)?;
            clear_non_dir(&host)?;
            std::fs::write(&host, data.as_bytes())
                .map_err(|e| other(format!("writing {dest}"), e))?;
            lchown(&host, owner.unwrap_or((0, 0)))?;
            set_mode(&host, c.mode.unwrap_or(*mode))?;
            Ok(())
        }
        CopySource::Http { url, filename, .. } => {
            let body = body.ok_or_else(|| other(http::redact(url), "the download is missing"))?;
            place_download(root, c, filename, body, owner)
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
            let opts = CopyOpts {
                owner: owner.or(if src.from_context { Some((0, 0)) } else { None }),
                mode: c.mode,
                explicit_owner: owner,
            };
            let dest_dir = dest_is_dir(&c.dest, matches.len());
            for m in &matches {
                copy_one(root, src, m, c, dest_dir, &filter, &opts)?;
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
    owner: Option<(u32, u32)>,
) -> Result<(), ActionError> {
    let owner = owner.unwrap_or((0, 0));
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
        0o755,
        owner,
    )?;
    let host = in_root_nofollow(root, &dest)?;
    clear_non_dir(&host)?;
    copy_file(&body.path, &host).map_err(|e| other(format!("writing {dest}"), e))?;
    lchown(&host, owner)?;
    set_mode(&host, c.mode.unwrap_or(0o600))?;
    if let Some(t) = body.mtime {
        rbuild_fsutil::time::set_mtime_nofollow(&host, t)
            .map_err(|e| other(format!("setting the mtime of {dest}"), e))?;
    }
    Ok(())
}

/// Copies one matched source (file, dir contents, or symlink) to its place under `root`.
fn copy_one(
    root: &Path,
    src: &SourceRoot,
    matched: &str,
    c: &CopyAction,
    dest_dir: bool,
    filter: &Filter,
    opts: &CopyOpts,
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
    // The directory that receives the entry: `dest/` itself is created up front (0755, as
    // BuildKit's MkdirAll); a directory copied to `dest` without a slash creates `dest`
    // with the source directory's own mode.
    let parent = if top.meta.is_dir() && dest_dir {
        target.clone()
    } else {
        target
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default()
    };
    if dest_dir || top.meta.is_dir() || !parent.is_empty() {
        mkdir_all_in_root(
            root,
            if parent.is_empty() { "/" } else { &parent },
            0o755,
            parent_owner,
        )?;
    }

    let mut dir_times = Vec::new();
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for e in &entries {
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
        let ft = e.meta.file_type();
        let owner = opts.owner.unwrap_or((e.meta.uid(), e.meta.gid()));
        if ft.is_dir() {
            // An existing directory (or symlink to one, inside the root) keeps its metadata.
            let host = in_root(root, &dest_path)?;
            if host.is_dir() {
                continue;
            }
            let host = in_root_nofollow(root, &dest_path)?;
            ensure_parent(root, &host, &dest_path, parent_owner)?;
            clear_non_dir(&host)?;
            std::fs::create_dir(&host)
                .map_err(|err| other(format!("creating {dest_path}"), err))?;
            lchown(&host, owner)?;
            set_mode(&host, opts.mode.unwrap_or(e.meta.mode()))?;
            copy_xattrs(&e.path, &host);
            dir_times.push((host, e.meta.clone()));
            continue;
        }
        let host = in_root_nofollow(root, &dest_path)?;
        ensure_parent(root, &host, &dest_path, parent_owner)?;
        clear_non_dir(&host)?;
        if ft.is_symlink() {
            let link = std::fs::read_link(&e.path).map_err(|err| other(e.path.display(), err))?;
            std::os::unix::fs::symlink(&link, &host)
                .map_err(|err| other(format!("creating {dest_path}"), err))?;
            lchown(&host, owner)?;
        } else if ft.is_file()
            && e.meta.nlink() > 1
            && linked.contains_key(&(e.meta.dev(), e.meta.ino()))
        {
            // Hard links within one copy stay hard links (as BuildKit's copier keeps them).
            let first = &linked[&(e.meta.dev(), e.meta.ino())];
            std::fs::hard_link(first, &host)
                .map_err(|err| other(format!("linking {dest_path}"), err))?;
            continue;
        } else if ft.is_file() {
            copy_file(&e.path, &host)
                .map_err(|err| other(format!("copying to {dest_path}"), err))?;
            if e.meta.nlink() > 1 {
                linked.insert((e.meta.dev(), e.meta.ino()), host.clone());
            }
            // chown before chmod: chown clears set-id bits.
            lchown(&host, owner)?;
            set_mode(&host, opts.mode.unwrap_or(e.meta.mode()))?;
        } else {
            rbuild_fsutil::node::mknod_like(&host, &e.meta)
                .map_err(|err| other(format!("creating {dest_path}"), err))?;
            lchown(&host, owner)?;
        }
        copy_xattrs(&e.path, &host);
        set_times(&host, &e.meta);
    }
    // Directory times last: creating children changed them.
    for (host, meta) in dir_times.iter().rev() {
        set_times(host, meta);
    }
    Ok(())
}

/// Creates the missing parents of `dest_path` (e.g. under a `.dockerignore`d directory
/// whose files an exception re-includes).
fn ensure_parent(
    root: &Path,
    host: &Path,
    dest_path: &str,
    owner: (u32, u32),
) -> Result<(), ActionError> {
    if host.parent().is_some_and(|p| p.is_dir()) {
        return Ok(());
    }
    let parent = dest_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    mkdir_all_in_root(
        root,
        if parent.is_empty() { "/" } else { parent },
        0o755,
        owner,
    )?;
    Ok(())
}

/// Copies extended attributes (e.g. `security.capability` of a binary from another stage),
/// after chown, which clears capabilities. Overlay-internal ones are never copied. Best
/// effort: a filesystem without xattr support still gets the file.
fn copy_xattrs(src: &Path, dst: &Path) {
    use rbuild_fsutil::{whiteout, xattr};
    let Ok(names) = xattr::list(src) else {
        return;
    };
    for name in names.iter().filter(|n| !whiteout::is_overlay_xattr(n)) {
        if let Ok(Some(value)) = xattr::get(src, name) {
            let _ = xattr::set(dst, name, &value);
        }
    }
}

/// Copies file content (the kernel's copy_file_range where possible).
fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    io::copy(&mut src, &mut dst)?;
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
        .map(|o| resolve_owner(root, o))
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
