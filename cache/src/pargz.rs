//! Parallel gzip in the manner of pigz: the stream is cut into blocks, each deflated on its
//! own primed with the previous 32 KiB as dictionary (so the ratio stays that of serial
//! gzip), and the pieces are joined into one deflate stream. A block ends at 1 MiB, or
//! earlier at the first tar entry that starts past half of that ([`TarSink::entry_start`]):
//! blocks then begin where entries do, so a file that grew or shrank in a layer shifts the
//! stream only up to the next such cut, and the blocks after it are the earlier layer's
//! again (`reuse.rs`). Cuts depend only on the bytes and the entry starts, so the output
//! does not depend on the number of threads.
//!
//! It is a pipeline: the thread writing into [`ParGz`] (tar walk, diff_id hash) only cuts
//! blocks and queues them; worker threads compress; one output thread puts the pieces back
//! in order and writes them (blob hash, file write). Buffers circulate from the producer
//! through a worker and the output thread back to the producer, and there are at most
//! `max_blocks` of them, so memory stays bounded and a slow stage holds up the others.

use crate::reuse::{self, Reuse};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const BLOCK: usize = 1 << 20;
/// A block may end at an entry start once it holds this much.
const MIN_BLOCK: usize = BLOCK / 2;
const WINDOW: usize = 32 << 10;
/// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown: deterministic.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One block to compress.
struct Job {
    seq: u64,
    /// The last (up to) 32 KiB of the stream before `data`.
    dict: Vec<u8>,
    data: Vec<u8>,
    fin: bool,
}

/// One compressed block, with its input buffer (to be recycled) and the CRC of the input.
struct Piece {
    seq: u64,
    data: Vec<u8>,
    crc: Crc,
    coded: io::Result<Vec<u8>>,
    fin: bool,
    /// Set when the piece is worth recording for reuse (it is smaller than its input).
    key: Option<[u8; 32]>,
}

pub(crate) struct ParGz<W: Write + Send + 'static> {
    cur: Vec<u8>,
    dict: Vec<u8>,
    seq: u64,
    /// Buffers handed out so far; at most `max_blocks`, then they are reused.
    allocated: usize,
    max_blocks: usize,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    output: Option<JoinHandle<io::Result<Finished<W>>>>,
}

/// The inner writer, and where the pieces worth reusing landed in its stream.
pub(crate) type Finished<W> = (W, Vec<reuse::Piece>);

impl<W: Write + Send + 'static> ParGz<W> {
    /// Starts the compression threads (one per core, at most 16) and the output thread.
    /// Blocks found in `reuse` are copied from there instead of being compressed.
    pub fn new(out: W, level: u32, reuse: Option<Arc<Reuse>>) -> io::Result<Self> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(16);
        Self::with_threads(out, level, threads, reuse)
    }

    pub fn with_threads(
        out: W,
        level: u32,
        threads: usize,
        reuse: Option<Arc<Reuse>>,
    ) -> io::Result<Self> {
        let threads = threads.max(1);
        let level = Compression::new(level.min(9));
        // Enough for every worker to have one block in hand and one queued, plus blocks
        // waiting on the output thread.
        let max_blocks = threads * 2 + 2;
        let (job_tx, job_rx) = sync_channel::<Job>(max_blocks);
        let (piece_tx, piece_rx) = sync_channel::<Piece>(max_blocks);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(max_blocks);
        let job_rx = Arc::new(Mutex::new(job_rx));
        // Built before any thread starts, so an error here leaves nothing running.
        let mut z = ParGz {
            cur: Vec::new(),
            dict: Vec::new(),
            seq: 0,
            allocated: 0,
            max_blocks,
            jobs: Some(job_tx),
            free: free_rx,
            workers: Vec::with_capacity(threads),
            output: None,
        };
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = piece_tx.clone();
            let reuse = reuse.clone();
            let h = std::thread::Builder::new()
                .name("rbuild-gzip".into())
                .spawn(move || compress_jobs(level, reuse.as_deref(), &rx, &tx))?;
            z.workers.push(h);
        }
        drop(piece_tx);
        let h = std::thread::Builder::new()
            .name("rbuild-gzip-out".into())
            .spawn(move || write_in_order(out, &piece_rx, &free_tx))?;
        z.output = Some(h);
        Ok(z)
    }

    /// Ends the stream (final block and gzip trailer) and returns the inner writer, with
    /// the pieces worth recording for later reuse.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        self.send(true)?;
        self.stop()
    }

    /// An empty buffer for the next block: a new one while under the limit, else one the
    /// output thread is done with.
    fn next_buffer(&mut self) -> io::Result<Vec<u8>> {
        if self.allocated < self.max_blocks {
            self.allocated += 1;
            return Ok(Vec::with_capacity(BLOCK));
        }
        match self.free.recv() {
            Ok(mut b) => {
                b.clear();
                Ok(b)
            }
            Err(_) => Err(self.failure()),
        }
    }

    fn send(&mut self, fin: bool) -> io::Result<()> {
        let data = std::mem::take(&mut self.cur);
        // Only the last block is short, and nothing follows it.
        let dict = tail(&data).to_vec();
        let job = Job {
            seq: self.seq,
            dict: std::mem::replace(&mut self.dict, dict),
            data,
            fin,
        };
        self.seq += 1;
        let sent = match &self.jobs {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { Err(self.failure()) }
    }

    /// Closes the job queue, waits for every thread and returns the output thread's result.
    fn stop(&mut self) -> io::Result<Finished<W>> {
        self.jobs = None;
        for h in self.workers.drain(..) {
            // A worker reports its own failures through the output thread.
            let _ = h.join();
        }
        match self.output.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("gzip output thread panicked"))),
            None => Err(io::Error::other("gzip pipeline already stopped")),
        }
    }

    /// Why the pipeline broke (a queue closed under us): the output thread's error.
    fn failure(&mut self) -> io::Error {
        match self.stop() {
            Err(e) => e,
            Ok(_) => io::Error::other("gzip pipeline stopped early"),
        }
    }
}

