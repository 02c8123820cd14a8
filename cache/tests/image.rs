//! Local image store interop with the real skopeo and umoci, load and archive export.

mod common;
use common::*;
use rbuild_cache::{Layer, Store};
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
    // prune keeps everything the remaining tag references.
    assert_eq!(store.prune(false).unwrap(), 0);
    assert!(store.remove_tag("myapp:v1").unwrap());
    let freed = store.prune(true).unwrap();
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
