//! `ADD http(s)://…` through the rbuild binary, against a small HTTP server of the test's
//! own on 127.0.0.1 (it counts the requests it gets, so the tests see when rbuild
//! downloads): the body lands in the image with mode 0600 and the mtime of
//! `Last-Modified`; a rebuild whose ETag still holds downloads nothing and runs nothing; a
//! new body re-runs the ADD; `--checksum` needs no request to find its cache, and a body
//! that does not match it fails the step with nothing kept. Needs root, busybox-static
//! and umoci.

use rbuild_tests::{Env, FileServer as Server, Served, executed, plain_steps};
use sha2::{Digest, Sha256};
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// 2015-10-21T07:28:00Z.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LAST_MODIFIED_SECS: &str = "1445412480";

#[test]
fn add_url_lands_with_mtime_and_mode_and_is_cached_by_etag() {
    let env = Env::new();
    env.busybox_base();
    let server = Server::start();
    server.serve(
        "/files/hello.txt",
        Served {
            body: b"hello\n".to_vec(),
            etag: Some("\"v1\"".into()),
            last_modified: Some(LAST_MODIFIED.into()),
        },
    );
    let df = format!(
        "FROM busybox:latest\nADD {} /dl/\nRUN stat -c '%Y %a %u' /dl/hello.txt > /stat\n",
        server.url("/files/hello.txt")
    );
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let build = || {
        let out = env.ok(&["build", "--progress=plain", "-t", "url", p(&ctx)]);
        plain_steps(&String::from_utf8_lossy(&out.stderr))
    };
    let first = build();
    assert_eq!(executed(&first, "ADD").len(), 1, "{first:#?}");
    let root = env.umoci_unpack("url:latest");
    assert_eq!(
        std::fs::read(root.join("dl/hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("stat")).unwrap(),
        format!("{LAST_MODIFIED_SECS} 600 0\n"),
        "mtime from Last-Modified, mode 0600, root"
    );
    assert_eq!(server.count("GET", "/files/hello.txt"), 1);

    // The ETag still holds: a HEAD answers it, nothing is downloaded, nothing runs.
    let second = build();
    assert!(executed(&second, "ADD").is_empty(), "{second:#?}");
    assert!(executed(&second, "RUN").is_empty(), "{second:#?}");
    assert_eq!(
        server.count("GET", "/files/hello.txt"),
        1,
        "no second download"
    );
    assert_eq!(server.count("HEAD", "/files/hello.txt"), 1);

    // A new body under a new ETag: downloaded again, the ADD and what follows re-run.
    server.serve(
        "/files/hello.txt",
        Served {
            body: b"hello again\n".to_vec(),
            etag: Some("\"v2\"".into()),
            last_modified: Some(LAST_MODIFIED.into()),
        },
    );
    let third = build();
    assert_eq!(executed(&third, "ADD").len(), 1, "{third:#?}");
    assert_eq!(executed(&third, "RUN").len(), 1, "{third:#?}");
    assert_eq!(server.count("GET", "/files/hello.txt"), 2);
    let root = env.umoci_unpack("url:latest");
    assert_eq!(
        std::fs::read(root.join("dl/hello.txt")).unwrap(),
        b"hello again\n"
    );
}

#[test]
fn add_url_without_etag_downloads_each_build_but_keeps_the_cache_by_content() {
    let env = Env::new();
    env.busybox_base();
    let server = Server::start();
    let plain = Served {
        body: b"plain\n".to_vec(),
        etag: None,
        last_modified: None,
    };
    server.serve("/plain", plain.clone());
    let df = format!(
        "FROM busybox:latest\nADD {} /plain.txt\nRUN cat /plain.txt > /copy\n",
        server.url("/plain")
    );
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let build = || {
        let out = env.ok(&["build", "--progress=plain", "-t", "plain", p(&ctx)]);
        plain_steps(&String::from_utf8_lossy(&out.stderr))
    };
    build();
    let second = build();
    assert_eq!(
        server.count("GET", "/plain"),
        2,
        "no ETag: asked every build"
    );
    assert!(executed(&second, "ADD").is_empty(), "{second:#?}");
    assert!(executed(&second, "RUN").is_empty(), "{second:#?}");
    let root = env.umoci_unpack("plain:latest");
    assert_eq!(std::fs::read(root.join("plain.txt")).unwrap(), b"plain\n");
}

#[test]
fn add_url_checksum_is_checked_before_anything_is_kept() {
    let env = Env::new();
    env.busybox_base();
    let server = Server::start();
    let body = b"pinned content\n".to_vec();
    server.serve(
        "/pinned.bin",
        Served {
            body: body.clone(),
            etag: None,
            last_modified: None,
        },
    );
    let good = format!(
        "FROM busybox:latest\nADD --checksum={} --chmod=755 {} /bin/pinned\n",
        sha256(&body),
        server.url("/pinned.bin")
    );
    let ctx = env.context("good", &[("Dockerfile", &good)]);
    env.ok(&["build", "--progress=plain", "-t", "pinned", p(&ctx)]);
    assert_eq!(server.count("GET", "/pinned.bin"), 1);
    let root = env.umoci_unpack("pinned:latest");
    assert_eq!(std::fs::read(root.join("bin/pinned")).unwrap(), body);
    // The checksum is the key: a rebuild sends no request at all.
    let out = env.ok(&["build", "--progress=plain", "-t", "pinned", p(&ctx)]);
    let steps = plain_steps(&String::from_utf8_lossy(&out.stderr));
    assert!(executed(&steps, "ADD").is_empty(), "{steps:#?}");
    assert_eq!(server.count("GET", "/pinned.bin"), 1);
    assert_eq!(server.count("HEAD", "/pinned.bin"), 0);

    // A checksum the body does not have: the step fails, naming both digests.
    let wrong = sha256(b"something else");
    let bad = format!(
        "FROM busybox:latest\nADD --checksum={wrong} {} /x\n",
        server.url("/pinned.bin")
    );
    let bad_ctx = env.context("bad", &[("Dockerfile", &bad)]);
    let blobs = env.root().join("http-cache/blobs");
    let before: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let out = env.run(&["build", "--progress=plain", "-t", "bad", p(&bad_ctx)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&sha256(&body)),
        "{err}"
    );
    let after: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "nothing new kept in the download cache");
    let index = std::fs::read_to_string(env.root().join("oci/index.json")).unwrap();
    assert!(index.contains("\"pinned:latest\""), "{index}");
    assert!(
        !index.contains("\"bad:latest\""),
        "no image named bad: {index}"
    );

    // A URL the server does not have.
    let missing = format!("FROM busybox:latest\nADD {} /x\n", server.url("/nope"));
    let m_ctx = env.context("missing", &[("Dockerfile", &missing)]);
    let out = env.run(&["build", "--progress=plain", p(&m_ctx)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("404 Not Found") && err.contains("/nope"),
        "{err}"
    );
}
