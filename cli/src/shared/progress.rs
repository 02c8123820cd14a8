//! Renders solver events: `--progress=plain` the way BuildKit prints it
//! (numbered steps, `CACHED`, output lines with timestamps, `DONE 0.3s`; and rbuild's
//! `CACHE MISS: why` after a step that runs), and
//! on a terminal a compact live view (indicatif) of the steps in flight.

use crate::shared::{rawjson, tty};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rbuild_graph::{BuildGraph, VertexId};
use rbuild_solver::Event;
use rbuild_solver::explain::Miss;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How progress is shown; `--progress=auto` is settled (terminal or not) before a command runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A live view of the steps in flight.
    Tty,
    /// BuildKit's plain lines.
    Plain,
    /// Nothing.
    Quiet,
    /// BuildKit's `SolveStatus` JSON, a line per event (`shared/rawjson.rs`).
    RawJson,
}

/// Prints the events of one solve as they arrive, in one [`Mode`].
pub struct Printer {
    mode: Mode,
    graph: Arc<BuildGraph>,
    /// Step numbers in order of first appearance, as BuildKit numbers them.
    numbers: HashMap<VertexId, usize>,
    started: HashMap<VertexId, Instant>,
    /// Bytes of an output line not yet ended by a newline.
    partial: HashMap<VertexId, Vec<u8>>,
    bars: HashMap<VertexId, ProgressBar>,
    multi: Option<MultiProgress>,
    /// Vertices not shown (e.g. the container of `rbuild run`, which prints on its own).
    hidden: HashSet<VertexId>,
    show_cached: bool,
    /// When each vertex started, on the wall clock (rawjson's times).
    wall_started: HashMap<VertexId, chrono::DateTime<chrono::Utc>>,
    /// The terminal view's header, its start, and the steps it has seen finish.
    header: Option<ProgressBar>,
    began: Instant,
    finished: usize,
    failed: bool,
    /// The terminal's columns and rows (the view's limits).
    width: usize,
    rows: usize,
    no_color: bool,
    /// Running steps with no line of their own (the terminal is full), counted on one.
    unseen_running: HashSet<VertexId>,
    more: Option<ProgressBar>,
}

/// `12.3s`-style durations.
fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// What follows DONE: the time, and a RUN step's peak memory.
fn done(took: Duration, peak_memory: Option<u64>) -> String {
    match peak_memory {
        Some(b) => format!("{} (peak memory {})", seconds(took), memory(b)),
        None => seconds(took),
    }
}

