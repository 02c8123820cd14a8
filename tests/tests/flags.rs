//! `rbuild build` flags beyond the Dockerfile, each by what it changes: `--label` (the
//! config), `--annotation` (the manifest), `--add-host`/`--ulimit`/`--shm-size`/
//! `--cgroup-parent` (what a RUN sees), `--no-cache-filter` (which steps run),
//! `--metadata-file` (the JSON written), `--platform`, `--load` and the attestation
//! flags (turned off, or refused with a bad value; what they make: attestations.rs); and what USER and a scratch base give a RUN and a config.

use rbuild_tests::{Env, executed, plain_steps};
use std::path::Path;
use std::process::Output;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Builds `dockerfile` with `flags`, writing the image's filesystem to a dir it returns.
fn build_to_dir(env: &Env, name: &str, dockerfile: &str, flags: &[&str]) -> std::path::PathBuf {
    let ctx = env.context(name, &[("Dockerfile", dockerfile)]);
    let out = env.work.path().join(format!("{name}-out"));
    let dest = format!("type=local,dest={}", p(&out));
    let mut args = vec!["build", "--progress=plain", "-t", name, "-o", &dest];
    args.extend_from_slice(flags);
    args.push(p(&ctx));
    env.ok(&args);
    out
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn label_annotation_and_metadata_file() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "labels",
        &[(
            "Dockerfile",
            "FROM busybox:latest\nLABEL team=build owner=dockerfile\nRUN true\n",
        )],
    );
    let meta = env.work.path().join("meta.json");
    env.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "app:1",
        "--label",
        "org.example.ci=yes",
        "--label",
        "owner=cli",
        "--annotation",
        "org.opencontainers.image.source=https://example.com/app",
        "--annotation",
        "manifest:com.example.build=42",
        "--metadata-file",
        p(&meta),
        "--load",
        "--provenance=false",
        "--sbom=false",
        "--attest",
        "type=provenance,disabled=true",
        p(&ctx),
    ]);
    let labels = &env.inspect("app:1")["Config"]["Labels"];
    assert_eq!(labels["team"], "build");
    assert_eq!(labels["org.example.ci"], "yes");
    assert_eq!(
        labels["owner"], "cli",
        "--label comes after the Dockerfile's LABEL"
    );

    let m = env.manifest("app:1");
    assert_eq!(
        m["annotations"],
        serde_json::json!({
            "com.example.build": "42",
            "org.opencontainers.image.source": "https://example.com/app"
        })
    );

    let info = env.inspect("app:1");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(json["containerimage.digest"], info["ManifestDigest"]);
    assert_eq!(json["containerimage.config.digest"], info["Id"]);
    assert_eq!(json["image.name"], "app:1");

    // The same build without the flags: labels and annotations gone, another image.
    env.ok(&["build", "--progress=plain", "-t", "plain:1", p(&ctx)]);
    assert!(env.manifest("plain:1").get("annotations").is_none());
    assert_ne!(env.inspect("plain:1")["Id"], info["Id"]);
}

#[test]
fn refused_flags_say_why_and_write_nothing() {
    let env = Env::new();
    let ctx = env.context("r", &[("Dockerfile", "FROM scratch\nLABEL a=b\n")]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--platform", "windows/amd64"],
            "--platform windows/amd64: rbuild builds Linux images only".into(),
        ),
        (
            vec!["--provenance", "mode=full"],
            "--provenance \"mode=full\": mode is min or max".into(),
        ),
        (
            vec!["--sbom", "generator=docker/scout-sbom-indexer"],
            "leave out generator=".into(),
        ),
        (
            vec!["--attest", "type=vex"],
            "give type=provenance or type=sbom".into(),
        ),
        (
            vec!["--annotation", "index:a=b"],
            "not an image index".into(),
        ),
        (vec!["--add-host", "gw:host-gateway"], "host-gateway".into()),
        (vec!["--ulimit", "files=1"], "unknown resource".into()),
        (vec!["--shm-size", "big"], "--shm-size \"big\"".into()),
    ];
    for (flags, message) in cases {
        let mut args = vec!["build", "-t", "refused:1"];
        args.extend_from_slice(&flags);
        args.push(p(&ctx));
        let out = env.run(&args);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(
            stderr(&out).contains(&message),
            "{flags:?}: {}",
            stderr(&out)
        );
        assert!(
            !String::from_utf8_lossy(&env.run(&["images"]).stdout).contains("refused"),
            "{flags:?} wrote an image"
        );
    }
    let e = stderr(&env.run(&["build", "--platform", "linux//x", p(&ctx)]));
    assert!(e.contains("not a platform"), "{e}");
    // The host's platform, spelled as docker users do, builds.
    let host = if std::env::consts::ARCH == "x86_64" {
        "linux/x86_64"
    } else {
        "local"
    };
    env.ok(&["build", "--platform", host, "-t", "host:1", p(&ctx)]);
}

