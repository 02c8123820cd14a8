//! COPY rules over a real overlay (needs root).

mod common;

use common::*;
use rbuild_graph::{BuildGraph, CopyAction, CopySource, FileAction, FileOp, Op};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn setup_ctx(env: &Env) {
    let c = &env.ctx;
    std::fs::create_dir_all(c.join("dir/sub")).unwrap();
    std::fs::write(c.join("dir/sub/file"), "in sub").unwrap();
    std::fs::write(c.join("dir/top"), "top").unwrap();
    std::os::unix::fs::symlink("sub/file", c.join("dir/link")).unwrap();
    std::fs::write(c.join("x.txt"), "x").unwrap();
    std::fs::write(c.join("y.txt"), "y").unwrap();
    std::fs::write(c.join("z.md"), "z").unwrap();
    std::fs::set_permissions(c.join("x.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(c.join("dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
    set_xattr(&c.join("x.txt"), "user.rbuild", b"kept");
    std::fs::hard_link(c.join("dir/top"), c.join("dir/top-link")).unwrap();
    // Context files owned by someone else still land as root.
    std::os::unix::fs::chown(c.join("y.txt"), Some(4321), Some(4321)).unwrap();
}

#[test]
fn copy_rules() {
    let env = env();
    setup_ctx(&env);
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let mut chown = copy_action(1, "x.txt", "/owned.txt");
    chown.owner = Some(owner("app", Some("app")));
    let mut chmod = copy_action(1, "y.txt", "/mode.txt");
    chmod.mode = Some(0o600);
    let mut numeric = copy_action(1, "y.txt", "/numeric.txt");
    numeric.owner = Some(owner("1234", Some("55")));
    let cp = copy(
        &mut g,
        b,
        c,
        vec![
            copy_action(1, "dir", "/d/"),
            copy_action(1, "*.txt", "/w/"),
            copy_action(1, "x.txt", "/single"),
            copy_action(1, "y.txt", "/into/"),
            chown,
            chmod,
            numeric,
            copy_action(1, "x.txt", "/lnk/"),
            copy_action(1, "y.txt", "/esc/"),
            copy_action(1, "dir", "/plain"),
        ],
    );
    let out = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap();
    let top = env.top(&out[&cp]);
    // a directory source copies its contents
    assert_eq!(
        std::fs::read_to_string(top.join("d/sub/file")).unwrap(),
        "in sub"
    );
    assert_eq!(std::fs::read_to_string(top.join("d/top")).unwrap(), "top");
    // hard links inside one copy stay linked
    let (t1, t2) = (
        std::fs::metadata(top.join("d/top")).unwrap(),
        std::fs::metadata(top.join("d/top-link")).unwrap(),
    );
    assert_eq!(t1.ino(), t2.ino());
    assert!(!top.join("d/dir").exists());
    // A destination the copy creates is made 0755 (as root), whether written `dir/` or
    // `dir`: the source directory's own mode (0750) is not taken, as in docker
    // (moby's TestCopy/WholeDirToRoot, testBuildPreserveOwnership).
    let d = std::fs::metadata(top.join("d")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o755);
    let p = std::fs::metadata(top.join("plain")).unwrap();
    assert_eq!(p.mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_to_string(top.join("plain/sub/file")).unwrap(),
        "in sub"
    );
    // symlinks are copied as symlinks
    let l = std::fs::symlink_metadata(top.join("d/link")).unwrap();
    assert!(l.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(top.join("d/link")).unwrap().to_str(),
        Some("sub/file")
    );
    // wildcard
    let mut w: Vec<String> = std::fs::read_dir(top.join("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    w.sort();
    assert_eq!(w, ["x.txt", "y.txt"]);
    // no trailing slash: the file becomes dest; trailing slash: into the dir
    assert!(top.join("single").is_file());
    assert_eq!(std::fs::read_to_string(top.join("single")).unwrap(), "x");
    assert_eq!(
        get_xattr(&top.join("single"), "user.rbuild"),
        Some(b"kept".to_vec())
    );
    assert_eq!(
        std::fs::read_to_string(top.join("into/y.txt")).unwrap(),
        "y"
    );
    // modes kept, context owners reset to root
    let x = std::fs::metadata(top.join("single")).unwrap();
    assert_eq!(x.mode() & 0o7777, 0o640);
    let y = std::fs::metadata(top.join("into/y.txt")).unwrap();
    assert_eq!((y.uid(), y.gid()), (0, 0));
    // --chown by name, resolved in the image's /etc/passwd
    let o = std::fs::metadata(top.join("owned.txt")).unwrap();
    assert_eq!((o.uid(), o.gid()), (1000, 1000));
    let n = std::fs::metadata(top.join("numeric.txt")).unwrap();
    assert_eq!((n.uid(), n.gid()), (1234, 55));
    // --chmod
    let m = std::fs::metadata(top.join("mode.txt")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    // a symlink in the dest path is resolved inside the rootfs
    assert_eq!(
        std::fs::read_to_string(top.join("realdir/x.txt")).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(top.join("rbuild-host-escape-check/y.txt")).unwrap(),
        "y"
    );
    assert!(!std::path::Path::new("/rbuild-host-escape-check").exists());
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
}

#[test]
fn copy_from_another_stage_keeps_owners_and_inline_and_mkdir() {
    let env = env();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let stage = run(
        &mut g,
        b,
        "mkdir -p /out && echo built > /out/bin && chown 1000:1000 /out/bin",
    );
    let cp = g.add(
        Op::File(FileOp {
            actions: vec![
                FileAction::Copy(copy_action(1, "/out/bin", "/app/")),
                FileAction::Copy(CopyAction {
                    source: CopySource::Inline {
                        data: "hello\n".into(),
                        mode: 0o644,
                    },
                    dest: "/etc/greeting".into(),
                    owner: None,
                    mode: None,
                    allow_wildcard: false,
                    unpack_archive: false,
                    chmod: None,
                    parents: None,
                    exclude: vec![],
                }),
                FileAction::Mkdir {
                    path: "/work/deep".into(),
                    mode: 0o755,
                    make_parents: true,
                    owner: None,
                },
                FileAction::Mkdir {
                    path: "/home/app/w".into(),
                    mode: 0o750,
                    make_parents: true,
                    owner: Some(owner("app", None)),
                },
                FileAction::Copy(copy_action(1, "/out/*", "/wild/")),
                FileAction::Rm {
                    path: "/etc/group".into(),
                    allow_not_found: false,
                },
                FileAction::Rm {
                    path: "/nope".into(),
                    allow_not_found: true,
                },
            ],
        }),
        vec![b, stage],
        meta("COPY --from=stage"),
    );
    let out = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap();
    let top = env.top(&out[&cp]);
    let m = std::fs::metadata(top.join("app/bin")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(top.join("app/bin")).unwrap(),
        "built\n"
    );
    assert_eq!(
        std::fs::read_to_string(top.join("etc/greeting")).unwrap(),
        "hello\n"
    );
    assert!(top.join("work/deep").is_dir());
    let w = std::fs::metadata(top.join("home/app/w")).unwrap();
    assert_eq!((w.uid(), w.gid(), w.mode() & 0o7777), (1000, 1000, 0o750));
    assert!(top.join("wild/bin").is_file());
    // the removal is a whiteout in the layer
    let wh = std::fs::symlink_metadata(top.join("etc/group")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    // the stage's own files are not in this layer
    assert!(!top.join("out").exists());
}

/// A tar with `pkg/run.sh` (0755, owned 7:8).
fn tar_bytes() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o755);
    h.set_uid(7);
    h.set_gid(8);
    h.set_cksum();
    t.append_data(&mut h, "pkg/run.sh", &b"echo\n"[..]).unwrap();
    t.into_inner().unwrap()
}

#[test]
fn add_unpacks_local_archives() {
    use std::io::Write;
    let env = env();
    let tar = tar_bytes();
    std::fs::write(env.ctx.join("a.tar"), &tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    std::fs::write(env.ctx.join("a.tar.gz"), gz.finish().unwrap()).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    std::fs::write(env.ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&tar), &mut xz).unwrap();
    std::fs::write(env.ctx.join("a.tar.xz"), xz).unwrap();
    // gzip magic but not a tar inside: copied as is
    let mut notar = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    notar.write_all(b"just text").unwrap();
    std::fs::write(env.ctx.join("plain.gz"), notar.finish().unwrap()).unwrap();

    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let mut actions = Vec::new();
    for (src, dest) in [
        ("a.tar", "/t/"),
        ("a.tar.gz", "/g/"),
        ("a.tar.bz2", "/b/"),
        ("a.tar.xz", "/x/"),
        ("plain.gz", "/p/"),
    ] {
        let mut a = copy_action(1, src, dest);
        a.unpack_archive = true;
        actions.push(a);
    }
    let mut chowned = copy_action(1, "a.tar.gz", "/owned");
    chowned.unpack_archive = true;
    chowned.owner = Some(owner("app", None));
    actions.push(chowned);
    // COPY never unpacks
    actions.push(copy_action(1, "a.tar.gz", "/copied/"));
    let cp = copy(&mut g, b, c, actions);
    let out = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap();
    let top = env.top(&out[&cp]);
    for d in ["t", "g", "b", "x"] {
        let m = std::fs::metadata(top.join(d).join("pkg/run.sh")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o755, "{d}");
        assert_eq!((m.uid(), m.gid()), (7, 8), "{d}");
        assert_eq!(
            std::fs::read(top.join(d).join("pkg/run.sh")).unwrap(),
            b"echo\n"
        );
    }
    let m = std::fs::metadata(top.join("owned/pkg/run.sh")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert!(top.join("p/plain.gz").is_file());
    assert!(top.join("copied/a.tar.gz").is_file());
}

#[test]
fn dockerignore_exception_below_an_ignored_dir_is_copied() {
    let env = env();
    setup_ctx(&env);
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = g.add(
        Op::Local {
            name: "context".into(),
            exclude: vec!["dir".into(), "!dir/sub/file".into(), "*.md".into()],
        },
        vec![],
        meta("context"),
    );
    let mut ex = copy_action(1, ".", "/all/");
    ex.exclude = vec!["y.txt".into()];
    let cp = copy(&mut g, b, c, vec![ex]);
    let out = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap();
    let top = env.top(&out[&cp]);
    assert_eq!(
        std::fs::read_to_string(top.join("all/dir/sub/file")).unwrap(),
        "in sub"
    );
    assert!(!top.join("all/dir/top").exists());
    assert!(!top.join("all/z.md").exists());
    assert!(!top.join("all/y.txt").exists(), "--exclude");
    assert!(top.join("all/x.txt").exists());
    // an ignored file cannot be copied by name
    let mut g2 = g.clone();
    let cp2 = copy(&mut g2, b, c, vec![copy_action(1, "z.md", "/z.md")]);
    let (res, _) = solve(&env.solver(), &g2, &[cp2], &env.opts());
    assert!(
        matches!(
            res,
            Err(rbuild_solver::SolveError::MissingContextFile { .. })
        ),
        "{res:?}"
    );
}

fn set_xattr(p: &std::path::Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {}", std::io::Error::last_os_error());
}

fn get_xattr(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

/// A tar as a Debian root has it: `var/run -> /run` then a file through it, a device node,
/// a fifo, a hardlink and an xattr; plus a link that points out of the root.
fn special_tar() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let link = |t: &mut tar::Builder<Vec<u8>>, kind, name: &str, target: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        t.append_link(&mut h, name, target).unwrap();
    };
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    t.append_data(&mut h, "var/", &b""[..]).unwrap();
    link(&mut t, tar::EntryType::Symlink, "var/run", "/run");
    link(&mut t, tar::EntryType::Symlink, "out", "/../../..");
    for (name, kind, major, minor, data) in [
        ("var/run/pid", tar::EntryType::Regular, 0, 0, &b"42"[..]),
        (
            "out/rbuild-add-escape",
            tar::EntryType::Regular,
            0,
            0,
            &b"in"[..],
        ),
        ("dev/null", tar::EntryType::Char, 1, 3, &b""[..]),
        ("dev/sda", tar::EntryType::Block, 8, 0, &b""[..]),
        ("run/ctl", tar::EntryType::Fifo, 0, 0, &b""[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o640);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_size(data.len() as u64);
        t.append_data(&mut h, name, data).unwrap();
    }
    t.append_pax_extensions([("SCHILY.xattr.user.origin", &b"tar"[..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(3);
    t.append_data(&mut h, "bin/tool", &b"elf"[..]).unwrap();
    link(&mut t, tar::EntryType::Link, "bin/tool2", "bin/tool");
    t.into_inner().unwrap()
}

#[test]
fn add_keeps_special_files_and_resolves_links_inside_the_root() {
    use std::os::unix::fs::FileTypeExt;
    let env = env();
    std::fs::write(env.ctx.join("root.tar"), special_tar()).unwrap();
    let mut g = BuildGraph::new();
    let b = base(&mut g);
    let c = context(&mut g);
    let mut a = copy_action(1, "root.tar", "/");
    a.unpack_archive = true;
    let cp = copy(&mut g, b, c, vec![a]);
    let out = solve(&env.solver(), &g, &[cp], &env.opts()).0.unwrap();
    let top = env.top(&out[&cp]);
    // Through var/run -> /run, inside the image's root; never the host's /run.
    assert_eq!(std::fs::read(top.join("run/pid")).unwrap(), b"42");
    assert_eq!(
        std::fs::read_link(top.join("var/run")).unwrap(),
        std::path::PathBuf::from("/run")
    );
    assert!(!std::path::Path::new("/run/pid").exists());
    assert_eq!(std::fs::read(top.join("rbuild-add-escape")).unwrap(), b"in");
    assert!(!std::path::Path::new("/rbuild-add-escape").exists());
    let null = std::fs::symlink_metadata(top.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let sda = std::fs::symlink_metadata(top.join("dev/sda")).unwrap();
    assert!(sda.file_type().is_block_device());
    assert_eq!(sda.rdev(), libc::makedev(8, 0));
    assert!(
        std::fs::symlink_metadata(top.join("run/ctl"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let tool = std::fs::metadata(top.join("bin/tool")).unwrap();
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        std::fs::metadata(top.join("bin/tool2")).unwrap().ino(),
        tool.ino()
    );
    assert_eq!(
        get_xattr(&top.join("bin/tool"), "user.origin").as_deref(),
        Some(&b"tar"[..])
    );
}
