//! Builds for several platforms on an x86-64 machine: the arm64 RUN steps run through QEMU
//! user emulation (Debian's qemu-user-static, registered with binfmt_misc), the result is
//! one image index, pushed to a loopback registry as one reference and pulled back per
//! platform. The arm64 base is Debian's busybox-static for arm64 (scripts/install-deps.sh),
//! made into an index with the amd64 one, without the internet.

use rbuild_tests::{Env, Registry, executed, plain_steps, skopeo_raw};
use std::path::Path;
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// These tests build arm64 images on an amd64 machine (what CI runs on).
fn require_amd64_host() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "tests/tests/platforms.rs emulates arm64 on an x86-64 machine"
    );
}

/// The (architecture, variant) of each entry of an index document.
fn platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            match p["variant"].as_str() {
                Some(v) => format!(
                    "{}/{}/{v}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                ),
                None => format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                ),
            }
        })
        .collect()
}

/// A registry holding `busybox:multi` (amd64 + arm64), pushed by skopeo (not by rbuild)
/// from a store where rbuild made it.
fn registry_with_base() -> (Registry, String) {
    let reg = Registry::start();
    let env = Env::new();
    env.multi_busybox_base();
    let base = format!("{}/busybox:multi", reg.host);
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}/oci:busybox:multi", env.root().display()))
        .arg(format!("docker://{base}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy --all: {}",
        text(&out.stderr)
    );
    assert_eq!(
        platforms(&skopeo_raw(&base)),
        ["linux/amd64", "linux/arm64/v8"]
    );
    (reg, base)
}

