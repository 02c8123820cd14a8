//! Context hashing at scale: 20,000 files / 400 MiB. Ignored by default (disk heavy);
//! run with `cargo test -p rbuild-solver --release --test context_perf -- --ignored --nocapture`.

use rbuild_graph::dockerignore::Patterns;
use rbuild_solver::context::{ContextHasher, Filter};
use std::time::{Duration, Instant};

#[test]
#[ignore]
fn twenty_thousand_files() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let chunk = vec![7u8; 20 * 1024];
    for d in 0..200 {
        let dir = ctx.path().join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}")), &chunk).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let empty = Patterns::default();
    let filter = Filter {
        ignore: &empty,
        copy_exclude: &empty,
    };
    let t = Instant::now();
    let h = ContextHasher::new(store.path());
    let d1 = h.digest(ctx.path(), ".", false, &filter).unwrap();
    h.save().unwrap();
    println!("cold: {:?} ({} files read)", t.elapsed(), h.files_read());

    let t = Instant::now();
    let h = ContextHasher::new(store.path());
    let d2 = h.digest(ctx.path(), ".", false, &filter).unwrap();
    h.save().unwrap();
    let warm = t.elapsed();
    println!("no-op: {warm:?} ({} files read)", h.files_read());
    assert_eq!(d1, d2);
    assert_eq!(h.files_read(), 0);

    std::fs::write(ctx.path().join("d5/f5"), b"changed").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let h = ContextHasher::new(store.path());
    let d3 = h.digest(ctx.path(), ".", false, &filter).unwrap();
    h.save().unwrap();
    println!(
        "one change: {:?} ({} files read)",
        t.elapsed(),
        h.files_read()
    );
    assert_ne!(d1, d3);
    assert_eq!(h.files_read(), 1);
}
