//! The build flags and store commands no other target drives: `--output` of every type,
//! `--no-cache`, `-q`, and `load` / `images` / `inspect` / `rmi` / `prune` / `tag`.
//! Needs root, busybox-static and tar (scripts/install-deps.sh).

use rbuild_tests::{Env, plain_steps};
use std::path::Path;
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The member names of a tar archive, as `tar -t` lists them.
fn members(archive: &Path) -> Vec<String> {
    let o = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar -tf {}", archive.display());
    text(&o.stdout).lines().map(String::from).collect()
}

fn failed_with(o: &Output, message: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(message), "{}", text(&o.stderr));
}

#[test]
fn outputs_of_every_type() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "out",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY f /f\nRUN echo ran > /ran\n",
            ),
            ("f", "file\n"),
        ],
    );
    let w = env.work.path();
    let (oci, docker, tar, local, bare) = (
        w.join("img.oci.tar"),
        w.join("img.docker.tar"),
        w.join("rootfs.tar"),
        w.join("local"),
        w.join("bare"),
    );
    let o = env.ok(&[
        "build",
        "-q",
        "-t",
        "out:1",
        "-o",
        &format!("type=oci,dest={}", p(&oci)),
        "-o",
        &format!("type=docker,dest={}", p(&docker)),
        "--output",
        &format!("type=tar,dest={}", p(&tar)),
        "--output",
        &format!("type=local,dest={}", p(&local)),
        "-o",
        p(&bare),
        p(&ctx),
    ]);
    let id = text(&o.stdout);
    assert!(id.starts_with("sha256:") && id.lines().count() == 1, "{id}");

    let m = members(&oci);
    assert!(m.iter().any(|n| n == "oci-layout"), "{m:?}");
    assert!(m.iter().any(|n| n == "index.json"), "{m:?}");
    let m = members(&docker);
    assert!(m.iter().any(|n| n == "manifest.json"), "{m:?}");
    let m = members(&tar);
    assert!(m.iter().any(|n| n == "./f" || n == "f"), "{m:?}");
    assert!(
        m.iter().any(|n| n == "./bin/busybox" || n == "bin/busybox"),
        "{m:?}"
    );
    for dir in [&local, &bare] {
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "file\n");
        assert_eq!(std::fs::read_to_string(dir.join("ran")).unwrap(), "ran\n");
    }

    // Loaded into another store, the docker archive is the same image.
    let other = Env::new();
    let o = other.ok(&["load", "-i", p(&docker)]);
    assert_eq!(text(&o.stdout), "Loaded image: out:1\n");
    // docker's -q quiets progress, not the names loaded.
    let o = other.ok(&["load", "-q", "-i", p(&oci)]);
    assert!(
        text(&o.stdout).starts_with("Loaded image: "),
        "{}",
        text(&o.stdout)
    );
    let inspect: serde_json::Value =
        serde_json::from_slice(&other.ok(&["inspect", "out:1"]).stdout).unwrap();
    let inspect = &inspect[0];
    assert_eq!(inspect["Id"].as_str(), Some(id.trim()));
    assert_eq!(inspect["RepoTags"], serde_json::json!(["out:1"]));
    assert!(inspect["RootFS"]["Layers"].is_array(), "{inspect}");

    for (spec, message) in [
        (
            "type=bogus,dest=x".to_string(),
            "--output type=bogus is not supported; use oci, docker, tar, local, image or registry",
        ),
        (
            "type=local".to_string(),
            "--output \"type=local\" needs dest=DIRECTORY",
        ),
        (
            "type=oci".to_string(),
            "-q prints the image ID on stdout, where --output writes its archive",
        ),
        (
            "type=oci,dest".to_string(),
            "--output \"type=oci,dest\": \"dest\" is not key=value",
        ),
    ] {
        let o = env.run(&["build", "-q", "-o", &spec, p(&ctx)]);
        failed_with(&o, message);
    }
}

#[test]
fn no_cache_and_the_store_commands() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context("nc", &[("Dockerfile", "FROM busybox\nRUN echo x > /x\n")]);
    env.ok(&["build", "-q", "-t", "nc:1", p(&ctx)]);
    let again = env.ok(&["build", "--progress=plain", "-t", "nc:1", p(&ctx)]);
    let steps = plain_steps(&text(&again.stderr));
    assert!(steps.iter().any(|s| s.cached), "{steps:?}");
    let fresh = env.ok(&[
        "build",
        "--no-cache",
        "--progress=plain",
        "-t",
        "nc:1",
        p(&ctx),
    ]);
    let steps = plain_steps(&text(&fresh.stderr));
    assert!(steps.iter().all(|s| !s.cached), "{steps:?}");
    assert!(
        steps.iter().any(|s| s.name.contains("RUN echo x")),
        "{steps:?}"
    );

    env.ok(&["tag", "nc:1", "nc:2"]);
    let o = env.run(&["tag", "nope:1", "nc:3"]);
    failed_with(&o, "cannot tag nope:1 as nc:3");

    let images = text(&env.ok(&["images"]).stdout);
    let mut lines = images.lines();
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"])
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let nc: Vec<_> = rows.iter().filter(|r| r[0] == "nc").collect();
    assert_eq!(nc.len(), 2, "{images}");
    assert_eq!(nc[0][1], "1");
    assert_eq!(nc[1][1], "2");
    assert_eq!(nc[0][2], nc[1][2], "one image, two names");
    assert_eq!(nc[0][2].len(), 12);
    let quiet = text(&env.ok(&["images", "-q"]).stdout);
    // Each ID once, though nc:1 and nc:2 are one image.
    assert_eq!(quiet.lines().count(), rows.len() - 1, "{quiet}");
    assert!(quiet.lines().all(|l| l.len() == 12), "{quiet}");

    let o = env.run(&["inspect", "nope:1"]);
    failed_with(&o, "no image \"nope:1\" in ");
    let o = env.ok(&["rmi", "nc:2"]);
    assert_eq!(text(&o.stdout), "Untagged: nc:2\n");
    let o = env.run(&["rmi", "nc:1", "nope:1", "nope:2"]);
    assert_eq!(text(&o.stdout), "Untagged: nc:1\n");
    failed_with(&o, "error: no such image: nope:1, nope:2");
    let o = env.ok(&["prune"]);
    assert!(
        text(&o.stdout).contains("\nTotal reclaimed space: "),
        "{}",
        text(&o.stdout)
    );
    let o = env.ok(&["prune", "--all"]);
    assert!(text(&o.stdout).contains("\nTotal reclaimed space: "));
    assert!(text(&env.ok(&["images"]).stdout).contains("busybox"));
}
