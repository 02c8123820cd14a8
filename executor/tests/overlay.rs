//! Host-side overlay mounts (need root and overlayfs).

use rbuild_executor::{OverlayMount, overlay_supported, users};
use std::path::PathBuf;

fn mounted(p: &std::path::Path) -> bool {
    let needle = format!(" {} ", p.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(&needle))
}

#[test]
fn host_overlay_with_forty_layers_and_unmount_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let mut lowers: Vec<PathBuf> = Vec::new();
    for i in 0..40 {
        let l = d.path().join(format!("{i:03}-{}", "y".repeat(120)));
        std::fs::create_dir_all(l.join("etc")).unwrap();
        std::fs::write(
            l.join("etc/passwd"),
            format!("u{i}:x:{i}:{i}::/h{i}:/bin/sh\n"),
        )
        .unwrap();
        lowers.push(l);
    }
    let (u, w, m) = (d.path().join("u"), d.path().join("w"), d.path().join("m"));
    for p in [&u, &w, &m] {
        std::fs::create_dir(p).unwrap();
    }
    {
        let mnt = OverlayMount::mount(&lowers, &u, &w, &m).unwrap();
        assert!(mounted(&m));
        // The top (last) layer wins.
        let user = users::resolve_in_rootfs("u39", mnt.path()).unwrap();
        assert_eq!((user.uid, user.home.as_str()), (39, "/h39"));
        std::fs::write(mnt.path().join("new"), "n").unwrap();
    }
    assert!(!mounted(&m));
    assert_eq!(std::fs::read(u.join("new")).unwrap(), b"n");
}

#[test]
fn scratch_overlay_mount() {
    let d = tempfile::tempdir().unwrap();
    let (u, w, m) = (d.path().join("u"), d.path().join("w"), d.path().join("m"));
    for p in [&u, &w, &m] {
        std::fs::create_dir(p).unwrap();
    }
    let mnt = OverlayMount::mount(&[], &u, &w, &m).unwrap();
    assert_eq!(std::fs::read_dir(mnt.path()).unwrap().count(), 0);
}

#[test]
fn overlay_support_detection() {
    let d = tempfile::tempdir().unwrap();
    assert!(overlay_supported(d.path()));
    assert!(!overlay_supported(&d.path().join("missing")));
    // An upper dir on overlayfs itself is not supported.
    let (l, u, w, m) = (
        d.path().join("l"),
        d.path().join("u"),
        d.path().join("w"),
        d.path().join("m"),
    );
    for p in [&l, &u, &w, &m] {
        std::fs::create_dir(p).unwrap();
    }
    let mnt = OverlayMount::mount(std::slice::from_ref(&l), &u, &w, &m).unwrap();
    assert!(!overlay_supported(mnt.path()));
}
