//! `Store::load` of every image archive format a user meets, each made by hand the way its
//! writer lays it out: docker save with an OCI index (docker 25+), OCI layouts with Docker
//! schema 2 manifests and manifest lists, OCI archives, and gzip, zstd and uncompressed
//! layers. Each test asserts the tags, the layers' media types and the extracted files.

mod common;
use common::*;
use rbuild_cache::{MediaType, Store};
use std::io::Write;
use std::path::Path;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The sha256 of `b` in hex, without the algorithm prefix.
fn hex256(b: &[u8]) -> String {
    sha256(b).trim_start_matches("sha256:").to_string()
}

/// A layer tar holding `path` with `content`.
fn layer_tar(path: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, content).unwrap();
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zstd(b: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

/// A config whose diff_ids are those of `tars`; classic docker's `null`s included.
fn config(tars: &[&[u8]]) -> Vec<u8> {
    let ids: Vec<String> = tars
        .iter()
        .map(|t| format!("\"sha256:{}\"", hex256(t)))
        .collect();
    format!(
        r#"{{"architecture":"{}","os":"linux","config":{{"Env":null,"Cmd":null,"Volumes":null,"Entrypoint":null,"OnBuild":null,"Labels":null}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":null}}"#,
        arch(),
        ids.join(",")
    )
    .into_bytes()
}

/// The `blobs/sha256/` of a layout under `dir`.
struct Blobs<'a>(&'a Path);

impl Blobs<'_> {
    /// Writes `bytes` as a blob; its descriptor JSON with `media_type`.
    fn put(&self, media_type: &str, bytes: &[u8]) -> String {
        let d = self.0.join("blobs/sha256");
        std::fs::create_dir_all(&d).unwrap();
        let hex = hex256(bytes);
        std::fs::write(d.join(&hex), bytes).unwrap();
        format!(
            r#"{{"mediaType":"{media_type}","digest":"sha256:{hex}","size":{}}}"#,
            bytes.len()
        )
    }
}

fn manifest(media_type: &str, config_desc: &str, layer_descs: &[String]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{config_desc},"layers":[{}]}}"#,
        layer_descs.join(",")
    )
    .into_bytes()
}

/// `desc` with annotations (JSON object text) spliced in.
fn annotated(desc: &str, annotations: &str) -> String {
    format!(
        "{},\"annotations\":{annotations}}}",
        desc.trim_end_matches('}')
    )
}

fn snapshot_file(store: &Store, tar: &[u8], path: &str) -> Vec<u8> {
    let snap = store
        .snapshot_path(&format!("sha256:{}", hex256(tar)))
        .unwrap();
    std::fs::read(snap.join(path)).unwrap()
}

/// Tars `dir` (as `docker save` and `skopeo copy oci-archive:` write one file).
fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn docker_25_save_with_an_oci_index_loads() {
    // docker 25+: an OCI layout (index.json, oci-layout, blobs) that also carries
    // manifest.json; layers are uncompressed tars under blobs/sha256.
    let src = tempfile::tempdir().unwrap();
    let blobs = Blobs(src.path());
    let t1 = layer_tar("etc/one", b"1");
    let t2 = layer_tar("etc/two", b"2");
    let cfg = config(&[&t1, &t2]);
    let cdesc = blobs.put(OCI_CONFIG, &cfg);
    let l1 = blobs.put("application/vnd.oci.image.layer.v1.tar", &t1);
    let l2 = blobs.put("application/vnd.oci.image.layer.v1.tar", &t2);
    let m = manifest(OCI_MANIFEST, &cdesc, &[l1, l2]);
    let mdesc = blobs.put(OCI_MANIFEST, &m);
    let entry = annotated(
        &mdesc,
        r#"{"io.containerd.image.name":"docker.io/library/app:25","org.opencontainers.image.ref.name":"25"}"#,
    );
    std::fs::write(
        src.path().join("index.json"),
        format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{entry}]}}"#),
    )
    .unwrap();
    std::fs::write(
        src.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let cfg_hex = hex256(&cfg);
    std::fs::write(
        src.path().join("manifest.json"),
        format!(
            r#"[{{"Config":"blobs/sha256/{cfg_hex}","RepoTags":["app:25"],"Layers":["blobs/sha256/{}","blobs/sha256/{}"],"LayerSources":{{}}}}]"#,
            hex256(&t1),
            hex256(&t2)
        ),
    )
    .unwrap();
    std::fs::write(
        src.path().join("repositories"),
        format!(r#"{{"app":{{"25":"{cfg_hex}"}}}}"#),
    )
    .unwrap();
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), tar_dir(src.path())).unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    assert_eq!(store.load(archive.path()).unwrap(), ["app:25"]);
    let img = store.image("app:25").unwrap().unwrap();
    assert_eq!(img.layers.len(), 2);
    assert!(
        img.layers
            .iter()
            .all(|l| l.media_type == MediaType::ImageLayer)
    );
    assert_eq!(img.config_digest, format!("sha256:{cfg_hex}"));
    assert_eq!(snapshot_file(&store, &t1, "etc/one"), b"1");
    assert_eq!(snapshot_file(&store, &t2, "etc/two"), b"2");
}

