//! Tests of the parallel gzip writer: it round-trips, its bytes do not depend on the
//! thread count or on reused pieces, incompressible data is stored, errors reach the producer.

use super::*;
use std::io::Read;

fn gzip(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
    gzip_reusing(data, level, threads, None).0
}

fn gzip_reusing(
    data: &[u8],
    level: u32,
    threads: usize,
    reuse: Option<Arc<Reuse>>,
) -> (Vec<u8>, Vec<reuse::Piece>) {
    let mut z = ParGz::with_threads(Vec::new(), level, threads, reuse).unwrap();
    // Odd write sizes cross block boundaries.
    for chunk in data.chunks(333_333) {
        z.write_all(chunk).unwrap();
    }
    z.finish().unwrap()
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn round_trip(data: &[u8], level: u32) -> Vec<u8> {
    let gz = gzip(data, level, 2);
    let out = gunzip(&gz);
    assert_eq!(out.len(), data.len());
    assert!(out == data, "round trip differs at level {level}");
    gz
}

fn text(len: usize) -> Vec<u8> {
    let mut data = Vec::new();
    let mut x: u32 = 1;
    while data.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let w: &[u8] = [b"alpha ", &b"beta\n"[..], b"gamma ", b"0123"][(x >> 16) as usize % 4];
        data.extend_from_slice(w);
        if x.is_multiple_of(7) {
            data.push((x >> 8) as u8);
        }
    }
    data.truncate(len);
    data
}

fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    data
}

#[test]
fn round_trips_and_is_deterministic() {
    let data = text(5 * BLOCK + 12345);
    for level in [0, 1, 6] {
        let a = round_trip(&data, level);
        assert_eq!(a, round_trip(&data, level));
    }
    round_trip(&[], 1);
    round_trip(&data[..BLOCK], 1);
    round_trip(&data[..BLOCK * 2], 1);
    round_trip(&data[..BLOCK + 100], 1);
}

#[test]
fn output_does_not_depend_on_thread_count() {
    // Text, then random (stored), then text again, ending in a short block.
    let mut data = text(3 * BLOCK);
    data.extend_from_slice(&random(3 * BLOCK));
    data.extend_from_slice(&text(2 * BLOCK + 777));
    let one = gzip(&data, 2, 1);
    assert_eq!(gunzip(&one), data);
    for threads in [2, 3, 8] {
        assert!(gzip(&data, 2, threads) == one, "{threads} threads differ");
    }
}

#[test]
fn incompressible_blocks_are_stored_not_grown() {
    let data = random(3 * BLOCK);
    let mut c = Coder::new(Compression::new(2));
    assert!(c.incompressible(&data[..BLOCK]).unwrap());
    assert!(!c.incompressible(&vec![b'a'; BLOCK]).unwrap());
    // Random bytes repeated within the window: deflate finds the matches.
    let rep: Vec<u8> = data[..1000].iter().copied().cycle().take(BLOCK).collect();
    assert!(!c.incompressible(&rep).unwrap());
    let gz = round_trip(&data, 1);
    // Stored blocks cost 5 bytes per 64 KiB, plus header and trailer.
    assert!(
        gz.len() < data.len() + data.len() / 1000,
        "{} vs {}",
        gz.len(),
        data.len()
    );
}

/// `parts` stretches of 48 KiB (three segments), text and random by turns.
fn mixed(parts: usize) -> Vec<u8> {
    let (t, r) = (text((parts * 48) << 10), random((parts * 48) << 10));
    let mut data = Vec::new();
    for k in 0..parts {
        let src = if k % 2 == 0 { &t } else { &r };
        data.extend_from_slice(&src[k * (48 << 10)..][..48 << 10]);
    }
    data
}

#[test]
fn random_segments_of_a_mixed_block_are_stored() {
    let data = mixed(24);
    let mut c = Coder::new(Compression::new(2));
    assert!(!c.incompressible(&data[..BLOCK]).unwrap());
    let plan = c.segment_plan(&data[..BLOCK]).unwrap();
    let want: Vec<bool> = (0..64).map(|k| (k / 3) % 2 == 1).collect();
    assert_eq!(plan, want);
    // Random bytes repeated within a segment: deflate finds the matches.
    let r = random(1000);
    let rep: Vec<u8> = r.iter().copied().cycle().take(BLOCK).collect();
    assert!(c.segment_plan(&rep).unwrap().iter().all(|s| !s));
    // Stored random + deflated text, no worse than deflating it all.
    let gz = round_trip(&data, 2);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(2));
    e.write_all(&data).unwrap();
    let serial = e.finish().unwrap().len();
    assert!(gz.len() < serial + serial / 50, "{} vs {serial}", gz.len());
    assert!(gz.len() > data.len() / 2, "{}", gz.len());
    for threads in [1, 3] {
        assert!(gzip(&data, 2, threads) == gz, "{threads} threads differ");
    }
}

