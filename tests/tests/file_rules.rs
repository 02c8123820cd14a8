//! BuildKit's file rules end to end, read back from the layers of the built image:
//! symbolic `--chmod`, `COPY --parents`, every `--chown` form, WORKDIR and COPY ownership
//! under a numeric USER, ADD of a tar over existing content, `COPY --link`.
//! Needs root, busybox-static and umoci.

use rbuild_tests::{Env, executed, plain_steps};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One entry of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LayerEntry {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    data: Vec<u8>,
}

/// The manifest of `tag` in the store's OCI layout.
fn manifest(env: &Env, tag: &str) -> serde_json::Value {
    let root = env.root().join("oci");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n == tag || n.ends_with(&format!(":{tag}")) || tag.ends_with(n))
        })
        .expect("tag in index.json")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_slice(&std::fs::read(blob(env, &digest)).unwrap()).unwrap()
}

fn blob(env: &Env, digest: &str) -> std::path::PathBuf {
    env.root()
        .join("oci/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The layer digests of `tag`, bottom first.
fn layer_digests(env: &Env, tag: &str) -> Vec<String> {
    manifest(env, tag)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The entries of one layer blob, by path (no leading `./`, directories without `/`).
fn layer(env: &Env, digest: &str) -> BTreeMap<String, LayerEntry> {
    let f = std::fs::File::open(blob(env, digest)).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'o',
        };
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            path,
            LayerEntry {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
            },
        );
    }
    out
}

/// The top `n` layers of `tag` merged (a later layer's entry wins), for the steps a test
/// made; whiteouts are kept as entries named `.wh.*`.
fn top_layers(env: &Env, tag: &str, n: usize) -> BTreeMap<String, LayerEntry> {
    let digests = layer_digests(env, tag);
    let mut out = BTreeMap::new();
    for d in &digests[digests.len() - n..] {
        out.extend(layer(env, d));
    }
    out
}

