//! Flattened snapshots and squashed layers through the store: made once, named by chain
//! ID, reused, pruned with their chains; a squashed chain shows what the unsquashed one
//! shows, and the same layers squash to the same bytes. Real layers (commit_layer), as
//! root.

mod common;
use common::*;
use rbuild_cache::{CacheRecord, Layer, Store, chain_id};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Commits layer `i` of a test chain: `/l/f<i>`; layer 3 adds `/gone/a` and `/gone/b`,
/// layer 5 deletes `/gone/a` and `/l/f1`, layer 6 adds `/o/low`, layer 8 makes `/o`
/// opaque with `/o/high`.
fn commit(store: &Store, i: usize) -> Layer {
    let work = store.tmp_dir("test").unwrap();
    let u = work.path().join("u");
    std::fs::create_dir_all(u.join("l")).unwrap();
    std::fs::write(u.join(format!("l/f{i}")), format!("{i}")).unwrap();
    match i {
        3 => {
            std::fs::create_dir(u.join("gone")).unwrap();
            std::fs::write(u.join("gone/a"), "a").unwrap();
            std::fs::write(u.join("gone/b"), "b").unwrap();
        }
        5 => {
            std::fs::create_dir(u.join("gone")).unwrap();
            mknod_whiteout(&u.join("gone/a"));
            mknod_whiteout(&u.join("l/f1"));
        }
        6 => {
            std::fs::create_dir(u.join("o")).unwrap();
            std::fs::write(u.join("o/low"), "l").unwrap();
        }
        8 => {
            std::fs::create_dir(u.join("o")).unwrap();
            set_xattr(&u.join("o"), "trusted.overlay.opaque", b"y");
            std::fs::write(u.join("o/high"), "h").unwrap();
        }
        _ => {}
    }
    fix_times(&u);
    store.commit_layer(&u).unwrap().expect("a layer")
}

/// Gives every entry below `dir` the same mtime, so layers made twice are identical.
fn fix_times(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let c = std::ffi::CString::new(e.unwrap().path().as_os_str().as_encoded_bytes()).unwrap();
        let t = libc::timespec {
            tv_sec: 1_700_000_000,
            tv_nsec: 0,
        };
        // SAFETY: a NUL-terminated path and two timespecs, live for the call.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                [t, t].as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(rc, 0);
    }
}

fn chain(store: &Store, n: usize) -> Vec<Layer> {
    (0..n).map(|i| commit(store, i)).collect()
}

/// Every entry below `dir`: path, mode, owner, content or link target.
fn tree(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let body = if m.is_file() {
                std::fs::read_to_string(e.path()).unwrap()
            } else {
                String::new()
            };
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            format!("{rel} {:o} {}:{} {body}", m.mode(), m.uid(), m.gid())
        })
        .collect()
}

fn hex(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap()
}

#[test]
fn a_long_chain_mounts_over_a_flattened_prefix_made_once() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let layers = chain(&store, 10);
    // At most 4 lower dirs: the step is 3, so 9 layers are flattened, 1 stays.
    let lowers = store.mount_lowers(&layers, 4).unwrap();
    assert_eq!(lowers.len(), 2);
    let id = chain_id(layers[..9].iter().map(|l| l.diff_id.as_str()))
        .unwrap()
        .unwrap();
    assert_eq!(lowers[0], root.path().join("flattened").join(hex(&id)));
    assert_eq!(lowers[1], store.snapshot(&layers[9]).unwrap());
    // Made from the 6-layer prefix (flattened too) and 3 more layers.
    let six = chain_id(layers[..6].iter().map(|l| l.diff_id.as_str()))
        .unwrap()
        .unwrap();
    assert!(root.path().join("flattened").join(hex(&six)).is_dir());
    let flat = tree(&lowers[0]);
    let names: Vec<&str> = flat.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "gone", "gone/b", "l", "l/f0", "l/f2", "l/f3", "l/f4", "l/f5", "l/f6", "l/f7", "l/f8",
            "o", "o/high"
        ]
    );
    assert!(
        !flat.iter().any(|l| l.contains("trusted")),
        "no overlay marks"
    );
    // Reused, not made again: same inode.
    let ino = std::fs::metadata(&lowers[0]).unwrap().ino();
    let again = store.mount_lowers(&layers, 4).unwrap();
    assert_eq!(again, lowers);
    assert_eq!(std::fs::metadata(&again[0]).unwrap().ino(), ino);
    // A chain that fits is left alone.
    assert_eq!(store.mount_lowers(&layers[..4], 4).unwrap().len(), 4);

    // Prune keeps what a record's chain starts with, and drops it with the record.
    store
        .record_put(
            "k",
            &CacheRecord {
                layers: layers.clone(),
                config: None,
                created: 0,
            },
        )
        .unwrap();
    // (Pruned from another handle: this one leases what it made while it lives.)
    drop(store);
    let store = Store::open(root.path()).unwrap();
    store.prune(&Default::default()).unwrap();
    assert!(lowers[0].is_dir());
    store
        .prune(&rbuild_cache::PruneOptions {
            all: true,
            ..Default::default()
        })
        .unwrap();
    assert!(!lowers[0].exists());
    assert!(!root.path().join("flattened").join(hex(&six)).exists());
}

#[test]
fn squashed_chain_shows_the_same_tree_and_has_stable_bytes() {
    let (r1, r2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (
        Store::open(r1.path()).unwrap(),
        Store::open(r2.path()).unwrap(),
    );
    let (c1, c2) = (chain(&s1, 10), chain(&s2, 10));
    // Base: the first 4 layers (the deleted /gone/a and /l/f1 are in it).
    let q1 = s1.squash(&c1, 4).unwrap();
    assert_eq!(q1.len(), 5);
    assert_eq!(q1[..4], c1[..4]);
    // Everything flattened into one dir (max 1 lower) is the merged view.
    let view = |s: &Store, c: &[Layer]| -> Vec<String> {
        let l: Vec<PathBuf> = s.mount_lowers(c, 1).unwrap();
        tree(&l[0])
    };
    assert_eq!(view(&s1, &q1), view(&s1, &c1));
    assert!(!view(&s1, &q1).iter().any(|l| l.starts_with("gone/a ")));
    // Deterministic: another store squashes its own identical layers to the same blob;
    // the same store answers from its record.
    let q2 = s2.squash(&c2, 4).unwrap();
    assert_eq!(q1, q2);
    assert_eq!(s1.squash(&c1, 4).unwrap(), q1);
    // Nothing to merge: a chain with one layer above the base stays as it is.
    assert_eq!(s1.squash(&c1[..5], 4).unwrap(), c1[..5]);
}
