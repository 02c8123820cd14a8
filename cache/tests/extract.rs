//! Extraction safety: every escape attempt is refused by name and leaves nothing behind.

mod common;
use common::*;
use rbuild_cache::{CacheError, Layer, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// Extracts `entries` as one layer; the snapshot dir (and the store keeping it).
fn snapshot_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let snap = store
        .snapshot(&layer_of(&store, &raw_tar(entries), true))
        .unwrap();
    (root, snap)
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    // Debian's /var/run -> /run: a later entry through it lands at /run inside the root,
    // created when missing, and the link itself stays a link.
    let (_root, snap) = snapshot_of(&[
        ("var/", tar::EntryType::Directory, "", b""),
        ("var/run", L, "/run", b""),
        ("var/run/lock/", tar::EntryType::Directory, "", b""),
        ("var/run/utmp", F, "", b"u"),
        ("var/lock", L, "../run/lock", b""),
        ("var/lock/x", F, "", b"x"),
    ]);
    assert_eq!(std::fs::read(snap.join("run/utmp")).unwrap(), b"u");
    assert_eq!(std::fs::read(snap.join("run/lock/x")).unwrap(), b"x");
    assert!(snap.join("run/lock").symlink_metadata().unwrap().is_dir());
    assert_eq!(
        std::fs::read_link(snap.join("var/run")).unwrap(),
        PathBuf::from("/run")
    );
    let run = std::fs::metadata(snap.join("run")).unwrap();
    assert_eq!(run.permissions().mode() & 0o7777, 0o755);
}

#[test]
fn symlinks_pointing_outside_stay_inside() {
    // Hostile links: an absolute one, and one with more `..` than there are parents. Both
    // resolve as in a chroot at the snapshot, so the files land inside it.
    let host = tempfile::tempdir().unwrap();
    let h = host.path().to_str().unwrap().to_string();
    let (_root, snap) = snapshot_of(&[
        ("a", L, &h, b""),
        ("a/escape-abs", F, "", b"1"),
        ("d/", tar::EntryType::Directory, "", b""),
        ("d/b", L, "../../../../tmp", b""),
        ("d/b/rbuild-escape-test", F, "", b"2"),
        ("e/x", F, "", b"x"),
        ("e", L, "/etc", b""),
        ("e/passwd", F, "", b"owned"),
    ]);
    assert!(list(host.path()).is_empty(), "{:?}", list(host.path()));
    assert!(!Path::new("/tmp/rbuild-escape-test").exists());
    let inside = snap.join(h.trim_start_matches('/'));
    assert_eq!(std::fs::read(inside.join("escape-abs")).unwrap(), b"1");
    assert_eq!(
        std::fs::read(snap.join("tmp/rbuild-escape-test")).unwrap(),
        b"2"
    );
    assert_eq!(std::fs::read(snap.join("etc/passwd")).unwrap(), b"owned");
    assert_ne!(std::fs::read("/etc/passwd").unwrap(), b"owned");
}

#[test]
fn directory_replaced_by_a_symlink_out_is_not_chmodded_through_it() {
    // `d/` (0777) then `d -> HOSTDIR`: the directory's mode, applied at the end, must not
    // reach the host directory the link names.
    let host = tempfile::tempdir().unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let h = host.path().to_str().unwrap().to_string();
    let mut tar = Vec::new();
    let mut b = tar::Builder::new(&mut tar);
    let mut hd = tar::Header::new_ustar();
    hd.set_entry_type(tar::EntryType::Directory);
    hd.set_mode(0o777);
    hd.set_size(0);
    b.append_data(&mut hd, "d/", &b""[..]).unwrap();
    let mut hl = tar::Header::new_ustar();
    hl.set_entry_type(L);
    hl.set_size(0);
    b.append_link(&mut hl, "d", &h).unwrap();
    b.finish().unwrap();
    drop(b);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let snap = store.snapshot(&layer_of(&store, &tar, false)).unwrap();
    assert!(snap.join("d").symlink_metadata().unwrap().is_symlink());
    let m = std::fs::metadata(host.path()).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
}

#[test]
fn directory_replaced_on_a_resolved_path_is_resolved_again() {
    // `l -> d` is resolved once for `l/a`; then `d` becomes a link to a host directory.
    // `l/b` must follow the new link inside the snapshot, not the old resolution on the host.
    let host = tempfile::tempdir().unwrap();
    let h = host.path().to_str().unwrap().to_string();
    let (_root, snap) = snapshot_of(&[
        ("d/", tar::EntryType::Directory, "", b""),
        ("l", L, "d", b""),
        ("l/a", F, "", b"a"),
        ("d", L, &h, b""),
        ("l/b", F, "", b"b"),
    ]);
    assert!(list(host.path()).is_empty());
    assert_eq!(
        std::fs::read(snap.join(h.trim_start_matches('/')).join("b")).unwrap(),
        b"b"
    );
}

