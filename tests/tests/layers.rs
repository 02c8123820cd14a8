//! Long layer chains end to end: a 600-layer chain builds (past the kernel's 500 layers per
//! overlay, over a flattened prefix), its RUN steps see every layer's files with whiteouts
//! and opaque dirs applied, and it rebuilds from cache; the same past the ~200 layers of
//! mount(2) on kernels without the new mount API; 20 stages of 20 steps, each stage FROM
//! the one before, build and rebuild fully cached. Needs root, busybox-static, skopeo.
//!
//! Most of the 600 layers come from an image loaded with `rbuild load` (one file each,
//! written here), so the test spends its time on the chain, not on 600 sandboxes.

use rbuild_tests::{Env, executed, plain_steps};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Output;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn append(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, path, data).expect("tar entry");
}

const APPLETS: &[&str] = &[
    "sh", "ls", "wc", "cat", "test", "rm", "mkdir", "echo", "touch",
];

/// Layer `i` of a deep test image: busybox at the bottom, then `/layers/f<i>` in each;
/// layer 10 adds `/gone/a` and `/gone/b`, layer 20 deletes `/layers/f5` and `/gone/a`,
/// layer 30 adds `/opq/lower`, layer 40 makes `/opq` opaque with `/opq/upper` in it (all
/// inside the prefix a long chain flattens).
fn deep_layer(i: usize) -> Vec<u8> {
    let (dir, file) = (tar::EntryType::Directory, tar::EntryType::Regular);
    let mut b = tar::Builder::new(Vec::new());
    if i == 0 {
        let busybox =
            std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
        for d in ["bin/", "etc/", "layers/"] {
            append(&mut b, dir, d, 0o755, b"");
        }
        append(&mut b, dir, "tmp/", 0o1777, b"");
        append(&mut b, file, "bin/busybox", 0o755, &busybox);
        for tool in APPLETS {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, format!("bin/{tool}"), "busybox")
                .expect("tar symlink");
        }
        append(
            &mut b,
            file,
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\n",
        );
        return b.into_inner().expect("tar");
    }
    append(&mut b, dir, "layers/", 0o755, b"");
    append(
        &mut b,
        file,
        &format!("layers/f{i}"),
        0o644,
        i.to_string().as_bytes(),
    );
    match i {
        10 => {
            append(&mut b, dir, "gone/", 0o755, b"");
            append(&mut b, file, "gone/a", 0o644, b"a");
            append(&mut b, file, "gone/b", 0o644, b"b");
        }
        20 => {
            append(&mut b, file, "layers/.wh.f5", 0o644, b"");
            append(&mut b, dir, "gone/", 0o755, b"");
            append(&mut b, file, "gone/.wh.a", 0o644, b"");
        }
        30 => {
            append(&mut b, dir, "opq/", 0o755, b"");
            append(&mut b, file, "opq/lower", 0o644, b"l");
        }
        40 => {
            append(&mut b, dir, "opq/", 0o755, b"");
            append(&mut b, file, "opq/.wh..wh..opq", 0o644, b"");
            append(&mut b, file, "opq/upper", 0o644, b"u");
        }
        _ => {}
    }
    b.into_inner().expect("tar")
}

/// Docker's name of this machine's architecture.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Loads a `docker save` archive of an `n`-layer image made of [`deep_layer`]s as `tag`.
fn load_deep_image(env: &Env, n: usize, tag: &str) {
    let layers: Vec<Vec<u8>> = (0..n).map(deep_layer).collect();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"sha256:{}\"", sha256_hex(l)))
        .collect();
    let history: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"created":"2023-11-14T22:13:20Z","created_by":"layer {i}"}}"#))
        .collect();
    let config = format!(
        r#"{{"architecture":"{}","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":[{}]}}"#,
        goarch(),
        diff_ids.join(","),
        history.join(",")
    );
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let names: Vec<String> = (0..n).map(|i| format!("\"{i:04}/layer.tar\"")).collect();
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["{tag}"],"Layers":[{}]}}]"#,
        names.join(",")
    );
    let mut b = tar::Builder::new(Vec::new());
    let file = tar::EntryType::Regular;
    for (i, l) in layers.iter().enumerate() {
        append(
            &mut b,
            tar::EntryType::Directory,
            &format!("{i:04}/"),
            0o755,
            b"",
        );
        append(&mut b, file, &format!("{i:04}/layer.tar"), 0o644, l);
    }
    append(&mut b, file, &config_name, 0o644, config.as_bytes());
    append(&mut b, file, "manifest.json", 0o644, manifest.as_bytes());
    let archive = env.work.path().join(format!("deep-{n}.tar"));
    std::fs::write(&archive, b.into_inner().expect("tar")).expect("write archive");
    env.ok(&["load", "-i", p(&archive)]);
}