/// `bytes` in binary units, one decimal (`52.5 MiB`).
fn memory(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

impl Printer {
    pub fn new(mode: Mode, graph: Arc<BuildGraph>) -> Self {
        let multi = (mode == Mode::Tty).then(MultiProgress::new);
        let (width, rows) = tty::size().unwrap_or((80, 24));
        let header = multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            let style = ProgressStyle::with_template("{prefix} {secs} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key(
                    "secs",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}s", s.elapsed().as_secs_f64());
                    },
                );
            bar.set_style(style);
            bar.set_prefix("[+] Building");
            bar.set_message("(0/0)");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Printer {
            mode,
            graph,
            numbers: HashMap::new(),
            started: HashMap::new(),
            partial: HashMap::new(),
            bars: HashMap::new(),
            multi,
            hidden: HashSet::new(),
            show_cached: true,
            wall_started: HashMap::new(),
            header,
            began: Instant::now(),
            finished: 0,
            failed: false,
            width,
            rows,
            no_color: tty::no_color(),
            unseen_running: HashSet::new(),
            more: None,
        }
    }

    /// Shows nothing of `hidden`, and cache hits only if `show_cached`.
    pub fn hiding(mut self, hidden: HashSet<VertexId>, show_cached: bool) -> Self {
        self.hidden = hidden;
        self.show_cached = show_cached;
        self
    }

    fn number(&mut self, v: VertexId) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(v).or_insert(next)
    }

    fn name(&self, v: VertexId) -> String {
        let d = &self.graph.vertex(v).meta.description;
        if d.is_empty() {
            format!("[internal] {}", self.graph.vertex(v).op.kind())
        } else {
            d.clone()
        }
    }

    /// Why a step runs, other steps named by their numbers (numbered now if they had none).
    fn miss_text(&mut self, miss: &Miss) -> String {
        for v in miss.causes.iter().filter_map(|c| c.steps()) {
            self.number(v);
        }
        let numbers = &self.numbers;
        miss.text(&|v| match numbers.get(&v) {
            Some(n) => format!("#{n}"),
            None => format!("#{}", v.0),
        })
    }

    pub async fn consume(mut self, mut rx: UnboundedReceiver<Event>) {
        while let Some(ev) = rx.recv().await {
            self.handle(ev);
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
            let seen = self.numbers.len();
            let (end, tone) = if self.failed {
                ("ERROR", tty::Tone::Error)
            } else {
                ("FINISHED", tty::Tone::Finished)
            };
            let h = tty::header(self.began.elapsed(), self.finished, seen, Some(end));
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", tty::paint(&h, tone, self.no_color));
        }
    }

    /// A finished step's line above the running ones: cut to the terminal, coloured.
    fn tty_line(&self, line: &str, tone: tty::Tone) {
        if let Some(m) = &self.multi {
            let _ = m.println(tty::paint(&tty::cut(line, self.width), tone, self.no_color));
        }
    }

    /// The header's count, and the line that counts running steps with no line of their own.
    fn tty_counts(&mut self) {
        if let Some(h) = &self.header {
            h.set_message(format!("({}/{})", self.finished, self.numbers.len()));
        }
        let n = self.unseen_running.len();
        match (&self.more, n, &self.multi) {
            (Some(bar), 0, _) => {
                bar.finish_and_clear();
                self.more = None;
            }
            (Some(bar), n, _) => bar.set_message(format!("… and {n} more running")),
            (None, 0, _) | (None, _, None) => {}
            (None, n, Some(m)) => {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("… and {n} more running"));
                self.more = Some(bar);
            }
        }
    }

    /// A step no longer running: its line (or its place in the count) goes.
    fn tty_stop(&mut self, vertex: VertexId) {
        if let Some(bar) = self.bars.remove(&vertex) {
            bar.finish_and_clear();
        }
        self.unseen_running.remove(&vertex);
    }

    fn plain(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn handle(&mut self, ev: Event) {
        if self.hidden.contains(&ev.vertex())
            || (!self.show_cached && matches!(ev, Event::Cached { .. }))
        {
            return;
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => self.handle_plain(ev),
            Mode::Tty => self.handle_tty(ev),
            Mode::RawJson => self.handle_rawjson(ev),
        }
    }

    fn digest(&self, v: VertexId) -> String {
        format!("sha256:{}", self.graph.key(v).to_hex())
    }

    fn handle_rawjson(&mut self, ev: Event) {
        let now = chrono::Utc::now();
        let vertex = ev.vertex();
        let digest = self.digest(vertex);
        let inputs: Vec<String> = self
            .graph
            .vertex(vertex)
            .inputs
            .iter()
            .map(|i| self.digest(*i))
            .collect();
        let name = self.name(vertex);
        let info = rawjson::VertexInfo {
            digest: &digest,
            inputs: &inputs,
            name: &name,
        };
        let started = *self.wall_started.entry(vertex).or_insert(now);
        let line = match ev {
            Event::Started { .. } => rawjson::vertex(&info, started, None, false, None),
            Event::Cached { .. } => rawjson::vertex(&info, started, Some(now), true, None),
            Event::Done { .. } => rawjson::vertex(&info, started, Some(now), false, None),
            Event::Failed { error, .. } => {
                rawjson::vertex(&info, started, Some(now), false, Some(&error))
            }
            Event::Log { stream, data, .. } => {
                let n = if stream == rbuild_executor::Stream::Stdout {
                    1
                } else {
                    2
                };
                rawjson::log(&digest, n, &data, now)
            }
            Event::CacheMiss { miss, .. } => {
                let why = self.miss_text(&miss);
                rawjson::log(&digest, 2, format!("CACHE MISS: {why}\n").as_bytes(), now)
            }
            Event::Warning { message, .. } => rawjson::warning(&digest, &message),
        };
        self.plain(&line.to_string());
    }

    fn handle_plain(&mut self, ev: Event) {
        match ev {
            Event::Started { vertex, at } => {
                let n = self.number(vertex);
                self.started.insert(vertex, at);
                self.plain(&format!("\n#{n} {}", self.name(vertex)));
            }
            Event::Cached { vertex } => {
                let n = self.number(vertex);
                self.plain(&format!("\n#{n} {}\n#{n} CACHED", self.name(vertex)));
            }
            Event::CacheMiss { vertex, miss } => {
                let n = self.number(vertex);
                let why = self.miss_text(&miss);
                self.plain(&format!("#{n} CACHE MISS: {why}"));
            }
            Event::Log { vertex, data, .. } => {
                let n = self.number(vertex);
                let since = self
                    .started
                    .get(&vertex)
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                let buf = self.partial.entry(vertex).or_default();
                buf.extend_from_slice(&data);
                let mut lines = Vec::new();
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
                }
                for l in lines {
                    self.plain(&format!("#{n} {since:.3} {l}"));
                }
            }
            Event::Done {
                vertex,
                at,
                peak_memory,
            } => {
                let n = self.number(vertex);
                self.flush_partial(vertex, n);
                let took = self
                    .started
                    .get(&vertex)
                    .map(|s| at.saturating_duration_since(*s))
                    .unwrap_or_default();
                self.plain(&format!("#{n} DONE {}", done(took, peak_memory)));
            }
            Event::Warning { vertex, message } => {
                let n = self.number(vertex);
                self.plain(&format!("#{n} WARNING: {message}"));
            }
            Event::Failed { vertex, error } => {
                let n = self.number(vertex);
                self.flush_partial(vertex, n);
                self.plain(&format!("#{n} ERROR: {error}"));
            }
        }
    }

    fn flush_partial(&mut self, vertex: VertexId, n: usize) {
        if let Some(rest) = self.partial.remove(&vertex)
            && !rest.is_empty()
        {
            self.plain(&format!("#{n} {}", String::from_utf8_lossy(&rest)));
        }
    }

    fn handle_tty(&mut self, ev: Event) {
        let Some(multi) = self.multi.clone() else {
            return;
        };
        match ev {
            Event::Started { vertex, at } => {
                let n = self.number(vertex);
                self.started.insert(vertex, at);
                if self.bars.len() >= tty::running_lines(self.rows) {
                    self.unseen_running.insert(vertex);
                } else {
                    // Before the "more running" line, which stays last.
                    let bar = match &self.more {
                        Some(more) => multi.insert_before(more, ProgressBar::new_spinner()),
                        None => multi.add(ProgressBar::new_spinner()),
                    };
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} #{prefix} {wide_msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(n.to_string());
                    bar.set_message(self.name(vertex));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.bars.insert(vertex, bar);
                }
                self.tty_counts();
            }
            Event::Cached { vertex } => {
                let n = self.number(vertex);
                self.finished += 1;
                self.tty_line(
                    &format!("#{n} {} CACHED", self.name(vertex)),
                    tty::Tone::Finished,
                );
                self.tty_counts();
            }
            Event::CacheMiss { vertex, miss } => {
                let n = self.number(vertex);
                let why = self.miss_text(&miss);
                let line = format!("#{n} {} CACHE MISS: {why}", self.name(vertex));
                self.tty_line(&line, tty::Tone::Warning);
            }
            Event::Log { vertex, data, .. } => {
                if let Some(bar) = self.bars.get(&vertex)
                    && let Some(last) = String::from_utf8_lossy(&data).lines().last()
                {
                    bar.set_message(format!("{} | {}", self.name(vertex), last.trim()));
                }
            }
            Event::Done {
                vertex,
                at,
                peak_memory,
            } => {
                let n = self.number(vertex);
                let took = self
                    .started
                    .get(&vertex)
                    .map(|s| at.saturating_duration_since(*s))
                    .unwrap_or_default();
                self.tty_stop(vertex);
                self.finished += 1;
                let line = format!(
                    "#{n} {} DONE {}",
                    self.name(vertex),
                    done(took, peak_memory)
                );
                self.tty_line(&line, tty::Tone::Finished);
                self.tty_counts();
            }
            Event::Warning { message, .. } => {
                self.tty_line(&format!("WARNING: {message}"), tty::Tone::Warning);
            }
            Event::Failed { vertex, error } => {
                let n = self.number(vertex);
                self.tty_stop(vertex);
                self.finished += 1;
                self.failed = true;
                // An error is not cut: it is what the user needs to read whole.
                let line = format!("#{n} {} ERROR: {error}", self.name(vertex));
                let _ = multi.println(tty::paint(&line, tty::Tone::Error, self.no_color));
                self.tty_counts();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_says_the_peak_memory_of_a_run() {
        let t = Duration::from_millis(1250);
        assert_eq!(done(t, None), "1.2s");
        assert_eq!(done(t, Some(52_953_088)), "1.2s (peak memory 50.5 MiB)");
        assert_eq!(memory(512), "512 B");
        assert_eq!(memory(262_144), "256.0 KiB");
        assert_eq!(memory(3 << 30), "3.0 GiB");
    }
}