#[test]
fn refuses_hardlink_to_what_is_not_in_the_layer() {
    // Through an absolute link the target resolves inside the snapshot, where there is
    // no passwd: the host's file is never linked.
    assert_refused(
        &[("a", L, "/etc", b""), ("h", H, "a/passwd", b"")],
        "h",
        "not a file earlier in the layer",
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
}

/// vfs_cap_data revision 2, effective, permitted = cap_net_raw (as ping carries it).
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn device_nodes_fifos_hardlinks_and_xattrs_are_kept() {
    let mut tar = Vec::new();
    let mut b = tar::Builder::new(&mut tar);
    for (name, kind, major, minor) in [
        ("dev/null", tar::EntryType::Char, 1, 3),
        ("dev/loop9", tar::EntryType::Block, 7, 9),
        ("run/fifo", tar::EntryType::Fifo, 0, 0),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o620);
        h.set_uid(5);
        h.set_gid(6);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_size(0);
        b.append_data(&mut h, name, &b""[..]).unwrap();
    }
    b.append_pax_extensions([
        ("SCHILY.xattr.user.kept", &b"v1"[..]),
        ("SCHILY.xattr.security.capability", &CAP_NET_RAW[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o4755);
    h.set_size(3);
    b.append_data(&mut h, "bin/ping", &b"elf"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(H);
    h.set_size(0);
    b.append_link(&mut h, "bin/ping6", "bin/ping").unwrap();
    b.finish().unwrap();
    drop(b);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let snap = store.snapshot(&layer_of(&store, &tar, true)).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let null = std::fs::symlink_metadata(snap.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(
        (null.uid(), null.gid(), null.mode() & 0o7777),
        (5, 6, 0o620)
    );
    let blk = std::fs::symlink_metadata(snap.join("dev/loop9")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.rdev(), libc::makedev(7, 9));
    assert!(
        std::fs::symlink_metadata(snap.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let ping = std::fs::symlink_metadata(snap.join("bin/ping")).unwrap();
    assert_eq!(ping.mode() & 0o7777, 0o4755);
    assert_eq!(ping.nlink(), 2);
    assert_eq!(
        std::fs::symlink_metadata(snap.join("bin/ping6"))
            .unwrap()
            .ino(),
        ping.ino()
    );
    assert_eq!(
        get_xattr(&snap.join("bin/ping"), "user.kept").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        get_xattr(&snap.join("bin/ping"), "security.capability").as_deref(),
        Some(&CAP_NET_RAW[..])
    );
}

#[test]
fn unpack_tar_resolves_inside_its_destination_and_keeps_special_files() {
    // ADD's archive path: the same rules, whiteout names kept as plain files, --chown.
    let dest = tempfile::tempdir().unwrap();
    let mut tar = raw_tar(&[
        ("var/run", L, "/run", b""),
        ("var/run/x", F, "", b"x"),
        ("up", L, "../../..", b""),
        ("up/rbuild-escape-test", F, "", b"y"),
        (".wh.keep", F, "", b"w"),
    ]);
    tar.truncate(tar.len() - 1024);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(5).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    h.set_path("dev/zero").unwrap();
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[0u8; 1024]);
    rbuild_cache::unpack_tar(&tar[..], Path::new("a.tar"), dest.path(), Some((7, 8))).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_eq!(std::fs::read(dest.path().join("run/x")).unwrap(), b"x");
    assert_eq!(
        std::fs::read(dest.path().join("rbuild-escape-test")).unwrap(),
        b"y"
    );
    assert!(!Path::new("/tmp/rbuild-escape-test").exists());
    assert_eq!(std::fs::read(dest.path().join(".wh.keep")).unwrap(), b"w");
    let z = std::fs::symlink_metadata(dest.path().join("dev/zero")).unwrap();
    assert!(z.file_type().is_char_device());
    assert_eq!((z.rdev(), z.uid(), z.gid()), (libc::makedev(1, 5), 7, 8));
    let err = rbuild_cache::unpack_tar(
        &raw_tar(&[("../x", F, "", b"x")])[..],
        Path::new("a.tar"),
        dest.path(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("entry \"../x\""), "{err}");
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