/// (kind, mode, uid, gid) of `path` in `entries`, panicking with the listing when absent.
fn meta(entries: &BTreeMap<String, LayerEntry>, path: &str) -> (char, u32, u64, u64) {
    let e = entries
        .get(path)
        .unwrap_or_else(|| panic!("{path} not in the layers: {:?}", entries.keys()));
    (e.kind, e.mode, e.uid, e.gid)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds `dockerfile` in `ctx` as `tag`.
fn build(env: &Env, ctx: &Path, tag: &str, dockerfile: &str) -> Output {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    env.run(&["build", "--progress=plain", "-t", tag, p(ctx)])
}

fn build_ok(env: &Env, ctx: &Path, tag: &str, dockerfile: &str) {
    let out = build(env, ctx, tag, dockerfile);
    assert!(
        out.status.success(),
        "build {tag} failed:\n{}",
        stderr(&out)
    );
}

#[test]
fn symbolic_chmod_applies_per_entry_as_buildkit_does() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "chmod",
        &[
            ("f.txt", "plain\n"),
            ("run.sh", "#!/bin/sh\n"),
            ("dir/a.txt", "a\n"),
            ("dir/sub/b.sh", "b\n"),
        ],
    );
    chmod(&ctx.join("f.txt"), 0o644);
    chmod(&ctx.join("run.sh"), 0o744);
    chmod(&ctx.join("dir/a.txt"), 0o666);
    chmod(&ctx.join("dir/sub/b.sh"), 0o775);
    chmod(&ctx.join("dir/sub"), 0o777);
    build_ok(
        &env,
        &ctx,
        "chmod:1",
        "FROM busybox:latest
COPY --chmod=u+x,go-w f.txt /c/f1
COPY --chmod=a+X f.txt /c/f2
COPY --chmod=a+X run.sh /c/f3
COPY --chmod=go-w dir/ /c/d/
COPY --chmod=a=rX,u+w dir/ /c/e/
COPY --chmod=u=rwx,go=u-w f.txt /c/f4
COPY --chmod=750 f.txt /c/new/deeper/f5
",
    );
    let l = top_layers(&env, "chmod:1", 7);
    // u+x adds the owner's x; go-w has nothing to take away from 0644.
    assert_eq!(meta(&l, "c/f1"), ('f', 0o744, 0, 0));
    // X only for directories and files already executable by someone.
    assert_eq!(meta(&l, "c/f2"), ('f', 0o644, 0, 0));
    assert_eq!(meta(&l, "c/f3"), ('f', 0o755, 0, 0));
    // Applied to each entry's own mode, directories included; the destination directory
    // the copy creates is 0755.
    assert_eq!(meta(&l, "c/d"), ('d', 0o755, 0, 0));
    assert_eq!(meta(&l, "c/d/a.txt"), ('f', 0o644, 0, 0));
    assert_eq!(meta(&l, "c/d/sub"), ('d', 0o755, 0, 0));
    assert_eq!(meta(&l, "c/d/sub/b.sh"), ('f', 0o755, 0, 0));
    // `=rX` is `=r` in BuildKit's parser (X counts after + only), then u+w.
    assert_eq!(meta(&l, "c/e/a.txt"), ('f', 0o644, 0, 0));
    assert_eq!(meta(&l, "c/e/sub"), ('d', 0o644, 0, 0));
    assert_eq!(meta(&l, "c/e/sub/b.sh"), ('f', 0o644, 0, 0));
    // Copying between classes.
    assert_eq!(meta(&l, "c/f4"), ('f', 0o755, 0, 0));
    // An octal --chmod gives the directories it creates its bits (BuildKit's copier).
    assert_eq!(meta(&l, "c/new"), ('d', 0o750, 0, 0));
    assert_eq!(meta(&l, "c/new/deeper"), ('d', 0o750, 0, 0));
    assert_eq!(meta(&l, "c/new/deeper/f5"), ('f', 0o750, 0, 0));

    // A bad mode is refused before anything runs, naming the line and the character.
    for (mode, says) in [
        (
            "u+q",
            "'u+q': expected r, w, x, X, s, t, u, g, o, +, -, = or ',' at character 3",
        ),
        (
            "64a",
            "invalid chmod parameter: '64a'. it should be octal string",
        ),
        ("u", "missing operator"),
    ] {
        let out = build(
            &env,
            &ctx,
            "chmod:bad",
            &format!("FROM busybox:latest\nRUN true\nCOPY --chmod={mode} f.txt /x\n"),
        );
        assert!(!out.status.success(), "--chmod={mode} was accepted");
        let e = stderr(&out);
        assert!(e.contains(says), "--chmod={mode}: {e}");
        assert!(
            e.contains("Dockerfile:3"),
            "--chmod={mode} names the line: {e}"
        );
        assert!(!e.contains("RUN true"), "--chmod={mode}: a step ran: {e}");
    }
}

