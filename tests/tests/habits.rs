//! A docker user's habits (issue 13): `-o -` to stdout, flags before the subcommand,
//! `-o …,name=`, `BUILDKIT_PROGRESS`, docker's build-arg warning, every output and name
//! checked before anything is built; docker's command tree (`image ls`, `builder prune`,
//! `system df`, `buildx build`), `inspect`/`images`/`history` in docker's shapes with
//! `--format`, `rmi` by ID, `load` from stdin, `save`.
//! Needs root, busybox-static and tar (scripts/install-deps.sh).

use rbuild_tests::{Env, executed, plain_steps};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn failed_with(o: &Output, message: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(message),
        "wanted {message:?} in:\n{}",
        text(&o.stderr)
    );
}

/// `rbuild ARGS | tar -t`: the member names, and rbuild's stderr.
fn piped_into_tar(env: &Env, args: &[&str]) -> (Vec<String>, String) {
    let mut rbuild = env
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rbuild");
    let tar = Command::new("tar")
        .arg("-t")
        .stdin(rbuild.stdout.take().expect("rbuild's stdout"))
        .output()
        .expect("run tar");
    let out = rbuild.wait_with_output().expect("wait for rbuild");
    assert!(
        out.status.success(),
        "rbuild {args:?}: {}",
        text(&out.stderr)
    );
    assert!(tar.status.success(), "tar -t: {}", text(&tar.stderr));
    (
        text(&tar.stdout).lines().map(String::from).collect(),
        text(&out.stderr),
    )
}

fn app(env: &Env) -> std::path::PathBuf {
    env.context(
        "app",
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG USED=1\nCOPY f /f\nRUN echo ran-$USED > /ran\nCMD [\"cat\", \"/ran\"]\n",
            ),
            ("f", "file\n"),
        ],
    )
}

#[test]
fn dash_outputs_go_to_stdout() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    let (members, _) = piped_into_tar(&env, &["build", "--progress=plain", "-o", "-", p(&ctx)]);
    assert!(members.iter().any(|m| m == "ran"), "{members:?}");
    assert!(members.iter().any(|m| m == "bin/busybox"), "{members:?}");
    let (members, _) = piped_into_tar(&env, &["build", "-o", "type=tar,dest=-", p(&ctx)]);
    assert!(members.iter().any(|m| m == "f"), "{members:?}");
    let (members, _) = piped_into_tar(&env, &["build", "-o", "type=oci,dest=-", p(&ctx)]);
    assert!(members.iter().any(|m| m == "index.json"), "{members:?}");
    // Nothing named `-` was made, in the context or here.
    assert!(!ctx.join("-").exists());
    assert!(!Path::new("-").exists());
    // stdout cannot take the archive and -q's ID at once.
    let o = env.run(&["build", "-q", "-o", "-", p(&ctx)]);
    failed_with(&o, "-q prints the image ID on stdout");
}

#[test]
fn flags_before_the_subcommand_apply() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    env.ok(&["build", "--progress=plain", "-t", "app:1", p(&ctx)]);
    let o = env.ok(&["--no-cache", "--progress=plain", "build", p(&ctx)]);
    let steps = plain_steps(&text(&o.stderr));
    assert_eq!(executed(&steps, "RUN").len(), 1, "{}", text(&o.stderr));
    let o = env.ok(&["--no-cache", "--progress=plain", "buildx", "build", p(&ctx)]);
    assert_eq!(executed(&plain_steps(&text(&o.stderr)), "RUN").len(), 1);
    // Without it, everything is cached.
    let o = env.ok(&["--progress=plain", "build", p(&ctx)]);
    assert!(executed(&plain_steps(&text(&o.stderr)), "RUN").is_empty());
}

