//! Pull, export, push and run as vertices of the build graph, through the binary against
//! a real `docker-registry` on loopback.

use rbuild_tests::{Env, Registry, Step, plain_steps};
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The manifest digest the registry serves for `reference` (skopeo, not rbuild).
fn registry_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    v["Digest"].as_str().expect("Digest").to_string()
}

fn manifest_digest(env: &Env, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", name]).stdout).expect("inspect JSON");
    v[0]["ManifestDigest"].as_str().expect("digest").to_string()
}

fn step<'a>(steps: &'a [Step], needle: &str, out: &Output) -> &'a Step {
    steps
        .iter()
        .find(|s| s.name.contains(needle))
        .unwrap_or_else(|| panic!("no step {needle:?} in:\n{}", text(&out.stderr)))
}

#[test]
fn a_registry_base_is_pulled_by_its_vertex_and_kept_under_the_registry_digest() {
    let src = Env::new();
    src.busybox_base();
    let reg = Registry::start();
    let base = reg.push_from(src.root(), "busybox:latest", "bb:1");
    let remote_digest = registry_digest(&base);

    let env = Env::new();
    let df = format!("FROM {base}\nRUN echo built > /built.txt\nCMD [\"cat\", \"/built.txt\"]\n");
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let ctx = ctx.to_str().unwrap();
    let out = env.ok(&["build", "--progress=plain", "-t", "app:1", ctx]);
    let steps = plain_steps(&text(&out.stderr));
    // The FROM step itself fetched the layers, pinned to the registry's manifest.
    let from = step(&steps, "FROM 127.0.0.1", &out);
    assert!(
        from.name.ends_with(&format!("@{remote_digest}")),
        "{}",
        from.name
    );
    assert!(from.done && !from.cached, "{from:?}");
    assert!(
        from.output.iter().any(|l| l.contains(" fetched ")),
        "{from:?}"
    );
    // Stored once, byte for byte: the local manifest digest is the registry's.
    assert_eq!(manifest_digest(&env, &base), remote_digest);
    assert_eq!(text(&env.ok(&["run", "app:1"]).stdout), "built\n");

    // Again: the resolved tag is reused, nothing is fetched, every step is cached.
    let out = env.ok(&["build", "--progress=plain", "-t", "app:1", ctx]);
    let steps = plain_steps(&text(&out.stderr));
    for s in steps.iter().filter(|s| !s.is_action()) {
        assert!(s.cached, "{s:?}\n{}", text(&out.stderr));
    }
    // --pull asks the registry again; the digest is unchanged, so the cache still holds.
    let out = env.ok(&["build", "--progress=plain", "--pull", "-t", "app:1", ctx]);
    let steps = plain_steps(&text(&out.stderr));
    assert!(step(&steps, "RUN echo built", &out).cached);

    // The local tag moved to another image: `rbuild pull` points it back at what the
    // registry serves, fetching nothing (the manifest's blobs are all local).
    env.ok(&["tag", "app:1", &base]);
    assert_ne!(manifest_digest(&env, &base), remote_digest);
    let out = env.ok(&["pull", &base]);
    assert!(
        !text(&out.stderr).contains(" fetched "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(manifest_digest(&env, &base), remote_digest);

    // A base that is neither local nor in the registry: a clear error naming it.
    let df = format!("FROM {}/missing:1\nRUN true\n", reg.host);
    let ctx = env.context("missing", &[("Dockerfile", &df)]);
    let out = env.run(&["build", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("missing:1") && err.contains("not in the local store"),
        "{err}"
    );
}

#[test]
fn export_push_and_run_are_vertices_of_one_solve() {
    let env = Env::new();
    env.busybox_base();
    let reg = Registry::start();
    let target = format!("{}/app:2", reg.host);
    let df = "FROM busybox\nRUN echo from-the-image > /m.txt\nCMD [\"cat\", \"/m.txt\"]\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    let ctx = ctx.to_str().unwrap();

    // The plan shows them: run and push hang off the export, which is never "cached".
    let plan = env.ok(&[
        "build",
        "--dry-run",
        "--format",
        "json",
        "-t",
        &target,
        "--push",
        "--run",
        ctx,
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let vertices = plan.as_array().expect("array");
    let of = |op: &str| -> Vec<&serde_json::Value> {
        vertices.iter().filter(|v| v["op"]["op"] == op).collect()
    };
    let (export, push, run) = (of("export"), of("push"), of("run"));
    assert_eq!((export.len(), push.len(), run.len()), (1, 1, 1), "{plan:#}");
    let export_id = &export[0]["id"];
    assert_eq!(push[0]["inputs"][0], *export_id);
    assert_eq!(run[0]["inputs"][0], *export_id);
    assert_eq!(push[0]["op"]["reference"], target.as_str());
    assert_eq!(export[0]["cached"], false);

    // The real thing: built, exported, pushed and run in one solve, in that order.
    let build_push_run = || {
        env.ok(&[
            "build",
            "--progress=plain",
            "-t",
            &target,
            "--push",
            "--run",
            ctx,
        ])
    };
    let out = build_push_run();
    assert_eq!(text(&out.stdout), "from-the-image\n");
    let steps = plain_steps(&text(&out.stderr));
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let pos = |needle: &str| {
        names
            .iter()
            .position(|n| n.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {names:?}"))
    };
    assert!(pos("exporting to image") < pos("pushing "), "{names:?}");
    assert!(pos("exporting to image") < pos("running "), "{names:?}");
    let export = step(&steps, "exporting to image", &out);
    assert!(
        export
            .output
            .iter()
            .any(|l| l == &format!("naming to {target} done")),
        "{export:?}"
    );
    assert_eq!(registry_digest(&target), manifest_digest(&env, &target));

    // A rebuild: every step cached, the actions act again (the run prints, the push finds
    // every blob already there).
    let out = build_push_run();
    assert_eq!(text(&out.stdout), "from-the-image\n");
    let steps = plain_steps(&text(&out.stderr));
    for s in &steps {
        assert_eq!(s.cached, !s.is_action(), "{s:?}");
    }
    let push = step(&steps, "pushing ", &out);
    assert!(
        push.output.iter().any(|l| l.contains("0 blob(s)")),
        "{push:?}"
    );

    // `rbuild run` of an image not in the store: image source (pull) then the run.
    let fresh = Env::new();
    let out = fresh.ok(&["run", &target]);
    assert_eq!(text(&out.stdout), "from-the-image\n");
    assert_eq!(manifest_digest(&fresh, &target), registry_digest(&target));
}
