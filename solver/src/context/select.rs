//! Which context (or stage) entries a COPY source selects: the matches of its pattern, and
//! the tree below each, honouring `.dockerignore` and `COPY --exclude`.

use super::{ContextError, io_err};
use crate::wildcard::expand_wildcard;
use rayon::prelude::*;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::{clean_rel, has_wildcard, join_rel};
use std::path::{Path, PathBuf};

/// Which files of a source are part of a selection: `.dockerignore` patterns (matched on
/// context-relative paths) and `COPY --exclude` patterns (matched relative to the source).
pub struct Filter<'a> {
    pub ignore: &'a Patterns,
    pub copy_exclude: &'a Patterns,
}

impl Filter<'_> {
    /// Whether an entry is left out. `rel_ctx`: path in the context; `rel_src`: path below the
    /// matched source (its base name for the source itself).
    pub fn excluded(&self, rel_ctx: &str, rel_src: &str) -> bool {
        (!rel_ctx.is_empty() && self.ignore.excluded(rel_ctx))
            || (!rel_src.is_empty() && self.copy_exclude.excluded(rel_src))
    }

    /// Whether nothing below this excluded directory can be included again.
    pub fn can_skip_dir(&self, rel_ctx: &str, rel_src: &str) -> bool {
        let ignored = !rel_ctx.is_empty() && self.ignore.excluded(rel_ctx);
        let copy_ex = !rel_src.is_empty() && self.copy_exclude.excluded(rel_src);
        (ignored && self.ignore.can_skip_dir(rel_ctx))
            || (copy_ex && self.copy_exclude.can_skip_dir(rel_src))
    }
}

/// One entry of a selection, relative to the context root.
#[derive(Debug, Clone)]
pub struct Entry {
    pub rel: String,
    pub path: PathBuf,
    pub meta: std::fs::Metadata,
}

/// The matched sources of one COPY source pattern (context-relative, sorted).
pub fn match_sources(
    ctx: &Path,
    source: &str,
    allow_wildcard: bool,
    filter: &Filter,
) -> Result<Vec<String>, ContextError> {
    let rel = clean_rel(source);
    let hidden = |p: &str| filter.ignore.excluded(p);
    let matches = if allow_wildcard && has_wildcard(&rel) {
        expand_wildcard(ctx, &rel, &hidden).map_err(io_err(ctx))?
    } else if rel.is_empty() || (std::fs::symlink_metadata(ctx.join(&rel)).is_ok() && !hidden(&rel))
    {
        vec![rel.clone()]
    } else {
        vec![]
    };
    if matches.is_empty() {
        return Err(ContextError::NotFound {
            path: source.to_string(),
        });
    }
    Ok(matches)
}

/// Every entry a matched source contributes (the source itself first, then its tree in
/// file-name order, depth first), honouring the filter. A top-level symlink is followed
/// inside the context.
///
/// Subdirectories are walked in parallel, and each entry is stat'ed relative to its
/// directory (`DirEntry::metadata` is an `fstatat` on the open directory): a no-op
/// rebuild of a 20,000-file context spends its time here.
pub fn walk_source(ctx: &Path, matched: &str, filter: &Filter) -> Result<Vec<Entry>, ContextError> {
    let top = resolve_source(ctx, matched)?;
    let meta = std::fs::symlink_metadata(&top).map_err(io_err(&top))?;
    let mut out = vec![Entry {
        rel: matched.to_string(),
        path: top.clone(),
        meta: meta.clone(),
    }];
    if meta.is_dir() {
        walk_dir(&top, matched, "", filter, &mut out)?;
    }
    Ok(out)
}

/// What one directory entry contributes before its subtree is walked.
struct Child {
    entry: Option<Entry>,
    /// Walk below it: (host path, path below the source).
    descend: Option<(PathBuf, String)>,
}

