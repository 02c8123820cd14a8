//! `ADD <git URL>#ref[:subdir]` through the rbuild binary, against a repository of the
//! test's own served on 127.0.0.1 by `git daemon` (git://) and, for the `https://….git`
//! form, by python's http.server (git's dumb HTTP protocol): the tree of the branch, tag
//! or subdir lands in the image without `.git` (with it under `--keep-git-dir`); a rebuild
//! runs nothing while the references stay; a new commit on the branch re-runs the ADD
//! that follows it and only that one; a missing ref or subdir is a clear error. Needs
//! root, git, python3, busybox-static and umoci.

use rbuild_tests::{Env, executed, free_port, plain_steps};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs git in `dir` with a fixed identity; panics with its output on failure.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=rbuild test",
            "-c",
            "user.email=test@rbuild.invalid",
        ])
        .args(args)
        .output()
        .expect("git (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server process, killed on drop.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A work repository with `a.txt` and `docs/d.txt` on `main`, tagged `v1`, and its bare
/// copy `serve/repo.git` (what the servers publish).
fn repository(work: &Path) -> (PathBuf, PathBuf) {
    let repo = work.join("repo");
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    std::fs::write(repo.join("a.txt"), "a1\n").unwrap();
    std::fs::write(repo.join("docs/d.txt"), "doc\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    let serve = work.join("serve");
    std::fs::create_dir_all(&serve).unwrap();
    git(
        work,
        &[
            "clone",
            "-q",
            "--bare",
            p(&repo),
            p(&serve.join("repo.git")),
        ],
    );
    (repo, serve)
}

fn git_daemon(serve: &Path) -> (Served, u16) {
    let port = free_port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", p(serve)))
        .arg(serve)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon (apt-get install git)");
    let served = Served(child);
    wait_for(port);
    (served, port)
}

#[test]
fn add_git_branch_tag_subdir_and_keep_git_dir() {
    let env = Env::new();
    env.busybox_base();
    let (repo, serve) = repository(env.work.path());
    let (_daemon, port) = git_daemon(&serve);
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let df = format!(
        "FROM busybox:latest\n\
         ADD {url}#v1:docs /docs\n\
         ADD --keep-git-dir {url}#v1 /withgit\n\
         ADD {url}#main /app\n\
         RUN stat -c '%u' /app/a.txt > /owner\n"
    );
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let build = || {
        let out = env.ok(&["build", "--progress=plain", "-t", "gitadd", p(&ctx)]);
        plain_steps(&String::from_utf8_lossy(&out.stderr))
    };
    let first = build();
    assert_eq!(executed(&first, "ADD").len(), 3, "{first:#?}");
    let root = env.umoci_unpack("gitadd:latest");
    let read =
        |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    assert_eq!(read("app/a.txt"), "a1\n");
    assert_eq!(read("app/docs/d.txt"), "doc\n");
    assert!(
        !root.join("app/.git").exists(),
        "no .git without --keep-git-dir"
    );
    assert_eq!(
        read("docs/d.txt"),
        "doc\n",
        "#v1:docs copies the subdir's contents"
    );
    assert!(!root.join("docs/a.txt").exists());
    assert!(
        root.join("withgit/.git/HEAD").is_file(),
        "--keep-git-dir keeps .git"
    );
    assert_eq!(read("owner"), "0\n", "files are root's");

    // Nothing moved: nothing runs.
    let second = build();
    assert!(executed(&second, "ADD").is_empty(), "{second:#?}");
    assert!(executed(&second, "RUN").is_empty(), "{second:#?}");

    // A new commit on main: the ADD of #main (and the RUN after it) re-run, not the tag's.
    std::fs::write(repo.join("a.txt"), "a2\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    git(&repo, &["push", "-q", p(&serve.join("repo.git")), "main"]);
    let third = build();
    let adds = executed(&third, "ADD");
    assert_eq!(adds.len(), 1, "{third:#?}");
    assert!(adds[0].contains("#main"), "{adds:?}");
    let root = env.umoci_unpack("gitadd:latest");
    assert_eq!(
        std::fs::read_to_string(root.join("app/a.txt")).unwrap(),
        "a2\n"
    );

    // A ref or a subdir the repository does not have.
    for (frag, want) in [
        ("#nosuch", "no branch or tag \"nosuch\""),
        ("#main:nodir", "no directory \"nodir\""),
    ] {
        let bad = format!("FROM busybox:latest\nADD {url}{frag} /x\n");
        let bctx = env.context(&format!("bad{}", frag.len()), &[("Dockerfile", &bad)]);
        let out = env.run(&["build", "--progress=plain", p(&bctx)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{frag}");
        assert!(err.contains(want), "{frag}: {err}");
    }
}

#[test]
fn add_git_over_http_dot_git_url() {
    let env = Env::new();
    env.busybox_base();
    let (_, serve) = repository(env.work.path());
    // Dumb HTTP: git reads info/refs and objects as plain files.
    git(&serve.join("repo.git"), &["update-server-info"]);
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(&serve)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let _server = Served(child);
    wait_for(port);
    let df = format!("FROM busybox:latest\nADD http://127.0.0.1:{port}/repo.git#main:docs /d\n");
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    env.ok(&["build", "--progress=plain", "-t", "githttp", p(&ctx)]);
    let root = env.umoci_unpack("githttp:latest");
    assert_eq!(
        std::fs::read_to_string(root.join("d/d.txt")).unwrap(),
        "doc\n"
    );
}