impl<W: Write + Send + 'static> Drop for ParGz<W> {
    fn drop(&mut self) {
        // Abandoned (an error upstream): let the threads wind down and drop the output.
        if self.output.is_some() {
            let _ = self.stop();
        }
    }
}

impl<W: Write + Send + 'static> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cur.capacity() == 0 {
            self.cur = self.next_buffer()?;
        }
        let n = (BLOCK - self.cur.len()).min(buf.len());
        self.cur.extend_from_slice(&buf[..n]);
        if self.cur.len() == BLOCK {
            self.send(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are cut only by size and entry starts, so the output stays deterministic.
        Ok(())
    }
}

/// A sink for a tar stream that wants to know where each entry starts (see the module
/// docs); others ignore it.
pub(crate) trait TarSink: Write {
    /// The next byte written starts a tar entry.
    fn entry_start(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TarSink for io::Sink {}

impl<W: Write + Send + 'static> TarSink for ParGz<W> {
    fn entry_start(&mut self) -> io::Result<()> {
        if self.cur.len() >= MIN_BLOCK {
            self.send(false)?;
        }
        Ok(())
    }
}

fn tail(b: &[u8]) -> &[u8] {
    tail_n(b, WINDOW)
}

/// Worker loop: takes blocks off the shared queue until it closes or the output is gone.
fn compress_jobs(
    level: Compression,
    reuse: Option<&Reuse>,
    jobs: &Mutex<Receiver<Job>>,
    out: &SyncSender<Piece>,
) {
    loop {
        // The guard is dropped at the end of this statement, before compressing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut crc = Crc::new();
        crc.update(&job.data);
        // New compressors for every block: zlib-rs keeps state across reset() (stale
        // window bytes steer match choices), so a reused one made a block's bytes depend
        // on which block the worker did before, and the blob on thread scheduling.
        let mut coder = Coder::new(level);
        let key_of = || reuse::piece_key(level.level(), job.fin, &job.dict, &job.data);
        // Looked up only when there is something to find; else computed only for a piece
        // worth recording.
        let looked_up = reuse.map(|r| {
            let k = key_of();
            (k, r.get(&k))
        });
        let (coded, key) = match looked_up {
            Some((k, Some(bytes))) => (Ok(bytes), Some(k)),
            other => {
                let coded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    coder.code(&job.dict, &job.data, job.fin)
                }))
                .unwrap_or_else(|_| Err(io::Error::other("gzip worker panicked")));
                (coded, other.map(|(k, _)| k))
            }
        };
        let key = match &coded {
            Ok(c) if c.len() < job.data.len() => Some(key.unwrap_or_else(key_of)),
            _ => None,
        };
        let failed = coded.is_err();
        let piece = Piece {
            seq: job.seq,
            data: job.data,
            crc,
            coded,
            fin: job.fin,
            key,
        };
        if out.send(piece).is_err() || failed {
            return;
        }
    }
}

