//! Extraction safety: every escape attempt is refused by name and leaves nothing behind.

mod common;
use common::*;
use rbuild_cache::{CacheError, Layer, Store};

/// A tar with raw (unvalidated) names, the way a hostile layer would be built.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            u.name[..name.len()].copy_from_slice(name.as_bytes());
            u.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn layer_of(store: &Store, tar_bytes: &[u8], gzip: bool) -> Layer {
    let blob = if gzip {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(tar_bytes).unwrap();
        e.finish().unwrap()
    } else {
        tar_bytes.to_vec()
    };
    let digest = store.put_blob(&blob).unwrap();
    Layer {
        digest,
        diff_id: sha256(tar_bytes),
        size: blob.len() as u64,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    }
}

fn assert_refused(entries: &[(&str, tar::EntryType, &str, &[u8])], entry: &str, reason: &str) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let layer = layer_of(&store, &raw_tar(entries), true);
    let err = store.snapshot(&layer).unwrap_err();
    assert!(matches!(err, CacheError::UnsafeEntry { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("entry {entry:?}")), "{msg}");
    assert!(msg.contains(reason), "{msg}");
    assert!(list(&root.path().join("snapshots")).is_empty());
    assert!(list(&root.path().join("tmp")).is_empty());
    assert!(!std::path::Path::new("/tmp/rbuild-escape-test").exists());
}

const F: tar::EntryType = tar::EntryType::Regular;
const L: tar::EntryType = tar::EntryType::Symlink;
const H: tar::EntryType = tar::EntryType::Link;

#[test]
fn refuses_dotdot() {
    assert_refused(&[("../x", F, "", b"x")], "../x", "'..' component");
    assert_refused(&[("a/../../x", F, "", b"x")], "a/../../x", "'..' component");
}

#[test]
fn refuses_absolute() {
    assert_refused(
        &[("/tmp/rbuild-escape-test", F, "", b"x")],
        "/tmp/rbuild-escape-test",
        "absolute path",
    );
}

#[test]
fn refuses_write_through_escaping_symlink() {
    assert_refused(
        &[
            ("a", L, "/etc", b""),
            ("a/passwd", F, "", b"root::0:0::/:/bin/sh\n"),
        ],
        "a/passwd",
        "symlink a -> /etc",
    );
    assert_refused(
        &[
            ("d/", tar::EntryType::Directory, "", b""),
            ("d/b", L, "../../../../tmp", b""),
            ("d/b/rbuild-escape-test", F, "", b"x"),
        ],
        "d/b/rbuild-escape-test",
        "points outside the destination",
    );
}

#[test]
fn refuses_dir_replaced_by_escaping_symlink() {
    assert_refused(
        &[
            ("d/x", F, "", b"x"),
            ("d", L, "/etc", b""),
            ("d/passwd", F, "", b"owned"),
        ],
        "d/passwd",
        "symlink d -> /etc",
    );
}

#[test]
fn refuses_hardlink_outside() {
    assert_refused(
        &[("h", H, "../../etc/passwd", b"")],
        "h",
        "hardlink whose target",
    );
    assert_refused(&[("h", H, "/etc/passwd", b"")], "h", "absolute path");
    assert_refused(
        &[("a", L, "/etc", b""), ("h", H, "a/passwd", b"")],
        "h",
        "symlink a -> /etc",
    );
}

#[test]
fn follows_symlinks_that_stay_inside_and_converts_whiteouts() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let entries: &[(&str, tar::EntryType, &str, &[u8])] = &[
        ("usr/lib/", tar::EntryType::Directory, "", b""),
        ("lib", L, "usr/lib", b""),
        ("lib/x", F, "", b"inside"),
        ("usr/.wh.old", F, "", b""),
        ("usr/lib/.wh..wh..opq", F, "", b""),
        ("usr/y", H, "lib/x", b""),
    ];
    let layer = layer_of(&store, &raw_tar(entries), false);
    let snap = store.snapshot(&layer).unwrap();
    assert_eq!(std::fs::read(snap.join("usr/lib/x")).unwrap(), b"inside");
    assert_eq!(std::fs::read(snap.join("usr/y")).unwrap(), b"inside");
    let wh = std::fs::symlink_metadata(snap.join("usr/old")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(std::os::unix::fs::MetadataExt::rdev(&wh), 0);
    assert!(!snap.join("usr/.wh.old").exists());
    assert_eq!(
        get_xattr(&snap.join("usr/lib"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(list(&root.path().join("tmp")).is_empty());
    // Second call: same dir, no re-extraction.
    assert_eq!(store.snapshot(&layer).unwrap(), snap);
}

#[test]
fn whiteout_then_directory_in_one_layer_becomes_opaque() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let entries: &[(&str, tar::EntryType, &str, &[u8])] = &[
        (".wh.d", F, "", b""),
        ("d/", tar::EntryType::Directory, "", b""),
        ("d/new", F, "", b"n"),
        (".wh.f", F, "", b""),
        ("f", F, "", b"file"),
    ];
    let snap = store
        .snapshot(&layer_of(&store, &raw_tar(entries), true))
        .unwrap();
    assert_eq!(
        get_xattr(&snap.join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(std::fs::read(snap.join("d/new")).unwrap(), b"n");
    assert_eq!(std::fs::read(snap.join("f")).unwrap(), b"file");
}

#[test]
fn wrong_diff_id_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut layer = layer_of(&store, &raw_tar(&[("f", F, "", b"x")]), true);
    layer.diff_id = format!("sha256:{}", "0".repeat(64));
    let err = store.snapshot(&layer).unwrap_err();
    assert!(err.to_string().contains("diff_id"), "{err}");
    assert!(list(&root.path().join("snapshots")).is_empty());
    assert!(list(&root.path().join("tmp")).is_empty());
}

#[test]
fn stale_tmp_of_dead_process_is_removed_at_open() {
    let root = tempfile::tempdir().unwrap();
    drop(Store::open(root.path()).unwrap());
    // pid 0x7ffffffe is never a live process here; ours is.
    let dead = root.path().join("tmp/.rb2147483646-extract-abc");
    let live = root
        .path()
        .join(format!("tmp/.rb{}-extract-abc", std::process::id()));
    std::fs::create_dir_all(dead.join("sub")).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let blob_tmp = root.path().join("oci/blobs/sha256/.rb2147483646-x");
    std::fs::write(&blob_tmp, b"half").unwrap();
    Store::open(root.path()).unwrap();
    assert!(!dead.exists());
    assert!(!blob_tmp.exists());
    assert!(live.exists());
}

#[test]
fn records_round_trip_and_stale_records_miss() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let layer = layer_of(&store, &raw_tar(&[("f", F, "", b"x")]), true);
    let rec = rbuild_cache::CacheRecord {
        layers: vec![layer.clone()],
        config: None,
        created: 5,
    };
    assert_eq!(store.record_get("abc123").unwrap(), None);
    store.record_put("abc123", &rec).unwrap();
    assert_eq!(store.record_get("abc123").unwrap(), Some(rec));
    assert!(matches!(
        store.record_get("../x"),
        Err(CacheError::InvalidKey(_))
    ));
    std::fs::remove_file(store.blob_path(&layer.digest)).unwrap();
    assert_eq!(store.record_get("abc123").unwrap(), None);
}

/// Moves the mtime of every file in `dir` back by `secs`.
fn age_files(dir: &std::path::Path, secs: u64) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let f = std::fs::File::options().write(true).open(e.path()).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
            .unwrap();
    }
}

