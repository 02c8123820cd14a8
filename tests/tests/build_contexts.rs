//! `--build-context` through the rbuild binary: a directory (with its own `.dockerignore`,
//! hashed by content so a changed file re-runs only the COPY that reads it),
//! `docker-image://` and `oci-layout://` contexts used by `FROM`, `COPY --from` and
//! `RUN --mount from=`, BuildKit's precedence (a context named like a stage or an image
//! replaces it), and the errors bad input gets. Needs root, busybox-static and umoci.

use rbuild_tests::{Env, executed, plain_steps};
use std::path::Path;
use std::process::Output;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read(root: &Path, f: &str) -> String {
    std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f} in the image: {e}"))
}

#[test]
fn directory_context_by_copy_mount_and_from() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM tools AS t\n\
              FROM busybox:latest\n\
              RUN --mount=from=src,source=b.txt,target=/m/b.txt cat /m/b.txt > /mounted.txt\n\
              COPY main.txt /main.txt\n\
              COPY --from=t /tool.txt /tool.txt\n\
              COPY --from=src . /src/\n";
    let ctx = env.context("ctx", &[("Dockerfile", df), ("main.txt", "main\n")]);
    let src = env.context(
        "src",
        &[
            ("a.txt", "a1\n"),
            ("b.txt", "b\n"),
            ("private.key", "not for the image\n"),
            (".dockerignore", "*.key\n"),
        ],
    );
    let tools = env.context("tools", &[("tool.txt", "tool\n")]);
    let src_arg = format!("src={}", p(&src));
    let tools_arg = format!("tools={}", p(&tools));
    let build = || {
        let out = env.ok(&[
            "build",
            "--progress=plain",
            "--build-context",
            &src_arg,
            "--build-context",
            &tools_arg,
            "-t",
            "dirctx",
            p(&ctx),
        ]);
        plain_steps(&stderr(&out))
    };
    let first = build();
    let root = env.umoci_unpack("dirctx:latest");
    assert_eq!(read(&root, "mounted.txt"), "b\n", "RUN --mount from=src");
    assert_eq!(read(&root, "src/a.txt"), "a1\n", "COPY --from=src");
    assert_eq!(
        read(&root, "tool.txt"),
        "tool\n",
        "FROM a directory context"
    );
    assert_eq!(read(&root, "main.txt"), "main\n");
    assert!(
        !root.join("src/private.key").exists(),
        "the context's own .dockerignore excludes *.key"
    );
    assert_eq!(executed(&first, "RUN").len(), 1, "{first:#?}");

    // Nothing changed: nothing runs.
    let second = build();
    assert!(executed(&second, "RUN").is_empty(), "{second:#?}");
    assert!(executed(&second, "COPY").is_empty(), "{second:#?}");

    // An ignored file changes: still nothing.
    std::fs::write(src.join("private.key"), "other\n").unwrap();
    let third = build();
    assert!(executed(&third, "COPY").is_empty(), "{third:#?}");

    // A file the last COPY reads changes: that COPY alone runs again.
    std::fs::write(src.join("a.txt"), "a2\n").unwrap();
    let fourth = build();
    let copies = executed(&fourth, "COPY");
    assert_eq!(copies.len(), 1, "{fourth:#?}");
    assert!(copies[0].contains("--from=src"), "{copies:?}");
    assert!(executed(&fourth, "RUN").is_empty(), "{fourth:#?}");
    let root = env.umoci_unpack("dirctx:latest");
    assert_eq!(read(&root, "src/a.txt"), "a2\n");
}