#[test]
fn copy_parents_keeps_paths_below_the_pivot() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "parents",
        &[
            ("foo1/foo2/bar", "bar\n"),
            ("foo1/foo2/baz", "baz\n"),
            ("foo1/other", "no\n"),
            ("x/a/b/c.txt", "c\n"),
            ("x/a/d.txt", "d\n"),
            ("x/z/b/e.txt", "e\n"),
            ("x/z/f.txt", "f\n"),
        ],
    );
    chmod(&ctx.join("foo1"), 0o700);
    build_ok(
        &env,
        &ctx,
        "parents:1",
        "FROM busybox:latest AS base
RUN mkdir -p /test/a/b/c/d/e /test/a/b2/c/d/e \
 && echo foo > /test/a/b/c/d/foo && echo bay > /test/a/b/c/d/e/bay \
 && echo bar > /test/a/b2/c/d/e/bar

FROM busybox:latest
COPY --parents foo1/foo2/bar /p1/
WORKDIR /test
COPY --parents foo1/foo2/ba* .
COPY --parents x/./a/b /p2/
COPY --parents x/./*/b /p3/
COPY --parents x/**/c.txt /p4/
COPY --parents nomatch*/y /p5/
COPY --parents nothere/**/c.txt /p6/
COPY --from=base --parents /test/a/b/./c/d /out1/
COPY --from=base --parents /test/a/./b/./c /out2/
COPY --from=base --parents /test/a/b*/./c/**/e /out3/
",
    );
    let rootfs = env.umoci_unpack("parents:1");
    let files = |dir: &str| -> Vec<String> {
        let base = rootfs.join(dir.trim_start_matches('/'));
        let mut v: Vec<String> = walkdir::WalkDir::new(&base)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(&base).unwrap().display().to_string();
                if e.file_type().is_dir() {
                    format!("{rel}/")
                } else {
                    rel
                }
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(files("/p1"), ["foo1/", "foo1/foo2/", "foo1/foo2/bar"]);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("p1/foo1/foo2/bar")).unwrap(),
        "bar\n"
    );
    // Parents on the way keep their own mode (root owns context files).
    let foo1 = std::fs::metadata(rootfs.join("p1/foo1")).unwrap();
    assert_eq!(
        (foo1.mode() & 0o7777, foo1.uid(), foo1.gid()),
        (0o700, 0, 0)
    );
    assert_eq!(
        files("/test"),
        ["foo1/", "foo1/foo2/", "foo1/foo2/bar", "foo1/foo2/baz"]
    );
    // The pivot: only what is below `x/` keeps its path.
    assert_eq!(files("/p2"), ["a/", "a/b/", "a/b/c.txt"]);
    assert_eq!(
        files("/p3"),
        ["a/", "a/b/", "a/b/c.txt", "z/", "z/b/", "z/b/e.txt"]
    );
    assert_eq!(files("/p4"), ["x/", "x/a/", "x/a/b/", "x/a/b/c.txt"]);
    // A wildcard that matches nothing copies nothing; the destination is still made.
    assert!(rootfs.join("p5").is_dir());
    assert_eq!(files("/p5"), Vec::<String>::new());
    assert_eq!(files("/p6"), Vec::<String>::new());
    // From a stage: BuildKit's testCopyRelativeParents cases.
    assert_eq!(
        files("/out1"),
        ["c/", "c/d/", "c/d/e/", "c/d/e/bay", "c/d/foo"]
    );
    assert_eq!(
        files("/out2"),
        [
            "b/",
            "b/c/",
            "b/c/d/",
            "b/c/d/e/",
            "b/c/d/e/bay",
            "b/c/d/foo"
        ]
    );
    assert_eq!(
        files("/out3"),
        ["c/", "c/d/", "c/d/e/", "c/d/e/bar", "c/d/e/bay"]
    );

    // A path without wildcards must exist.
    let out = build(
        &env,
        &ctx,
        "parents:bad",
        "FROM busybox:latest\nCOPY --parents x/./nothere /p/\n",
    );
    assert!(
        !out.status.success(),
        "a missing --parents path was accepted"
    );
    assert!(stderr(&out).contains("nothere"), "{}", stderr(&out));

    // The key follows what is selected: a file outside the selection changes nothing.
    let out = build(
        &env,
        &ctx,
        "parents:2",
        "FROM busybox:latest\nCOPY --parents x/./a/b /p2/\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(ctx.join("x/z/f.txt"), "changed\n").unwrap();
    let again = build(
        &env,
        &ctx,
        "parents:2",
        "FROM busybox:latest\nCOPY --parents x/./a/b /p2/\n",
    );
    assert_eq!(
        executed(&plain_steps(&stderr(&again)), "COPY"),
        Vec::<String>::new(),
        "a change outside the selection reran the copy: {}",
        stderr(&again)
    );
    std::fs::write(ctx.join("x/a/b/c.txt"), "changed\n").unwrap();
    let changed = build(
        &env,
        &ctx,
        "parents:2",
        "FROM busybox:latest\nCOPY --parents x/./a/b /p2/\n",
    );
    assert_eq!(
        executed(&plain_steps(&stderr(&changed)), "COPY").len(),
        1,
        "a changed selected file reruns the copy: {}",
        stderr(&changed)
    );
}