/// Appends the tree under `dir` (`below` the matched source `matched`) to `out`.
fn walk_dir(
    dir: &Path,
    matched: &str,
    below: &str,
    filter: &Filter,
    out: &mut Vec<Entry>,
) -> Result<(), ContextError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ContextError::Io { path, source }
    };
    let mut listed: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    listed.sort_by_key(|e| e.file_name());
    let mut children = Vec::with_capacity(listed.len());
    for e in listed {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let below = join_rel(below, &name);
        let rel = join_rel(matched, &below);
        let is_dir = e.file_type().map_err(io(&e.path()))?.is_dir();
        if filter.excluded(&rel, &below) {
            // An excluded directory that may hold re-included files is walked without
            // being listed; its included children create it when copied.
            if is_dir && !filter.can_skip_dir(&rel, &below) {
                children.push(Child {
                    entry: None,
                    descend: Some((e.path(), below)),
                });
            }
            continue;
        }
        let meta = e.metadata().map_err(io(&e.path()))?;
        let path = e.path();
        children.push(Child {
            descend: is_dir.then(|| (path.clone(), below)),
            entry: Some(Entry { rel, path, meta }),
        });
    }
    // Subtrees in parallel, then stitched in order: each directory's entries follow it.
    // One subdirectory or none is walked here: waking the pool costs more than it saves.
    let walk = |c: &Child| match &c.descend {
        Some((path, below)) => {
            let mut sub = Vec::new();
            walk_dir(path, matched, below, filter, &mut sub).map(|_| sub)
        }
        None => Ok(Vec::new()),
    };
    let subdirs = children.iter().filter(|c| c.descend.is_some()).count();
    let subtrees: Vec<Result<Vec<Entry>, ContextError>> = if subdirs > 1 {
        children.par_iter().map(walk).collect()
    } else {
        children.iter().map(walk).collect()
    };
    // Grown once to its final size: doubling a list of 200,000 entries copies it whole
    // several times (heaptrack: the largest peak of a no-op rebuild of such a context).
    let mut subtrees = subtrees.into_iter().collect::<Result<Vec<_>, _>>()?;
    out.reserve(children.len() + subtrees.iter().map(Vec::len).sum::<usize>());
    for (c, sub) in children.into_iter().zip(subtrees.iter_mut()) {
        out.extend(c.entry);
        out.append(sub);
        *sub = Vec::new();
    }
    Ok(())
}

/// The host path of a matched source, a top-level symlink resolved inside the context.
pub fn resolve_source(ctx: &Path, matched: &str) -> Result<PathBuf, ContextError> {
    if matched.is_empty() {
        return Ok(ctx.to_path_buf());
    }
    rbuild_executor::resolve_in_root(ctx, matched).map_err(|_| ContextError::NotFound {
        path: matched.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Patterns {
        Patterns::from_list(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn walk_is_depth_first_in_name_order_and_honours_reincluded_files() {
        let ctx = tempfile::tempdir().unwrap();
        for (p, body) in [
            ("b/z.txt", "z"),
            ("b/a/deep.txt", "d"),
            ("a.txt", "a"),
            ("B.txt", "B"),
            ("skip/x.txt", "x"),
            ("skip/keep.txt", "k"),
            ("gone/y.txt", "y"),
        ] {
            let path = ctx.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let ignore = pats(&["skip", "!skip/keep.txt", "gone"]);
        let none = pats(&[]);
        let f = Filter {
            ignore: &ignore,
            copy_exclude: &none,
        };
        let rels: Vec<String> = walk_source(ctx.path(), "", &f)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        // Byte order ("B" < "a"); a directory's tree right after it; an excluded directory
        // is not listed but its re-included file is; a wholly excluded one is skipped.
        assert_eq!(
            rels,
            [
                "",
                "B.txt",
                "a.txt",
                "b",
                "b/a",
                "b/a/deep.txt",
                "b/z.txt",
                "skip/keep.txt"
            ]
        );
    }
}
