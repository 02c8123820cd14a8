//! Progress events the solver emits while it runs a graph; the CLI renders them.

use crate::graph::VertexId;
use rbuild_executor::Stream;
use std::collections::VecDeque;
use std::time::Instant;

/// One thing that happened to a vertex.
#[derive(Debug, Clone)]
pub enum Event {
    /// The vertex started executing (the cache could not answer it).
    Started { vertex: VertexId, at: Instant },
    /// The cache answered the vertex; nothing ran.
    Cached { vertex: VertexId },
    /// Output of a running step, as it arrives (not split into lines).
    Log {
        vertex: VertexId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// The vertex finished executing.
    Done { vertex: VertexId, at: Instant },
    /// The vertex failed (or was cancelled because another one failed).
    Failed { vertex: VertexId, error: String },
}

impl Event {
    /// The vertex this event is about.
    pub fn vertex(&self) -> VertexId {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex }
            | Event::Log { vertex, .. }
            | Event::Done { vertex, .. }
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

#[cfg(test)]
mod tests {
    use super::*;

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
