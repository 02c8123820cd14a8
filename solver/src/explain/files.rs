//! File lists: what an explanation record keeps of one context selection so that a later
//! build can name the files that changed, without keeping the context.
//!
//! Per entry 8 bytes: 4 of a hash of its path, 3 of a hash of its type and content (a
//! file's digest, a symlink's target), 1 of a hash of its permission bits; sorted by path
//! hash. A later build hashes its own entries the same way: a path hash the old list lacks
//! is a file added, one with another content hash a file changed, and old path hashes
//! left over are files removed (counted: their names were not kept). 20,000 files make a
//! 160 kB list. Past [`MAX_UNITS`] entries the list keeps directories instead of files (the
//! deepest level with at most that many): a 200,000-file context stays under 512 kB and a
//! change is named by its directory.

use crate::context::Selected;

/// Most units (files, or directories past that) a list keeps.
pub(crate) const MAX_UNITS: usize = 65_536;
/// `depth` of a list of files.
const FILES: u8 = u8::MAX;
const MAGIC: &[u8; 5] = b"rbfl1";
/// Names given per kind of change (the rest is counted).
const NAMES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Unit {
    path: u32,
    /// 24 bits used.
    content: u32,
    mode: u8,
}

/// The fingerprint of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileList {
    /// Path components a unit keeps: [`FILES`] for one unit per entry, else entries deeper
    /// than this are grouped under their directory at this depth (0: one unit for all).
    depth: u8,
    units: Vec<Unit>,
}

/// How one file (or directory unit) differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Content,
    Mode,
}

/// What changed between two selections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ContentDiff {
    /// The first changed paths (a directory ends with `/`), with how.
    pub changed: Vec<(String, Change)>,
    pub added: Vec<String>,
    /// How many entries were removed (their names were not kept).
    pub removed: usize,
    /// Changed or added entries beyond the named ones.
    pub more: usize,
}

fn h32(parts: &[&[u8]]) -> u32 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
    }
    let b = h.finalize();
    u32::from_le_bytes([
        b.as_bytes()[0],
        b.as_bytes()[1],
        b.as_bytes()[2],
        b.as_bytes()[3],
    ])
}

/// The unit an entry belongs to at `depth`, and whether it is a directory group.
fn unit_name(rel: &str, depth: u8) -> (&str, bool) {
    if depth == FILES {
        return (rel, false);
    }
    if depth == 0 {
        return ("", true);
    }
    let mut seen = 0;
    for (i, b) in rel.bytes().enumerate() {
        if b == b'/' {
            seen += 1;
            if seen == depth {
                return (&rel[..=i], true);
            }
        }
    }
    (rel, false)
}

fn entry_unit(e: &Selected) -> Unit {
    Unit {
        path: h32(&[e.rel.as_bytes()]),
        content: h32(&[&[e.kind], &e.content]) & 0x00ff_ffff,
        mode: h32(&[&e.mode.to_le_bytes()]) as u8,
    }
}

/// Units of `entries` at `depth`, with their names, in entry order (grouped entries are
/// contiguous in a walk; a group is hashed over all its members).
fn units(entries: &[Selected], depth: u8) -> Vec<(String, Unit)> {
    if depth == FILES {
        return entries
            .iter()
            .map(|e| (e.rel.clone(), entry_unit(e)))
            .collect();
    }
    let mut out: Vec<(String, blake3::Hasher)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for e in entries {
        let (name, _) = unit_name(&e.rel, depth);
        let i = *index.entry(name.to_string()).or_insert_with(|| {
            out.push((name.to_string(), blake3::Hasher::new()));
            out.len() - 1
        });
        let h = &mut out[i].1;
        h.update(e.rel.as_bytes());
        h.update(&[0, e.kind]);
        h.update(&e.mode.to_le_bytes());
        h.update(&e.content);
    }
    out.into_iter()
        .map(|(name, h)| {
            let b = h.finalize();
            let content =
                u32::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1], b.as_bytes()[2], 0]);
            let unit = Unit {
                path: h32(&[name.as_bytes()]),
                content,
                mode: 0,
            };
            (name, unit)
        })
        .collect()
}

/// How many distinct units `entries` make at `depth`.
fn count_units(entries: &[Selected], depth: u8) -> usize {
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        seen.insert(unit_name(&e.rel, depth).0);
    }
    seen.len()
}

impl FileList {
    /// The list of a selection: one unit per entry, or per directory at the deepest level
    /// that keeps at most [`MAX_UNITS`].
    pub(crate) fn of(entries: &[Selected]) -> FileList {
        let depth = if entries.len() <= MAX_UNITS {
            FILES
        } else {
            // Units only grow with depth: the deepest level that fits, by bisection.
            let max = entries
                .iter()
                .map(|e| e.rel.bytes().filter(|b| *b == b'/').count())
                .max()
                .unwrap_or(0)
                .min(FILES as usize - 1) as u8;
            let (mut lo, mut hi) = (0u8, max);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if count_units(entries, mid) <= MAX_UNITS {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            lo
        };
        Self::at(entries, depth)
    }

    fn at(entries: &[Selected], depth: u8) -> FileList {
        let mut units: Vec<Unit> = units(entries, depth).into_iter().map(|(_, u)| u).collect();
        units.sort();
        FileList { depth, units }
    }

    /// How many files (or directories) the list keeps.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.units.len()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + 8 * self.units.len());
        out.extend_from_slice(MAGIC);
        out.push(self.depth);
        out.extend_from_slice(&(self.units.len() as u32).to_le_bytes());
        for u in &self.units {
            out.extend_from_slice(&u.path.to_le_bytes());
            out.extend_from_slice(&u.content.to_le_bytes()[..3]);
            out.push(u.mode);
        }
        out
    }