#[test]
fn add_host_ulimit_shm_size_in_a_run() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox:latest\n\
              RUN cat /etc/hosts > /hosts.txt \
               && ulimit -n > /nofile && ulimit -Hn > /nofile-hard \
               && df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm\n";
    let out = build_to_dir(
        &env,
        "limits",
        df,
        &[
            "--add-host",
            "db.internal:10.1.2.3",
            "--add-host",
            "v6host=::1",
            "--ulimit",
            "nofile=512:777",
            "--shm-size",
            "16m",
        ],
    );
    let hosts = read(&out, "hosts.txt");
    assert!(hosts.contains("10.1.2.3\tdb.internal\n"), "{hosts}");
    assert!(hosts.contains("::1\tv6host\n"), "{hosts}");
    assert_eq!(read(&out, "nofile"), "512\n");
    assert_eq!(read(&out, "nofile-hard"), "777\n");
    assert_eq!(read(&out, "shm"), "16384\n");
    // /etc/hosts is bound in for the run, never part of the image.
    assert_ne!(
        std::fs::read_to_string(out.join("etc/hosts")).unwrap_or_default(),
        hosts
    );

    // Without the flags: docker's defaults, and the step is not answered from the cache
    // of the build that had them (the settings are part of its key).
    let ctx = env.context("defaults", &[("Dockerfile", df)]);
    let dest = env.work.path().join("defaults-out");
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "-o",
        &format!("type=local,dest={}", p(&dest)),
        p(&ctx),
    ]);
    assert_eq!(executed(&plain_steps(&stderr(&o)), "RUN").len(), 1);
    assert!(!read(&dest, "hosts.txt").contains("db.internal"));
    assert_eq!(read(&dest, "nofile"), "1024\n");
    assert_eq!(read(&dest, "shm"), "65536\n");
}

#[test]
fn cgroup_parent_is_where_run_cgroups_go() {
    let env = Env::new();
    env.busybox_base();
    let parent = format!("rbuild-e2e-parent-{}", std::process::id());
    let find = || -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for candidate in [
                h.path().join(&parent),
                Path::new("/sys/fs/cgroup").join(&parent),
            ] {
                if candidate.is_dir() && !found.contains(&candidate) {
                    found.push(candidate);
                }
            }
        }
        found
    };
    assert!(find().is_empty());
    let ctx = env.context("cg", &[("Dockerfile", "FROM busybox:latest\nRUN true\n")]);
    env.ok(&[
        "build",
        "--progress=plain",
        "--cgroup-parent",
        &format!("/{parent}"),
        p(&ctx),
    ]);
    let made = find();
    for dir in &made {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(
        made.iter().any(|d| d.starts_with("/sys/fs/cgroup/pids")),
        "the RUN's cgroup was made under {parent} in the pids hierarchy: {made:?}"
    );
}

#[test]
fn no_cache_filter_reruns_the_named_stage_and_what_follows() {
    let env = Env::new();
    env.busybox_base();
    let df = "FROM busybox:latest AS deps\n\
              RUN echo deps > /deps\n\
              FROM deps AS build\n\
              RUN echo build > /build\n\
              FROM busybox:latest\n\
              RUN echo final > /final\n\
              COPY --from=build /build /out/build\n";
    let ctx = env.context("ncf", &[("Dockerfile", df)]);
    env.ok(&["build", "--progress=plain", p(&ctx)]);
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "--no-cache-filter",
        "BUILD",
        p(&ctx),
    ]);
    let steps = plain_steps(&stderr(&o));
    assert_eq!(executed(&steps, "RUN echo deps"), Vec::<String>::new());
    assert_eq!(executed(&steps, "RUN echo final"), Vec::<String>::new());
    assert_eq!(executed(&steps, "RUN echo build").len(), 1, "{steps:?}");
    assert_eq!(executed(&steps, "COPY --from=build").len(), 1, "{steps:?}");
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "--no-cache-filter",
        "nope",
        p(&ctx),
    ]);
    assert!(
        stderr(&o).contains(
            "WARNING: --no-cache-filter nope: no step of this build is in a stage of that name"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn user_groups_and_the_scratch_workdir() {
    let env = Env::new();
    env.busybox_base();
    // Built FROM scratch with no WORKDIR: "/" as BuildKit writes it.
    assert_eq!(env.inspect("busybox:latest")["Config"]["WorkingDir"], "/");
    let out = build_to_dir(
        &env,
        "groups",
        "FROM busybox:latest\n\
         RUN echo 'staff:x:50:app' >> /etc/group && echo 'wheel:x:10:root,app' >> /etc/group\n\
         USER app\n\
         RUN id > /tmp/id-app\n\
         USER app:staff\n\
         RUN id > /tmp/id-explicit\n\
         USER 4321\n\
         RUN id > /tmp/id-numeric\n",
        &[],
    );
    // The kernel keeps groups sorted; the primary one is among them, as with docker.
    assert_eq!(
        read(&out, "tmp/id-app"),
        "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff),1000(app)\n"
    );
    assert_eq!(
        read(&out, "tmp/id-explicit"),
        "uid=1000(app) gid=50(staff) groups=50(staff)\n"
    );
    assert_eq!(
        read(&out, "tmp/id-numeric"),
        "uid=4321 gid=0(root) groups=0(root)\n"
    );
}
