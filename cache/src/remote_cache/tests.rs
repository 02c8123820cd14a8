//! Unit tests of the cache config, the artifact and local export/import.

use super::*;

fn layer(n: u8) -> Layer {
    Layer {
        digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        diff_id: format!("sha256:{}", format!("{:02x}", n + 100).repeat(32)),
        size: n as u64 * 10,
        media_type: MediaType::ImageLayerGzip,
    }
}

fn rec(layers: Vec<Layer>) -> CacheRecord {
    CacheRecord {
        layers,
        config: None,
        created: 7,
    }
}

fn sample() -> CacheConfig {
    CacheConfig::new(BTreeMap::from([
        ("aa".to_string(), rec(vec![layer(1)])),
        ("bb".to_string(), rec(vec![layer(1), layer(2)])),
    ]))
}

#[test]
fn layers_are_distinct_in_chain_order() {
    let got: Vec<String> = sample().layers().into_iter().map(|l| l.digest).collect();
    assert_eq!(got, [layer(1).digest, layer(2).digest]);
}

#[test]
fn config_round_trips_and_is_checked() {
    let cfg = sample();
    assert_eq!(CacheConfig::parse(&cfg.to_json()).unwrap(), cfg);
    let mut bad = cfg.clone();
    bad.version = 2;
    assert!(
        CacheConfig::parse(&bad.to_json())
            .unwrap_err()
            .to_string()
            .contains("version 2")
    );
    let mut bad = cfg.clone();
    bad.records.insert("../x".into(), rec(vec![]));
    assert!(CacheConfig::parse(&bad.to_json()).is_err());
    let mut bad = cfg.clone();
    let mut l = layer(2);
    l.size = 1;
    bad.records.insert("cc".into(), rec(vec![l]));
    assert!(
        CacheConfig::parse(&bad.to_json())
            .unwrap_err()
            .to_string()
            .contains("two ways")
    );
    assert!(CacheConfig::parse(b"{\"version\":1}").is_err());
    assert!(CacheConfig::parse(b"garbage").is_err());
}

#[test]
fn manifest_is_an_artifact_listing_every_blob() {
    let cfg = sample();
    let json = cfg.to_json();
    let m: serde_json::Value =
        serde_json::from_slice(&manifest_bytes(&cfg, &json).unwrap()).unwrap();
    assert_eq!(m["artifactType"], ARTIFACT_TYPE);
    assert_eq!(m["mediaType"], MediaType::ImageManifest.as_ref());
    assert_eq!(m["config"]["mediaType"], MEDIA_TYPE_CACHE_CONFIG);
    assert_eq!(
        m["config"]["digest"],
        format!("sha256:{}", fsutil::sha256_hex(&json))
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
    assert_eq!(m["layers"][1]["size"], 20);
}

#[test]
fn inline_keeps_the_config_and_reads_back() {
    let cfg = sample();
    let base = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let out = add_inline(base, &cfg).unwrap();
    assert!(out.starts_with(&base[..base.len() - 1]));
    assert_eq!(read_inline(&out).unwrap(), Some(cfg.clone()));
    assert_eq!(read_inline(base).unwrap(), None);
    // Adding again replaces the records instead of duplicating the key.
    let again = add_inline(&out, &CacheConfig::new(BTreeMap::new())).unwrap();
    assert_eq!(read_inline(&again).unwrap().unwrap().records.len(), 0);
    assert_eq!(
        read_inline(&add_inline(b"{}", &cfg).unwrap()).unwrap(),
        Some(cfg)
    );
    assert!(add_inline(b"[1]", &sample()).is_err());
}

#[test]
fn local_export_and_import_are_lazy_and_verified() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(&root.path().join("a")).unwrap();
    let d1 = store.put_blob(b"layer one").unwrap();
    let d2 = store.put_blob(b"layer two, longer").unwrap();
    let l = |d: &str, size| Layer {
        digest: d.to_string(),
        diff_id: layer(9).diff_id,
        size,
        media_type: MediaType::ImageLayerGzip,
    };
    let cfg = CacheConfig::new(BTreeMap::from([
        ("k1".to_string(), rec(vec![l(&d1, 9)])),
        ("k2".to_string(), rec(vec![l(&d1, 9), l(&d2, 17)])),
    ]));
    let dest = root.path().join("cache");
    let s = export_local(&store, &cfg, &dest, "latest").unwrap();
    assert_eq!((s.records, s.blobs), (2, 2));
    assert_eq!(load_local(&dest, "latest").unwrap(), cfg);

    let b = Store::open(&root.path().join("b")).unwrap();
    let mut imp = ImportedCache::new();
    imp.add(
        CacheSource::Local(dest.clone()),
        load_local(&dest, "x").unwrap(),
    );
    assert_eq!(imp.len(), 2);
    assert_eq!(imp.fetched(), (0, 0));
    assert!(!b.has_blob(&d1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(imp.ensure_blobs(&b, &[l(&d1, 9)])).unwrap();
    assert_eq!(std::fs::read(b.blob_path(&d1)).unwrap(), b"layer one");
    assert!(!b.has_blob(&d2));
    assert_eq!(imp.fetched(), (1, 9));
    // Present blobs are not fetched again.
    rt.block_on(imp.ensure_blobs(&b, &[l(&d1, 9)])).unwrap();
    assert_eq!(imp.fetched(), (1, 9));

    // A corrupt blob in the source is refused, nothing is stored.
    std::fs::write(dest.join("blobs/sha256").join(&d2[7..]), b"evil").unwrap();
    assert!(rt.block_on(imp.ensure_blobs(&b, &[l(&d2, 17)])).is_err());
    assert!(!b.has_blob(&d2));

    // A corrupt index is an error naming the directory.
    std::fs::write(dest.join("index.json"), b"{nope").unwrap();
    let e = load_local(&dest, "latest").unwrap_err().to_string();
    assert!(e.contains("index.json"), "{e}");
    assert!(load_local(&root.path().join("absent"), "latest").is_err());
}

#[test]
fn export_refuses_missing_blobs() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let e = export_local(&store, &sample(), &root.path().join("c"), "latest").unwrap_err();
    assert!(matches!(
        e,
        RemoteCacheError::Store(CacheError::MissingBlob { .. })
    ));
}