    /// A list read back; None when the bytes are not one (then nothing is named).
    pub(crate) fn decode(bytes: &[u8]) -> Option<FileList> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (&depth, rest) = rest.split_first()?;
        let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let body = rest.get(4..)?;
        if body.len() != count.checked_mul(8)? {
            return None;
        }
        let units = body
            .chunks_exact(8)
            .map(|c| Unit {
                path: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                content: u32::from_le_bytes([c[4], c[5], c[6], 0]),
                mode: c[7],
            })
            .collect();
        Some(FileList { depth, units })
    }

    /// What differs in `entries` (the new selection) from this list, naming the first
    /// paths that changed or were added.
    pub(crate) fn diff(&self, entries: &[Selected]) -> ContentDiff {
        let mut old: std::collections::HashMap<u32, Vec<Unit>> = Default::default();
        for u in &self.units {
            old.entry(u.path).or_default().push(*u);
        }
        let mut diff = ContentDiff::default();
        let mut seen = std::collections::HashSet::new();
        let grouped = self.depth != FILES;
        for (name, u) in units(entries, self.depth) {
            seen.insert(u.path);
            let display = if name.is_empty() {
                "the selection".to_string()
            } else {
                name
            };
            match old.get(&u.path) {
                None => {
                    if diff.added.len() < NAMES {
                        diff.added.push(display);
                    } else {
                        diff.more += 1;
                    }
                }
                Some(prev) if prev.contains(&u) => {}
                Some(prev) => {
                    let how = if !grouped && prev.iter().any(|p| p.content == u.content) {
                        Change::Mode
                    } else {
                        Change::Content
                    };
                    if diff.changed.len() < NAMES {
                        diff.changed.push((display, how));
                    } else {
                        diff.more += 1;
                    }
                }
            }
        }
        diff.removed = self
            .units
            .iter()
            .filter(|u| !seen.contains(&u.path))
            .count();
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, content: &str, mode: u32) -> Selected {
        Selected {
            rel: rel.into(),
            kind: b'f',
            mode,
            content: *blake3::hash(content.as_bytes()).as_bytes(),
        }
    }

    fn tree() -> Vec<Selected> {
        vec![
            Selected {
                rel: "src".into(),
                kind: b'd',
                mode: 0o755,
                content: [0; 32],
            },
            file("src/lib.rs", "lib", 0o644),
            file("src/main.rs", "main", 0o644),
        ]
    }

    #[test]
    fn names_what_changed_was_added_and_counts_what_went() {
        let old = FileList::of(&tree());
        let round = FileList::decode(&old.encode()).unwrap();
        assert_eq!(round, old);
        assert_eq!(old.encode().len(), 10 + 3 * 8);
        assert_eq!(old.diff(&tree()), ContentDiff::default());

        let mut new = tree();
        new[2] = file("src/main.rs", "main v2", 0o644);
        new[1].mode = 0o600;
        new.push(file("src/new.rs", "new", 0o644));
        let d = old.diff(&new);
        assert_eq!(
            d.changed,
            [
                ("src/lib.rs".to_string(), Change::Mode),
                ("src/main.rs".to_string(), Change::Content)
            ]
        );
        assert_eq!(d.added, ["src/new.rs"]);
        assert_eq!(d.removed, 0);

        let gone: Vec<Selected> = tree().into_iter().take(2).collect();
        let d = old.diff(&gone);
        assert_eq!((d.removed, d.changed.len(), d.added.len()), (1, 0, 0));
    }

    #[test]
    fn garbage_is_no_list() {
        assert!(FileList::decode(b"").is_none());
        assert!(FileList::decode(b"rbfl1\xff\x02\0\0\0short").is_none());
        let mut ok = FileList::of(&tree()).encode();
        ok.push(0);
        assert!(FileList::decode(&ok).is_none());
    }

    #[test]
    fn big_selections_keep_directories() {
        // MAX_UNITS + 1 files in 3 directories: the list keeps the directories.
        let mut entries = Vec::new();
        for i in 0..=MAX_UNITS {
            entries.push(file(&format!("d{}/f{i}", i % 3), "x", 0o644));
        }
        let list = FileList::of(&entries);
        assert_eq!(list.depth, 1);
        assert_eq!(list.len(), 3);
        entries[4] = file("d1/f4", "changed", 0o644);
        let d = list.diff(&entries);
        assert_eq!(d.changed, [("d1/".to_string(), Change::Content)]);
    }
}