#[test]
fn oci_layout_with_a_docker_manifest_list_and_schema2_manifests_loads_the_host_platform() {
    let src = tempfile::tempdir().unwrap();
    let blobs = Blobs(src.path());
    let mut descs = Vec::new();
    let mut host_tar = Vec::new();
    for a in ["s390x", arch()] {
        let t = layer_tar("etc/arch", a.as_bytes());
        let cfg = config(&[&t]);
        let cdesc = blobs.put(DOCKER_CONFIG, &cfg);
        let l = blobs.put(DOCKER_LAYER_GZIP, &gzip(&t));
        let m = manifest(DOCKER_MANIFEST, &cdesc, &[l]);
        let d = blobs.put(DOCKER_MANIFEST, &m);
        descs.push(format!(
            "{},\"platform\":{{\"architecture\":\"{a}\",\"os\":\"linux\"}}}}",
            d.trim_end_matches('}')
        ));
        if a == arch() {
            host_tar = t;
        }
    }
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{}]}}"#,
        descs.join(",")
    );
    let ldesc = blobs.put(DOCKER_LIST, list.as_bytes());
    let entry = annotated(
        &ldesc,
        r#"{"org.opencontainers.image.ref.name":"example.com/multi:1"}"#,
    );
    std::fs::write(
        src.path().join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{entry}]}}"#),
    )
    .unwrap();
    std::fs::write(
        src.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    assert_eq!(store.load(src.path()).unwrap(), ["example.com/multi:1"]);
    // The list stays a list (both platforms, as its entries name them); one image is the
    // host's.
    let index = store
        .index("example.com/multi:1")
        .unwrap()
        .expect("an index");
    assert_eq!(
        index.platform_names(),
        ["linux/s390x".to_string(), format!("linux/{}", arch())]
    );
    let img = store.image("example.com/multi:1").unwrap().unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(
        img.layers[0].diff_id,
        format!("sha256:{}", hex256(&host_tar))
    );
    assert_eq!(
        snapshot_file(&store, &host_tar, "etc/arch"),
        arch().as_bytes()
    );
}

#[test]
fn oci_archive_with_zstd_gzip_and_plain_layers_loads() {
    let src = tempfile::tempdir().unwrap();
    let blobs = Blobs(src.path());
    let tz = layer_tar("usr/zstd", b"z");
    let tg = layer_tar("usr/gzip", b"g");
    let tp = layer_tar("usr/plain", b"p");
    let cfg = config(&[&tz, &tg, &tp]);
    let cdesc = blobs.put(OCI_CONFIG, &cfg);
    let layers = vec![
        blobs.put("application/vnd.oci.image.layer.v1.tar+zstd", &zstd(&tz)),
        blobs.put("application/vnd.oci.image.layer.v1.tar+gzip", &gzip(&tg)),
        blobs.put("application/vnd.oci.image.layer.v1.tar", &tp),
    ];
    let m = manifest(OCI_MANIFEST, &cdesc, &layers);
    let entry = annotated(
        &blobs.put(OCI_MANIFEST, &m),
        r#"{"org.opencontainers.image.ref.name":"zs:1"}"#,
    );
    std::fs::write(
        src.path().join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{entry}]}}"#),
    )
    .unwrap();
    std::fs::write(
        src.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    // An OCI archive, gzip-compressed as a whole as people pass them around.
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), gzip(&tar_dir(src.path()))).unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    assert_eq!(store.load(archive.path()).unwrap(), ["zs:1"]);
    let img = store.image("zs:1").unwrap().unwrap();
    let types: Vec<MediaType> = img.layers.iter().map(|l| l.media_type.clone()).collect();
    assert_eq!(
        types,
        [
            MediaType::ImageLayerZstd,
            MediaType::ImageLayerGzip,
            MediaType::ImageLayer
        ]
    );
    assert_eq!(snapshot_file(&store, &tz, "usr/zstd"), b"z");
    assert_eq!(snapshot_file(&store, &tg, "usr/gzip"), b"g");
    assert_eq!(snapshot_file(&store, &tp, "usr/plain"), b"p");
}

#[test]
fn docker_save_v1_with_a_zstd_layer_file_loads_and_a_corrupt_one_is_refused() {
    // Layer files of a docker save archive are named, not typed: the bytes say zstd.
    let src = tempfile::tempdir().unwrap();
    let t = layer_tar("opt/z", b"zz");
    let cfg = config(&[&t]);
    std::fs::create_dir_all(src.path().join("abc")).unwrap();
    std::fs::write(src.path().join("abc/layer.tar"), zstd(&t)).unwrap();
    std::fs::write(src.path().join("cfg.json"), &cfg).unwrap();
    std::fs::write(
        src.path().join("manifest.json"),
        r#"[{"Config":"cfg.json","RepoTags":["z:1"],"Layers":["abc/layer.tar"]}]"#,
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    assert_eq!(store.load(src.path()).unwrap(), ["z:1"]);
    let img = store.image("z:1").unwrap().unwrap();
    assert_eq!(img.layers[0].media_type, MediaType::ImageLayerZstd);
    assert_eq!(snapshot_file(&store, &t, "opt/z"), b"zz");

    // Truncated zstd: an error naming the layer, nothing half-written.
    let mut bad = zstd(&layer_tar("opt/y", &[7u8; 100_000]));
    bad.truncate(bad.len() / 2);
    let t2 = layer_tar("opt/y", &[7u8; 100_000]);
    std::fs::write(src.path().join("abc/layer.tar"), &bad).unwrap();
    std::fs::write(src.path().join("cfg.json"), config(&[&t2])).unwrap();
    let root2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let err = store2.load(src.path()).unwrap_err().to_string();
    assert!(err.contains("could not read layer"), "{err}");
    assert!(store2.image("z:1").unwrap().is_none());
    assert!(list(&root2.path().join("snapshots")).is_empty());
}
