//! Progress events the solver emits while it runs a graph (the CLI renders them), and the
//! helpers steps use for their output lines.

use crate::explain::Miss;
use rbuild_executor::Stream;
use rbuild_graph::VertexId;
use std::collections::VecDeque;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// One thing that happened to a vertex.
#[derive(Debug, Clone)]
pub enum Event {
    /// The vertex started executing (the cache could not answer it).
    Started { vertex: VertexId, at: Instant },
    /// The cache answered the vertex; nothing ran.
    Cached { vertex: VertexId },
    /// Why the vertex runs instead of coming from the cache; sent right after `Started`.
    CacheMiss { vertex: VertexId, miss: Miss },
    /// Output of a running step, as it arrives (not split into lines).
    Log {
        vertex: VertexId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// The vertex finished executing; a RUN step says how much memory it used at most.
    Done {
        vertex: VertexId,
        at: Instant,
        peak_memory: Option<u64>,
    },
    /// Something the user should know while this vertex ran, said once per solver
    /// (e.g. that RUN steps get no cgroup on this machine).
    Warning { vertex: VertexId, message: String },
    /// The vertex failed (or was cancelled because another one failed).
    Failed { vertex: VertexId, error: String },
}

impl Event {
    /// The vertex this event is about.
    pub fn vertex(&self) -> VertexId {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex }
            | Event::CacheMiss { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Done { vertex, .. }
            | Event::Warning { vertex, .. }
            | Event::Failed { vertex, .. } => *vertex,
        }
    }
}

/// Keeps the last `cap` complete-or-partial lines of a byte stream, for error reports.
#[derive(Debug, Clone)]
pub struct LastLines {
    cap: usize,
    lines: VecDeque<String>,
    /// Bytes of the current, unterminated line.
    partial: Vec<u8>,
}

/// Longest line kept; longer ones are cut so a binary blob cannot fill memory.
const MAX_LINE: usize = 4096;

impl LastLines {
    pub fn new(cap: usize) -> Self {
        LastLines {
            cap,
            lines: VecDeque::new(),
            partial: Vec::new(),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                self.push_line(line);
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }

    fn push_line(&mut self, line: Vec<u8>) {
        let mut s = String::from_utf8_lossy(&line).into_owned();
        if s.ends_with('\r') {
            s.pop();
        }
        self.lines.push_back(s);
        while self.lines.len() > self.cap {
            self.lines.pop_front();
        }
    }

    /// The kept lines, oldest first, including a trailing unterminated one.
    pub fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.push_line(line);
        }
        self.lines.into_iter().collect()
    }
}

/// `1.2MB`-style sizes (decimal, as docker prints them): the store's formatter, so
/// progress, `images` and prune's reports print sizes alike.
pub use rbuild_cache::gc::units::human as human_size;

/// `sha256:0123456789ab` (docker shows 12 hex digits).
pub fn short_digest(digest: &str) -> &str {
    let end = "sha256:".len() + 12;
    digest.get(..end).unwrap_or(digest)
}

/// A line of a step's progress output (what the plain printer shows after `#N`).
pub(crate) fn say(events: &UnboundedSender<Event>, vertex: VertexId, line: String) {
    let mut data = line.into_bytes();
    data.push(b'\n');
    let _ = events.send(Event::Log {
        vertex,
        stream: Stream::Stderr,
        data,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(268_435_456), "268.4MB");
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("short"), "short");
    }

    #[test]
    fn last_lines_keeps_tail_across_chunks() {
        let mut l = LastLines::new(2);
        l.push(b"one\ntw");
        l.push(b"o\r\nthree\nfo");
        assert_eq!(l.finish(), ["three", "fo"]);
    }

    #[test]
    fn last_lines_empty() {
        assert!(LastLines::new(3).finish().is_empty());
    }
}