#[test]
fn outputs_name_images_and_progress_follows_the_environment() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    let o = env
        .cmd(&[
            "build",
            "-t",
            "app:1",
            "-o",
            "type=image,name=named:1",
            p(&ctx),
        ])
        .env("BUILDKIT_PROGRESS", "plain")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !plain_steps(&text(&o.stderr)).is_empty(),
        "plain lines: {}",
        text(&o.stderr)
    );
    let ids = |name: &str| text(&env.ok(&["images", "-q", name]).stdout);
    assert_eq!(ids("named:1"), ids("app:1"));
    assert_eq!(ids("named:1").lines().count(), 1);
    let o = env
        .cmd(&["build", p(&ctx)])
        .env("BUILDKIT_PROGRESS", "quiet")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        plain_steps(&text(&o.stderr)).is_empty(),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn rawjson_progress_is_buildkits_solve_status() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    for how in [
        ["--progress", "rawjson"],
        ["--no-cache", "--progress=rawjson"],
    ] {
        let mut args = vec!["build", "--no-cache"];
        args.extend(how.iter().filter(|a| **a != "--no-cache"));
        args.push(p(&ctx));
        let o = env.ok(&args);
        let events: Vec<serde_json::Value> = text(&o.stderr)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let run = events
            .iter()
            .filter_map(|e| e["vertexes"][0].as_object())
            .find(|v| {
                v["name"].as_str().is_some_and(|n| n.contains("RUN echo"))
                    && v.contains_key("completed")
            })
            .expect("the RUN vertex, completed");
        assert!(run["digest"].as_str().unwrap().starts_with("sha256:"));
        assert!(run["started"].is_string() && run.get("error").is_none());
        // Why it ran, as a stderr log line of that vertex, base64 as BuildKit writes logs:
        // "CACHE MISS: --no-cache\n".
        assert!(
            events
                .iter()
                .any(|e| e["logs"][0]["vertex"] == run["digest"]
                    && e["logs"][0]["data"] == "Q0FDSEUgTUlTUzogLS1uby1jYWNoZQo="
                    && e["logs"][0]["stream"] == 2),
            "{}",
            text(&o.stderr)
        );
    }
    let o = env
        .cmd(&["build", p(&ctx)])
        .env("BUILDKIT_PROGRESS", "rawjson")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        text(&o.stderr)
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("{\"vertexes\"")),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn unused_build_args_get_dockers_warning() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "--build-arg",
        "USED=2",
        "--build-arg",
        "UNUSED=x",
        "--build-arg",
        "HTTP_PROXY=http://proxy:3128",
        p(&ctx),
    ]);
    let err = text(&o.stderr);
    assert!(
        err.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{err}"
    );
    let o = env.ok(&[
        "build",
        "--progress=plain",
        "--build-arg",
        "USED=3",
        p(&ctx),
    ]);
    assert!(
        !text(&o.stderr).contains("[Warning]"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_outputs_and_names_fail_before_anything_is_built() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    let w = env.work.path();
    for (args, message) in [
        (
            vec!["-o", "type=bogus,dest=x"],
            "--output type=bogus is not supported; use oci, docker, tar, local, image or registry",
        ),
        (
            vec!["-o", "type=oci,dest=x.tar,compression=zstd"],
            "compression=zstd is not supported: rbuild writes gzip layers only",
        ),
        (vec!["-o", "type=oci,dest=x,what=1"], "unknown key \"what\""),
        (
            vec!["-t", "UPPER:1"],
            "-t \"UPPER:1\": invalid image reference \"UPPER:1\": repository name must be lowercase",
        ),
        (
            vec!["-o", "type=image,name=Bad:1"],
            "name=invalid image reference \"Bad:1\"",
        ),
        (
            vec!["--format", "json"],
            "--format shapes what --dry-run or --call prints",
        ),
    ] {
        let mut all = vec!["build", "--progress=plain", "-t", "never:1"];
        all.extend(args.iter().copied());
        all.push(p(&ctx));
        let o = env.cmd(&all).current_dir(w).output().unwrap();
        failed_with(&o, message);
        // Said before the solve: no step, no image, no tag, no file.
        assert!(
            plain_steps(&text(&o.stderr)).is_empty(),
            "{}",
            text(&o.stderr)
        );
        assert!(!w.join("x").exists() && !w.join("x.tar").exists());
    }
    let o = env.run(&["images", "-q", "never"]);
    assert_eq!(text(&o.stdout), "");
    let o = env.run(&["tag", "busybox", "BAD:1"]);
    failed_with(
        &o,
        "cannot tag busybox as BAD:1: invalid image reference \"BAD:1\"",
    );
}

#[test]
fn the_command_tree_speaks_docker() {
    let env = Env::new();
    // Bare: the help, exit 0, nothing built.
    let o = env.cmd(&[]).current_dir(env.work.path()).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("Usage: rbuild"),
        "{}",
        text(&o.stdout)
    );
    assert!(!env.root().join("oci").exists(), "no store made");
    // Flags without a command or context: the help too (docker's), not a build of `.`.
    let elsewhere = env.work.path().join("elsewhere");
    let o = env
        .cmd(&["--root", elsewhere.to_str().unwrap(), "--no-cache"])
        .current_dir(env.work.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("Usage: rbuild"),
        "{}",
        text(&o.stdout)
    );
    assert!(!elsewhere.exists(), "no store made");
    // Unknown commands are not contexts.
    let o = env
        .cmd(&["imagse"])
        .current_dir(env.work.path())
        .output()
        .unwrap();
    failed_with(
        &o,
        "unknown command \"imagse\" for rbuild: did you mean `rbuild images`?",
    );
    let o = env
        .cmd(&["ps"])
        .current_dir(env.work.path())
        .output()
        .unwrap();
    failed_with(&o, "`docker ps` works on containers, and rbuild keeps none");
    let o = env.ok(&["version"]);
    assert!(
        text(&o.stdout).starts_with("rbuild "),
        "{}",
        text(&o.stdout)
    );

    env.busybox_base();
    let ctx = app(&env);
    env.ok(&["build", "-q", "-t", "app:1", "-t", "me/app:2", p(&ctx)]);
    // image ls = images = image list.
    let ls = text(&env.ok(&["image", "ls"]).stdout);
    assert_eq!(ls, text(&env.ok(&["images"]).stdout));
    assert_eq!(ls, text(&env.ok(&["image", "list"]).stdout));
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    assert!(ls.contains(" ago "), "CREATED says how long ago: {ls}");
    // --format, {{json .}}, reference patterns, -q once per image.
    let names = text(
        &env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .stdout,
    );
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["app:1", "busybox:latest", "me/app:2"]);
    let rows = text(&env.ok(&["images", "--format", "{{json .}}", "app"]).stdout);
    let row: serde_json::Value = serde_json::from_str(rows.trim()).unwrap();
    assert_eq!(row["Repository"], "app");
    assert_eq!(row["ID"].as_str().unwrap().len(), 12);
    let id = row["ID"].as_str().unwrap().to_string();
    let o = env.ok(&["images", "--filter", "reference=*/app", "-q"]);
    assert_eq!(text(&o.stdout), format!("{id}\n"));
    let o = env.ok(&["images", "-q", "-a"]);
    assert_eq!(text(&o.stdout).lines().filter(|l| *l == id).count(), 1);
    let table = text(
        &env.ok(&["images", "--format", "table {{.ID}}\\t{{.Tag}}", "busybox"])
            .stdout,
    );
    assert!(table.starts_with("IMAGE ID       TAG\n"), "{table}");

    // inspect: an array in docker's shape, several images, --format.
    let o = env.ok(&["image", "inspect", "app:1", "busybox"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = v.as_array().expect("an array");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["RepoTags"], serde_json::json!(["app:1", "me/app:2"]));
    assert_eq!(all[0]["Config"]["Cmd"], serde_json::json!(["cat", "/ran"]));
    assert_eq!(all[0]["RootFS"]["Type"], "layers");
    assert!(all[0]["Id"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        all[0]["RepoDigests"][0]
            .as_str()
            .unwrap()
            .starts_with("app@sha256:")
    );
    let o = env.ok(&["inspect", "-f", "{{json .Config.Cmd}} {{.Os}}", "app:1"]);
    assert_eq!(text(&o.stdout), "[\"cat\",\"/ran\"] linux\n");
    let o = env.run(&["inspect", "app:1", "nope:1"]);
    failed_with(&o, "no image \"nope:1\"");
    let o = env.run(&["inspect", "--format", "{{range .}}", "app:1"]);
    failed_with(&o, "is not supported");

    // history: newest first, the image ID on top.
    let h = text(&env.ok(&["history", "app:1"]).stdout);
    let lines: Vec<&str> = h.lines().collect();
    assert!(lines[0].starts_with("IMAGE "), "{h}");
    assert!(lines[1].starts_with(&id), "{h}");
    assert!(
        lines[1].contains("CMD [\"cat\" \"/ran\"]") || lines[1].contains("CMD"),
        "{h}"
    );
    assert!(h.contains("RUN"), "{h}");
    let o = env.ok(&["image", "history", "-q", "app:1"]);
    assert!(text(&o.stdout).lines().skip(1).all(|l| l == "<missing>"));

    // rmi by ID: several names need -f.
    let o = env.run(&["rmi", &id]);
    failed_with(
        &o,
        "has several names (app:1, me/app:2): remove them by name, or add -f",
    );
    let o = env.ok(&["image", "rm", "-f", &id, "nope:1"]);
    assert_eq!(text(&o.stdout), "Untagged: app:1\nUntagged: me/app:2\n");
    assert_eq!(text(&env.ok(&["images", "-q", "app"]).stdout), "");
}

#[test]
fn save_load_through_pipes_and_the_prune_spellings() {
    let env = Env::new();
    env.busybox_base();
    let ctx = app(&env);
    let built = text(&env.ok(&["build", "-q", "-t", "app:1", p(&ctx)]).stdout);
    let archive = env.work.path().join("app.tar");
    // save to stdout, load from stdin (`< file`, and `-i -`), into other stores.
    let saved = env.ok(&["save", "app:1"]).stdout;
    std::fs::write(&archive, &saved).unwrap();
    for args in [&["load"][..], &["image", "load", "-q", "-i", "-"][..]] {
        let other = Env::new();
        let o = other
            .cmd(args)
            .stdin(std::fs::File::open(&archive).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "Loaded image: app:1\n");
        let id = text(&other.ok(&["inspect", "-f", "{{.Id}}", "app:1"]).stdout);
        assert_eq!(id, built);
    }
    let out = env.work.path().join("o.tar");
    env.ok(&["image", "save", "-o", p(&out), "app:1"]);
    assert_eq!(std::fs::read(&out).unwrap(), saved);

    // docker's prune spellings.
    let o = env.ok(&[
        "builder",
        "prune",
        "-af",
        "--filter",
        "until=1h",
        "--keep-storage",
        "1GB",
    ]);
    assert!(
        text(&o.stdout).contains("Total reclaimed space: "),
        "{}",
        text(&o.stdout)
    );
    env.ok(&["buildx", "prune", "-f"]);
    env.ok(&["image", "prune", "-f"]);
    let o = env.run(&["image", "prune", "-a"]);
    failed_with(&o, "image prune -a would remove every image here");
    let df = text(&env.ok(&["system", "df"]).stdout);
    let rows: Vec<Vec<&str>> = df.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert_eq!(rows[1][..3], ["Images", "2", "2"], "{df}");
    assert_eq!(rows[2][..2], ["Build", "Cache"], "{df}");
    assert!(text(&env.ok(&["images", "-q"]).stdout).lines().count() == 2);
}

#[test]
fn errors_say_the_fix_once() {
    let env = Env::new();
    env.busybox_base();
    // A close local name is suggested when the registry has none (a port nobody serves).
    let host = format!("127.0.0.1:{}", rbuild_tests::free_port());
    env.ok(&["tag", "busybox", &format!("{host}/bbase:latest")]);
    let ctx = env.context(
        "typo",
        &[(
            "Dockerfile",
            &format!("FROM {host}/bbase:lates\nRUN true\n"),
        )],
    );
    let o = env.run(&["build", "--progress=plain", p(&ctx)]);
    failed_with(
        &o,
        &format!("did you mean the local image {host}/bbase:latest?"),
    );
    assert_eq!(
        text(&o.stderr).matches("did you mean").count(),
        1,
        "{}",
        text(&o.stderr)
    );
    // A push that fails: its error once, under its step, and a short last line.
    let o = env.run(&["push", &format!("{host}/bbase:latest")]);
    failed_with(&o, "failed (its ERROR line is above)");
    assert_eq!(
        text(&o.stderr).matches("Connection refused").count(),
        1,
        "{}",
        text(&o.stderr)
    );
    // A --from that is a stage's name mistyped.
    let ctx = env.context(
        "stage",
        &[(
            "Dockerfile",
            "FROM busybox AS build\nRUN echo > /a\nFROM busybox\nCOPY --from=buidl /a /a\n",
        )],
    );
    let o = env.run(&["build", "--progress=plain", p(&ctx)]);
    failed_with(&o, "did you mean the stage build (--from=build)?");
    // Not root and namespaces asked for: one line, at the start, before anything is
    // touched (without --isolation an ordinary user builds rootless: tests/rootless.rs).
    let tar = env.work.path().join("x.tar");
    std::fs::write(&tar, b"").unwrap();
    for args in [
        &["--isolation=namespaces", "load", "-i", p(&tar)][..],
        &["build", "--isolation=namespaces", p(&ctx)][..],
    ] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(rbuild_tests::rbuild_bin())
            .args(args)
            .env("RBUILD_ROOT", env.root())
            .output()
            .expect("setpriv (util-linux)");
        failed_with(
            &o,
            "--isolation=namespaces needs root: run as root, or use --isolation=rootless (or auto)",
        );
        assert_eq!(text(&o.stderr).lines().count(), 1, "{}", text(&o.stderr));
    }
    // Reading the store needs no root.
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(rbuild_tests::rbuild_bin())
        .args(["build", "--dry-run", p(&ctx)])
        .output()
        .unwrap();
    assert!(
        !text(&o.stderr).contains("needs root"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn contexts_from_stdin_git_and_urls() {
    let env = Env::new();
    env.busybox_base();
    let with_stdin = |args: &[&str], input: Vec<u8>| {
        let mut child = env
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        child.wait_with_output().unwrap()
    };
    // A Dockerfile on stdin, with an empty context (`rbuild -` too).
    let df = b"FROM busybox\nRUN echo from-stdin > /s\nCMD [\"cat\", \"/s\"]\n".to_vec();
    let o = with_stdin(&["build", "-q", "-t", "s:1", "-"], df.clone());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = with_stdin(&["-q", "-t", "s:1", "-"], df);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&env.ok(&["run", "s:1"]).stdout), "from-stdin\n");
    // A gzip tar of a context, with -f naming a file inside it.
    let ctx = env.context(
        "tarred",
        &[
            (
                "build.Dockerfile",
                "FROM busybox\nCOPY a /a\nCMD [\"cat\", \"/a\"]\n",
            ),
            ("a", "in the tar\n"),
        ],
    );
    let tgz = Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .args(["-czf", "-", "."])
        .output()
        .unwrap();
    assert!(tgz.status.success());
    let o = with_stdin(
        &["build", "-q", "-t", "s:2", "-f", "build.Dockerfile", "-"],
        tgz.stdout,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&env.ok(&["run", "s:2"]).stdout), "in the tar\n");
    // Refused, with what to do instead.
    let o = with_stdin(&["build", "-f", "-", "-"], b"FROM busybox\n".to_vec());
    failed_with(
        &o,
        "stdin can hold the build context (rbuild build -) or the Dockerfile (-f -), not both",
    );
    // A context URL (a server on loopback): a gzip tar is the context (-f inside it), a
    // text file the Dockerfile; a missing one names the status, another format says why.
    let server = rbuild_tests::FileServer::start();
    let tgz = Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .args(["-czf", "-", "."])
        .output()
        .unwrap();
    let serve = |path: &str, body: Vec<u8>| {
        server.serve(
            path,
            rbuild_tests::Served {
                body,
                ..Default::default()
            },
        )
    };
    serve("/ctx.tar.gz", tgz.stdout);
    serve(
        "/Dockerfile",
        b"FROM busybox\nRUN echo from-url > /u\nCMD [\"cat\", \"/u\"]\n".to_vec(),
    );
    serve("/ctx.tar.xz", vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2]);
    env.ok(&[
        "build",
        "-q",
        "-t",
        "u:1",
        "-f",
        "build.Dockerfile",
        &server.url("/ctx.tar.gz"),
    ]);
    assert_eq!(text(&env.ok(&["run", "u:1"]).stdout), "in the tar\n");
    env.ok(&["build", "-q", "-t", "u:2", &server.url("/Dockerfile")]);
    assert_eq!(text(&env.ok(&["run", "u:2"]).stdout), "from-url\n");
    let o = env.run(&["build", &server.url("/nope.tar")]);
    failed_with(
        &o,
        &format!(
            "build context {}: the server answered 404 Not Found",
            server.url("/nope.tar")
        ),
    );
    let o = env.run(&["build", &server.url("/ctx.tar.xz")]);
    failed_with(
        &o,
        "is xz-compressed (recompress it with gzip): rbuild reads a plain or gzip tar, or a Dockerfile",
    );
    // A git context: URL#REF:SUBDIR with a branch, a tag or a commit (a local repository
    // through file://: the same clone as for https://).
    let repo = env.context(
        "repo",
        &[
            (
                "sub/Dockerfile",
                "FROM busybox\nCOPY f /f\nCMD [\"cat\", \"/f\"]\n",
            ),
            ("sub/f", "one\n"),
        ],
    );
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git");
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    git(&["init", "-q", "-b", "main", "."]);
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    git(&["tag", "v1"]);
    let first = git(&["rev-parse", "HEAD"]).trim().to_string();
    std::fs::write(repo.join("sub/f"), "two\n").unwrap();
    git(&["commit", "-qam", "two"]);
    let url = format!("file://{}", p(&repo));
    for (fragment, want) in [
        ("main:sub".to_string(), "two\n"),
        ("v1:sub".to_string(), "one\n"),
        (format!("{first}:sub"), "one\n"),
    ] {
        let word = format!("{url}#{fragment}");
        env.ok(&["build", "-q", "-t", "g:1", &word]);
        assert_eq!(text(&env.ok(&["run", "g:1"]).stdout), want, "{word}");
    }
    let o = env.run(&["build", &format!("{url}#nope:sub")]);
    failed_with(&o, "no branch, tag or commit \"nope\"");
    let o = env.run(&["build", &format!("{url}#main:../..")]);
    failed_with(&o, "\"../..\" is not a directory inside the repository");
}

