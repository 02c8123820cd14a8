//! Local image store interop with the real skopeo and umoci, load and archive export.

mod common;
use common::*;
use rbuild_cache::{Layer, PruneOptions, Store};
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn layer_with(store: &Store, files: &[(&str, &[u8])]) -> Layer {
    let work = store.tmp_dir("test").unwrap();
    let upper = work.path().join("upper");
    for (name, data) in files {
        let p = upper.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    store.commit_layer(&upper).unwrap().unwrap()
}

fn config_for(layers: &[Layer]) -> Vec<u8> {
    let ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"x": "y"}},
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap()
}

/// A store with image `myapp:latest` of two layers.
fn sample(root: &Path) -> (Store, String, Vec<Layer>) {
    let store = Store::open(root).unwrap();
    let l1 = layer_with(
        &store,
        &[("etc/hello", b"hello\n"), ("bin/tool", b"#!/bin/sh\n")],
    );
    let l2 = layer_with(&store, &[("etc/second", b"2\n")]);
    let layers = vec![l1, l2];
    let d = store
        .put_image(&config_for(&layers), &layers, &["myapp".to_string()])
        .unwrap();
    (store, d, layers)
}

#[test]
fn put_image_then_lookup_and_tags() {
    let root = tempfile::tempdir().unwrap();
    let (store, d, layers) = sample(root.path());
    let img = store.image("myapp").unwrap().unwrap();
    assert_eq!(img.manifest_digest, d);
    assert_eq!(img.layers, layers);
    assert_eq!(img.tags, ["myapp:latest"]);
    assert_eq!(sha256(&img.config), img.config_digest);
    assert_eq!(store.image(&d[..19]).unwrap().unwrap().manifest_digest, d);
    assert_eq!(
        store
            .image(&img.config_digest[7..20])
            .unwrap()
            .unwrap()
            .manifest_digest,
        d
    );
    assert!(store.image("other").unwrap().is_none());
    // A second tag on the same manifest; then move :latest away.
    store
        .put_image(&img.config, &layers, &["myapp:v1".into()])
        .unwrap();
    assert_eq!(store.images().unwrap().len(), 1);
    assert_eq!(
        store.image("myapp:v1").unwrap().unwrap().tags,
        ["myapp:latest", "myapp:v1"]
    );
    assert!(store.remove_tag("myapp").unwrap());
    assert!(!store.remove_tag("myapp").unwrap());
    assert_eq!(store.image("myapp:v1").unwrap().unwrap().tags, ["myapp:v1"]);
    // rmi by digest removes the image with all its tags; by tag only untags.
    store
        .put_image(
            &img.config,
            &layers,
            &["again:1".into(), "again:1".into(), "myapp:v2".into()],
        )
        .unwrap();
    assert_eq!(
        store.image("again:1").unwrap().unwrap().tags,
        ["myapp:v1", "again:1", "myapp:v2"]
    );
    assert_eq!(store.remove_image("again:1").unwrap(), ["again:1"]);
    assert_eq!(
        store.remove_image(&d[..15]).unwrap(),
        ["myapp:v1", "myapp:v2"]
    );
    assert!(store.images().unwrap().is_empty());
    assert!(store.remove_image(&d[..15]).unwrap().is_empty());
    store
        .put_image(&img.config, &layers, &["myapp:v1".into()])
        .unwrap();
    // prune (in a process that leases nothing) keeps everything the remaining tag
    // references.
    drop(store);
    let store = Store::open(root.path()).unwrap();
    let all = PruneOptions {
        all: true,
        ..Default::default()
    };
    assert_eq!(store.prune(&all).unwrap().swept.bytes, 0);
    assert!(store.remove_tag("myapp:v1").unwrap());
    let freed = store.prune(&all).unwrap().swept.bytes;
    assert!(freed > 0);
    assert!(list(&root.path().join("oci/blobs/sha256")).is_empty());
    assert!(list(&root.path().join("snapshots")).is_empty());
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    if !have("skopeo") || !have("umoci") {
        println!("note: skopeo/umoci missing, interop test skipped");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (_store, d, layers) = sample(root.path());
    let oci = root.path().join("oci");
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:myapp:latest", oci.display())));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], d.as_str());
    assert_eq!(v["Layers"][0], layers[0].digest.as_str());
    assert_eq!(v["Labels"]["x"], "y");
    let bundle = tempfile::tempdir().unwrap();
    let b = bundle.path().join("b");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:myapp:latest", oci.display()))
        .arg(&b));
    assert_eq!(
        std::fs::read(b.join("rootfs/etc/hello")).unwrap(),
        b"hello\n"
    );
    assert_eq!(std::fs::read(b.join("rootfs/etc/second")).unwrap(), b"2\n");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"][0], "/bin/sh");
}

