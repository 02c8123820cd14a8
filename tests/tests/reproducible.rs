//! Reproducible images (`SOURCE_DATE_EPOCH`): the same inputs built on two stores, seconds
//! apart, give the same image ID and manifest digest; the layers the build writes hold no
//! time after the epoch, the base image's layers are left as they were.

use rbuild_tests::Env;
use std::io::Read;
use std::path::Path;
use std::process::Command;

const EPOCH: u64 = 1_000_000_000;
const EPOCH_TEXT: &str = "2001-09-09T01:46:40Z";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// (path, mtime) of every entry of a gzip'd layer blob.
fn entry_times(env: &Env, digest: &str) -> Vec<(String, u64)> {
    let bytes = env.blob(digest);
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mtime = e.header().mtime().unwrap();
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).unwrap();
            (path, mtime)
        })
        .collect()
}

const APP: &str = r#"FROM base:1
ARG SOURCE_DATE_EPOCH
COPY a.txt /app/
RUN mkdir -p /out && echo built > /out/stamp && touch /etc/changed
WORKDIR /srv/www
ENV SEEN_EPOCH=${SOURCE_DATE_EPOCH}
CMD ["sh"]
"#;

#[test]
fn same_inputs_two_stores_seconds_apart_give_the_same_image() {
    // One base image, built without an epoch (its files are as new as the build) and
    // loaded into both stores.
    let a = Env::new();
    let b = Env::new();
    a.busybox_base();
    let archive = a.work.path().join("base.tar");
    let base_ctx = a.context("base-out", &[("Dockerfile", "FROM busybox:latest\n")]);
    a.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "base:1",
        "-o",
        &format!("type=oci,dest={}", p(&archive)),
        p(&base_ctx),
    ]);
    b.ok(&["load", "-i", p(&archive)]);
    let base_layers = a.layer_digests("base:1");
    assert_eq!(base_layers, b.layer_digests("base:1"));

    // The same context in two places; the second one's file is touched a second later.
    let ctx_a = a.context("app", &[("Dockerfile", APP), ("a.txt", "hello\n")]);
    let ctx_b = b.context("app", &[("Dockerfile", APP), ("a.txt", "hello\n")]);
    let iid_a = a.work.path().join("iid");
    let iid_b = b.work.path().join("iid");
    // The environment variable, as buildx reads it.
    let out = a
        .cmd(&[
            "build",
            "--progress=plain",
            "--no-cache",
            "-t",
            "app:1",
            "--iidfile",
            p(&iid_a),
            p(&ctx_a),
        ])
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let status = Command::new("touch")
        .arg(ctx_b.join("a.txt"))
        .status()
        .unwrap();
    assert!(status.success());
    // The build arg, on the other store.
    b.ok(&[
        "build",
        "--progress=plain",
        "--no-cache",
        "--build-arg",
        &format!("SOURCE_DATE_EPOCH={EPOCH}"),
        "-t",
        "app:1",
        "--iidfile",
        p(&iid_b),
        p(&ctx_b),
    ]);
    let (ia, ib) = (a.inspect("app:1"), b.inspect("app:1"));
    assert_eq!(ia["Id"], ib["Id"], "image IDs");
    assert_eq!(
        ia["ManifestDigest"], ib["ManifestDigest"],
        "manifest digests"
    );
    assert_eq!(
        std::fs::read(&iid_a).unwrap(),
        std::fs::read(&iid_b).unwrap()
    );

    // created, in the config and in every history entry of the build's own steps.
    let config = &ia["ImageConfig"];
    assert_eq!(config["created"], EPOCH_TEXT);
    let history = config["history"].as_array().unwrap();
    let base_history = a.inspect("base:1")["ImageConfig"]["history"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        history[..base_history.len()],
        base_history[..],
        "base entries as they were"
    );
    let own = &history[base_history.len()..];
    assert_eq!(own.len(), 6, "{history:?}");
    for h in own {
        assert_eq!(h["created"], EPOCH_TEXT, "{h}");
    }
    // The build arg reaches the Dockerfile as any ARG does (buildx passes the environment
    // variable on as one).
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == &format!("SEEN_EPOCH={EPOCH}")),
        "{config}"
    );

    // The layers: the base's are the base image's own, with their times; every entry of
    // the layers this build wrote is at the epoch or older, and what the RUN created is
    // at the epoch.
    let layers = a.layer_digests("app:1");
    assert_eq!(layers[..base_layers.len()], base_layers[..]);
    let newest_base = base_layers
        .iter()
        .flat_map(|d| entry_times(&a, d))
        .map(|(_, t)| t)
        .max()
        .unwrap();
    assert!(newest_base > EPOCH, "the base layers keep their own times");
    let own_layers = &layers[base_layers.len()..];
    assert_eq!(own_layers.len(), 3, "COPY, RUN, WORKDIR");
    let mut seen = Vec::new();
    for d in own_layers {
        for (path, t) in entry_times(&a, d) {
            assert!(t <= EPOCH, "{path} has mtime {t}, after the epoch");
            seen.push((path, t));
        }
    }
    for made in ["out/stamp", "etc/changed", "app/a.txt", "srv/www/"] {
        let t = seen.iter().find(|(p, _)| p == made).map(|(_, t)| *t);
        assert_eq!(t, Some(EPOCH), "{made} in {seen:?}");
    }
}

#[test]
fn a_malformed_epoch_is_refused() {
    let env = Env::new();
    let ctx = env.context("c", &[("Dockerfile", "FROM scratch\n")]);
    let out = env
        .cmd(&["build", p(&ctx)])
        .env("SOURCE_DATE_EPOCH", "last tuesday")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SOURCE_DATE_EPOCH=\"last tuesday\" is not a number of seconds"),
        "{err}"
    );
}
