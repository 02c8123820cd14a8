//! `rbuild build --squash`: the layers above the base image become one, the image runs,
//! umoci unpacks it to the same tree as the unsquashed image (deletions above the base
//! included), its history is podman's (one entry per step, empty but the last), and the
//! squashed layer's bytes depend only on the layers merged. Needs root, busybox-static,
//! skopeo and umoci.

use rbuild_tests::Env;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

const DOCKERFILE: &str = r#"FROM busybox:latest AS one
RUN mkdir -p /app/data /app/old && echo 1 > /app/data/a && echo o > /app/old/x && echo t > /tmp/scratch
COPY hello.txt /app/
RUN rm /etc/group /tmp/scratch && echo 2 > /app/data/b

FROM one AS two
RUN rm -rf /app/old && mkdir /app/old && echo new > /app/old/y
RUN ln -s data/a /app/link && chmod 700 /app/data && rm /app/hello.txt
ENV X=1
CMD ["cat", "/app/data/a"]
"#;

/// Every entry below `dir`: path, type and mode, owner, size, and content or target.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let m = std::fs::symlink_metadata(&path).unwrap();
            let what = if m.file_type().is_symlink() {
                std::fs::read_link(&path).unwrap().display().to_string()
            } else if m.is_file() {
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
            } else {
                String::new()
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push(format!(
                "{rel} {:o} {}:{} {what:?}",
                m.mode(),
                m.uid(),
                m.gid()
            ));
            if m.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// (layer digests, history empty_layer flags) of `tag`.
fn layers_and_history(env: &Env, tag: &str) -> (Vec<String>, Vec<bool>) {
    let image = format!("oci:{}/oci:{tag}", env.root().display());
    let out = std::process::Command::new("skopeo")
        .args(["inspect", &image])
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let history = env.skopeo_config(tag)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    (layers, history)
}

#[test]
fn squashed_image_is_base_plus_one_layer_with_the_same_tree() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "app",
        &[("Dockerfile", DOCKERFILE), ("hello.txt", "hello\n")],
    );
    env.ok(&["build", "-q", "-t", "plain:1", p(&ctx)]);
    env.ok(&["build", "-q", "--squash", "-t", "squashed:1", p(&ctx)]);

    let (base, base_history) = layers_and_history(&env, "busybox:latest");
    let (plain, _) = layers_and_history(&env, "plain:1");
    let (squashed, history) = layers_and_history(&env, "squashed:1");
    assert_eq!(plain.len(), base.len() + 5);
    assert_eq!(squashed.len(), base.len() + 1);
    assert_eq!(squashed[..base.len()], base[..]);
    // podman's history: the base's entries, then one per step, all empty but the last
    // (the CMD), which carries the merged layer.
    assert_eq!(history[..base_history.len()], base_history[..]);
    let own = &history[base_history.len()..];
    assert_eq!(own.len(), 7, "{history:?}");
    assert!(
        own[..6].iter().all(|empty| *empty) && !own[6],
        "{history:?}"
    );

    let (plain_tree, squashed_tree) = (
        tree(&env.umoci_unpack("plain:1")),
        tree(&env.umoci_unpack("squashed:1")),
    );
    assert_eq!(squashed_tree, plain_tree);
    let has = |prefix: &str| squashed_tree.iter().any(|l| l.starts_with(prefix));
    // Deleted above the base: a base file, a file made and deleted above it, a dir's
    // old content.
    assert!(!has("etc/group ") && !has("tmp/scratch ") && !has("app/old/x "));
    assert!(has("app/old/y ") && has("app/link 120777"));

    let out = env.ok(&["run", "--rm", "squashed:1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");

    // The same layers squash to the same bytes: without the record that keeps the
    // squashed layer, the merge is made again and gives the same blob.
    for e in std::fs::read_dir(env.root().join("records")).unwrap() {
        let path = e.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("squash-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    env.ok(&["build", "-q", "--squash", "-t", "squashed:2", p(&ctx)]);
    assert_eq!(layers_and_history(&env, "squashed:2").0, squashed);
}