#[test]
fn every_chown_form_and_ownership_under_a_numeric_user() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("chown", &[("f", "f\n"), ("d/inner", "i\n")]);
    build_ok(
        &env,
        &ctx,
        "chown:1",
        "FROM busybox:latest
RUN echo 'svc:x:1500:300::/:/bin/sh' >> /etc/passwd \
 && echo 'grp3:x:300:' >> /etc/group && echo 'other:x:400:svc' >> /etc/group
COPY --chown=1234 f /o/uid
COPY --chown=1234:55 f /o/uid-gid
COPY --chown=svc f /o/name
COPY --chown=svc:other f /o/name-group
COPY --chown=svc:77 f /o/name-gid
COPY --chown=:other f /o/group-only
COPY --chown=:88 f /o/gid-only
COPY --chown=1500 f /o/uid-in-passwd
COPY --chown=root:other f /o/root-group
COPY --chown=1234: f /o/uid-empty-group
COPY --chown=1234 d /o/dir
COPY --chown=1234 f /created/by/chown/
USER 4321
WORKDIR /w/deep
COPY f sub/
USER svc
WORKDIR /w2
USER 4321:99
WORKDIR /w3
",
    );
    let l = top_layers(&env, "chown:1", 16);
    let own = |path: &str| {
        let (_, _, u, g) = meta(&l, path);
        (u, g)
    };
    // A uid alone: the gid is the same number (BuildKit), passwd not read.
    assert_eq!(own("o/uid"), (1234, 1234));
    assert_eq!(own("o/uid-gid"), (1234, 55));
    // A name: uid and primary gid from the image's /etc/passwd.
    assert_eq!(own("o/name"), (1500, 300));
    assert_eq!(own("o/name-group"), (1500, 400));
    assert_eq!(own("o/name-gid"), (1500, 77));
    // `:group`: root's uid.
    assert_eq!(own("o/group-only"), (0, 400));
    assert_eq!(own("o/gid-only"), (0, 88));
    // A uid that is in passwd still gets gid = uid, not its primary group.
    assert_eq!(own("o/uid-in-passwd"), (1500, 1500));
    assert_eq!(own("o/root-group"), (0, 400));
    assert_eq!(own("o/uid-empty-group"), (1234, 0));
    // --chown covers the copied tree and the directories the copy creates.
    assert_eq!(own("o/dir"), (1234, 1234));
    assert_eq!(own("o/dir/inner"), (1234, 1234));
    assert_eq!(own("created"), (1234, 1234));
    assert_eq!(own("created/by/chown"), (1234, 1234));
    assert_eq!(own("created/by/chown/f"), (1234, 1234));
    // WORKDIR under a numeric USER not in /etc/passwd: uid:uid for every directory it makes.
    assert_eq!(meta(&l, "w"), ('d', 0o755, 4321, 4321));
    assert_eq!(meta(&l, "w/deep"), ('d', 0o755, 4321, 4321));
    // COPY without --chown ignores USER: what it creates belongs to root.
    assert_eq!(meta(&l, "w/deep/sub"), ('d', 0o755, 0, 0));
    assert_eq!(own("w/deep/sub/f"), (0, 0));
    // WORKDIR under a named USER: its passwd ids; under uid:gid: those.
    assert_eq!(own("w2"), (1500, 300));
    assert_eq!(own("w3"), (4321, 99));

    // Names that are not there are errors naming the file.
    for (chown, says) in [
        (
            "nobody",
            "unable to find user nobody: no matching entries in /etc/passwd",
        ),
        (
            "app:wheel",
            "unable to find group wheel: no matching entries in /etc/group",
        ),
    ] {
        let out = build(
            &env,
            &ctx,
            "chown:bad",
            &format!("FROM busybox:latest\nCOPY --chown={chown} f /x\n"),
        );
        assert!(!out.status.success(), "--chown={chown} was accepted");
        assert!(
            stderr(&out).contains(says),
            "--chown={chown}: {}",
            stderr(&out)
        );
    }
}

fn tar_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    mode: u32,
    owner: u64,
    data: &[u8],
) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(owner);
    h.set_gid(owner);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, path, data).expect("tar entry");
}

