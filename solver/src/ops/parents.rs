//! `COPY --parents`: what each match of the source path holds below it that matches the
//! pattern (BuildKit's include pattern: the part after a `/./` pivot, or the whole path
//! below the root), copied under the destination directory with its relative path kept.
//! Directories on the way to a selected entry are created with their own owner, mode and
//! times (as BuildKit's copier creates them lazily); the destination itself is created
//! (0755, or an octal `--chmod`'s bits) for each match of the source path. A path without
//! wildcards must exist; with wildcards, matching nothing copies nothing.

use super::place::{ActionError, CopyOpts, Placer, SourceRoot, mkdir_all_in_root, other};
use crate::context::{self, Entry, Filter};
use crate::wildcard::expand_wildcard;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::{clean_abs, clean_rel, has_wildcard, join_rel, unescape};
use rbuild_graph::{CopyAction, CopySource};
use std::collections::HashSet;
use std::path::Path;

/// Copies action `c` (whose source path is the part before the pivot) with `pattern`.
pub(super) fn copy_parents(
    root: &Path,
    src: &SourceRoot,
    c: &CopyAction,
    pattern: &str,
    filter: &Filter,
    opts: &CopyOpts,
) -> Result<(), ActionError> {
    let CopySource::Input { path, .. } = &c.source else {
        return Err(other("COPY --parents", "the source is not a path"));
    };
    let rel = clean_rel(path);
    let include = if pattern.is_empty() {
        None
    } else {
        Some(
            Patterns::from_list(&[pattern.to_string()])
                .map_err(|e| other(format!("the --parents pattern {pattern:?}"), e))?,
        )
    };
    let hidden = |p: &str| filter.ignore.excluded(p);
    let bases = if has_wildcard(&rel) {
        expand_wildcard(&src.dir, &rel, &hidden).map_err(|e| other(path, e))?
    } else {
        vec![rel.clone()]
    };
    if !has_wildcard(&rel) && !has_wildcard(pattern) {
        let required = join_rel(&rel, pattern);
        let found = required.is_empty()
            || (!hidden(&required)
                && rbuild_executor::resolve_in_root(&src.dir, &required)
                    .is_ok_and(|p| p.symlink_metadata().is_ok()));
        if !found {
            return Err(ActionError::NotFound(clean_abs(&required)));
        }
    }
    let dest = clean_abs(&c.dest);
    let parent_owner = opts.owner.unwrap_or((0, 0));
    let mut placer = Placer::default();
    for base in &bases {
        let entries = walk_below(&src.dir, base, &literal_prefix(pattern), filter)?;
        if !entries.first().is_some_and(|top| top.meta.is_dir()) {
            continue;
        }
        mkdir_all_in_root(root, &dest, opts.dir_mode(), parent_owner)?;
        let below: Vec<&str> = entries.iter().map(|e| below_base(e, base)).collect();
        let selected: Vec<bool> = below
            .iter()
            .map(|b| !b.is_empty() && include.as_ref().is_none_or(|i| i.excluded(b)))
            .collect();
        let needed = ancestors(
            below
                .iter()
                .zip(&selected)
                .filter(|(_, s)| **s)
                .map(|(b, _)| *b),
        );
        for ((e, b), s) in entries.iter().zip(&below).zip(&selected) {
            if b.is_empty() || !(*s || (e.meta.is_dir() && needed.contains(*b))) {
                continue;
            }
            let dest_path = if dest == "/" {
                format!("/{b}")
            } else {
                format!("{dest}/{b}")
            };
            // Selected directories take the source's metadata; parents on the way only
            // when they are created.
            placer.place(root, e, &dest_path, opts, parent_owner, *s, None)?;
        }
    }
    placer.finish();
    Ok(())
}

/// The leading components of `pattern` without wildcards (unescaped): only what is below
/// them can match, so only that is walked (a `--parents` source without a pivot is the
/// whole context otherwise).
pub(super) fn literal_prefix(pattern: &str) -> String {
    let mut out = String::new();
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        if has_wildcard(comp) {
            break;
        }
        out = join_rel(&out, &unescape(comp));
    }
    out
}

/// `base` and the directories down to `base/prefix` (each as an entry), then the tree at
/// `base/prefix` as [`context::walk_source`] lists it; only `base` when that is missing.
fn walk_below(
    dir: &Path,
    base: &str,
    prefix: &str,
    filter: &Filter,
) -> Result<Vec<Entry>, ActionError> {
    let mut out = Vec::new();
    let mut at = base.to_string();
    for comp in prefix.split('/').filter(|c| !c.is_empty()) {
        let Some(e) = entry(dir, &at) else {
            return Ok(out);
        };
        let is_dir = e.meta.is_dir();
        out.push(e);
        if !is_dir {
            return Ok(out);
        }
        at = join_rel(&at, comp);
    }
    if entry(dir, &at).is_none() {
        return Ok(out);
    }
    out.extend(context::walk_source(dir, &at, filter)?);
    Ok(out)
}

/// The entry at `rel` in the source tree (symlinks on the way followed inside it).
fn entry(dir: &Path, rel: &str) -> Option<Entry> {
    let path = context::resolve_source(dir, rel).ok()?;
    let meta = std::fs::symlink_metadata(&path).ok()?;
    Some(Entry {
        rel: rel.to_string(),
        path,
        meta,
    })
}

/// An entry's path below the matched source `base`.
fn below_base<'a>(e: &'a Entry, base: &str) -> &'a str {
    e.rel
        .strip_prefix(base)
        .unwrap_or(&e.rel)
        .trim_start_matches('/')
}

/// Every proper ancestor directory of the given relative paths.
fn ancestors<'a>(paths: impl Iterator<Item = &'a str>) -> HashSet<String> {
    let mut out = HashSet::new();
    for p in paths {
        let mut at = p;
        while let Some((up, _)) = at.rsplit_once('/') {
            if !out.insert(up.to_string()) {
                break;
            }
            at = up;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("foo1/foo2/bar"), "foo1/foo2/bar");
        assert_eq!(literal_prefix("foo1/foo2/ba*"), "foo1/foo2");
        assert_eq!(literal_prefix("x/**/c.txt"), "x");
        assert_eq!(literal_prefix("*/b"), "");
        assert_eq!(literal_prefix(""), "");
    }

    #[test]
    fn ancestors_of_selected_paths() {
        let a = ancestors(["a/b/c", "a/b/d", "x"].into_iter());
        let mut v: Vec<_> = a.into_iter().collect();
        v.sort();
        assert_eq!(v, ["a", "a/b"]);
    }
}
