//! Placing copied entries inside a step's rootfs: every path resolved inside the root
//! (symlinks followed within it, never on the host), missing parents created, what is in
//! the way replaced, owners, modes (`--chmod`, octal or symbolic), xattrs and times set.
//! Used by [`super::file`] (COPY/ADD/WORKDIR) and [`super::parents`] (`COPY --parents`).

use super::filecopy::{copy_file, copy_xattrs};
use super::relink::Relink;
use crate::context::{self, Entry};
use crate::error::StepFailure;
use rbuild_graph::chmod::ModeSet;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::clean_abs;
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a copy reads from.
pub(super) struct SourceRoot {
    pub dir: PathBuf,
    pub ignore: Arc<Patterns>,
    /// Context files belong to root in the image (as with docker); stage files keep owners.
    pub from_context: bool,
}

/// Why an action failed.
#[derive(Debug)]
pub(super) enum ActionError {
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
pub(super) fn other(
    what: impl std::fmt::Display,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ActionError {
    ActionError::Failed(StepFailure::Action {
        what: what.to_string(),
        source: e.into(),
    })
}

/// `path` (absolute in the rootfs) resolved inside `root`, symlinks followed within it.
pub(super) fn in_root(root: &Path, path: &str) -> Result<PathBuf, ActionError> {
    let clean = clean_abs(path);
    if clean == "/" {
        return Ok(root.to_path_buf());
    }
    rbuild_executor::resolve_in_root(root, &clean)
        .map_err(|e| other(format!("resolving {clean}"), e))
}

/// The host path for `path` whose parent is resolved inside `root` but whose last component
/// is not followed (it is about to be replaced or created).
pub(super) fn in_root_nofollow(root: &Path, path: &str) -> Result<PathBuf, ActionError> {
    let clean = clean_abs(path);
    if clean == "/" {
        return Ok(root.to_path_buf());
    }
    let (parent, name) = clean.rsplit_once('/').unwrap_or(("", &clean));
    Ok(in_root(root, if parent.is_empty() { "/" } else { parent })?.join(name))
}

/// Creates the directory `path` (absolute in the rootfs) and its missing parents, each
/// resolved inside the root, with `mode` and `owner`. Existing directories are left alone.
pub(super) fn mkdir_all_in_root(
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

pub(super) fn set_mode(p: &Path, mode: u32) -> Result<(), ActionError> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| other(format!("chmod {}", p.display()), e))
}

pub(super) fn lchown(p: &Path, (uid, gid): (u32, u32)) -> Result<(), ActionError> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(|e| {
        let what = format!("chown {} to {uid}:{gid}", p.display());
        match e.raw_os_error() {
            // Only in a user namespace: the owner has no ID outside it.
            Some(libc::EINVAL) => other(
                what,
                format!(
                    "{e}: the ID is not mapped in rbuild's user namespace (rootless: give the \
                     user ranges in /etc/subuid and /etc/subgid)"
                ),
            ),
            _ => other(what, e),
        }
    })
}

/// Sets atime/mtime of `p` (not following a symlink).
pub(super) fn set_times(p: &Path, meta: &std::fs::Metadata) {
    // Times are best effort: a failure here does not change what the layer holds.
    let _ = rbuild_fsutil::time::copy_times_nofollow(p, meta);
}