#[test]
fn reused_pieces_give_the_bytes_compression_gives() {
    let t = tempfile::tempdir().unwrap();
    let (idx, blobs) = (t.path().join("pieces"), t.path().join("blobs"));
    std::fs::create_dir(&blobs).unwrap();
    let mut data = text(6 * BLOCK + 999);
    data.extend_from_slice(&random(2 * BLOCK));
    let (first, pieces) = gzip_reusing(&data, 2, 2, None);
    // Text blocks and the last (short) one are recorded; stored random ones are not.
    assert_eq!(pieces.len(), 7, "{pieces:?}");
    std::fs::write(blobs.join("b1"), &first).unwrap();
    reuse::save_index(&idx, "b1", &pieces).unwrap();
    let r = Arc::new(Reuse::load(&idx, &blobs).unwrap());

    // The same data again: every recorded piece comes from the index.
    let (again, _) = gzip_reusing(&data, 2, 3, Some(Arc::clone(&r)));
    assert!(again == first);
    assert_eq!(r.hits(), 7);
    // One byte changed in block 3: blocks 3 and 4 (primed with its tail) differ, the
    // rest is found; the output is what fresh compression gives.
    let mut edited = data.clone();
    edited[3 * BLOCK + BLOCK - 10] ^= 0x20;
    let (fresh, _) = gzip_reusing(&edited, 2, 2, None);
    let (reused, _) = gzip_reusing(&edited, 2, 2, Some(Arc::clone(&r)));
    assert!(reused == fresh);
    assert_eq!(gunzip(&reused), edited);
    assert_eq!(r.hits(), 7 + 5);
    // Another level never matches pieces of level 2.
    let (l1, _) = gzip_reusing(&data, 1, 2, Some(r));
    assert!(l1 == gzip(&data, 1, 2));
}

/// A tar-like stream: zero-padded 512-byte headers, then text or random files of
/// assorted sizes, padded to 512.
fn tar_like(len: usize) -> Vec<u8> {
    let mut data = Vec::new();
    let (t, r) = (text(16 << 10), random(16 << 10));
    let mut x: u64 = 99;
    let mut k = 0usize;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut h = vec![0u8; 512];
        let name = format!("d{:02}/s{}/f{k}.txt", k % 20, k % 7);
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[257..262].copy_from_slice(b"ustar");
        data.extend_from_slice(&h);
        let size = (x % 9000 + 100) as usize;
        let src = if k % 5 < 3 { &t } else { &r };
        let off = (x >> 20) as usize % (src.len() - size);
        data.extend_from_slice(&src[off..off + size]);
        data.resize(data.len() + (512 - size % 512) % 512, 0);
        k += 1;
    }
    data.truncate(len);
    data
}

#[test]
fn each_block_is_deflated_as_if_alone() {
    // The deflate stream is exactly the blocks deflated by new compressors, one each,
    // whatever ran before on the same thread. A zlib-rs state reused across reset()
    // gave other bytes for some blocks of such data (stale window bytes).
    let data = tar_like(24 * BLOCK + 5000);
    let blocks: Vec<&[u8]> = data.chunks(BLOCK).collect();
    let mut want = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let dict = if i == 0 { &[][..] } else { tail(blocks[i - 1]) };
        let fin = i + 1 == blocks.len();
        want.extend(Coder::new(Compression::new(2)).code(dict, b, fin).unwrap());
    }
    for threads in [1, 2, 3] {
        let gz = gzip(&data, 2, threads);
        assert!(gz[10..gz.len() - 8] == want[..], "{threads} threads");
    }
    assert_eq!(gunzip(&gzip(&data, 2, 2)), data);
}

