//! `cargo fuzz run registry`: any bytes as what a registry or an OCI layout serves — a
//! manifest, an index, an image config, a build-cache config — through every reader rbuild
//! has for them (rbuild-registry's `documents`, rbuild-cache's `oci` and `remote_cache`,
//! rbuild-graph's `ImageConfig`); the first line also as an image reference. None may
//! panic, and what rbuild writes back must read back the same: an `index.json` or manifest
//! it re-encodes, a config it re-serializes, a cache config it appends inline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_cache::oci;
use rbuild_cache::remote_cache::{self, CacheConfig};
use rbuild_graph::image::ImageConfig;
use rbuild_registry::documents;
use rbuild_registry::media_types::{self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};
use rbuild_registry::platform;
use rbuild_registry::reference::{Reference, validate_digest};

/// A valid cache config to append inline.
fn sample_cache() -> CacheConfig {
    let d = format!("sha256:{}", "a".repeat(64));
    let json = format!(
        r#"{{"version":1,"records":{{"k1":{{"layers":[{{"digest":"{d}","diff_id":"{d}","size":3,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"}}],"config":null,"created":1}}}}}}"#
    );
    CacheConfig::parse(json.as_bytes()).expect("sample cache config")
}

fn registry_documents(body: &[u8]) {
    for ct in [
        None,
        Some("application/json; charset=utf-8"),
        Some(DOCKER_MANIFEST),
        Some(DOCKER_MANIFEST_LIST),
        Some("application/vnd.oci.image.index.v1+json"),
    ] {
        if let Err(e) = documents::manifest_media_type(ct, body) {
            let _ = e.to_string();
        }
    }
    let _ = documents::declared_media_type(body);
    for want in [
        platform::host(),
        platform::of("linux", "arm", Some("v7")),
        platform::of("linux", "arm64", None),
        platform::of("windows", "amd64", None),
    ] {
        match documents::choose_from_index(body, &want) {
            Ok(d) => {
                validate_digest(d.digest().as_ref()).expect("chosen entry has a sha256 digest");
                let have = d
                    .platform()
                    .as_ref()
                    .expect("chosen entry names a platform");
                assert!(
                    platform::matches(&want, have),
                    "chosen entry does not match"
                );
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Ok(m) = documents::read_image_manifest(body) {
        for l in m.layers().iter().chain([m.config()]) {
            validate_digest(l.digest().as_ref()).expect("checked digests are sha256");
            let _ = media_types::layer_media_type(l.media_type());
            let _ = media_types::manifest_layer_media_type(l.media_type());
        }
    }
}

fn store_documents(body: &[u8]) {
    if let Ok(idx) = oci::parse_index(body) {
        let bytes = oci::index_json(&idx);
        let again = oci::parse_index(&bytes).expect("the store reads the index.json it writes");
        assert_eq!(
            oci::index_json(&again),
            bytes,
            "index.json changes on a rewrite"
        );
    }
    if let Ok(m) = oci::parse_manifest(body) {
        let bytes = oci::manifest_json(&m);
        let again = oci::parse_manifest(&bytes).expect("the store reads the manifests it writes");
        assert_eq!(
            oci::manifest_json(&again),
            bytes,
            "manifest changes on a rewrite"
        );
    }
    let _ = oci::config_diff_ids(body);
    if let Some(p) = oci::config_platform(body) {
        let _ = platform::name(&p);
    }
    if let Ok(c) = serde_json::from_slice::<ImageConfig>(body) {
        let bytes = serde_json::to_vec(&c).expect("an image config encodes");
        let again: ImageConfig =
            serde_json::from_slice(&bytes).expect("rbuild reads the image config it writes");
        assert_eq!(again, c, "image config changes on a round trip");
    }
    if let Ok(c) = CacheConfig::parse(body) {
        let again = CacheConfig::parse(&c.to_json()).expect("a cache config reads back");
        assert_eq!(again, c, "cache config changes on a round trip");
        let _ = c.layers();
    }
    let _ = remote_cache::read_inline(body);
    let cache = sample_cache();
    if let Ok(with) = remote_cache::add_inline(body, &cache) {
        let back = remote_cache::read_inline(&with)
            .expect("a config with inline cache added is still read")
            .expect("the inline cache just added is found");
        assert_eq!(back, cache, "inline cache changes on a round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    registry_documents(data);
    store_documents(data);
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if let Ok(s) = std::str::from_utf8(first)
        && let Ok(r) = Reference::parse(s)
    {
        let again = Reference::parse(&r.to_string()).expect("a reference reads back");
        assert_eq!(again, r, "reference changes on a round trip");
    }
});