#[test]
fn add_tar_replaces_files_by_directories_and_back() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("addtar", &[]);
    let (dir, file) = (tar::EntryType::Directory, tar::EntryType::Regular);
    // One: the directory t/d1 becomes a file, the file t/f1 a directory, and the
    // existing directory t/keep takes the archive's owner and mode.
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, dir, "t/", 0o755, 0, b"");
    tar_entry(&mut b, file, "t/d1", 0o640, 7, b"now a file\n");
    tar_entry(&mut b, dir, "t/f1/", 0o750, 7, b"");
    tar_entry(&mut b, file, "t/f1/child", 0o600, 7, b"child\n");
    tar_entry(&mut b, dir, "t/keep/", 0o751, 9, b"");
    std::fs::write(ctx.join("one.tar"), b.into_inner().unwrap()).unwrap();
    // Two: back again.
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, dir, "t/d1/", 0o700, 8, b"");
    tar_entry(&mut b, file, "t/d1/again", 0o644, 8, b"again\n");
    tar_entry(&mut b, file, "t/f1", 0o604, 8, b"a file again\n");
    std::fs::write(ctx.join("two.tar"), b.into_inner().unwrap()).unwrap();
    build_ok(
        &env,
        &ctx,
        "addtar:1",
        "FROM busybox:latest
RUN mkdir -p /t/d1/sub /t/keep && echo inner > /t/d1/inner && echo x > /t/d1/sub/x \
 && echo f > /t/f1 && echo k > /t/keep/k && chmod 700 /t/keep && chown 5:5 /t/keep
ADD one.tar /
RUN test -f /t/d1 && test -d /t/f1 && test -f /t/keep/k
ADD two.tar /
",
    );
    let layers: Vec<_> = layer_digests(&env, "addtar:1")
        .iter()
        .map(|d| layer(&env, d))
        .collect();
    let with = |path: &str| {
        layers
            .iter()
            .find(|l| l.contains_key(path))
            .unwrap_or_else(|| panic!("no layer has {path}"))
    };
    let one = with("t/f1/child");
    assert_eq!(meta(one, "t/d1"), ('f', 0o640, 7, 7));
    assert_eq!(one["t/d1"].data, b"now a file\n");
    assert_eq!(meta(one, "t/f1"), ('d', 0o750, 7, 7));
    assert_eq!(meta(one, "t/f1/child"), ('f', 0o600, 7, 7));
    // A directory over a directory merges, with the archive's metadata.
    assert_eq!(meta(one, "t/keep"), ('d', 0o751, 9, 9));
    assert!(
        !one.keys().any(|k| k.starts_with("t/d1/")),
        "{:?}",
        one.keys()
    );
    let two = with("t/d1/again");
    assert_eq!(meta(two, "t/d1"), ('d', 0o700, 8, 8));
    assert_eq!(meta(two, "t/d1/again"), ('f', 0o644, 8, 8));
    assert_eq!(meta(two, "t/f1"), ('f', 0o604, 8, 8));
    assert_eq!(two["t/f1"].data, b"a file again\n");

    // The image, layers applied in order.
    let rootfs = env.umoci_unpack("addtar:1");
    let t = rootfs.join("t");
    assert!(t.join("d1").is_dir());
    assert_eq!(
        std::fs::read_to_string(t.join("d1/again")).unwrap(),
        "again\n"
    );
    // What the directory held before it became a file does not come back.
    assert!(!t.join("d1/inner").exists());
    assert!(!t.join("d1/sub").exists());
    assert_eq!(
        std::fs::read_to_string(t.join("f1")).unwrap(),
        "a file again\n"
    );
    let keep = std::fs::metadata(t.join("keep")).unwrap();
    assert_eq!((keep.mode() & 0o7777, keep.uid()), (0o751, 9));
    assert_eq!(std::fs::read_to_string(t.join("keep/k")).unwrap(), "k\n");
}

#[test]
fn copy_link_layer_is_the_same_on_any_base_and_keeps_its_own_directories() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("link", &[("f.txt", "linked\n")]);
    let dockerfile = "FROM busybox:latest AS a
RUN mkdir -p /app && echo old > /app/old && chown -R 1000:1000 /app && chmod 700 /app
COPY --link --chown=1234:1234 f.txt /app/

FROM busybox:latest AS b
RUN echo b > /only-b
COPY --link --chown=1234:1234 f.txt /app/

