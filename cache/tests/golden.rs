//! Golden bytes: what the store writes (manifests, index.json, archives, cache artifacts,
//! records), compared byte for byte with what rbuild wrote before its OCI model moved to
//! `oci-spec`. Digests of images and caches depend on these bytes: a change here changes
//! every image ID users have, so it must never happen by accident.

mod common;
use common::*;
use rbuild_cache::remote_cache::{self, CacheConfig};
use rbuild_cache::{CacheRecord, Layer, Store};
use std::collections::BTreeMap;
use std::path::Path;

/// A small uncompressed layer: one file.
fn tar_layer(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

/// `actual` must be exactly `expected`.
fn golden(actual: impl AsRef<str>, expected: &str) {
    assert_eq!(actual.as_ref(), expected);
}

fn text(p: &Path) -> String {
    String::from_utf8(std::fs::read(p).unwrap()).unwrap()
}

/// Two layers put as blobs (fake diff_ids: put_image does not extract).
fn two_layers(store: &Store) -> Vec<Layer> {
    let d1 = store.put_blob(b"layer one").unwrap();
    let d2 = store.put_blob(b"layer two").unwrap();
    vec![
        Layer {
            digest: d1,
            diff_id: format!("sha256:{}", "1".repeat(64)),
            size: 9,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        },
        Layer {
            digest: d2,
            diff_id: format!("sha256:{}", "2".repeat(64)),
            size: 9,
            // docker's name: the manifest maps it to OCI's
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
        },
    ]
}

const CONFIG: &str = r#"{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111","sha256:2222222222222222222222222222222222222222222222222222222222222222"]}}"#;

#[test]
fn fresh_store_layout_files() {
    let root = tempfile::tempdir().unwrap();
    Store::open(root.path()).unwrap();
    assert_eq!(
        text(&root.path().join("oci/oci-layout")),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        text(&root.path().join("oci/index.json")),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
    );
}

#[test]
fn put_image_manifest_and_index_bytes() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let layers = two_layers(&store);
    let digest = store
        .put_image(
            CONFIG.as_bytes(),
            &layers,
            &["app:1".into(), "reg:5000/x/app".into()],
        )
        .unwrap();
    let manifest = std::fs::read(store.blob_path(&digest)).unwrap();
    golden(
        String::from_utf8(manifest).unwrap(),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:11c52048f283378d79ea27b3278e4721465c7ce588ff9674cbcff825dd21482d","size":240},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","size":9},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:77c7ed05b2e49df2e55d70cb007508cc66b2f5419a940bfd6f8749ba7db77c45","size":9}]}"#,
    );
    golden(
        &digest,
        r#"sha256:67acd7a52a2a76fc418a96b999f62968dde4a28050962ef04b8ed1948a4450d1"#,
    );
    golden(
        text(&root.path().join("oci/index.json")),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:67acd7a52a2a76fc418a96b999f62968dde4a28050962ef04b8ed1948a4450d1","size":551,"annotations":{"org.opencontainers.image.ref.name":"app:1"},"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:67acd7a52a2a76fc418a96b999f62968dde4a28050962ef04b8ed1948a4450d1","size":551,"annotations":{"org.opencontainers.image.ref.name":"reg:5000/x/app:latest"},"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#,
    );
    // An untagged image gets one unnamed entry; a second tag on an image adds one.
    store.put_image(b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", &[], &[]).unwrap();
    store.tag_image("app:1", "app:2").unwrap();
    assert!(store.remove_tag("reg:5000/x/app").unwrap());
    golden(
        text(&root.path().join("oci/index.json")),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:67acd7a52a2a76fc418a96b999f62968dde4a28050962ef04b8ed1948a4450d1","size":551,"annotations":{"org.opencontainers.image.ref.name":"app:1"},"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:09ade42fe3e69018a3360bb092265af902f9e7d6013146cf152c82ac3a944707","size":247,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:67acd7a52a2a76fc418a96b999f62968dde4a28050962ef04b8ed1948a4450d1","size":551,"annotations":{"org.opencontainers.image.ref.name":"app:2"},"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#,
    );
}

#[test]
fn put_manifest_keeps_registry_bytes_and_media_type() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let layers = two_layers(&store);
    let config_digest = store.put_blob(CONFIG.as_bytes()).unwrap();
    // A docker manifest as a registry serves it: its own spacing and field order.
    let manifest = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n   \"config\": {{\n      \"mediaType\": \"application/vnd.docker.container.image.v1+json\",\n      \"size\": {},\n      \"digest\": \"{config_digest}\"\n   }},\n   \"layers\": [\n      {{\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"size\": 9, \"digest\": \"{}\"}},\n      {{\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"size\": 9, \"digest\": \"{}\", \"urls\": [\"https://x\"]}}\n   ]\n}}",
        CONFIG.len(),
        layers[0].digest,
        layers[1].digest
    );
    let digest = store
        .put_manifest(
            manifest.as_bytes(),
            &"application/vnd.docker.distribution.manifest.v2+json".into(),
            &["docker.io/library/base:1".into()],
        )
        .unwrap();
    assert_eq!(digest, sha256(manifest.as_bytes()));
    assert_eq!(
        std::fs::read(store.blob_path(&digest)).unwrap(),
        manifest.as_bytes()
    );
    golden(
        text(&root.path().join("oci/index.json")),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:32f142c49fbcf5d3157e488fa4879ee49367d67b9ce2d122e1618a4d46f0d4b8","size":679,"annotations":{"org.opencontainers.image.ref.name":"docker.io/library/base:1"},"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#,
    );
    let img = store.image("base:1").unwrap().unwrap();
    let types: Vec<&str> = img.layers.iter().map(|l| l.media_type.as_ref()).collect();
    assert_eq!(
        types,
        ["application/vnd.docker.image.rootfs.diff.tar.gzip"; 2]
    );
}

