//! The stat cache's file format: per context file, (size, mtime, ctime, inode) → content
//! digest, one line each, so a no-op rebuild reads no file content.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;

/// The first line of a stat cache file; another first line means "not a cache" (hash again).
pub(super) const STAT_CACHE_HEADER: &str = "rbuild context stat cache v1";

/// What the stat cache remembers for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StatEntry {
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) ctime: i64,
    pub(super) ino: u64,
    /// blake3 of the content (hex in the file).
    pub(super) digest: [u8; 32],
}

impl StatEntry {
    pub(super) fn matches(&self, m: &std::fs::Metadata) -> bool {
        self.size == m.size()
            && self.mtime == ns(m.mtime(), m.mtime_nsec())
            && self.ctime == ns(m.ctime(), m.ctime_nsec())
            && self.ino == m.ino()
    }
}

/// Seconds and nanoseconds as one nanosecond count.
pub(super) fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// One context directory's stat cache, as loaded from (and saved to) its file.
#[derive(Debug, Default)]
pub(super) struct StatCacheFile {
    /// foldhash: SipHash's DoS resistance buys nothing for paths of our own context.
    pub(super) entries: HashMap<String, StatEntry, foldhash::fast::RandomState>,
    /// Entries used by this process (not saved): when the file grows past
    /// `STAT_CACHE_MAX`, only these are kept.
    pub(super) used: std::collections::HashSet<String>,
}

impl StatCacheFile {
    /// `size\tmtime\tctime\tino\tdigest\tpath` lines after a header line; the path
    /// goes last so it may hold tabs. Paths with a newline are not kept (they are
    /// simply hashed again next time).
    pub(super) fn encode(&self, out: &mut impl Write) -> io::Result<()> {
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
    pub(super) fn decode(text: &str) -> Option<StatCacheFile> {
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
}