#[test]
fn load_skopeo_oci_layout_and_docker_archive() {
    if !have("skopeo") {
        println!("note: skopeo missing, load interop test skipped");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (_store, d, layers) = sample(root.path());
    let src = format!("oci:{}:myapp:latest", root.path().join("oci").display());
    let ext = tempfile::tempdir().unwrap();
    let layout = ext.path().join("layout");
    run(Command::new("skopeo")
        .args(["copy", "-q", &src])
        .arg(format!("oci:{}:other:1", layout.display())));
    let darch = ext.path().join("d.tar");
    run(Command::new("skopeo")
        .args(["copy", "-q", &src])
        .arg(format!("docker-archive:{}:name:tag", darch.display())));

    let root2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    assert_eq!(store2.load(&layout).unwrap(), ["other:1"]);
    let img = store2.image("other:1").unwrap().unwrap();
    assert_eq!(img.manifest_digest, d);
    assert_eq!(img.layers, layers);
    for l in &layers {
        assert!(store2.snapshot_path(&l.diff_id).unwrap().is_dir());
    }
    assert_eq!(
        std::fs::read(
            store2
                .snapshot_path(&layers[0].diff_id)
                .unwrap()
                .join("etc/hello")
        )
        .unwrap(),
        b"hello\n"
    );

    assert_eq!(store2.load(&darch).unwrap(), ["name:tag"]);
    let img = store2.image("name:tag").unwrap().unwrap();
    let ids: Vec<&str> = img.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(
        ids,
        layers
            .iter()
            .map(|l| l.diff_id.as_str())
            .collect::<Vec<_>>()
    );
    for l in &img.layers {
        assert!(store2.has_blob(&l.digest));
    }
    assert!(list(&root2.path().join("tmp")).is_empty());
}

#[test]
fn archives_written_are_read_by_skopeo_and_load_back() {
    let root = tempfile::tempdir().unwrap();
    let (store, d, layers) = sample(root.path());
    let img = store.image("myapp").unwrap().unwrap();
    let ext = tempfile::tempdir().unwrap();
    let oci_tar = ext.path().join("o.tar");
    let dock_tar = ext.path().join("d.tar");
    store
        .write_oci_archive(
            &img,
            &["exp:1".into()],
            &mut std::fs::File::create(&oci_tar).unwrap(),
        )
        .unwrap();
    store
        .write_docker_archive(
            &img,
            &["exp:2".into()],
            &mut std::fs::File::create(&dock_tar).unwrap(),
        )
        .unwrap();
    if have("skopeo") {
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}:exp:1", oci_tar.display())));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Digest"], d.as_str());
        // Addressing the image by its tag checks RepoTags.
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}:exp:2", dock_tar.display())));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Labels"]["x"], "y");
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}:nope:1", dock_tar.display()))
            .output()
            .unwrap();
        assert!(!out.status.success());
    } else {
        println!("note: skopeo missing, archive inspection skipped");
    }
    let root2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    // From a gzip-compressed stream, as `docker save | gzip | rbuild load` gives.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(&dock_tar).unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(store2.load_reader(&mut &gz[..]).unwrap(), ["exp:2"]);
    assert_eq!(store2.load(&oci_tar).unwrap(), ["exp:1"]);
    assert_eq!(store2.image("exp:1").unwrap().unwrap().manifest_digest, d);
    assert_eq!(store2.load(&dock_tar).unwrap(), ["exp:2"]);
    assert_eq!(store2.image("exp:2").unwrap().unwrap().layers, layers);
}

