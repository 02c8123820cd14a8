//! `rbuild load` of a `docker save` tarball made by hand the way classic docker writes it
//! (config fields `null`, fields rbuild does not know, the old per-layer directories),
//! then a build `FROM` it whose RUN step runs, and a container of the result.

use rbuild_tests::Env;
use sha2::{Digest, Sha256};
use std::process::Output;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Docker's name of this machine's architecture.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(1_546_300_800);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, path, data).expect("tar entry");
}

/// A root filesystem with the host's static busybox as /bin/sh, echo and cat.
fn busybox_layer() -> Vec<u8> {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin/", "etc/", "root/"] {
        append(&mut b, tar::EntryType::Directory, dir, 0o755, b"");
    }
    append(&mut b, tar::EntryType::Directory, "tmp/", 0o1777, b"");
    append(
        &mut b,
        tar::EntryType::Regular,
        "bin/busybox",
        0o755,
        &busybox,
    );
    for tool in ["sh", "echo", "cat"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{tool}"), "busybox")
            .expect("tar symlink");
    }
    append(
        &mut b,
        tar::EntryType::Regular,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
    );
    b.into_inner().expect("tar")
}

/// What docker 18.09 wrote: every nil slice, map and pointer as `null`.
fn classic_config(diff_id: &str) -> Vec<u8> {
    let container_config = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"ArgsEscaped":true,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"ExposedPorts":null}"#;
    format!(
        r#"{{"architecture":"{arch}","config":{container_config},"container":"0123456789ab","container_config":{container_config},"created":"2019-01-01T00:00:00.000000000Z","docker_version":"18.09.7","history":null,"os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#,
        arch = goarch()
    )
    .into_bytes()
}

/// A `docker save` archive of one image of one layer, tagged `tag`.
fn docker_save(layer: &[u8], config: &[u8], tag: &str) -> Vec<u8> {
    let layer_dir = sha256_hex(b"layer id");
    let config_name = format!("{}.json", sha256_hex(config));
    let (repo, t) = tag.rsplit_once(':').expect("repo:tag");
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["{tag}"],"Layers":["{layer_dir}/layer.tar"]}}]"#
    );
    let repositories = format!(r#"{{"{repo}":{{"{t}":"{layer_dir}"}}}}"#);
    let mut b = tar::Builder::new(Vec::new());
    let file = tar::EntryType::Regular;
    append(
        &mut b,
        tar::EntryType::Directory,
        &format!("{layer_dir}/"),
        0o755,
        b"",
    );
    append(&mut b, file, &format!("{layer_dir}/VERSION"), 0o644, b"1.0");
    append(
        &mut b,
        file,
        &format!("{layer_dir}/json"),
        0o644,
        b"{\"id\":\"x\",\"config\":null}",
    );
    append(
        &mut b,
        file,
        &format!("{layer_dir}/layer.tar"),
        0o644,
        layer,
    );
    append(&mut b, file, &config_name, 0o644, config);
    append(&mut b, file, "manifest.json", 0o644, manifest.as_bytes());
    append(&mut b, file, "repositories", 0o644, repositories.as_bytes());
    b.into_inner().expect("tar")
}

#[test]
fn docker_save_with_null_config_fields_loads_builds_and_runs() {
    let env = Env::new();
    let layer = busybox_layer();
    let config = classic_config(&sha256_hex(&layer));
    let archive = env.work.path().join("classic.tar");
    std::fs::write(&archive, docker_save(&layer, &config, "classic:1")).unwrap();

    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let ctx = env.context(
        "app",
        &[(
            "Dockerfile",
            "FROM classic:1\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n",
        )],
    );
    env.ok(&["build", "-q", "-t", "from-classic", ctx.to_str().unwrap()]);
    assert_eq!(stdout(&env.ok(&["run", "--rm", "from-classic"])), "built\n");
    // The base image itself runs too, with Docker's default PATH (its Env is null).
    assert_eq!(
        stdout(&env.ok(&["run", "--rm", "classic:1", "echo", "base"])),
        "base\n"
    );
}
