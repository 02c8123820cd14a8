//! End to end on a real distribution: a minimal Debian bookworm root made by
//! `debootstrap --variant=minbase` (cached under /var/cache/rbuild-tests/), saved the way
//! classic `docker save` writes it (v1.0 layer dirs, config fields `null`), `rbuild load`ed,
//! then a multi-stage build that `apt-get install`s gcc from Debian's mirror, compiles a C
//! program with a secret mounted, and copies it into a final stage running as a non-root
//! user. The program runs, the secret is in no byte of the store or the output, and a
//! rebuild runs nothing.
//!
//! Needs debootstrap (scripts/install-deps.sh) and Debian's mirror, as CI has them.

use rbuild_tests::{Env, executed, plain_steps};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CACHE: &str = "/var/cache/rbuild-tests";
const MIRROR: &str = "http://deb.debian.org/debian";

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The minbase root, made once and kept: debootstrap writes a scratch dir that is renamed
/// into place only when it finished, so an interrupted run leaves no half root behind.
fn bookworm_root() -> PathBuf {
    let root = Path::new(CACHE).join("bookworm-minbase");
    if root.join("etc/debian_version").is_file() {
        return root;
    }
    std::fs::create_dir_all(CACHE).expect("create the test cache dir");
    let partial = Path::new(CACHE).join(format!("bookworm-minbase.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    sh(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&partial)
        .arg(MIRROR));
    match std::fs::rename(&partial, &root) {
        Ok(()) => {}
        // Another test process won the race: keep its root.
        Err(_) if root.join("etc/debian_version").is_file() => {
            let _ = std::fs::remove_dir_all(&partial);
        }
        Err(e) => panic!("rename {} into place: {e}", partial.display()),
    }
    root
}

fn sha256_file(p: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(p).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf).expect("read") {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    hex::encode(h.finalize())
}

/// A `docker save` archive (format v1.0: `<id>/layer.tar`, `<config>.json`, manifest.json,
/// repositories) of `rootfs` as one layer, tagged `repo:tag`; its config is what classic
/// docker writes, every empty field `null`.
fn docker_save(rootfs: &Path, dir: &Path, repo: &str, tag: &str) -> PathBuf {
    let img = dir.join("image");
    let id = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2";
    std::fs::create_dir_all(img.join(id)).unwrap();
    let layer = img.join(id).join("layer.tar");
    // GNU tar as docker's own layers are written: numeric owners, xattrs, device nodes.
    sh(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."));
    std::fs::write(img.join(id).join("VERSION"), "1.0").unwrap();
    std::fs::write(img.join(id).join("json"), format!(r#"{{"id":"{id}"}}"#)).unwrap();
    let diff_id = sha256_file(&layer);
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let container_config = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["bash"],"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;
    let config = format!(
        r#"{{"architecture":"{arch}","config":{container_config},"container_config":{container_config},"created":"2025-05-20T00:00:00Z","docker_version":"18.09.7","history":[{{"created":"2025-05-20T00:00:00Z","created_by":"debootstrap --variant=minbase bookworm"}}],"os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    let config_name = format!("{}.json", hex::encode(Sha256::digest(config.as_bytes())));
    std::fs::write(img.join(&config_name), &config).unwrap();
    std::fs::write(
        img.join("manifest.json"),
        format!(
            r#"[{{"Config":"{config_name}","RepoTags":["{repo}:{tag}"],"Layers":["{id}/layer.tar"]}}]"#
        ),
    )
    .unwrap();
    std::fs::write(
        img.join("repositories"),
        format!(r#"{{"{repo}":{{"{tag}":"{id}"}}}}"#),
    )
    .unwrap();
    let archive = dir.join("bookworm.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    std::fs::remove_dir_all(&img).unwrap();
    archive
}

const DOCKERFILE: &str = r#"FROM debian:bookworm-local AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev
COPY hello.c /src/
RUN --mount=type=secret,id=token test -s /run/secrets/token \
 && gcc -O2 -DTOKEN_LEN="$(wc -c < /run/secrets/token)" -o /hello /src/hello.c

FROM debian:bookworm-local
RUN useradd --create-home --uid 1000 app
COPY --from=build /hello /usr/local/bin/hello
USER app
CMD ["hello"]
"#;

const HELLO_C: &str = r#"#include <stdio.h>
#include <unistd.h>
int main(void) {
    printf("hello from uid %d, built with a %d-byte secret\n", (int)getuid(), TOKEN_LEN);
    return 0;
}
"#;

/// Every file under `dir` that holds `needle` (grep: the store is about a gigabyte).
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-rlaF", "--devices=skip", "-e", needle])
        .arg(dir)
        .output()
        .expect("grep");
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        Some(1) => Vec::new(),
        _ => panic!("grep failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn debian_bookworm_multi_stage_gcc_build_runs_as_a_user_without_leaking_the_secret() {
    let rootfs = bookworm_root();
    let env = Env::new();
    let archive = docker_save(&rootfs, env.work.path(), "debian", "bookworm-local");
    let loaded = env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("debian:bookworm-local"),
        "{}",
        String::from_utf8_lossy(&loaded.stdout)
    );

    let ctx = env.context("app", &[("Dockerfile", DOCKERFILE), ("hello.c", HELLO_C)]);
    let secret = format!("rbuild-secret-{}-{}", std::process::id(), line!());
    let secret_file = env.work.path().join("token");
    std::fs::write(&secret_file, &secret).unwrap();
    let secret_arg = format!("id=token,src={}", secret_file.display());
    let build = |what: &str| {
        let t = Instant::now();
        let out = env.ok(&[
            "build",
            "--progress=plain",
            "--secret",
            &secret_arg,
            "-t",
            "hello:deb",
            ctx.to_str().unwrap(),
        ]);
        // The numbers the issue's closing note asks for; nothing is asserted on them.
        eprintln!("debian e2e {what} build: {:.2?}", t.elapsed());
        out
    };

    let cold = build("cold");
    let steps = plain_steps(&String::from_utf8_lossy(&cold.stderr));
    assert_eq!(executed(&steps, "apt-get install").len(), 1, "{steps:#?}");

    let run = env.ok(&["run", "--rm", "hello:deb"]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        format!(
            "hello from uid 1000, built with a {}-byte secret\n",
            secret.len()
        )
    );

    let again = build("no-op");
    let stderr = String::from_utf8_lossy(&again.stderr);
    let ran: Vec<_> = plain_steps(&stderr)
        .into_iter()
        .filter(|s| s.done && !s.cached && !s.is_action())
        .collect();
    assert!(ran.is_empty(), "a rebuild ran steps: {ran:#?}");

    // The secret is in no file of the store (snapshots hold every layer uncompressed,
    // beside blobs, records and configs), nor in anything the builds printed.
    let leaks = files_holding(env.root(), &secret);
    // The search itself finds what is there: the program's text is in its layer.
    assert!(!files_holding(env.root(), "built with a %d-byte secret").is_empty());
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");
    for out in [&cold, &again, &run] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&secret));
    }
}