#[test]
fn run_flags_for_kept_containers_are_refused_with_why() {
    let env = Env::new();
    for (args, message) in [
        (
            &["run", "-d", "img"][..],
            "run -d: rbuild runs a container in the foreground only",
        ),
        (
            &["run", "-v", "/a:/b", "img"][..],
            "run -v /a:/b: volumes and bind mounts are not supported",
        ),
        (
            &["run", "-p", "80:80", "img"][..],
            "run -p 80:80: not needed with --network host",
        ),
        (
            &["run", "--name", "x", "img"][..],
            "run --name x: rbuild keeps no containers",
        ),
    ] {
        failed_with(&env.run(args), message);
    }
    assert!(!env.root().join("oci").exists(), "nothing touched");
}

/// Text as a terminal of `cols` columns shows it, row by row: escape sequences dropped,
/// `\r` and `\n` ending rows, a row wrapped after `cols` characters (indicatif pads its
/// lines to the width and lets the terminal wrap).
fn screen_lines(raw: &str, cols: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for e in chars.by_ref() {
                        if e.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => out.push(std::mem::take(&mut line)),
            c => {
                if line.chars().count() == cols {
                    out.push(std::mem::take(&mut line));
                }
                line.push(c)
            }
        }
    }
    out.push(line);
    out
}

