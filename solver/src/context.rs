//! Content hashing of what a COPY selects from the build context, with a persistent stat
//! cache so a rebuild re-reads only files whose (size, mtime, ctime, inode) changed.

use crate::ops::paths::expand_wildcard;
use rayon::prelude::*;
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::paths::{base_name, clean_rel, has_wildcard, join_rel};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Directory of the stat caches in the store root: one file per build context directory
/// (named by a hash of its path), so a build reads only its own context's entries.
/// One line per file (see [`StatCacheFile::encode`]); JSON cost a no-op rebuild of a
/// 20,000-file context ~100M instructions to parse, this ~10M.
const STAT_CACHE_DIR: &str = "context-stat-cache";
const STAT_CACHE_HEADER: &str = "rbuild context stat cache v1";

/// Files changed this recently (ns) are hashed but not remembered: a second write within
/// the same timestamp tick would otherwise go unnoticed ("racy clean" as git calls it).
const RACY_WINDOW_NS: i64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{path}: not found in the build context (or excluded by .dockerignore)")]
    NotFound { path: String },
    #[error("reading {path} in the build context: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What the stat cache remembers for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatEntry {
    size: u64,
    mtime: i64,
    ctime: i64,
    ino: u64,
    /// blake3 of the content (hex in the file).
    digest: [u8; 32],
}

impl StatEntry {
    fn matches(&self, m: &std::fs::Metadata) -> bool {
        self.size == m.size()
            && self.mtime == ns(m.mtime(), m.mtime_nsec())
            && self.ctime == ns(m.ctime(), m.ctime_nsec())
            && self.ino == m.ino()
    }
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[derive(Debug, Default)]
struct StatCacheFile {
    /// foldhash: SipHash's DoS resistance buys nothing for paths of our own context.
    entries: HashMap<String, StatEntry, foldhash::fast::RandomState>,
    /// Entries used by this process (not saved): when the file grows past
    /// [`STAT_CACHE_MAX`], only these are kept.
    used: std::collections::HashSet<String>,
}

impl StatCacheFile {
    /// `size\tmtime\tctime\tino\tdigest\tpath` lines after a header line; the path
    /// goes last so it may hold tabs. Paths with a newline are not kept (they are
    /// simply hashed again next time).
    fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{STAT_CACHE_HEADER}")?;
        for (path, e) in &self.entries {
            if path.contains('\n') {
                continue;
            }
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{path}",
                e.size,
                e.mtime,
                e.ctime,
                e.ino,
                blake3::Hash::from_bytes(e.digest).to_hex()
            )?;
        }
        Ok(())
    }

    /// The cache in `text`; None when it is not one (then the files are hashed again).
    fn decode(text: &str) -> Option<StatCacheFile> {
        let mut lines = text.lines();
        if lines.next()? != STAT_CACHE_HEADER {
            return None;
        }
        let mut entries = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for line in lines {
            let mut f = line.splitn(6, '\t');
            let entry = StatEntry {
                size: f.next()?.parse().ok()?,
                mtime: f.next()?.parse().ok()?,
                ctime: f.next()?.parse().ok()?,
                ino: f.next()?.parse().ok()?,
                digest: *blake3::Hash::from_hex(f.next()?).ok()?.as_bytes(),
            };
            entries.insert(f.next()?.to_string(), entry);
        }
        Some(StatCacheFile {
            entries,
            used: Default::default(),
        })
    }
}

/// Below this many entries, stat cache lookups run on the calling thread.
const PARALLEL_LOOKUPS: usize = 2048;