#[test]
fn runs_join_segments_and_end_at_the_data() {
    assert_eq!(runs(&[], 0), vec![]);
    assert_eq!(runs(&[false], 10), vec![(0, 10, false)]);
    assert_eq!(
        runs(&[true, true, false, true], 3 * PROBE + 5),
        vec![
            (0, 2 * PROBE, true),
            (2 * PROBE, 3 * PROBE, false),
            (3 * PROBE, 3 * PROBE + 5, true)
        ]
    );
}

#[test]
fn window_before_reaches_into_the_previous_block() {
    let dict: Vec<u8> = (0..WINDOW).map(|i| (i % 251) as u8).collect();
    let data: Vec<u8> = (0..2 * WINDOW).map(|i| (i % 241) as u8).collect();
    let w = window_before(&dict, &data, 100);
    assert_eq!(w.len(), WINDOW);
    assert_eq!(&w[..WINDOW - 100], &dict[100..]);
    assert_eq!(&w[WINDOW - 100..], &data[..100]);
    assert_eq!(
        window_before(&dict, &data, WINDOW + 7),
        &data[7..WINDOW + 7]
    );
    // The first block has no dictionary.
    assert_eq!(window_before(&[], &data, 5), &data[..5]);
}

#[test]
fn base64_like_data_is_compressed() {
    // 64 symbols, no repeats to speak of: no gain at level 1's static codes, but
    // Huffman coding saves a quarter.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data: Vec<u8> = random(2 * BLOCK)
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)])
        .collect();
    let mut c = Coder::new(Compression::new(2));
    assert!(!c.incompressible(&data[..BLOCK]).unwrap());
    let gz = round_trip(&data, 2);
    assert!(gz.len() < data.len() * 80 / 100, "{}", gz.len());
}

#[test]
fn stored_blocks_decode() {
    for len in [0, 1, 65535, 65536, 200_000] {
        let data = random(len);
        let mut raw = stored(&data[..len / 2], false);
        raw.extend_from_slice(&stored(&data[len / 2..], true));
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data, "len {len}");
    }
}

#[test]
fn write_error_reaches_the_producer() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut z = ParGz::with_threads(Full, 1, 2, None).unwrap();
    let data = text(64 * BLOCK);
    let err = z
        .write_all(&data)
        .and_then(|()| z.finish().map(|_| ()))
        .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
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

/// gzip of `entries`, each announced as a tar entry start.
fn gzip_entries(entries: &[Vec<u8>], reuse: Option<Arc<Reuse>>) -> (Vec<u8>, Vec<reuse::Piece>) {
    let mut z = ParGz::with_threads(Vec::new(), 2, 2, reuse).unwrap();
    for e in entries {
        z.entry_start().unwrap();
        for chunk in e.chunks(100_000) {
            z.write_all(chunk).unwrap();
        }
    }
    z.finish().unwrap()
}

#[test]
fn blocks_cut_at_entries_resync_after_a_file_grows() {
    let t = tempfile::tempdir().unwrap();
    let (idx, blobs) = (t.path().join("pieces"), t.path().join("blobs"));
    std::fs::create_dir(&blobs).unwrap();
    let source = text(4 * BLOCK);
    // 40 entries of 60–260 KiB, one of 3 MiB (cut inside it by size).
    let mut entries: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let len = (60 + (i * 37) % 200) << 10;
            source[i * 1000..i * 1000 + len].to_vec()
        })
        .collect();
    entries[20] = text(3 * BLOCK);
    let (first, pieces) = gzip_entries(&entries, None);
    assert_eq!(gunzip(&first), entries.concat());
    std::fs::write(blobs.join("b1"), &first).unwrap();
    reuse::save_index(&idx, "b1", &pieces).unwrap();
    let r = Arc::new(Reuse::load(&idx, &blobs).unwrap());

    // Entry 3 grows by 512 bytes: every block from the second cut after it on is the
    // earlier blob's again, and the bytes are what fresh compression gives.
    let mut grown = entries.clone();
    grown[3].extend_from_slice(&[b'x'; 512]);
    let (fresh, fresh_pieces) = gzip_entries(&grown, None);
    let (reused, _) = gzip_entries(&grown, Some(Arc::clone(&r)));
    assert!(reused == fresh);
    assert_eq!(gunzip(&reused), grown.concat());
    let blocks = fresh_pieces.len();
    assert!(blocks > 10, "{blocks} blocks");
    assert!(
        r.hits() >= blocks as u64 - 4,
        "{} of {blocks} blocks reused",
        r.hits()
    );
}
