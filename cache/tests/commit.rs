//! commit_layer of a hand-made overlay upper dir, read back with the tar crate.

mod common;
use common::*;
use rbuild_cache::Store;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn make_upper(upper: &std::path::Path) {
    std::fs::create_dir_all(upper.join("etc/app")).unwrap();
    std::fs::write(upper.join("etc/app/conf"), b"hello\n").unwrap();
    std::fs::set_permissions(
        upper.join("etc/app/conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::chown(upper.join("etc/app/conf"), Some(1000), Some(2000)).unwrap();
    std::os::unix::fs::symlink("app/conf", upper.join("etc/link")).unwrap();
    std::fs::hard_link(upper.join("etc/app/conf"), upper.join("etc/hard")).unwrap();
    mknod_whiteout(&upper.join("etc/gone"));
    std::fs::create_dir(upper.join("opq")).unwrap();
    set_xattr(&upper.join("opq"), "trusted.overlay.opaque", b"y");
    std::fs::write(upper.join("opq/new"), b"n").unwrap();
    std::fs::write(upper.join("top"), vec![7u8; 70_000]).unwrap();
    std::fs::set_permissions(upper.join("top"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    set_xattr(&upper.join("top"), "user.note", b"kept");
}

#[test]
fn commit_layer_writes_exact_tar_and_moves_upper() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let work = store.tmp_dir("test").unwrap();
    let upper = work.path().join("upper");
    make_upper(&upper);

    let layer = store.commit_layer(&upper).unwrap().expect("a layer");
    assert!(!upper.exists(), "upper must have been moved");
    let blob = store.blob_path(&layer.digest);
    assert_eq!(sha256_file(&blob), layer.digest);
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), layer.size);
    let tar_bytes = gunzip(&blob);
    assert_eq!(sha256(&tar_bytes), layer.diff_id);

    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut got = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                xattrs.push(format!(
                    "{}={}",
                    x.key().unwrap(),
                    String::from_utf8_lossy(x.value_bytes())
                ));
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        got.push((
            path,
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            link,
            xattrs,
            data.len(),
        ));
    }
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/app/",
            "etc/app/conf",
            ".wh.gone",
            "etc/hard",
            "etc/link",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/new",
            "top"
        ]
        .iter()
        .map(|n| if *n == ".wh.gone" { "etc/.wh.gone" } else { n })
        .collect::<Vec<_>>()
    );
    let by = |n: &str| got.iter().find(|g| g.0 == n).unwrap().clone();
    let conf = by("etc/app/conf");
    assert_eq!(
        (conf.1, conf.2, conf.3, conf.4, conf.7),
        (tar::EntryType::Regular, 0o640, 1000, 2000, 6)
    );
    let hard = by("etc/hard");
    assert_eq!(
        (hard.1, hard.5.as_deref()),
        (tar::EntryType::Link, Some("etc/app/conf"))
    );
    let link = by("etc/link");
    assert_eq!(
        (link.1, link.5.as_deref()),
        (tar::EntryType::Symlink, Some("app/conf"))
    );
    let wh = by("etc/.wh.gone");
    assert_eq!((wh.1, wh.7), (tar::EntryType::Regular, 0));
    let opq = by("opq/");
    assert_eq!(opq.1, tar::EntryType::Directory);
    assert!(
        opq.6.is_empty(),
        "overlay xattrs must not leak into the layer: {:?}",
        opq.6
    );
    assert_eq!(by("opq/.wh..wh..opq").1, tar::EntryType::Regular);
    let top = by("top");
    assert_eq!((top.2, top.7), (0o4755, 70_000));
    assert_eq!(top.6, vec!["SCHILY.xattr.user.note=kept".to_string()]);

    // The snapshot is the moved upper dir, still in overlay form.
    let snap = store.snapshot(&layer).unwrap();
    assert_eq!(
        snap,
        root.path().join("snapshots").join(&layer.diff_id[7..27])
    );
    let wh = std::fs::symlink_metadata(snap.join("etc/gone")).unwrap();
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        get_xattr(&snap.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn long_names_big_ids_and_multi_block_files_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let work = store.tmp_dir("test").unwrap();
    let upper = work.path().join("upper");
    let deep = upper
        .join("d".repeat(60))
        .join("e".repeat(60))
        .join("f".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let big: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(deep.join("big"), &big).unwrap();
    std::os::unix::fs::chown(deep.join("big"), Some(3_000_000), Some(4_000_000)).unwrap();
    let long_target = format!("../{}/x", "t".repeat(120));
    std::os::unix::fs::symlink(&long_target, upper.join("ln")).unwrap();
    let layer = store.commit_layer(&upper).unwrap().unwrap();
    assert_eq!(
        sha256(&gunzip(&store.blob_path(&layer.digest))),
        layer.diff_id
    );
    let dest = work.path().join("x");
    rbuild_cache::extract_layer(&store.blob_path(&layer.digest), &dest).unwrap();
    let rel = deep.strip_prefix(&upper).unwrap();
    let got = dest.join(rel).join("big");
    assert_eq!(std::fs::read(&got).unwrap(), big);
    let m = std::fs::metadata(&got).unwrap();
    assert_eq!((m.uid(), m.gid()), (3_000_000, 4_000_000));
    assert_eq!(
        std::fs::read_link(dest.join("ln")).unwrap().to_str(),
        Some(long_target.as_str())
    );
}

#[test]
fn empty_upper_is_no_layer() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let work = store.tmp_dir("test").unwrap();
    assert_eq!(store.commit_layer(work.path()).unwrap(), None);
    assert!(work.path().is_dir());
}

#[test]
fn extract_round_trip_matches_commit() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let work = store.tmp_dir("test").unwrap();
    let upper = work.path().join("upper");
    make_upper(&upper);
    let layer = store.commit_layer(&upper).unwrap().unwrap();
    // Extract the blob elsewhere and compare with the snapshot.
    let dest = work.path().join("x");
    std::fs::create_dir(&dest).unwrap();
    rbuild_cache::extract_layer(&store.blob_path(&layer.digest), &dest).unwrap();
    let conf = std::fs::metadata(dest.join("etc/app/conf")).unwrap();
    assert_eq!(
        (conf.mode() & 0o7777, conf.uid(), conf.gid()),
        (0o640, 1000, 2000)
    );
    assert_eq!(
        std::fs::read(dest.join("etc/app/conf")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        conf.ino(),
        std::fs::metadata(dest.join("etc/hard")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(dest.join("etc/link")).unwrap().to_str(),
        Some("app/conf")
    );
    let wh = std::fs::symlink_metadata(dest.join("etc/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        get_xattr(&dest.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join("opq/.wh..wh..opq").exists());
    let top = std::fs::metadata(dest.join("top")).unwrap();
    assert_eq!(top.mode() & 0o7777, 0o4755);
    assert_eq!(
        get_xattr(&dest.join("top"), "user.note").as_deref(),
        Some(&b"kept"[..])
    );
    let src_mtime = std::fs::metadata(store.snapshot(&layer).unwrap().join("etc"))
        .unwrap()
        .mtime();
    assert_eq!(
        std::fs::metadata(dest.join("etc")).unwrap().mtime(),
        src_mtime
    );
}