/// Output loop: writes the header, the pieces in sequence and the trailer. Returns `out`
/// with where the recordable pieces landed, or the first error (which closes the queues
/// and so stops the producer and the workers).
fn write_in_order<W: Write>(
    mut out: W,
    pieces: &Receiver<Piece>,
    free: &SyncSender<Vec<u8>>,
) -> io::Result<Finished<W>> {
    out.write_all(&GZIP_HEADER)?;
    let mut pos = GZIP_HEADER.len() as u64;
    let mut index = Vec::new();
    let mut waiting: BTreeMap<u64, Piece> = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = Crc::new();
    let mut finished = false;
    while let Ok(p) = pieces.recv() {
        waiting.insert(p.seq, p);
        while let Some(p) = waiting.remove(&next) {
            let coded = p.coded?;
            out.write_all(&coded)?;
            if let (Some(key), Ok(len)) = (p.key, u32::try_from(coded.len())) {
                index.push(reuse::Piece {
                    key,
                    offset: pos,
                    len,
                    check: *blake3::hash(&coded).as_bytes(),
                });
            }
            pos += coded.len() as u64;
            crc.combine(&p.crc);
            finished |= p.fin;
            next += 1;
            // Never blocks: the channel holds as many buffers as exist.
            let _ = free.try_send(p.data);
        }
    }
    if !finished {
        return Err(io::Error::other("gzip stream ended before its last block"));
    }
    let mut trailer = [0u8; 8];
    trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
    trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
    out.write_all(&trailer)?;
    Ok((out, index))
}

/// The compressors for one block (see `compress_jobs`: never reused across blocks).
struct Coder {
    level: Compression,
    main: Compress,
    probe: Compress,
    probe_out: Vec<u8>,
}

impl Coder {
    fn new(level: Compression) -> Self {
        Coder {
            level,
            main: Compress::new(level, false),
            probe: Compress::new(Compression::fast(), false),
            // Room for the whole result: zlib-rs 0.6 level 1 panics when output runs out.
            probe_out: vec![0; PROBE * 2],
        }
    }

    /// Raw deflate of one block: ends with a sync flush (byte-aligned, not final) or, for
    /// the last block, with the final block marker.
    fn code(&mut self, dict: &[u8], data: &[u8], fin: bool) -> io::Result<Vec<u8>> {
        // Already-compressed content (archives, images, random data) is stored as is:
        // deflate would spend most of the time here and still grow it.
        if self.level.level() == 0 || data.is_empty() || self.incompressible(data)? {
            return Ok(stored(data, fin));
        }
        // A tar of many files mixes them within a block: the random ones are stored
        // segment by segment (deflate is slowest on exactly those bytes), the rest is
        // deflated with the 32 KiB before it as dictionary, as if nothing were cut.
        let plan = runs(&self.segment_plan(data)?, data.len());
        let mut out = Vec::with_capacity(data.len() / 2 + 4096);
        for (k, &(start, end, store)) in plan.iter().enumerate() {
            let last = fin && k + 1 == plan.len();
            if store {
                stored_into(&mut out, &data[start..end], last);
            } else if start == 0 {
                self.deflate_into(&mut out, dict, &data[start..end], last)?;
            } else {
                let d = window_before(dict, data, start);
                self.deflate_into(&mut out, &d, &data[start..end], last)?;
            }
        }
        Ok(out)
    }