#[test]
fn image_contexts_replace_images_and_stages() {
    let env = Env::new();
    env.busybox_base();
    // Another image to stand in for busybox.
    let other = env.context(
        "other",
        &[("Dockerfile", "FROM busybox:latest\nRUN echo other > /who\n")],
    );
    env.ok(&["build", "--progress=plain", "-t", "other:1", p(&other)]);

    let df = "FROM busybox:latest AS deps\n\
              RUN echo stage > /dep\n\
              FROM busybox\n\
              COPY --from=deps /who /dep-who\n\
              RUN cat /who > /seen\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    let out = env.ok(&[
        "build",
        "--progress=plain",
        "--build-context",
        "busybox=docker-image://other:1",
        "--build-context",
        "deps=docker-image://other:1",
        "-t",
        "imgctx",
        p(&ctx),
    ]);
    let steps = plain_steps(&stderr(&out));
    assert!(
        executed(&steps, "echo stage").is_empty(),
        "the stage a context replaces is not built: {steps:#?}"
    );
    let root = env.umoci_unpack("imgctx:latest");
    assert_eq!(
        read(&root, "seen"),
        "other\n",
        "FROM busybox reads the context"
    );
    assert_eq!(
        read(&root, "dep-who"),
        "other\n",
        "COPY --from=deps reads it"
    );
    assert!(!root.join("dep").exists());
}

#[test]
fn oci_layout_context_by_tag_and_digest() {
    // The layout: another store's, holding `lay:v1` with a marker file.
    let other = Env::new();
    other.busybox_base();
    let lay = other.context(
        "lay",
        &[(
            "Dockerfile",
            "FROM busybox:latest\nRUN echo from-layout > /marker\n",
        )],
    );
    other.ok(&["build", "--progress=plain", "-t", "lay:v1", p(&lay)]);
    let layout = other.root().join("oci");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.ends_with(":v1"))
        })
        .expect("lay:v1 in the layout")["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let env = Env::new();
    let df = "FROM base\nRUN cat /marker > /seen\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    for (tag, form) in [
        ("bytag", format!("base=oci-layout://{}:v1", p(&layout))),
        (
            "bydigest",
            format!("base=oci-layout://{}@{digest}", p(&layout)),
        ),
    ] {
        env.ok(&[
            "build",
            "--progress=plain",
            "--build-context",
            &form,
            "-t",
            tag,
            p(&ctx),
        ]);
        let root = env.umoci_unpack(&format!("{tag}:latest"));
        assert_eq!(read(&root, "seen"), "from-layout\n", "{form}");
    }
    // The layout's names are not the store's tags.
    let images = env.ok(&["images"]);
    assert!(
        !String::from_utf8_lossy(&images.stdout).contains("lay"),
        "{}",
        String::from_utf8_lossy(&images.stdout)
    );
}

#[test]
fn bad_build_contexts_are_clear_errors() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM scratch\nCOPY --from=x a /a\n")],
    );
    let missing = env.work.path().join("nope");
    let not_layout = env.context("plain", &[("f", "x")]);
    let cases = [
        (format!("x={}", p(&missing)), "not a directory".to_string()),
        (
            format!("x=oci-layout://{}", p(&not_layout)),
            "not an OCI layout".to_string(),
        ),
        (
            format!("x=oci-layout://{}:v9", p(&missing)),
            "not an OCI layout".to_string(),
        ),
        (
            "x=ftp://host/dir".to_string(),
            "unsupported context source ftp://".to_string(),
        ),
        ("x".to_string(), "expected NAME=VALUE".to_string()),
        (
            "x=docker-image://Not_Valid".to_string(),
            "not a valid image reference".to_string(),
        ),
    ];
    for (arg, want) in cases {
        let out = env.run(&["build", "--build-context", &arg, p(&ctx)]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{arg}: succeeded");
        assert!(err.contains(want.as_str()), "{arg}: {err}");
        assert!(!err.contains("panicked"), "{arg}: {err}");
    }
    // A tag the layout does not hold.
    let other = Env::new();
    other.busybox_base();
    let layout = other.root().join("oci");
    let out = env.run(&[
        "build",
        "--build-context",
        &format!("x=oci-layout://{}:nosuchtag", p(&layout)),
        p(&ctx),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no image tagged \"nosuchtag\""),
        "{}",
        stderr(&out)
    );
}
