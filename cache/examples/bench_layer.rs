//! Measures commit_layer (tar+sha256+gzip+sha256 in one pass) and snapshot extraction.
//! Usage: cargo run -p rbuild-cache --example bench_layer -- [MiB] [dir]
//! Env: LEVELS=1,6 (gzip levels), KINDS=text,yes,random,mixed (file contents; mixed
//! interleaves 8 KiB of text and 8 KiB of random bytes, as a tar of small files does).

use rbuild_cache::Store;
use std::io::Write;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let kinds = std::env::var("KINDS").unwrap_or_else(|_| "text,yes,random".into());
    for kind in kinds.split(',') {
        for level in levels() {
            let root = tempfile::tempdir_in(&base).expect("temp root");
            let store = Store::open(root.path()).expect("open");
            store.set_gzip_level(level);
            let work = store.tmp_dir("bench").expect("tmp");
            let upper = work.path().join("upper");
            std::fs::create_dir(&upper).expect("mkdir");
            write_data(&upper.join("big"), mib, kind);
            let t = Instant::now();
            let c = cpu_secs();
            let layer = store.commit_layer(&upper).expect("commit").expect("layer");
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_secs() - c;
            let ratio = layer.size as f64 / (mib as f64 * 1048576.0);
            println!(
                "{kind:6} gzip L{level}: commit {mib} MiB in {secs:.2}s = {:.0} MB/s wall, {:.0} MB/s per CPU-second, ratio {ratio:.3}, {}",
                mib as f64 * 1.048576 / secs,
                mib as f64 * 1.048576 / cpu,
                &layer.digest[..19]
            );
            // Extraction from the blob (the snapshot exists, so extract elsewhere).
            let dest = work.path().join("x");
            let t = Instant::now();
            let c = cpu_secs();
            rbuild_cache::extract_layer(&store.blob_path(&layer.digest), &dest).expect("extract");
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_secs() - c;
            println!(
                "{kind:6} gzip L{level}: extract in {secs:.2}s = {:.0} MB/s wall, {:.0} MB/s per CPU-second",
                mib as f64 * 1.048576 / secs,
                mib as f64 * 1.048576 / cpu
            );
        }
    }
}

fn write_data(p: &std::path::Path, mib: usize, kind: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let words = [
        "alpha ",
        "beta ",
        "gamma ",
        "delta\n",
        "lib",
        "usr/",
        "0x1f ",
        "{\"k\": 1}\n",
    ];
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        let mut i = 0;
        while i < chunk.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if kind == "yes" {
                // What `yes | head -c N` writes.
                chunk[i] = if i % 2 == 0 { b'y' } else { b'\n' };
                i += 1;
            } else if kind == "random" || (kind == "mixed" && (i >> 13) % 2 == 1) {
                let b = x.to_le_bytes();
                let n = b.len().min(chunk.len() - i);
                chunk[i..i + n].copy_from_slice(&b[..n]);
                i += n;
            } else {
                let w = words[(x % words.len() as u64) as usize].as_bytes();
                let n = w.len().min(chunk.len() - i);
                chunk[i..i + n].copy_from_slice(&w[..n]);
                i += n;
            }
        }
        f.write_all(&chunk).expect("write");
    }
    f.flush().expect("flush");
    // A fixed mtime: the tar, and so the digests printed, depend only on the content.
    let f = f.into_inner().expect("flush");
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000))
        .expect("set mtime");
}

fn levels() -> Vec<u32> {
    std::env::var("LEVELS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 6])
}

/// User + system CPU seconds of this process, all threads.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}