/// `rbuild ARGS` in a pseudo-terminal of `cols`×`rows` (util-linux's script).
fn in_terminal(env: &Env, args: &str, cols: u16, rows: u16, no_color: bool) -> (bool, String) {
    let line = format!(
        "stty cols {cols} rows {rows}; {} {args}",
        rbuild_tests::rbuild_bin().display()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env("RBUILD_ROOT", env.root());
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let o = c.output().expect("script (util-linux)");
    (o.status.success(), text(&o.stdout))
}

#[test]
fn the_terminal_view_has_a_header_cut_lines_and_room_for_what_runs() {
    let env = Env::new();
    env.busybox_base();
    let long = "a".repeat(150);
    let ctx = env.context(
        "par",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox AS a\nRUN echo {long} && sleep 1\nFROM busybox AS b\nRUN echo b && sleep 1\nFROM busybox AS c\nRUN echo c && sleep 1\nFROM busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\nCOPY --from=c /etc/passwd /c\n"
            ),
        )],
    );
    let args = format!("build --no-cache --progress=tty -t par:1 {}", p(&ctx));
    let (ok, raw) = in_terminal(&env, &args, 60, 5, false);
    assert!(ok, "{raw}");
    let lines = screen_lines(&raw, 60);
    // The long RUN is cut to the 60 columns (an ellipsis at the end), never wrapped.
    assert!(lines.iter().all(|l| !l.starts_with("aaa")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("RUN echo aaaa") && l.trim_end().ends_with('…')),
        "{lines:#?}"
    );
    // BuildKit's header while it runs and at the end, the result after it.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[+] Building ") && l.contains("(1/")),
        "{lines:#?}"
    );
    let end = lines
        .iter()
        .position(|l| l.starts_with("[+] Building ") && l.trim_end().ends_with(") FINISHED"));
    let end = end.unwrap_or_else(|| panic!("no FINISHED header: {lines:#?}"));
    assert!(
        lines[end..]
            .iter()
            .any(|l| l.starts_with(" => naming to par:1")),
        "{lines:#?}"
    );
    // The image ID (89 characters with its words) is cut like the rest, never wrapped.
    assert!(
        lines[end..].iter().any(|l| {
            l.starts_with(" => writing image sha256:") && l.trim_end().ends_with('…')
        }),
        "{lines:#?}"
    );
    // Three RUNs at once in 5 rows: two get a line, the third is counted.
    assert!(
        lines.iter().any(|l| l.contains("… and 1 more running")),
        "{lines:#?}"
    );
    // Colours, unless NO_COLOR.
    assert!(raw.contains("\x1b[34m#"), "finished steps in blue");
    let (ok, raw) = in_terminal(&env, &args, 60, 5, true);
    assert!(ok && !raw.contains("\x1b[34m"), "{raw}");
    // A failure: the header says ERROR, in red, and the step's error is whole.
    let bad = env.context(
        "bad",
        &[("Dockerfile", "FROM busybox\nRUN echo nope; exit 3\n")],
    );
    let (ok, raw) = in_terminal(
        &env,
        &format!("build --progress=tty {}", p(&bad)),
        60,
        5,
        false,
    );
    assert!(!ok);
    assert!(raw.contains("\x1b[31m[+] Building"), "{raw}");
    assert!(
        screen_lines(&raw, 60)
            .iter()
            .any(|l| l.trim_end().ends_with(") ERROR")),
        "{raw}"
    );
}