/// Blobs of an OCI layout written by another tool: an index whose entries carry
/// annotations, urls and a platform with fields rbuild does not know.
fn foreign_layout(dir: &Path) -> (String, String) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let layer = tar_layer("hello", b"hi\n");
    let ld = put(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{ld}"]}}}}"#
    );
    let cd = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}],"annotations":{{"b":"2","a":"1"}}}}"#,
        config.len(),
        layer.len()
    );
    let md = put(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"urls":["https://example.com/x"],"artifactType":"application/x-thing","annotations":{{"org.opencontainers.image.ref.name":"v1","io.containerd.image.name":"example.com/foreign:v1","z":"last"}},"platform":{{"os":"linux","architecture":"amd64","os.version":"10.0","variant":"v3","os.features":["f"]}}}}],"annotations":{{"x":"y"}}}}"#,
        manifest.len()
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (md, manifest)
}

#[test]
fn load_of_a_foreign_layout_and_archives_written() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(&root.path().join("store")).unwrap();
    let layout = root.path().join("layout");
    let (md, manifest) = foreign_layout(&layout);
    assert_eq!(store.load(&layout).unwrap(), ["example.com/foreign:v1"]);
    assert_eq!(
        std::fs::read(store.blob_path(&md)).unwrap(),
        manifest.as_bytes()
    );
    golden(
        text(&root.path().join("store/oci/index.json")),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1bf39b73536812631543bb15b7cd432c9caa9ee86cd0f862e5472d6c620cf48f","size":372,"annotations":{"org.opencontainers.image.ref.name":"example.com/foreign:v1"},"platform":{"architecture":"amd64","os":"linux","os.features":["f"],"os.version":"10.0","variant":"v3"}}]}"#,
    );
    let img = store.image("example.com/foreign:v1").unwrap().unwrap();

    // The OCI archive's index.json and the docker archive's manifest.json and repositories.
    let mut oci = Vec::new();
    store
        .write_oci_archive(
            &img,
            &["example.com/foreign:v1".into(), "other".into()],
            &mut oci,
        )
        .unwrap();
    let mut docker = Vec::new();
    store
        .write_docker_archive(
            &img,
            &["example.com/foreign:v1".into(), "other".into()],
            &mut docker,
        )
        .unwrap();
    let files = |tarball: &[u8]| -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut ar = tar::Archive::new(tarball);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") || name == "repositories" || name == "oci-layout" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                out.insert(name, s);
            }
        }
        out
    };
    let oci = files(&oci);
    golden(
        &oci["index.json"],
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1bf39b73536812631543bb15b7cd432c9caa9ee86cd0f862e5472d6c620cf48f","size":372,"annotations":{"io.containerd.image.name":"example.com/foreign:v1","org.opencontainers.image.ref.name":"example.com/foreign:v1"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1bf39b73536812631543bb15b7cd432c9caa9ee86cd0f862e5472d6c620cf48f","size":372,"annotations":{"io.containerd.image.name":"other:latest","org.opencontainers.image.ref.name":"other:latest"}}]}"#,
    );
    assert_eq!(oci["oci-layout"], r#"{"imageLayoutVersion":"1.0.0"}"#);
    let docker = files(&docker);
    golden(
        &docker["manifest.json"],
        r#"[{"Config":"blobs/sha256/4122f9651f245f5c32f13c307b5a83a4c1823bd8aacecba68054d3ebe3e99fd9","RepoTags":["example.com/foreign:v1","other:latest"],"Layers":["blobs/sha256/58789362f69f043da911bd00676b0507875c3776e091ca23b3013b21bfb9978c"]}]"#,
    );
    golden(
        &docker["repositories"],
        r#"{"example.com/foreign":{"v1":"4122f9651f245f5c32f13c307b5a83a4c1823bd8aacecba68054d3ebe3e99fd9"},"other":{"latest":"4122f9651f245f5c32f13c307b5a83a4c1823bd8aacecba68054d3ebe3e99fd9"}}"#,
    );
}

fn record(layers: Vec<Layer>) -> CacheRecord {
    CacheRecord {
        layers,
        config: Some(serde_json::json!({"b": 1, "a": null})),
        created: 1_700_000_000,
    }
}