#[test]
fn prune_keeps_what_records_reference_and_what_running_builds_lease() {
    let root = tempfile::tempdir().unwrap();
    let maker = Store::open(root.path()).unwrap();
    let kept = layer_of(&maker, &raw_tar(&[("k", F, "", b"keep")]), true);
    let old = layer_of(&maker, &raw_tar(&[("o", F, "", b"old")]), true);
    let loose = layer_of(&maker, &raw_tar(&[("l", F, "", b"loose")]), true);
    for l in [&kept, &old, &loose] {
        maker.snapshot(l).unwrap();
    }
    let rec = |l: &Layer| rbuild_cache::CacheRecord {
        layers: vec![l.clone()],
        config: None,
        created: 1,
    };
    maker.record_put("kept", &rec(&kept)).unwrap();
    maker.record_put("old", &rec(&old)).unwrap();
    // Everything the making process touched is leased while it lives.
    let store = Store::open(root.path()).unwrap();
    let all = rbuild_cache::PruneOptions {
        all: true,
        ..Default::default()
    };
    assert_eq!(store.prune(&all).unwrap().swept.bytes, 0);
    assert!(store.has_blob(&loose.digest));
    drop(maker);

    // "old" was last used an hour ago (its record and the use log that names it).
    let old_file = root.path().join("records/old.json");
    age_files(&root.path().join("leases"), 3600);
    age_files(&root.path().join("records"), 3600);
    // A running build uses "kept" now.
    let user = Store::open(root.path()).unwrap();
    assert!(user.record_get("kept").unwrap().is_some());
    let report = store
        .prune(&rbuild_cache::PruneOptions {
            until: Some(std::time::Duration::from_secs(600)),
            ..Default::default()
        })
        .unwrap();
    assert!(report.swept.bytes > 0);
    assert_eq!(report.swept.records, 1);
    assert!(store.has_blob(&kept.digest));
    assert!(!store.has_blob(&old.digest) && !store.has_blob(&loose.digest));
    assert!(store.snapshot_path(&kept.diff_id).unwrap().is_dir());
    assert!(!store.snapshot_path(&old.diff_id).unwrap().exists());
    assert!(!store.snapshot_path(&loose.diff_id).unwrap().exists());
    assert!(!old_file.exists());
    // --all leaves what the running build leases, then takes it once that build ends.
    store.prune(&all).unwrap();
    assert!(store.has_blob(&kept.digest));
    drop(user);
    store.prune(&all).unwrap();
    assert!(list(&root.path().join("oci/blobs/sha256")).is_empty());
    assert!(list(&root.path().join("records")).is_empty());
    assert!(list(&root.path().join("snapshots")).is_empty());
}

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
}

#[test]
fn truncated_blob_is_an_error_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let tar_bytes = raw_tar(&[("a", F, "", &big[..]), ("b", F, "", b"b")]);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &tar_bytes).unwrap();
    let gz = e.finish().unwrap();
    let cut = &gz[..gz.len() / 2];
    let layer = Layer {
        digest: store.put_blob(cut).unwrap(),
        diff_id: sha256(&tar_bytes),
        size: cut.len() as u64,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
    };
    let err = store.snapshot(&layer).unwrap_err();
    assert!(matches!(err, CacheError::Io { .. }), "{err:?}");
    assert!(list(&root.path().join("snapshots")).is_empty());
    assert!(list(&root.path().join("tmp")).is_empty());
}