FROM busybox:latest AS plain
RUN mkdir -p /app && echo old > /app/old && chown -R 1000:1000 /app && chmod 700 /app
COPY --chown=1234:1234 f.txt /app/
";
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (target, tag) in [("a", "link:a"), ("b", "link:b"), ("plain", "link:plain")] {
        env.ok(&[
            "build",
            "--progress=plain",
            "--target",
            target,
            "-t",
            tag,
            p(&ctx),
        ]);
    }
    let (a, b) = (layer_digests(&env, "link:a"), layer_digests(&env, "link:b"));
    // Different bases below, the very same layer on top.
    assert_ne!(a[a.len() - 2], b[b.len() - 2]);
    assert_eq!(a.last(), b.last(), "the --link layer differs between bases");
    // It holds the copy and the directory it created, nothing of the base.
    let top = layer(&env, a.last().unwrap());
    assert_eq!(
        top.keys().collect::<Vec<_>>(),
        ["app", "app/f.txt"],
        "{top:?}"
    );
    assert_eq!(meta(&top, "app"), ('d', 0o755, 1234, 1234));
    assert_eq!(meta(&top, "app/f.txt"), ('f', 0o644, 1234, 1234));
    // Placed over the base as it is: its /app (1000, 0700) takes the layer's owner and
    // mode, as BuildKit's merge gives it; the base's files in it stay.
    let rootfs = env.umoci_unpack("link:a");
    let app = std::fs::metadata(rootfs.join("app")).unwrap();
    assert_eq!(
        (app.mode() & 0o7777, app.uid(), app.gid()),
        (0o755, 1234, 1234)
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/old")).unwrap(),
        "old\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/f.txt")).unwrap(),
        "linked\n"
    );
    // Without --link the existing directory keeps its owner and mode.
    let rootfs = env.umoci_unpack("link:plain");
    let app = std::fs::metadata(rootfs.join("app")).unwrap();
    assert_eq!(
        (app.mode() & 0o7777, app.uid(), app.gid()),
        (0o700, 1000, 1000)
    );
    let plain = layer(&env, layer_digests(&env, "link:plain").last().unwrap());
    assert_eq!(meta(&plain, "app"), ('d', 0o700, 1000, 1000));
}

#[test]
fn copied_trees_merge_into_existing_directories_as_buildkit_does() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("existing", &[]);
    build_ok(
        &env,
        &ctx,
        "existing:1",
        "FROM busybox:latest AS source
RUN touch /file && chown 100:200 /file \
 && mkdir -p /dir/subdir /dir/existingsubdir && touch /dir/subdir/nestedfile \
 && chown 100:200 /dir && chmod 700 /dir && chown 101:201 /dir/subdir \
 && chown 102:202 /dir/subdir/nestedfile \
 && chown 103:203 /dir/existingsubdir && chmod 750 /dir/existingsubdir

FROM busybox:latest
RUN mkdir -p /existingdir/existingsubdir /existingdir/untouched \
 && touch /existingdir/existingfile \
 && chown 500:600 /existingdir && chown 501:601 /existingdir/existingsubdir \
 && chmod 700 /existingdir/existingsubdir && chown 502:602 /existingdir/untouched
COPY --from=source /file .
COPY --from=source /dir /dir
COPY --from=source /dir/. /existingdir
",
    );
    let rootfs = env.umoci_unpack("existing:1");
    let m = |p: &str| {
        let m = std::fs::symlink_metadata(rootfs.join(p)).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(m("file"), (0o644, 100, 200));
    // A directory copied to a new destination: the destination is made as root, 0755
    // (BuildKit's testCopyChownExistingDir), its contents keep their owners.
    assert_eq!(m("dir"), (0o755, 0, 0));
    assert_eq!(m("dir/subdir"), (0o755, 101, 201));
    assert_eq!(m("dir/subdir/nestedfile"), (0o644, 102, 202));
    // Into an existing destination: it keeps its own metadata, and so does what the
    // source does not have; a directory the source has too takes the source's.
    assert_eq!(m("existingdir"), (0o755, 500, 600));
    assert_eq!(m("existingdir/untouched"), (0o755, 502, 602));
    assert_eq!(m("existingdir/existingfile"), (0o644, 0, 0));
    assert_eq!(m("existingdir/existingsubdir"), (0o750, 103, 203));
    assert_eq!(m("existingdir/subdir"), (0o755, 101, 201));
    assert_eq!(m("existingdir/subdir/nestedfile"), (0o644, 102, 202));
}