#[test]
fn cache_records_and_exported_cache_bytes() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(&root.path().join("store")).unwrap();
    let layers = two_layers(&store);
    store.record_put("key1", &record(layers.clone())).unwrap();
    golden(
        text(&root.path().join("store/records/key1.json")),
        r#"{"layers":[{"digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","diff_id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":9,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"},{"digest":"sha256:77c7ed05b2e49df2e55d70cb007508cc66b2f5419a940bfd6f8749ba7db77c45","diff_id":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":9,"media_type":"application/vnd.docker.image.rootfs.diff.tar.gzip"}],"config":{"a":null,"b":1},"created":1700000000}"#,
    );
    let cfg = CacheConfig::new(BTreeMap::from([
        ("bb".to_string(), record(layers.clone())),
        ("aa".to_string(), record(layers[..1].to_vec())),
    ]));
    let dest = root.path().join("cache");
    // An existing layout with another tag, written by another tool: kept.
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(
        dest.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":3,"annotations":{{"org.opencontainers.image.ref.name":"old","k":"v"}},"urls":["u"]}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":4,"annotations":{{"org.opencontainers.image.ref.name":"mine"}}}}]}}"#,
            "a".repeat(64),
            "b".repeat(64)
        ),
    )
    .unwrap();
    let s = remote_cache::export_local(&store, &cfg, &dest, "mine").unwrap();
    golden(
        &s.manifest_digest,
        r#"sha256:7fa801075e3d66ba1d38aa887bceb205b949756bed435c038e4dd35c79fe8408"#,
    );
    let manifest = text(&dest.join("blobs/sha256").join(&s.manifest_digest[7..]));
    golden(
        &manifest,
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.rbuild.cache.v1","config":{"mediaType":"application/vnd.rbuild.cache.config.v1+json","digest":"sha256:3400eebc1761c380c81a78f7a5cb62bdf39c9955feff2a10f65d5a3d58e96128","size":872},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","size":9},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:77c7ed05b2e49df2e55d70cb007508cc66b2f5419a940bfd6f8749ba7db77c45","size":9}]}"#,
    );
    let config_digest = format!(
        "sha256:{}",
        &manifest.split("sha256:").nth(1).unwrap()[..64]
    );
    golden(
        text(&dest.join("blobs/sha256").join(&config_digest[7..])),
        r#"{"version":1,"records":{"aa":{"layers":[{"digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","diff_id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":9,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"}],"config":{"a":null,"b":1},"created":1700000000},"bb":{"layers":[{"digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","diff_id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":9,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"},{"digest":"sha256:77c7ed05b2e49df2e55d70cb007508cc66b2f5419a940bfd6f8749ba7db77c45","diff_id":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":9,"media_type":"application/vnd.docker.image.rootfs.diff.tar.gzip"}],"config":{"a":null,"b":1},"created":1700000000}}}"#,
    );
    golden(
        text(&dest.join("index.json")),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":3,"annotations":{"k":"v","org.opencontainers.image.ref.name":"old"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:7fa801075e3d66ba1d38aa887bceb205b949756bed435c038e4dd35c79fe8408","size":609,"annotations":{"org.opencontainers.image.ref.name":"mine"}}]}"#,
    );

    let inline = remote_cache::add_inline(CONFIG.as_bytes(), &cfg).unwrap();
    golden(
        String::from_utf8(inline).unwrap(),
        r#"{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111","sha256:2222222222222222222222222222222222222222222222222222222222222222"]},"rbuild.cache.v1":{"version":1,"records":{"aa":{"layers":[{"digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","diff_id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":9,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"}],"config":{"a":null,"b":1},"created":1700000000},"bb":{"layers":[{"digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","diff_id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":9,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"},{"digest":"sha256:77c7ed05b2e49df2e55d70cb007508cc66b2f5419a940bfd6f8749ba7db77c45","diff_id":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":9,"media_type":"application/vnd.docker.image.rootfs.diff.tar.gzip"}],"config":{"a":null,"b":1},"created":1700000000}}}}"#,
    );
}

#[test]
fn annotated_manifest_bytes_are_sorted_and_last() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let layers = two_layers(&store);
    let annotations: BTreeMap<String, String> = [("z.last", "2"), ("a.first", "1"), ("m", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let digest = store
        .put_image_annotated(CONFIG.as_bytes(), &layers, &["app:1".into()], &annotations)
        .unwrap();
    let manifest = String::from_utf8(std::fs::read(store.blob_path(&digest)).unwrap()).unwrap();
    golden(
        &manifest,
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:11c52048f283378d79ea27b3278e4721465c7ce588ff9674cbcff825dd21482d","size":240},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","size":9},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:77c7ed05b2e49df2e55d70cb007508cc66b2f5419a940bfd6f8749ba7db77c45","size":9}],"annotations":{"a.first":"1","m":"3","z.last":"2"}}"#,
    );
    // The same again (a HashMap inside oci-spec must not change the order run to run).
    for _ in 0..8 {
        let again = store
            .put_image_annotated(CONFIG.as_bytes(), &layers, &[], &annotations)
            .unwrap();
        assert_eq!(again, digest);
    }
}
