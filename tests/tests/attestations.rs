//! `--provenance` and `--sbom`: attestation manifests in the image index, pushed to a
//! registry on loopback and read back from it (skopeo for the documents, the registry's
//! blob API for the statements); the same on two stores with `SOURCE_DATE_EPOCH`; kept by
//! prune; refused where an output cannot hold them.

use rbuild_tests::{Env, Registry, skopeo_raw};
use std::path::Path;
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A blob of `repo` in the registry, by its digest.
fn blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sSf"])
        .arg(format!("http://{}/v2/{repo}/blobs/{digest}", reg.host))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    out.stdout
}

/// A dpkg status with two installed packages and one removed, an apk database with one,
/// and an os-release: what the SBOM reads.
const APP: &str = r#"FROM busybox:latest
ARG VERSION=1
ARG NPM_TOKEN
RUN mkdir -p /var/lib/dpkg /lib/apk/db /etc \
 && printf 'Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u7\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: gcc-12\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.2.0-14\n' > /var/lib/dpkg/status \
 && printf 'P:musl\nV:1.2.4-r2\nA:x86_64\n' > /lib/apk/db/installed \
 && printf 'ID=debian\nVERSION_ID="12"\n' > /etc/os-release \
 && echo "$VERSION" > /version
"#;

const SECRET: &str = "npm-s3cr3t-value";

#[test]
fn provenance_and_sbom_travel_with_the_pushed_index() {
    let reg = Registry::start();
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("app", &[("Dockerfile", APP)]);
    let target = format!("{}/app:att", reg.host);
    env.ok(&[
        "build",
        "--progress=plain",
        "--provenance=mode=max",
        "--sbom=true",
        "--build-arg",
        "VERSION=2",
        "--build-arg",
        &format!("NPM_TOKEN={SECRET}"),
        "-t",
        &target,
        "--push",
        p(&ctx),
    ]);

    // The index: the image for this machine, then its attestation manifest.
    let index = skopeo_raw(&target);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 2, "{index:#}");
    let image = &entries[0];
    let image_digest = image["digest"].as_str().unwrap();
    assert_eq!(image["platform"]["os"], "linux");
    let att = &entries[1];
    assert_eq!(att["platform"]["os"], "unknown");
    assert_eq!(att["platform"]["architecture"], "unknown");
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image_digest
    );

    // Its layers are the two statements.
    let repo = "app";
    let manifest = skopeo_raw(&format!(
        "{}/app@{}",
        reg.host,
        att["digest"].as_str().unwrap()
    ));
    let layers = manifest["layers"].as_array().expect("layers");
    let by_type = |t: &str| -> serde_json::Value {
        let l = layers
            .iter()
            .find(|l| l["annotations"]["in-toto.io/predicate-type"] == t)
            .unwrap_or_else(|| panic!("no {t} layer: {manifest:#}"));
        assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
        let bytes = blob(&reg, repo, l["digest"].as_str().unwrap());
        assert!(
            !text(&bytes).contains(SECRET),
            "the secret-looking build arg's value is in the {t} statement"
        );
        serde_json::from_slice(&bytes).expect("a JSON statement")
    };
    let prov = by_type("https://slsa.dev/provenance/v0.2");
    assert_eq!(prov["_type"], "https://in-toto.io/Statement/v0.1");
    assert_eq!(
        prov["subject"][0]["digest"]["sha256"],
        image_digest.strip_prefix("sha256:").unwrap()
    );
    let pred = &prov["predicate"];
    assert_eq!(
        pred["invocation"]["configSource"]["entryPoint"],
        "Dockerfile"
    );
    assert_eq!(pred["invocation"]["environment"]["platform"], "linux/amd64");
    let args = &pred["invocation"]["parameters"]["args"];
    assert_eq!(args["build-arg:VERSION"], "2");
    assert!(args.get("build-arg:NPM_TOKEN").is_none(), "{args:#}");
    // The base image is a material, by its manifest digest.
    let base: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", "busybox:latest"]).stdout).unwrap();
    let base_digest = base[0]["ManifestDigest"].as_str().unwrap();
    let materials = pred["materials"].as_array().expect("materials");
    assert!(
        materials.iter().any(|m| {
            m["uri"] == "pkg:docker/busybox@latest?platform=linux%2Famd64"
                && m["digest"]["sha256"] == base_digest.strip_prefix("sha256:").unwrap()
        }),
        "{materials:#?}"
    );

    let sbom = by_type("https://spdx.dev/Document");
    let doc = &sbom["predicate"];
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let purls: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12",
            "pkg:deb/debian/gcc-12@12.2.0-14?arch=amd64&distro=debian-12",
            "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12",
        ]
    );

    // `images` lists the index once (its image untagged only with -a), as docker does.
    let listed = text(&env.ok(&["images"]).stdout);
    assert!(!listed.contains("<none>"), "{listed}");
    assert!(listed.contains("index: linux/amd64"), "{listed}");
    let all = text(&env.ok(&["images", "-a"]).stdout);
    assert_eq!(all.matches("<none>").count(), 2, "{all}");
    // In the store: the tag names the index, `run` takes the image from it.
    let out = env.ok(&["run", "--rm", &target, "cat", "/version"]);
    assert_eq!(text(&out.stdout).trim(), "2");
    // prune --all keeps what the index names: a push to another name still has every blob.
    env.ok(&["prune", "--all"]);
    env.ok(&["check"]);
    let again = format!("{}/again:att", reg.host);
    env.ok(&["tag", &target, &again]);
    env.ok(&["push", &again]);
    assert_eq!(skopeo_raw(&again)["manifests"], index["manifests"]);
}

#[test]
fn attestations_are_reproducible_and_refused_where_they_cannot_go() {
    const EPOCH: &str = "1700000000";
    // One base image in both stores (built once, exported, loaded by the other).
    let a = Env::new();
    let b = Env::new();
    a.busybox_base();
    let archive = a.work.path().join("base.tar");
    let base_ctx = a.context("base-out", &[("Dockerfile", "FROM busybox:latest\n")]);
    a.ok(&[
        "build",
        "-q",
        "-t",
        "busybox:latest",
        "-o",
        &format!("type=oci,dest={}", p(&archive)),
        p(&base_ctx),
    ]);
    b.ok(&["load", "-i", p(&archive)]);
    let digests: Vec<String> = [&a, &b]
        .into_iter()
        .map(|env| {
            let ctx = env.context("app", &[("Dockerfile", APP)]);
            let out = env
                .cmd(&[
                    "build",
                    "-q",
                    "--no-cache",
                    "--provenance=true",
                    "--sbom=true",
                    "-t",
                    "app:att",
                    p(&ctx),
                ])
                .env("SOURCE_DATE_EPOCH", EPOCH)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_string()
        })
        .collect();
    assert!(digests[0].starts_with("sha256:"), "{digests:?}");
    assert_eq!(digests[0], digests[1], "two stores, one epoch: one index");

    // A docker tarball holds one image and no attestations: said before the build.
    let env = Env::new();
    let ctx = env.context(
        "app",
        &[("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")],
    );
    let tar = env.work.path().join("x.tar");
    let out = env.run(&[
        "build",
        "--sbom=true",
        "-o",
        &format!("type=docker,dest={}", p(&tar)),
        p(&ctx),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "--output type=docker holds one image and no attestations, and this build adds them"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(!tar.exists());
    // Bad values name the flag and what to write.
    let out = env.run(&["build", "--provenance=mode=full", p(&ctx)]);
    assert!(
        text(&out.stderr).contains("--provenance \"mode=full\": mode is min or max"),
        "{}",
        text(&out.stderr)
    );
}