/// Entries the stat cache holds before it forgets the ones the current build did not use.
const STAT_CACHE_MAX: usize = 200_000;

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
    for (c, sub) in children.into_iter().zip(subtrees) {
        out.extend(c.entry);
        out.extend(sub?);
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

/// Hashes context selections; owns the persistent stat cache of one store root.
pub struct ContextHasher {
    dir: PathBuf,
    /// Per context directory: its stat cache and whether it changed.
    state: Mutex<HashMap<PathBuf, (StatCacheFile, bool)>>,
    /// Files whose content was read, for tests and progress.
    files_read: AtomicU64,
}

impl ContextHasher {
    pub fn new(store_root: &Path) -> Self {
        ContextHasher {
            dir: store_root.join(STAT_CACHE_DIR),
            state: Mutex::new(HashMap::new()),
            files_read: AtomicU64::new(0),
        }
    }

    /// How many files had their content read (stat cache misses) so far.
    pub fn files_read(&self) -> u64 {
        self.files_read.load(Ordering::Relaxed)
    }

    /// The stat cache file of the context directory `ctx`.
    fn file_of(&self, ctx: &Path) -> PathBuf {
        let abs = std::path::absolute(ctx).unwrap_or_else(|_| ctx.to_path_buf());
        let h = blake3::hash(abs.as_os_str().as_encoded_bytes());
        self.dir.join(&h.to_hex()[..32])
    }

    fn is_loaded(&self, ctx: &Path) -> bool {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.contains_key(ctx)
    }

    fn with_cache<R>(&self, ctx: &Path, f: impl FnOnce(&mut StatCacheFile, &mut bool) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (cache, dirty) = guard.entry(ctx.to_path_buf()).or_insert_with(|| {
            // A missing or unreadable cache only costs a re-read of the files.
            let loaded = std::fs::read_to_string(self.file_of(ctx))
                .ok()
                .and_then(|t| StatCacheFile::decode(&t))
                .unwrap_or_default();
            (loaded, false)
        });
        f(cache, dirty)
    }

    /// Writes the stat caches that changed (temp file + fsync + rename).
    pub fn save(&self) -> io::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (ctx, (cache, dirty)) in guard.iter_mut() {
            if !*dirty {
                continue;
            }
            if cache.entries.len() > STAT_CACHE_MAX {
                let used = std::mem::take(&mut cache.used);
                cache.entries.retain(|k, _| used.contains(k));
                cache.used = used;
            }
            if self.dir.is_file() {
                // The single-file cache of earlier versions: superseded.
                std::fs::remove_file(&self.dir)?;
            }
            std::fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            {
                let mut w = io::BufWriter::new(tmp.as_file_mut());
                cache.encode(&mut w)?;
                w.flush()?;
            }
            tmp.as_file().sync_all()?;
            tmp.persist(self.file_of(ctx)).map_err(|e| e.error)?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            *dirty = false;
        }
        Ok(())
    }

    /// Digest of exactly what one COPY source selects: for each entry its context path,
    /// type, permission bits, and content (files) or target (symlinks).
    pub fn digest(
        &self,
        ctx: &Path,
        source: &str,
        allow_wildcard: bool,
        filter: &Filter,
    ) -> Result<[u8; 32], ContextError> {
        let matches = match_sources(ctx, source, allow_wildcard, filter)?;
        let walk = || -> Result<Vec<Entry>, ContextError> {
            let mut entries = Vec::new();
            for m in &matches {
                entries.extend(walk_source(ctx, m, filter)?);
            }
            Ok(entries)
        };
        // The stat cache loads while the tree is walked (once per context and process).
        let entries = if self.is_loaded(ctx) {
            walk()?
        } else {
            rayon::join(|| self.with_cache(ctx, |_, _| ()), walk).1?
        };
        let digests = self.file_digests(ctx, &entries)?;
        let mut h = blake3::Hasher::new();
        h.update(b"rbuild context selection v1\0");
        for m in &matches {
            h.update(m.as_bytes());
            h.update(b"\0");
        }
        for (e, d) in entries.iter().zip(&digests) {
            h.update(e.rel.as_bytes());
            h.update(b"\0");
            let ft = e.meta.file_type();
            let kind: u8 = if ft.is_dir() {
                b'd'
            } else if ft.is_symlink() {
                b'l'
            } else if ft.is_file() {
                b'f'
            } else {
                b'o'
            };
            h.update(&[kind]);
            h.update(&(e.meta.mode() & 0o7777).to_le_bytes());
            if ft.is_symlink() {
                let target = std::fs::read_link(&e.path).map_err(io_err(&e.path))?;
                h.update(target.as_os_str().as_encoded_bytes());
                h.update(b"\0");
            }
            if let Some(d) = d {
                h.update(d);
            }
        }
        Ok(*h.finalize().as_bytes())
    }

    /// Content digests of the regular files among `entries` (None for other kinds): from the
    /// stat cache when size/mtime/ctime/inode match, else read (in parallel).
    fn file_digests(
        &self,
        ctx: &Path,
        entries: &[Entry],
    ) -> Result<Vec<Option<[u8; 32]>>, ContextError> {
        let mut out: Vec<Option<[u8; 32]>> = vec![None; entries.len()];
        let mut todo: Vec<usize> = Vec::new();
        self.with_cache(ctx, |cache, _| {
            // Lookups in parallel when there are many: a no-op rebuild of a big context
            // does little else.
            let lookup = |e: &Entry| {
                if !e.meta.is_file() {
                    return None;
                }
                cache
                    .entries
                    .get(e.path.to_string_lossy().as_ref())
                    .filter(|s| s.matches(&e.meta))
                    .map(|s| s.digest)
            };
            let hits: Vec<Option<[u8; 32]>> = if entries.len() > PARALLEL_LOOKUPS {
                entries.par_iter().map(lookup).collect()
            } else {
                entries.iter().map(lookup).collect()
            };
            let trim = cache.entries.len() > STAT_CACHE_MAX;
            for (i, (e, hit)) in entries.iter().zip(hits).enumerate() {
                if !e.meta.is_file() {
                    continue;
                }
                if hit.is_some() && trim {
                    cache.used.insert(e.path.to_string_lossy().into_owned());
                }
                match hit {
                    Some(d) => out[i] = Some(d),
                    None => todo.push(i),
                }
            }
        });
        if todo.is_empty() {
            return Ok(out);
        }
        self.files_read
            .fetch_add(todo.len() as u64, Ordering::Relaxed);
        let hashed: Vec<(usize, Result<[u8; 32], ContextError>)> = todo
            .par_iter()
            .map(|&i| (i, hash_file(&entries[i].path)))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let mut fresh = Vec::new();
        for (i, r) in hashed {
            let d = r?;
            out[i] = Some(d);
            let m = &entries[i].meta;
            let mtime = ns(m.mtime(), m.mtime_nsec());
            let ctime = ns(m.ctime(), m.ctime_nsec());
            if now - mtime.max(ctime) > RACY_WINDOW_NS {
                fresh.push((
                    entries[i].path.to_string_lossy().into_owned(),
                    StatEntry {
                        size: m.size(),
                        mtime,
                        ctime,
                        ino: m.ino(),
                        digest: d,
                    },
                ));
            }
        }
        self.with_cache(ctx, |cache, dirty| {
            for (k, v) in fresh {
                cache.used.insert(k.clone());
                cache.entries.insert(k, v);
                *dirty = true;
            }
        });
        Ok(out)
    }
}