/// Removes whatever non-directory is at `p` so a new entry can take its place.
pub(super) fn clear_non_dir(p: &Path) -> Result<(), ActionError> {
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
pub(super) struct CopyOpts {
    /// `--chown`, or root for context files; None keeps the source's owner.
    pub owner: Option<(u32, u32)>,
    /// `--chmod` in octal.
    pub mode: Option<u32>,
    /// `--chmod` as a symbolic mode, applied to each entry's own mode.
    pub symbolic: Option<ModeSet>,
    /// `--chown` as given (archives keep their owners without it).
    pub explicit_owner: Option<(u32, u32)>,
}

impl CopyOpts {
    /// The mode a copied entry gets: `--chmod`'s, or its own.
    pub fn mode_of(&self, meta: &std::fs::Metadata) -> u32 {
        match (&self.symbolic, self.mode) {
            (Some(set), _) => set.apply(meta.mode(), meta.is_dir()),
            (None, Some(m)) => m,
            (None, None) => meta.mode(),
        }
    }

    /// The mode of a new file whose own mode would be `own` (a heredoc's, a download's).
    pub fn file_mode(&self, own: u32) -> u32 {
        match (&self.symbolic, self.mode) {
            (Some(set), _) => set.apply(own, false),
            (None, Some(m)) => m,
            (None, None) => own,
        }
    }

    /// The mode of the destination directories a copy creates: 0755, or an octal
    /// `--chmod`'s permission bits (BuildKit's copier creates them with it).
    pub fn dir_mode(&self) -> u32 {
        self.mode.map_or(0o755, |m| m & 0o777)
    }
}

/// Places the entries of one copy, one at a time, under the rootfs; directory times are
/// set by [`Placer::finish`], once their children are in.
#[derive(Default)]
pub(super) struct Placer {
    dir_times: Vec<(PathBuf, std::fs::Metadata)>,
    /// The first copy of each multiply-linked source file, by (dev, inode).
    linked: HashMap<(u64, u64), PathBuf>,
}

impl Placer {
    /// Places entry `e` (from a source tree) at `dest_path` (absolute in the rootfs);
    /// anything but a directory there is replaced. An existing directory (or symlink to
    /// one, inside the root) is merged into: with `overwrite` (a directory inside the
    /// copied tree, as BuildKit's copier treats them) it takes the entry's owner, mode,
    /// xattrs and times; without (the destination itself, a parent on the way) it keeps
    /// its own. Missing parents get `parent_owner` and `opts.dir_mode()`. With `relink`
    /// (and the entry's content digest), a regular file the previous layer holds may be
    /// left for the relinking (see [`super::relink`]).
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        root: &Path,
        e: &Entry,
        dest_path: &str,
        opts: &CopyOpts,
        parent_owner: (u32, u32),
        overwrite: bool,
        relink: Option<(&mut Relink<'_>, Option<[u8; 32]>)>,
    ) -> Result<(), ActionError> {
        let ft = e.meta.file_type();
        let owner = opts.owner.unwrap_or((e.meta.uid(), e.meta.gid()));
        if ft.is_dir() {
            let host = in_root(root, dest_path)?;
            if host.is_dir() {
                if overwrite {
                    lchown(&host, owner)?;
                    set_mode(&host, opts.mode_of(&e.meta))?;
                    copy_xattrs(&e.path, &host);
                    self.dir_times.push((host, e.meta.clone()));
                }
                return Ok(());
            }
            let host = in_root_nofollow(root, dest_path)?;
            ensure_parent(root, &host, dest_path, opts.dir_mode(), parent_owner)?;
            clear_non_dir(&host)?;
            std::fs::create_dir(&host)
                .map_err(|err| other(format!("creating {dest_path}"), err))?;
            lchown(&host, owner)?;
            set_mode(&host, opts.mode_of(&e.meta))?;
            copy_xattrs(&e.path, &host);
            self.dir_times.push((host, e.meta.clone()));
            return Ok(());
        }
        if let Some((r, digest)) = relink {
            let rel = dest_path.trim_start_matches('/');
            match digest {
                Some(d) if ft.is_file() && e.meta.nlink() == 1 => {
                    let owner = opts.owner.unwrap_or((e.meta.uid(), e.meta.gid()));
                    if r.defer(root, rel, e, d, owner, opts.mode_of(&e.meta)) {
                        // Linked (or copied) into the upper dir once the overlay is gone.
                        return Ok(());
                    }
                }
                _ => r.forget(rel),
            }
        }
        let host = in_root_nofollow(root, dest_path)?;
        ensure_parent(root, &host, dest_path, opts.dir_mode(), parent_owner)?;
        clear_non_dir(&host)?;
        let inode = (e.meta.dev(), e.meta.ino());
        if ft.is_symlink() {
            let link = std::fs::read_link(&e.path).map_err(|err| other(e.path.display(), err))?;
            std::os::unix::fs::symlink(&link, &host)
                .map_err(|err| other(format!("creating {dest_path}"), err))?;
            lchown(&host, owner)?;
        } else if ft.is_file() && e.meta.nlink() > 1 && self.linked.contains_key(&inode) {
            // Hard links within one copy stay hard links (as BuildKit's copier keeps them).
            std::fs::hard_link(&self.linked[&inode], &host)
                .map_err(|err| other(format!("linking {dest_path}"), err))?;
            return Ok(());
        } else if ft.is_file() {
            copy_file(&e.path, &host)
                .map_err(|err| other(format!("copying to {dest_path}"), err))?;
            if e.meta.nlink() > 1 {
                self.linked.insert(inode, host.clone());
            }
            // chown before chmod: chown clears set-id bits.
            lchown(&host, owner)?;
            set_mode(&host, opts.mode_of(&e.meta))?;
        } else {
            rbuild_fsutil::node::mknod_like(&host, &e.meta)
                .map_err(|err| other(format!("creating {dest_path}"), err))?;
            lchown(&host, owner)?;
        }
        copy_xattrs(&e.path, &host);
        set_times(&host, &e.meta);
        Ok(())
    }

    /// Directory times last: creating children changed them.
    pub fn finish(self) {
        for (host, meta) in self.dir_times.iter().rev() {
            set_times(host, meta);
        }
    }
}

/// Creates the missing parents of `dest_path` (e.g. under a `.dockerignore`d directory
/// whose files an exception re-includes).
pub(super) fn ensure_parent(
    root: &Path,
    host: &Path,
    dest_path: &str,
    mode: u32,
    owner: (u32, u32),
) -> Result<(), ActionError> {
    if host.parent().is_some_and(|p| p.is_dir()) {
        return Ok(());
    }
    let parent = dest_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    mkdir_all_in_root(
        root,
        if parent.is_empty() { "/" } else { parent },
        mode,
        owner,
    )?;
    Ok(())
}