/// The layer count of `tag` in the store, from its config.
fn layer_count(env: &Env, tag: &str) -> usize {
    env.skopeo_config(tag)["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .len()
}

/// The flattened snapshots in the store.
fn flattened(env: &Env) -> usize {
    std::fs::read_dir(env.root().join("flattened")).map_or(0, |d| d.count())
}

/// A RUN that fails unless the rootfs shows every file of a [`deep_layer`] chain that
/// ends with `last` and lost `deleted` more files than the image's own deletion.
fn check_run(last: usize, deleted: usize, gone: &str) -> String {
    format!(
        "RUN test \"$(ls /layers | wc -l)\" = {} && test \"$(cat /layers/f1 /layers/f{last})\" = 1{last} \
         && ! test -e /layers/f5 && test \"$(ls /gone)\" = {gone} && test \"$(ls /opq)\" = upper\n",
        last - 1 - deleted
    )
}

#[test]
fn six_hundred_layers_build_run_with_whiteouts_and_rebuild_cached() {
    let env = Env::new();
    load_deep_image(&env, 480, "deep:1");
    // 120 more layers, half built on the flattened prefix once the chain passes 500.
    let mut dockerfile = String::from("FROM deep:1\n");
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 480..600 {
        match i {
            // A deletion above the prefix, and an opaque dir hiding flattened content.
            520 => dockerfile.push_str("RUN rm /layers/f490 && echo 520 > /layers/f520\n"),
            530 => dockerfile.push_str(
                "RUN rm -rf /gone && mkdir /gone && touch /gone/new && echo 530 > /layers/f530\n",
            ),
            _ if i % 10 == 5 => dockerfile.push_str(&format!("RUN echo {i} > /layers/f{i}\n")),
            _ => {
                dockerfile.push_str(&format!("COPY f{i} /layers/\n"));
                files.push((format!("f{i}"), i.to_string()));
            }
        }
    }
    dockerfile.push_str(&check_run(599, 1, "new"));
    files.push(("Dockerfile".into(), dockerfile));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ctx = env.context("deep", &refs);

    let out = env.ok(&["build", "--progress=plain", "-t", "deep:2", p(&ctx)]);
    assert_eq!(layer_count(&env, "deep:2"), 600);
    assert_eq!(
        flattened(&env),
        1,
        "one flattened prefix (128 layers), made once"
    );
    let err = stderr(&out);
    assert!(
        err.contains("WARNING: the image has 600 layers; docker refuses"),
        "{err}"
    );

    // The rebuild runs nothing; the local output is the 600-layer tree.
    let dest = env.work.path().join("deep-out");
    let out = env.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "deep:2",
        "--output",
        &format!("type=local,dest={}", p(&dest)),
        p(&ctx),
    ]);
    let steps = plain_steps(&stderr(&out));
    assert!(executed(&steps, "RUN").is_empty() && executed(&steps, "COPY").is_empty());
    assert_eq!(std::fs::read_dir(dest.join("layers")).unwrap().count(), 597);
    assert_eq!(
        std::fs::read_to_string(dest.join("layers/f599")).unwrap(),
        "599"
    );
    assert!(!dest.join("layers/f490").exists() && !dest.join("gone/b").exists());
}

#[test]
fn without_the_new_mount_api_a_chain_past_one_page_flattens() {
    let env = Env::new();
    load_deep_image(&env, 230, "deep:1");
    let ctx = env.context(
        "legacy",
        &[(
            "Dockerfile",
            &format!(
                "FROM deep:1\nRUN echo 230 > /layers/f230\n{}",
                check_run(230, 0, "b")
            ),
        )],
    );
    let out = env
        .cmd(&["build", "--progress=plain", "-t", "legacy:1", p(&ctx)])
        .env("RBUILD_OVERLAY_API", "legacy")
        .output()
        .expect("run rbuild");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(layer_count(&env, "legacy:1"), 231);
    assert_eq!(flattened(&env), 1);
}

/// 20 stages of 20 steps, each stage FROM the one before: 12 layers a stage (RUN and
/// COPY), 8 metadata steps (ENV, LABEL).
fn twenty_by_twenty(env: &Env) -> std::path::PathBuf {
    let mut dockerfile = String::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for s in 0..20 {
        let from = if s == 0 {
            "busybox:latest".to_string()
        } else {
            format!("s{}", s - 1)
        };
        dockerfile.push_str(&format!("FROM {from} AS s{s}\n"));
        for k in 0..20 {
            let line = match k % 5 {
                0 => format!("ENV S{s}_{k}=v{k}\n"),
                2 => format!("LABEL s{s}.k{k}=v\n"),
                1 => format!("RUN mkdir -p /d && echo {s}.{k} > /d/s{s}k{k}\n"),
                _ => {
                    files.push((format!("f{s}_{k}"), format!("{s}.{k}")));
                    format!("COPY f{s}_{k} /d/\n")
                }
            };
            dockerfile.push_str(&line);
        }
    }
    files.push(("Dockerfile".into(), dockerfile));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    env.context("twenty", &refs)
}

#[test]
fn twenty_stages_of_twenty_steps_build_and_rebuild_cached() {
    let env = Env::new();
    env.busybox_base();
    let base = layer_count(&env, "busybox:latest");
    let ctx = twenty_by_twenty(&env);
    let out = env.ok(&["build", "--progress=plain", "-t", "deep:20", p(&ctx)]);
    assert_eq!(layer_count(&env, "deep:20"), base + 240);
    assert!(stderr(&out).contains("docker refuses to run images of more than 125"));
    let out = env.ok(&["build", "--progress=plain", "-t", "deep:20", p(&ctx)]);
    let steps = plain_steps(&stderr(&out));
    let cached = steps.iter().filter(|s| s.cached).count();
    assert!(cached >= 240, "{cached} cached");
    assert!(
        executed(&steps, "RUN").is_empty() && executed(&steps, "COPY").is_empty(),
        "{steps:?}"
    );
}
