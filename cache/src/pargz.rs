//! Parallel gzip in the manner of pigz: the stream is cut into fixed blocks, each deflated
//! on its own thread primed with the previous 32 KiB as dictionary (so the ratio stays that
//! of serial gzip), and the pieces are joined into one deflate stream. Block boundaries are
//! fixed, so the output bytes do not depend on the number of threads.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::io::{self, Write};

const BLOCK: usize = 1 << 20;
const WINDOW: usize = 32 << 10;

pub(crate) struct ParGz<W: Write> {
    out: W,
    level: Compression,
    /// Blocks compressed per round (2 per thread, to smooth out uneven blocks).
    batch: usize,
    cur: Vec<u8>,
    full: Vec<Vec<u8>>,
    /// The last (up to) 32 KiB of data before `full[0]`.
    dict: Vec<u8>,
    crc: Crc,
    started: bool,
}

impl<W: Write> ParGz<W> {
    pub fn new(out: W, level: u32) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(16);
        ParGz {
            out,
            level: Compression::new(level.min(9)),
            batch: threads * 2,
            cur: Vec::with_capacity(BLOCK),
            full: Vec::new(),
            dict: Vec::new(),
            crc: Crc::new(),
            started: false,
        }
    }

    /// Ends the stream (final block and gzip trailer) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let last = std::mem::take(&mut self.cur);
        self.full.push(last);
        self.compress_batch(true)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer)?;
        Ok(self.out)
    }

    fn compress_batch(&mut self, last: bool) -> io::Result<()> {
        if !self.started {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown: deterministic.
            self.out
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            self.started = true;
        }
        let blocks = std::mem::take(&mut self.full);
        let n = blocks.len();
        let level = self.level;
        let dict0 = &self.dict;
        let results: Vec<io::Result<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = blocks
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let dict: &[u8] = if i == 0 { dict0 } else { tail(&blocks[i - 1]) };
                    let fin = last && i + 1 == n;
                    s.spawn(move || deflate_block(level, dict, b, fin))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("compression thread panicked")))
                })
                .collect()
        });
        for (b, r) in blocks.iter().zip(results) {
            self.crc.update(b);
            self.out.write_all(&r?)?;
        }
        // The next batch's first block refers back into the end of this one.
        let mut dict = Vec::with_capacity(WINDOW);
        let mut need = WINDOW;
        for b in blocks.iter().rev() {
            let t = &b[b.len().saturating_sub(need)..];
            dict.splice(0..0, t.iter().copied());
            need -= t.len();
            if need == 0 {
                break;
            }
        }
        if need > 0 {
            let old = &self.dict[self.dict.len().saturating_sub(need)..];
            dict.splice(0..0, old.iter().copied());
        }
        self.dict = dict;
        Ok(())
    }
}

fn tail(b: &[u8]) -> &[u8] {
    &b[b.len().saturating_sub(WINDOW)..]
}

/// Raw deflate of one block: ends with a sync flush (byte-aligned, not final) or, for the
/// last block, with the final block marker.
fn deflate_block(level: Compression, dict: &[u8], data: &[u8], fin: bool) -> io::Result<Vec<u8>> {
    // Already-compressed content (archives, images, random data) is stored as is: deflate
    // would spend most of the time here and still grow it.
    let level = if incompressible(data)? {
        Compression::none()
    } else {
        level
    };
    let mut c = Compress::new(level, false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
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
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        let done = if fin {
            status == Status::StreamEnd
        } else {
            // A sync flush is complete when it did not fill the output buffer.
            all_in && out.len() < out.capacity()
        };
        if done {
            return Ok(out);
        }
    }
}

/// Whether four 16 KiB samples spread over `data` all fail to shrink by 3% at level 1.
/// Depends only on the data, so output stays deterministic.
fn incompressible(data: &[u8]) -> io::Result<bool> {
    const SAMPLE: usize = 16 << 10;
    if data.len() < 16 * SAMPLE {
        return Ok(false);
    }
    for k in 0..4 {
        let off = data.len() / 4 * k;
        let mut e =
            flate2::write::DeflateEncoder::new(Vec::with_capacity(SAMPLE * 2), Compression::fast());
        e.write_all(&data[off..off + SAMPLE])?;
        if e.finish()?.len() * 100 < SAMPLE * 97 {
            return Ok(false);
        }
    }
    Ok(true)
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (BLOCK - self.cur.len()).min(buf.len());
        self.cur.extend_from_slice(&buf[..n]);
        if self.cur.len() == BLOCK {
            let b = std::mem::replace(&mut self.cur, Vec::with_capacity(BLOCK));
            self.full.push(b);
            if self.full.len() >= self.batch {
                self.compress_batch(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are only cut at fixed boundaries, so the output stays deterministic.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(data: &[u8], level: u32) -> Vec<u8> {
        let mut z = ParGz::new(Vec::new(), level);
        // Odd write sizes cross block boundaries.
        for chunk in data.chunks(333_333) {
            z.write_all(chunk).unwrap();
        }
        let gz = z.finish().unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out == data, "round trip differs at level {level}");
        gz
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let mut data = Vec::new();
        let mut x: u32 = 1;
        while data.len() < 5 * BLOCK + 12345 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let w: &[u8] = [b"alpha ", &b"beta\n"[..], b"gamma ", b"0123"][(x >> 16) as usize % 4];
            data.extend_from_slice(w);
            if x.is_multiple_of(7) {
                data.push((x >> 8) as u8);
            }
        }
        for level in [0, 1, 6] {
            let a = round_trip(&data, level);
            assert_eq!(a, round_trip(&data, level));
        }
        round_trip(&[], 1);
        round_trip(&data[..BLOCK], 1);
        round_trip(&data[..BLOCK * 2], 1);
    }

    #[test]
    fn incompressible_blocks_are_stored_not_grown() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut data = Vec::with_capacity(3 * BLOCK);
        while data.len() < 3 * BLOCK {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        assert!(incompressible(&data[..BLOCK]).unwrap());
        assert!(!incompressible(&vec![b'a'; BLOCK]).unwrap());
        let gz = round_trip(&data, 1);
        // Stored blocks cost 5 bytes per 64 KiB, plus header and trailer.
        assert!(
            gz.len() < data.len() + data.len() / 1000,
            "{} vs {}",
            gz.len(),
            data.len()
        );
    }

    #[test]
    fn dictionary_keeps_ratio_close_to_serial() {
        let line = b"the same line of text repeated across block boundaries\n";
        let data: Vec<u8> = line.iter().copied().cycle().take(4 * BLOCK).collect();
        let par = round_trip(&data, 6).len();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(&data).unwrap();
        let ser = e.finish().unwrap().len();
        assert!(par < ser * 2 + 256, "parallel {par} vs serial {ser}");
    }
}
