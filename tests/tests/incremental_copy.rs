//! Incremental COPY: a COPY that runs again because some context files changed links the
//! unchanged files from its previous layer's snapshot, and its layer is byte for byte the
//! layer a cold build of the same context makes in a fresh store.

use rbuild_tests::Env;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

// Every directory in the layers comes from the context (none is made with the time of the
// build), so two builds of one context seconds apart give the same layers.
const DOCKERFILE: &str = "\
FROM scratch AS app
COPY app /app
COPY --chown=7:8 --chmod=640 conf /conf

FROM busybox AS check
COPY --from=app / /
CMD [\"sh\", \"-c\", \"cat /app/d0/f3.txt /app/d2/f5.txt /app/d2/new.txt; ls /app/d2\"]
";

/// Content of file `i`: sizes from a few bytes to 300 KiB, so the layer spans several
/// compressed blocks.
fn content(i: usize) -> Vec<u8> {
    let line = format!("file {i} line of text {}\n", "x".repeat(i % 17));
    line.repeat(1 + (i * 7919) % 9000).into_bytes()
}

/// The context: 30 files in three directories, an executable, an empty file, a symlink,
/// a file with a user xattr, and conf/.
fn write_context(dir: &Path) {
    for i in 0..30 {
        let f = dir.join(format!("app/d{}/f{i}.txt", i % 3));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, content(i)).unwrap();
    }
    std::fs::write(dir.join("app/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(dir.join("app/run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("app/empty"), "").unwrap();
    std::os::unix::fs::symlink("d0/f0.txt", dir.join("app/link")).unwrap();
    set_xattr(&dir.join("app/d1/f1.txt"), "user.rbuild.test", b"kept");
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/a.conf"), "a = 1\n").unwrap();
    std::fs::write(dir.join("conf/b.conf"), "b = 2\n").unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    // Every time fixed and well in the past, the same in every copy of the context.
    set_all_times(dir, 1_600_000_000);
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c = |s: &[u8]| std::ffi::CString::new(s).unwrap();
    let (p, n) = (c(path.as_os_str().as_encoded_bytes()), c(name.as_bytes()));
    // SAFETY: valid C strings and a buffer of value.len() bytes.
    let r = unsafe {
        nix::libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn set_time(path: &Path, secs: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn set_all_times(dir: &Path, secs: i64) {
    for e in walkdir::WalkDir::new(dir).contents_first(true) {
        set_time(e.unwrap().path(), secs);
    }
}

/// The edits between the first and the second build: a same-size edit with its mtime put
/// back (only the ctime tells), a file grown, one removed, one added, one touched (same
/// content, new mtime), one replaced by a directory, a new directory.
fn edit_context(dir: &Path) {
    let f3 = dir.join("app/d0/f3.txt");
    let mut bytes = std::fs::read(&f3).unwrap();
    bytes[0] = b'F';
    std::fs::write(&f3, &bytes).unwrap();
    set_time(&f3, 1_600_000_000);
    let f5 = dir.join("app/d2/f5.txt");
    let mut grown = std::fs::read(&f5).unwrap();
    grown.extend_from_slice(b"one more line\n");
    std::fs::write(&f5, grown).unwrap();
    std::fs::remove_file(dir.join("app/d2/f8.txt")).unwrap();
    std::fs::write(dir.join("app/d2/new.txt"), "new file\n").unwrap();
    set_time(&dir.join("app/d2/f2.txt"), 1_700_000_000);
    // A file that becomes a directory, and a new directory.
    std::fs::remove_file(dir.join("app/d1/f4.txt")).unwrap();
    std::fs::create_dir_all(dir.join("app/d1/f4.txt")).unwrap();
    std::fs::write(dir.join("app/d1/f4.txt/inner"), content(4)).unwrap();
    std::fs::create_dir_all(dir.join("app/d3")).unwrap();
    std::fs::write(dir.join("app/d3/f0.txt"), content(0)).unwrap();
    for f in ["app/d1/f4.txt/inner", "app/d3/f0.txt"] {
        set_time(&dir.join(f), 1_600_000_000);
    }
    for d in [
        "app",
        "app/d0",
        "app/d1",
        "app/d2",
        "app/d3",
        "app/d1/f4.txt",
    ] {
        set_time(&dir.join(d), 1_600_000_000);
    }
    // New times for the files written, as an editor gives them (f3's was put back).
    set_time(&f5, 1_700_000_001);
    set_time(&dir.join("app/d2/new.txt"), 1_700_000_002);
}

fn build(env: &Env, ctx: &Path, target: &str, tag: &str, epoch: Option<&str>) -> Output {
    let mut cmd = env.cmd(&[
        "build",
        "--progress=plain",
        "--target",
        target,
        "-t",
        tag,
        p(ctx),
    ]);
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    let out = cmd.output().expect("run rbuild");
    assert!(
        out.status.success(),
        "build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Snapshot directories of `tag`'s layers, bottom first.
fn snapshots(env: &Env, tag: &str) -> Vec<PathBuf> {
    env.inspect(tag)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let hex = d.as_str().unwrap().trim_start_matches("sha256:");
            env.root().join("snapshots").join(&hex[..20])
        })
        .collect()
}

/// The "N unchanged files linked …, M copied" lines of a plain build log.
fn relinked(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| {
            let (head, rest) = l.split_once(" unchanged files linked from the previous layer, ")?;
            let linked = head.rsplit(' ').next()?;
            let copied = rest.strip_suffix(" copied")?;
            Some((linked.parse().ok()?, copied.parse().ok()?))
        })
        .collect()
}

#[test]
fn an_incremental_copy_links_unchanged_files_and_gives_the_cold_layer() {
    let a = Env::new();
    a.busybox_base();
    let ctx = a.work.path().join("ctx");
    write_context(&ctx);
    let first = build(&a, &ctx, "app", "app:1", None);
    let first_log = String::from_utf8_lossy(&first.stderr);
    assert!(
        relinked(&first_log).is_empty(),
        "nothing to link from yet:\n{first_log}"
    );
    let old = snapshots(&a, "app:1");
    let old_f3 = std::fs::read(old[0].join("app/d0/f3.txt")).unwrap();

    edit_context(&ctx);
    let second = build(&a, &ctx, "app", "app:2", None);
    let log = String::from_utf8_lossy(&second.stderr);
    // COPY app: 31 non-empty files before; f3 and f5 changed, f8 removed, f4 a directory
    // now, new.txt and d3/f0.txt new: 27 left to link, of which f2 (touched) is copied. COPY conf (its base changed): both linked.
    assert_eq!(relinked(&log), vec![(26, 1), (2, 0)], "{log}");

    // Byte for byte the layers of a cold build of the same context in a fresh store.
    let b = Env::new();
    let cold_ctx = b.work.path().join("ctx");
    write_context(&cold_ctx);
    edit_context(&cold_ctx);
    let cold = build(&b, &cold_ctx, "app", "app:2", None);
    assert!(relinked(&String::from_utf8_lossy(&cold.stderr)).is_empty());
    let warm_layers = a.layer_digests("app:2");
    assert_eq!(warm_layers.len(), 2);
    assert_eq!(warm_layers, b.layer_digests("app:2"));

    // Linked, not copied: the unchanged file is one inode in both snapshots; the changed
    // one is not, and the old snapshot still holds what it held.
    let new = snapshots(&a, "app:2");
    let ino = |p: PathBuf| std::fs::symlink_metadata(p).unwrap().ino();
    assert_eq!(
        ino(old[0].join("app/d0/f0.txt")),
        ino(new[0].join("app/d0/f0.txt"))
    );
    assert_eq!(
        ino(old[1].join("conf/a.conf")),
        ino(new[1].join("conf/a.conf"))
    );
    assert_ne!(
        ino(old[0].join("app/d0/f3.txt")),
        ino(new[0].join("app/d0/f3.txt"))
    );
    assert_ne!(
        ino(old[0].join("app/d2/f2.txt")),
        ino(new[0].join("app/d2/f2.txt"))
    );
    assert_eq!(std::fs::read(old[0].join("app/d0/f3.txt")).unwrap(), old_f3);
    assert!(!new[0].join("app/d2/f8.txt").exists());
    // The store still verifies (every blob, every snapshot against its layer).
    a.ok(&["check"]);

    // A RUN over the new layers sees the new content.
    build(&a, &ctx, "check", "check:2", None);
    let run = a.ok(&["run", "--rm", "check:2"]);
    let mut want = std::fs::read(ctx.join("app/d0/f3.txt")).unwrap();
    want.extend(std::fs::read(ctx.join("app/d2/f5.txt")).unwrap());
    want.extend(b"new file\n");
    assert!(
        run.stdout.starts_with(&want),
        "run printed:\n{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("new.txt"));
}

#[test]
fn with_source_date_epoch_the_incremental_image_is_the_cold_image() {
    let epoch = Some("1500000000");
    let a = Env::new();
    let ctx = a.work.path().join("ctx");
    write_context(&ctx);
    build(&a, &ctx, "app", "app:1", epoch);
    edit_context(&ctx);
    let log = String::from_utf8_lossy(&build(&a, &ctx, "app", "app:2", epoch).stderr).into_owned();
    // Every time is clamped to the epoch, so the touched file is linked too.
    assert_eq!(relinked(&log), vec![(27, 0), (2, 0)], "{log}");

    let b = Env::new();
    let cold_ctx = b.work.path().join("ctx");
    write_context(&cold_ctx);
    edit_context(&cold_ctx);
    build(&b, &cold_ctx, "app", "app:2", epoch);
    assert_eq!(a.inspect("app:2")["Id"], b.inspect("app:2")["Id"]);
    assert_eq!(a.layer_digests("app:2"), b.layer_digests("app:2"));
}

#[test]
fn a_later_source_replacing_a_directory_wins_as_in_a_cold_build() {
    // One COPY, two matched sources: src2's file `sub` replaces the directory src1 made.
    // (Into `/`: a destination directory the copy creates gets the time of the build.)
    let write = |dir: &Path, edit: &str| {
        for (f, text) in [
            ("src1/sub/f.txt", "in a directory\n"),
            ("src1/g.txt", edit),
            ("src2/sub", "a file\n"),
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        std::fs::write(dir.join("Dockerfile"), "FROM scratch AS w\nCOPY src* /\n").unwrap();
        set_all_times(dir, 1_600_000_000);
    };
    let a = Env::new();
    let ctx = a.work.path().join("ctx");
    write(&ctx, "one\n");
    build(&a, &ctx, "w", "w:1", None);
    write(&ctx, "two\n");
    let log = String::from_utf8_lossy(&build(&a, &ctx, "w", "w:2", None).stderr).into_owned();
    let b = Env::new();
    let cold = b.work.path().join("ctx");
    write(&cold, "two\n");
    build(&b, &cold, "w", "w:2", None);
    assert_eq!(a.layer_digests("w:2"), b.layer_digests("w:2"), "{log}");
}