#[test]
fn two_platforms_one_index_pushed_pulled_back_and_cached() {
    require_amd64_host();
    let (reg, base) = registry_with_base();
    let env = Env::new();
    let df = format!("FROM {base}\nRUN uname -m > /arch\n");
    let ctx = env.context("app", &[("Dockerfile", &df)]);
    let app = format!("{}/app:1", reg.host);
    let build = [
        "build",
        "--progress=plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        &app,
        "--push",
        p(&ctx),
    ];
    let out = env.ok(&build);
    let stderr = text(&out.stderr);
    let steps = plain_steps(&stderr);
    // One RUN per platform; the arm64 one says it ran through QEMU, the amd64 one not.
    let runs: Vec<_> = steps
        .iter()
        .filter(|s| s.name.contains("RUN uname"))
        .collect();
    assert_eq!(runs.len(), 2, "{stderr}");
    let arm = runs
        .iter()
        .find(|s| s.name.starts_with("[linux/arm64/v8"))
        .expect("arm64 RUN");
    assert!(
        arm.output
            .iter()
            .any(|l| l.starts_with("emulated linux/arm64/v8: qemu-aarch64")),
        "{stderr}"
    );
    let amd = runs
        .iter()
        .find(|s| !s.name.starts_with("[linux/"))
        .expect("amd64 RUN");
    assert!(
        amd.output.iter().all(|l| !l.contains("emulated")),
        "{stderr}"
    );

    // The registry has one index with both.
    let index = skopeo_raw(&app);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64/v8"]);
    // The store names the index; images and inspect show its platforms.
    let images = text(&env.ok(&["images"]).stdout);
    assert!(
        images.contains("index: linux/amd64,linux/arm64/v8"),
        "{images}"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", &app]).stdout).unwrap();
    let info = &info[0];
    assert_eq!(
        info["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    // `tag` names the index, not one of its images.
    env.ok(&["tag", &app, "copy:1"]);
    let copy: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", "copy:1"]).stdout).unwrap();
    assert_eq!(copy[0]["Id"], info["Id"]);

    // Pulled back into fresh stores, each platform is its own image.
    for (platform, arch, machine) in [
        ("linux/arm64", "arm64", "aarch64"),
        ("linux/amd64", "amd64", "x86_64"),
    ] {
        let fresh = Env::new();
        fresh.ok(&["pull", "--platform", platform, &app]);
        let info: serde_json::Value =
            serde_json::from_slice(&fresh.ok(&["inspect", &app]).stdout).unwrap();
        assert_eq!(info[0]["Architecture"], arch);
        // What was pulled, not what the registry has for this machine.
        let out = fresh.ok(&["run", "--pull", "never", &app, "cat", "/arch"]);
        assert_eq!(text(&out.stdout).trim(), machine, "{platform}");
    }
    // `run --platform` picks from the index in the store.
    let out = env.ok(&["run", "--platform", "linux/arm64", &app, "cat", "/arch"]);
    assert_eq!(text(&out.stdout).trim(), "aarch64");
    let out = env.ok(&["run", &app, "cat", "/arch"]);
    assert_eq!(text(&out.stdout).trim(), "x86_64");

    // The rebuild runs nothing on either platform, and gives the same index.
    let out = env.ok(&build);
    let stderr = text(&out.stderr);
    let steps = plain_steps(&stderr);
    let ran: Vec<_> = steps
        .iter()
        .filter(|s| s.done && !s.cached && !s.is_action() && s.name.contains("RUN"))
        .collect();
    assert!(ran.is_empty(), "{ran:?}\n{stderr}");
    assert!(executed(&steps, "uname").is_empty(), "{stderr}");
    assert_eq!(skopeo_raw(&app), index);

    // The registry cache keeps each platform's records (`mode=min`: each platform's final
    // chain): a fresh store builds both from it without running anything.
    let cache = format!("type=registry,ref={}/app:cache", reg.host);
    let two = [
        "build",
        "--progress=plain",
        "--platform",
        "linux/amd64,linux/arm64",
    ];
    let mut to = two.to_vec();
    to.extend(["-t", "c:1", "--cache-to", &cache, p(&ctx)]);
    env.ok(&to);
    let mut from = two.to_vec();
    from.extend(["-t", "c:1", "--cache-from", &cache, p(&ctx)]);
    let out = Env::new().ok(&from);
    let stderr = text(&out.stderr);
    let steps = plain_steps(&stderr);
    assert!(executed(&steps, "uname").is_empty(), "{stderr}");
    let cached = steps
        .iter()
        .filter(|s| s.name.contains("RUN uname") && s.cached);
    assert_eq!(cached.count(), 2, "{stderr}");

    // --output type=oci writes the index; a docker tarball holds one platform: refused.
    let oci = env.work.path().join("app.oci.tar");
    let dest = format!("type=oci,dest={}", oci.display());
    let meta = env.work.path().join("meta.json");
    let meta_arg = meta.display().to_string();
    let mut with_output = build[..build.len() - 2].to_vec();
    with_output.extend(["--output", &dest, "--metadata-file", &meta_arg, p(&ctx)]);
    env.ok(&with_output);
    // --metadata-file names the index, as buildx does.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.digest"], info["Id"]);
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", oci.display()))
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written, index);
    let docker = format!(
        "type=docker,dest={}",
        env.work.path().join("d.tar").display()
    );
    let out = env.run(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--output",
        &docker,
        p(&ctx),
    ]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("--output type=docker holds one platform, and this build makes linux/amd64, linux/arm64/v8"), "{e}");
}

#[test]
fn cross_compilation_pattern_needs_no_emulator() {
    require_amd64_host();
    let (_reg, base) = registry_with_base();
    let env = Env::new();
    // The builder runs on the build platform for every target; the per-platform stages
    // only copy. With no emulator registered at all, the build still works.
    let df = format!(
        "FROM --platform=$BUILDPLATFORM {base} AS builder\n\
         ARG TARGETARCH\n\
         RUN echo \"for $TARGETARCH on $(uname -m)\" > /out\n\
         FROM {base}\n\
         COPY --from=builder /out /out\n"
    );
    let ctx = env.context("cross", &[("Dockerfile", &df)]);
    let no_emulators = tempfile::tempdir().unwrap();
    let local = env.work.path().join("out");
    let dest = format!("type=local,dest={}", local.display());
    let out = env
        .cmd(&[
            "build",
            "--progress=plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "cross:1",
            "--output",
            &dest,
            p(&ctx),
        ])
        .env("RBUILD_BINFMT_MISC_DIR", no_emulators.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("emulated"), "{stderr}");
    // Two builder RUNs (one per target arch), both native.
    assert_eq!(
        executed(&plain_steps(&stderr), "RUN echo").len(),
        2,
        "{stderr}"
    );
    for (dir, want) in [
        ("linux_amd64", "for amd64 on x86_64"),
        ("linux_arm64_v8", "for arm64 on x86_64"),
    ] {
        let got = std::fs::read_to_string(local.join(dir).join("out")).expect(dir);
        assert_eq!(got.trim(), want);
        // The final image's own files are its platform's.
        assert!(local.join(dir).join("bin/busybox").exists());
    }
    let arm = std::fs::read(local.join("linux_arm64_v8/bin/busybox")).unwrap();
    assert_eq!(&arm[18..20], &183u16.to_le_bytes(), "an aarch64 ELF");
}

#[test]
fn missing_emulator_is_a_clear_error() {
    require_amd64_host();
    let (_reg, base) = registry_with_base();
    let env = Env::new();
    let df = format!("FROM {base}\nRUN uname -m > /arch\n");
    let ctx = env.context("no-qemu", &[("Dockerfile", &df)]);
    // An empty directory stands for a machine without qemu-user-static.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("status"), "enabled\n").unwrap();
    let out = env
        .cmd(&[
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            "no-qemu:1",
            p(&ctx),
        ])
        .env("RBUILD_BINFMT_MISC_DIR", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("Dockerfile:2"), "{e}");
    assert!(
        e.contains("a RUN for linux/arm64/v8 needs an emulator on this linux/amd64 machine"),
        "{e}"
    );
    assert!(
        e.contains("apt-get install qemu-user-static binfmt-support"),
        "{e}"
    );
    assert!(!text(&env.ok(&["images"]).stdout).contains("no-qemu"));
    // The same build for this machine needs no emulator.
    env.cmd(&[
        "build",
        "--platform",
        "linux/amd64",
        "-t",
        "no-qemu:1",
        p(&ctx),
    ])
    .env("RBUILD_BINFMT_MISC_DIR", empty.path())
    .status()
    .map(|s| assert!(s.success()))
    .unwrap();
}

/// `--build-context NAME=oci-layout://DIR:TAG` naming an image index: each platform of a
/// build takes its own image from it (the index is imported whole, untagged).
#[test]
fn an_oci_layout_index_context_gives_each_platform_its_image() {
    require_amd64_host();
    // rbuild's store is an OCI layout: the multi-platform base of another store is one.
    let src = Env::new();
    src.multi_busybox_base();
    let env = Env::new();
    let ctx = env.context(
        "app",
        &[("Dockerfile", "FROM base\nRUN uname -m > /arch\n")],
    );
    // By digest: the layout names it `busybox:multi`, and a tag there has no colon.
    let oci = src.root().join("oci");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mediaType"] == "application/vnd.oci.image.index.v1+json")
        .expect("the store names an index")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layout = format!("base=oci-layout://{}@{digest}", oci.display());
    env.ok(&[
        "build",
        "--progress=plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-context",
        &layout,
        "-t",
        "app:ctx",
        p(&ctx),
    ]);
    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let out = env.ok(&["run", "--platform", platform, "app:ctx", "cat", "/arch"]);
        assert_eq!(text(&out.stdout).trim(), machine, "{platform}");
    }
    // The layout's tag is not the store's: the base was imported without a name.
    let images = text(&env.ok(&["images"]).stdout);
    assert!(!images.contains("busybox"), "{images}");

    // An OCI archive of both platforms, loaded into a fresh store, stays an index.
    let archive = env.work.path().join("app.oci.tar");
    env.ok(&[
        "build",
        "--progress=plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-context",
        &layout,
        "-t",
        "app:ctx",
        "-o",
        &format!("type=oci,dest={}", archive.display()),
        p(&ctx),
    ]);
    let fresh = Env::new();
    let loaded = text(&fresh.ok(&["load", "-i", p(&archive)]).stdout);
    assert!(loaded.contains("app:ctx"), "{loaded}");
    let images = text(&fresh.ok(&["images"]).stdout);
    assert!(
        images.contains("index: linux/amd64,linux/arm64/v8"),
        "{images}"
    );
    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let out = fresh.ok(&[
            "run",
            "--pull",
            "never",
            "--platform",
            platform,
            "app:ctx",
            "cat",
            "/arch",
        ]);
        assert_eq!(text(&out.stdout).trim(), machine, "loaded, {platform}");
    }
}