#[test]
fn concurrent_put_image_and_commit_layer_on_one_root() {
    let root = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let root = root.path().to_path_buf();
            std::thread::spawn(move || {
                // Separate opens: separate lock file descriptions, as two processes have.
                let store = Store::open(&root).unwrap();
                for j in 0..5 {
                    let body = format!("{i}-{j}");
                    let l = layer_with(&store, &[("f", body.as_bytes()), ("shared", b"same")]);
                    store
                        .put_image(
                            &config_for(std::slice::from_ref(&l)),
                            &[l],
                            &[format!("t{i}:{j}")],
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = Store::open(root.path()).unwrap();
    let mut tags: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    tags.sort();
    assert_eq!(tags.len(), 20);
    assert!(tags.contains(&"t0:0".to_string()) && tags.contains(&"t3:4".to_string()));
    assert!(list(&root.path().join("tmp")).is_empty());
}

/// A tar file from (name, symlink target or contents).
fn tar_file(path: &Path, entries: &[(&str, Result<&str, &[u8]>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, what) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        match what {
            Ok(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            Err(data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, *data).unwrap();
            }
        }
    }
    b.finish().unwrap();
}

#[test]
fn load_old_docker_save_with_linked_duplicate_layers() {
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o755);
    layer.append_data(&mut h, "bin/app", &b"abc"[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = sha256(&layer);
    let cfg = |label: &str| {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Labels": {"l": label}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .unwrap()
    };
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": "c1.json", "RepoTags": ["one:1"], "Layers": ["aaa/layer.tar"]},
        {"Config": "c2.json", "RepoTags": ["docker.io/library/two:1"], "Layers": ["bbb/layer.tar"]},
    ]))
    .unwrap();
    let ext = tempfile::tempdir().unwrap();
    let file = ext.path().join("old.tar");
    tar_file(
        &file,
        &[
            ("aaa/layer.tar", Err(&layer)),
            ("bbb/layer.tar", Ok("../aaa/layer.tar")),
            ("c1.json", Err(&cfg("1"))),
            ("c2.json", Err(&cfg("2"))),
            ("manifest.json", Err(&manifest)),
        ],
    );
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    assert_eq!(store.load(&file).unwrap(), ["one:1", "two:1"]);
    let one = store.image("one:1").unwrap().unwrap();
    let two = store.image("docker.io/library/two:1").unwrap().unwrap();
    assert_eq!(one.layers, two.layers);
    assert_eq!(
        one.layers[0].digest, diff_id,
        "an uncompressed layer is stored as is"
    );
    assert_eq!(
        one.layers[0].media_type.as_ref(),
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_ne!(one.config_digest, two.config_digest);
    let snap = store.snapshot(&one.layers[0]).unwrap();
    assert_eq!(std::fs::read(snap.join("bin/app")).unwrap(), b"abc");
    assert!(list(&root.path().join("tmp")).is_empty());
}

#[test]
fn load_refuses_archive_paths_that_escape() {
    let ext = tempfile::tempdir().unwrap();
    let file = ext.path().join("bad.tar");
    let manifest = br#"[{"Config":"../../etc/passwd","RepoTags":["x:1"],"Layers":[]}]"#;
    tar_file(&file, &[("manifest.json", Err(&manifest[..]))]);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store.load(&file).unwrap_err().to_string();
    assert!(
        err.contains("\"../../etc/passwd\"") && err.contains("'..'"),
        "{err}"
    );
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn put_image_refuses_config_that_disagrees_with_layers() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let l = layer_with(&store, &[("a", b"a")]);
    let err = store
        .put_image(&config_for(&[]), std::slice::from_ref(&l), &["x".into()])
        .unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn concurrent_snapshot_of_one_layer_extracts_once() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let l = layer_with(&store, &[("a/b", b"content")]);
    let snap = store.snapshot(&l).unwrap();
    std::fs::remove_dir_all(&snap).unwrap();
    let paths: Vec<_> = (0..4)
        .map(|_| {
            let (s, l) = (store.clone(), l.clone());
            std::thread::spawn(move || s.snapshot(&l).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(paths.iter().all(|p| *p == snap));
    assert_eq!(std::fs::read(snap.join("a/b")).unwrap(), b"content");
    assert_eq!(list(&root.path().join("snapshots")).len(), 1);
    assert!(list(&root.path().join("tmp")).is_empty());
}

/// Run by `two_processes_share_a_root` in a child process.
#[test]
#[ignore]
fn child_process_helper() {
    let Ok(root) = std::env::var("RBUILD_CACHE_TEST_ROOT") else {
        return;
    };
    let who = std::env::var("RBUILD_CACHE_TEST_WHO").unwrap();
    let store = Store::open(Path::new(&root)).unwrap();
    for j in 0..5 {
        let body = format!("{who}-{j}");
        let l = layer_with(&store, &[("f", body.as_bytes())]);
        store
            .put_image(
                &config_for(std::slice::from_ref(&l)),
                &[l],
                &[format!("{who}:{j}")],
            )
            .unwrap();
    }
}

#[test]
fn two_processes_share_a_root() {
    let root = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p1", "p2"]
        .iter()
        .map(|who| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "child_process_helper",
                    "--test-threads=1",
                ])
                .env("RBUILD_CACHE_TEST_ROOT", root.path())
                .env("RBUILD_CACHE_TEST_WHO", who)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let store = Store::open(root.path()).unwrap();
    let mut tags: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    tags.sort();
    let want: Vec<String> = ["p1", "p2"]
        .iter()
        .flat_map(|w| (0..5).map(move |j| format!("{w}:{j}")))
        .collect();
    assert_eq!(tags, want);
}