    /// Appends the raw deflate of `data` (primed with `dict`) to `out`, ending with a sync
    /// flush, or with the final block when `fin`.
    fn deflate_into(
        &mut self,
        out: &mut Vec<u8>,
        dict: &[u8],
        data: &[u8],
        fin: bool,
    ) -> io::Result<()> {
        let c = &mut self.main;
        c.reset();
        if !dict.is_empty() {
            c.set_dictionary(dict).map_err(io::Error::other)?;
        }
        let flush = if fin {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        loop {
            if out.capacity() - out.len() < 4096 {
                out.reserve(out.capacity().max(64 << 10));
            }
            let consumed = c.total_in() as usize;
            let status = c
                .compress_vec(&data[consumed..], out, flush)
                .map_err(io::Error::other)?;
            let all_in = c.total_in() as usize == data.len();
            let done = if fin {
                status == Status::StreamEnd
            } else {
                // A sync flush is complete when it did not fill the output buffer.
                all_in && out.len() < out.capacity()
            };
            if done {
                return Ok(());
            }
        }
    }

    /// For each `PROBE`-sized segment of `data` (the last may be shorter): whether to store
    /// it. Depends only on the segment's bytes.
    fn segment_plan(&mut self, data: &[u8]) -> io::Result<Vec<bool>> {
        data.chunks(PROBE)
            .map(|s| {
                if s.len() < PROBE || !near_uniform(s) {
                    return Ok(false);
                }
                self.probe_fails(s)
            })
            .collect()
    }

    /// Whether level-1 deflate fails to shrink `s` by 3% (static codes cost uniform bytes
    /// nothing, so only repeats make it win).
    fn probe_fails(&mut self, s: &[u8]) -> io::Result<bool> {
        self.probe.reset();
        let status = self
            .probe
            .compress(s, &mut self.probe_out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        Ok(status != Status::StreamEnd || self.probe.total_out() as usize >= s.len() * 97 / 100)
    }

    /// Whether four 16 KiB samples spread over `data` all look incompressible. Depends
    /// only on the data, so output stays deterministic.
    fn incompressible(&mut self, data: &[u8]) -> io::Result<bool> {
        if data.len() < 16 * PROBE {
            return Ok(false);
        }
        let samples = (0..4).map(|k| &data[data.len() / 4 * k..][..PROBE]);
        // Skewed byte counts: Huffman coding alone gains; no need to try deflate.
        if !samples.clone().all(near_uniform) {
            return Ok(false);
        }
        // Near-uniform bytes can still repeat (a file copied twice): deflate must fail to
        // shrink each sample.
        for s in samples {
            if !self.probe_fails(s)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

const PROBE: usize = 16 << 10;

/// Whether the byte values in `s` are spread about evenly over all 256: the collision
/// count Σ c² is then close to n²/256 (random data: +0.4%; base64: ×4; text: ×10 and up).
/// Integer arithmetic, so the verdict is the same on every machine.
fn near_uniform(s: &[u8]) -> bool {
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let sum_sq: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    let n = s.len() as u64;
    // Σc²·256 < 1.1·n²  ⇔  Rényi entropy above ≈ 7.86 bits per byte.
    sum_sq * 256 * 10 < n * n * 11
}

/// `data` as raw deflate stored blocks (byte-aligned, like the sync flush that ends a
/// compressed block), the last one marked final when `fin`.
fn stored(data: &[u8], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + (data.len() / STORED_MAX + 1) * 5);
    stored_into(&mut out, data, fin);
    out
}

/// The most a stored block holds (its length field is 16 bits).
const STORED_MAX: usize = 65535;

fn stored_into(out: &mut Vec<u8>, data: &[u8], fin: bool) {
    if fin && data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    let mut chunks = data.chunks(STORED_MAX).peekable();
    while let Some(c) = chunks.next() {
        let last = fin && chunks.peek().is_none();
        let len = c.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
}

/// Joins the verdicts on the `PROBE`-sized segments of `len` bytes into runs
/// `(start, end, store)` of byte offsets.
fn runs(plan: &[bool], len: usize) -> Vec<(usize, usize, bool)> {
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    for (k, &store) in plan.iter().enumerate() {
        let (start, end) = (k * PROBE, ((k + 1) * PROBE).min(len));
        match out.last_mut() {
            Some(run) if run.2 == store => run.1 = end,
            _ => out.push((start, end, store)),
        }
    }
    out
}

/// The 32 KiB of the stream before `data[at..]`, reaching back into `dict` (the block
/// before) when `at` is near the start.
fn window_before(dict: &[u8], data: &[u8], at: usize) -> Vec<u8> {
    let from_data = &data[at.saturating_sub(WINDOW)..at];
    let need = WINDOW - from_data.len();
    let mut d = tail_n(dict, need).to_vec();
    d.extend_from_slice(from_data);
    d
}

fn tail_n(b: &[u8], n: usize) -> &[u8] {
    &b[b.len().saturating_sub(n)..]
}

#[cfg(test)]
mod tests;