fn hash_file(path: &Path) -> Result<[u8; 32], ContextError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

/// The base name a matched source is copied under.
pub fn source_name(matched: &str) -> &str {
    base_name(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cache_lines_round_trip() {
        let entry = |n: u64| StatEntry {
            size: n,
            mtime: -5,
            ctime: 1_700_000_000_123_456_789,
            ino: n * 7,
            digest: *blake3::hash(&n.to_le_bytes()).as_bytes(),
        };
        let mut c = StatCacheFile::default();
        c.entries.insert("/ctx/a b\twith tab".into(), entry(1));
        c.entries.insert("/ctx/plain".into(), entry(2));
        c.entries.insert("/ctx/new\nline".into(), entry(3));
        let mut bytes = Vec::new();
        c.encode(&mut bytes).unwrap();
        let back = StatCacheFile::decode(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(back.entries.len(), 2, "a path with a newline is not kept");
        assert_eq!(back.entries["/ctx/a b\twith tab"], entry(1));
        assert_eq!(back.entries["/ctx/plain"], entry(2));
        assert!(StatCacheFile::decode("{\"entries\":{}}").is_none());
        assert!(
            StatCacheFile::decode(&format!("{STAT_CACHE_HEADER}\n1\tx\t2\t3\td\tp\n")).is_none()
        );
    }
    use std::os::unix::fs::PermissionsExt;

    fn pats(p: &[&str]) -> Patterns {
        Patterns::from_list(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/sub")).unwrap();
        std::fs::write(d.path().join("a.txt"), "a").unwrap();
        std::fs::write(d.path().join("src/x.rs"), "x").unwrap();
        std::fs::write(d.path().join("src/sub/y.rs"), "y").unwrap();
        std::os::unix::fs::symlink("x.rs", d.path().join("src/link")).unwrap();
        d
    }

    #[test]
    fn digest_does_not_depend_on_where_the_context_is() {
        // A cache exported on one machine must match the same context at another path.
        let (one, two) = (setup(), setup());
        let store = tempfile::tempdir().unwrap();
        let h = ContextHasher::new(store.path());
        let empty = pats(&[]);
        let f = Filter {
            ignore: &empty,
            copy_exclude: &empty,
        };
        for src in [".", "src", "a.txt"] {
            assert_eq!(
                h.digest(one.path(), src, false, &f).unwrap(),
                h.digest(two.path(), src, false, &f).unwrap(),
                "{src}"
            );
        }
        std::fs::write(two.path().join("src/x.rs"), "other").unwrap();
        assert_ne!(
            h.digest(one.path(), "src", false, &f).unwrap(),
            h.digest(two.path(), "src", false, &f).unwrap()
        );
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

    #[test]
    fn digest_depends_on_selected_content_only() {
        let ctx = setup();
        let store = tempfile::tempdir().unwrap();
        let h = ContextHasher::new(store.path());
        let empty = pats(&[]);
        let f = Filter {
            ignore: &empty,
            copy_exclude: &empty,
        };
        let src1 = h.digest(ctx.path(), "src", false, &f).unwrap();
        let a1 = h.digest(ctx.path(), "a.txt", false, &f).unwrap();
        std::fs::write(ctx.path().join("src/sub/y.rs"), "Y").unwrap();
        let src2 = h.digest(ctx.path(), "src", false, &f).unwrap();
        let a2 = h.digest(ctx.path(), "a.txt", false, &f).unwrap();
        assert_ne!(src1, src2);
        assert_eq!(a1, a2);
        // mode is part of it
        std::fs::set_permissions(
            ctx.path().join("a.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(a1, h.digest(ctx.path(), "a.txt", false, &f).unwrap());
        // symlink target is part of it
        std::fs::remove_file(ctx.path().join("src/link")).unwrap();
        std::os::unix::fs::symlink("sub/y.rs", ctx.path().join("src/link")).unwrap();
        assert_ne!(src2, h.digest(ctx.path(), "src", false, &f).unwrap());
    }

    #[test]
    fn missing_source_is_not_found() {
        let ctx = setup();
        let store = tempfile::tempdir().unwrap();
        let h = ContextHasher::new(store.path());
        let empty = pats(&[]);
        let f = Filter {
            ignore: &empty,
            copy_exclude: &empty,
        };
        let err = h.digest(ctx.path(), "nope.txt", false, &f).unwrap_err();
        assert!(matches!(err, ContextError::NotFound { ref path } if path == "nope.txt"));
        assert!(h.digest(ctx.path(), "*.none", true, &f).is_err());
        assert!(h.digest(ctx.path(), "*.txt", true, &f).is_ok());
    }

    /// Ages the files of a `setup()` context past the racy window, so they are remembered.
    fn aged(dir: &Path) {
        let old = SystemTime::now() - std::time::Duration::from_secs(10);
        for p in ["a.txt", "src/x.rs", "src/sub/y.rs"] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.join(p))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
    }

    #[test]
    fn stat_cache_persists_and_mtime_only_change_keeps_digest() {
        let ctx = setup();
        let store = tempfile::tempdir().unwrap();
        let empty = pats(&[]);
        let f = Filter {
            ignore: &empty,
            copy_exclude: &empty,
        };
        aged(ctx.path());
        let h = ContextHasher::new(store.path());
        let d1 = h.digest(ctx.path(), ".", false, &f).unwrap();
        assert_eq!(h.files_read(), 3);
        assert_eq!(d1, h.digest(ctx.path(), ".", false, &f).unwrap());
        assert_eq!(h.files_read(), 3, "a no-op re-hash reads nothing");
        h.save().unwrap();
        let cache_file = h.file_of(ctx.path());
        assert!(cache_file.starts_with(store.path().join(STAT_CACHE_DIR)));
        let saved = StatCacheFile::decode(&std::fs::read_to_string(&cache_file).unwrap()).unwrap();
        assert_eq!(saved.entries.len(), 3);
        // A fresh hasher reads the saved cache: poison the digest of a.txt in it to prove
        // the content is not re-read when the stat matches.
        let mut poisoned = saved;
        let key = ctx.path().join("a.txt").to_string_lossy().into_owned();
        poisoned.entries.get_mut(&key).unwrap().digest = *blake3::hash(b"zzz").as_bytes();
        let mut bytes = Vec::new();
        poisoned.encode(&mut bytes).unwrap();
        std::fs::write(&cache_file, bytes).unwrap();
        let h2 = ContextHasher::new(store.path());
        assert_ne!(d1, h2.digest(ctx.path(), ".", false, &f).unwrap());
        // touching the file invalidates the entry; the content is the same, so the digest is too
        let file = std::fs::File::options()
            .write(true)
            .open(ctx.path().join("a.txt"))
            .unwrap();
        file.set_modified(SystemTime::now()).unwrap();
        let h3 = ContextHasher::new(store.path());
        assert_eq!(d1, h3.digest(ctx.path(), ".", false, &f).unwrap());
        assert_eq!(h3.files_read(), 1, "only the touched file is re-read");

        // Another context keeps its own file: a build reads only its context's entries.
        let other = setup();
        aged(other.path());
        h3.digest(other.path(), ".", false, &f).unwrap();
        h3.save().unwrap();
        let other_file = h3.file_of(other.path());
        assert_ne!(other_file, cache_file);
        let second = std::fs::read_to_string(&other_file).unwrap();
        assert_eq!(StatCacheFile::decode(&second).unwrap().entries.len(), 3);
        let first = std::fs::read_to_string(&cache_file).unwrap();
        assert_eq!(StatCacheFile::decode(&first).unwrap().entries.len(), 3);
    }

    #[test]
    fn dockerignore_and_copy_exclude_shape_the_selection() {
        let ctx = setup();
        let store = tempfile::tempdir().unwrap();
        let h = ContextHasher::new(store.path());
        let empty = pats(&[]);
        let ign = pats(&["src/sub"]);
        let plain = Filter {
            ignore: &empty,
            copy_exclude: &empty,
        };
        let ignoring = Filter {
            ignore: &ign,
            copy_exclude: &empty,
        };
        let rels: Vec<String> = walk_source(ctx.path(), "src", &ignoring)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(rels, ["src", "src/link", "src/x.rs"]);
        // a change under an ignored dir does not change the digest
        let before = h.digest(ctx.path(), "src", false, &ignoring).unwrap();
        std::fs::write(ctx.path().join("src/sub/y.rs"), "changed").unwrap();
        assert_eq!(
            before,
            h.digest(ctx.path(), "src", false, &ignoring).unwrap()
        );
        // an ignored file is not found, even by name
        let ign_x = pats(&["*.txt"]);
        let f = Filter {
            ignore: &ign_x,
            copy_exclude: &empty,
        };
        assert!(matches!(
            h.digest(ctx.path(), "a.txt", false, &f),
            Err(ContextError::NotFound { .. })
        ));
        // an exception re-includes a file below an excluded dir
        let ign_ex = pats(&["src", "!src/sub/y.rs"]);
        let f = Filter {
            ignore: &ign_ex,
            copy_exclude: &empty,
        };
        let rels: Vec<String> = walk_source(ctx.path(), "", &f)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(rels, ["", "a.txt", "src/sub/y.rs"]);
        // COPY --exclude patterns match below the source
        let ex = pats(&["*.rs"]);
        let f = Filter {
            ignore: &empty,
            copy_exclude: &ex,
        };
        let rels: Vec<String> = walk_source(ctx.path(), "src", &f)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        // (`*` does not cross `/`, as in .dockerignore)
        assert_eq!(rels, ["src", "src/link", "src/sub", "src/sub/y.rs"]);
        let ex = pats(&["**/*.rs"]);
        let f = Filter {
            ignore: &empty,
            copy_exclude: &ex,
        };
        let rels: Vec<String> = walk_source(ctx.path(), "src", &f)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(rels, ["src", "src/link", "src/sub"]);
        let all: Vec<String> = walk_source(ctx.path(), "src", &plain)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(
            all,
            ["src", "src/link", "src/sub", "src/sub/y.rs", "src/x.rs"]
        );
    }
}
