//! Content hashing of what a COPY selects from the build context, with a persistent stat
//! cache so a rebuild re-reads only files whose (size, mtime, ctime, inode) changed.
//!
//! - [`select`]: which entries a COPY source selects (matches, trees, ignore rules);
//! - `stat_cache`: the stat cache's file format;
//! - this module: [`ContextHasher`] (digests of selections, the stat cache per context
//!   directory) and [`LocalContext`] (a local source as steps read it).

mod select;
mod stat_cache;

pub use select::{Entry, Filter, match_sources, resolve_source, walk_source};

use rayon::prelude::*;
use stat_cache::{StatCacheFile, StatEntry, ns};
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

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Below this many entries, stat cache lookups run on the calling thread.
const PARALLEL_LOOKUPS: usize = 2048;

/// Entries the stat cache holds before it forgets the ones the current build did not use.
const STAT_CACHE_MAX: usize = 200_000;

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
        self.digest_listed(ctx, source, allow_wildcard, filter, None)
    }

    /// [`digest`](Self::digest), also listing what went into it per entry when `list` is
    /// given (to name the files that changed since an earlier build).
    pub fn digest_listed(
        &self,
        ctx: &Path,
        source: &str,
        allow_wildcard: bool,
        filter: &Filter,
        mut list: Option<&mut Vec<Selected>>,
    ) -> Result<[u8; 32], ContextError> {
        let matches = match_sources(ctx, source, allow_wildcard, filter)?;
        let walk = || -> Result<Vec<Entry>, ContextError> {
            // One source (`COPY . /app`): its list as walked, not copied into another.
            if let [one] = matches.as_slice() {
                return walk_source(ctx, one, filter);
            }
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
            let mut target = None;
            if ft.is_symlink() {
                let t = std::fs::read_link(&e.path).map_err(io_err(&e.path))?;
                h.update(t.as_os_str().as_encoded_bytes());
                h.update(b"\0");
                target = Some(t);
            }
            if let Some(d) = d {
                h.update(d);
            }
            if let Some(list) = list.as_deref_mut() {
                let content = match (d, &target) {
                    (Some(d), _) => *d,
                    (None, Some(t)) => *blake3::hash(t.as_os_str().as_encoded_bytes()).as_bytes(),
                    (None, None) => [0; 32],
                };
                list.push(Selected {
                    rel: e.rel.clone(),
                    kind,
                    mode: e.meta.mode() & 0o7777,
                    content,
                });
            }
        }
        Ok(*h.finalize().as_bytes())
    }

    /// Content digests of the regular files among `entries` (None for other kinds): from the
    /// stat cache when size/mtime/ctime/inode match, else read (in parallel).
    pub(crate) fn file_digests(
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

/// One entry of a selection as its digest saw it (see [`ContextHasher::digest_listed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The context-relative path.
    pub rel: String,
    /// `f`ile, `d`irectory, `l`ink or `o`ther.
    pub kind: u8,
    /// Permission bits.
    pub mode: u32,
    /// A file's content digest, a symlink target's hash, zeros otherwise.
    pub content: [u8; 32],
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

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::dockerignore::Patterns;
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
