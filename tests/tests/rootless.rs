//! Builds without root. CI runs as root, so each test makes the unprivileged situation: a
//! system user of its own (made once, kept), a home it owns in a temp dir, and the built
//! `rbuild` copied where that user can run it. The user runs rbuild with `setpriv`, and
//! rbuild enters its rootless mode (a user namespace) by itself.
//!
//! - With /etc/subuid and /etc/subgid ranges: a multi-stage build with `RUN chown`, `USER`
//!   switching and `COPY --chown` gives the same layers and image ID as root's, runs with
//!   `rbuild run`, pushes and pulls, exports and imports its cache, and leaves nothing owned by root in the user's store.
//! - Without ranges: one warning names what cannot be mapped; a build of root-owned files
//!   succeeds and a `COPY --chown` to another ID fails naming its Dockerfile line.
//! - As root without CAP_SYS_ADMIN (`setpriv --bounding-set -sys_admin`): `auto` picks chroot
//!   isolation, says so, and builds the same image as root; it runs.

use rbuild_tests::{Env, Registry, rbuild_bin};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCH: &str = "1000000000";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run a system tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `/etc/subuid`-style lines of `name`.
fn ranges(file: &str, name: &str) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(':').next() == Some(name))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (start, count): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            format!("{start}-{}", start + count - 1)
        })
        .collect()
}

/// Makes the system user `name` unless it exists, with subordinate ranges or, when
/// `subids` is false, none (removed if a previous useradd gave some).
fn user(name: &str, subids: bool) {
    let exists = Command::new("id")
        .arg(name)
        .output()
        .expect("id")
        .status
        .success();
    if !exists {
        let count = if subids { "65536" } else { "0" };
        sh(Command::new("useradd").args([
            "-M",
            "-s",
            "/usr/sbin/nologin",
            "-K",
            &format!("SUB_UID_COUNT={count}"),
            "-K",
            &format!("SUB_GID_COUNT={count}"),
            name,
        ]));
    }
    let (uids, gids) = (ranges("/etc/subuid", name), ranges("/etc/subgid", name));
    if subids {
        assert!(
            !uids.is_empty() && !gids.is_empty(),
            "useradd gave {name} no /etc/subuid, /etc/subgid ranges (SUB_UID_MIN in /etc/login.defs?)"
        );
    } else {
        for r in uids {
            sh(Command::new("usermod").args(["--del-subuids", &r, name]));
        }
        for r in gids {
            sh(Command::new("usermod").args(["--del-subgids", &r, name]));
        }
    }
}

/// The user's side: a home it owns and the rbuild binary where it can run it.
struct Unprivileged {
    name: &'static str,
    uid: u32,
    dir: tempfile::TempDir,
}

impl Unprivileged {
    fn new(name: &'static str, subids: bool) -> Unprivileged {
        user(name, subids);
        let uid = nix::unistd::User::from_name(name)
            .expect("getpwnam")
            .expect("the user exists")
            .uid
            .as_raw();
        let dir = tempfile::Builder::new()
            .prefix("rbuild-rootless")
            .tempdir()
            .expect("temp dir");
        // The worktree may not be traversable by others: a copy of the binary, 0755.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("rbuild");
        std::fs::copy(rbuild_bin(), &bin).expect("copy rbuild");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let u = Unprivileged { name, uid, dir };
        u.give(&u.home());
        u
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The store rbuild picks for the user (`~/.local/share/rbuild`).
    fn store(&self) -> PathBuf {
        self.home().join(".local/share/rbuild")
    }

    fn give(&self, path: &Path) {
        sh(Command::new("chown").args(["-R", self.name, p(path)]));
    }

    /// A context dir in the user's home.
    fn context(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.home().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, text) in files {
            std::fs::write(dir.join(f), text).unwrap();
            if *f == "busybox" {
                let exec = std::fs::Permissions::from_mode(0o755);
                std::fs::set_permissions(dir.join(f), exec).unwrap();
            }
        }
        self.give(&dir);
        dir
    }

    /// rbuild run as the user, with a clean environment.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args([
                "--reuid",
                self.name,
                "--regid",
                self.name,
                "--init-groups",
                "--",
            ])
            .arg(self.dir.path().join("rbuild"))
            .args(args)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .current_dir(self.home())
            .output()
            .expect("setpriv")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rbuild {args:?} as {} failed ({}):\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn busybox_files() -> Vec<(&'static str, Vec<u8>)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![
        (
            "Dockerfile",
            std::fs::read(repo.join("examples/busybox-base/Dockerfile")).unwrap(),
        ),
        (
            "busybox",
            std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)"),
        ),
    ]
}

const APP: &str = r#"FROM busybox:latest AS build
RUN echo made > /f && chown 1234:5678 /f
COPY --chown=1000:1000 data.txt /home/app/data.txt
USER app
RUN id -u > /home/app/me && echo by-app > /home/app/made
USER root
RUN chown -R 2000:3000 /home/app/made

FROM busybox:latest
COPY --from=build /f /f
COPY --from=build --chown=app:app /home/app /home/app
USER app
WORKDIR /home/app
RUN ls -ln /home/app > listing
CMD ["sh", "-c", "stat -c %u:%g /f; cat /home/app/me"]
"#;

/// (image ID, layer digests) of `inspect`'s JSON.
fn id_and_layers(json: &[u8]) -> (String, Vec<String>) {
    let v: serde_json::Value = serde_json::from_slice(json).expect("inspect JSON");
    let v = &v[0];
    let layers = v["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (v["Id"].as_str().unwrap().to_string(), layers)
}

#[test]
fn a_user_with_subordinate_ranges_builds_the_image_root_builds() {
    let user = Unprivileged::new("rbuild-test-subids", true);
    let base: Vec<(&str, Vec<u8>)> = busybox_files();
    let base: Vec<(&str, &[u8])> = base.iter().map(|(f, b)| (*f, b.as_slice())).collect();
    let app: [(&str, &[u8]); 2] = [("Dockerfile", APP.as_bytes()), ("data.txt", b"data\n")];
    let base_ctx = user.context("base", &base);
    let app_ctx = user.context("app", &app);

    // As the user.
    let out = user.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "busybox:latest",
        p(&base_ctx),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning: rootless"), "{err}");
    assert!(
        err.contains("rootless: RUN steps get no cgroup"),
        "the note about cgroups: {err}"
    );
    user.ok(&["build", "--progress=plain", "-t", "app:1", p(&app_ctx)]);
    let (rootless_id, rootless_layers) = id_and_layers(&user.ok(&["inspect", "app:1"]).stdout);

    // As root, the same contexts.
    let env = Env::new();
    let root_ok = |args: &[&str]| {
        let out = env
            .cmd(args)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rbuild {args:?} as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    root_ok(&[
        "build",
        "--progress=plain",
        "-t",
        "busybox:latest",
        p(&base_ctx),
    ]);
    root_ok(&["build", "--progress=plain", "-t", "app:1", p(&app_ctx)]);
    let (root_id, root_layers) = id_and_layers(&root_ok(&["inspect", "app:1"]).stdout);
    assert_eq!(rootless_layers, root_layers, "layer digests");
    assert_eq!(rootless_id, root_id, "image ID");

    // It runs, as the user; the owners are those of the Dockerfile.
    let out = user.ok(&["run", "--rm", "app:1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1234:5678\n1000\n");
    let out = user.ok(&["run", "--rm", "app:1", "cat", "/home/app/listing"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in ["data.txt", "made", "me"] {
        let line = listing.lines().find(|l| l.ends_with(&format!(" {name}")));
        let fields: Vec<&str> = line.expect(name).split_whitespace().collect();
        assert_eq!(fields[2..4], ["1000", "1000"], "{listing}");
    }

    // Pushed by the user, pulled by root and by the user into a second store (files of
    // other owners unpacked in the namespace): the same image.
    let reg = Registry::start();
    let remote = format!("{}/app:1", reg.host);
    user.ok(&["tag", "app:1", &remote]);
    user.ok(&["push", &remote]);
    let fresh = Env::new();
    fresh.ok(&["pull", &remote]);
    assert_eq!(
        id_and_layers(&fresh.ok(&["inspect", &remote]).stdout).0,
        root_id
    );
    let second = user.home().join("second-store");
    let second = p(&second);
    user.ok(&["--root", second, "pull", &remote]);
    let out = user.ok(&["--root", second, "run", "--rm", &remote]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1234:5678\n1000\n");

    // Cache export and import: a third store of the user builds from the exported cache
    // (no RUN executed) the same image.
    let cache = user.home().join("cache");
    let cache_to = format!("type=local,dest={},mode=max", p(&cache));
    user.ok(&[
        "build",
        "-q",
        "--cache-to",
        &cache_to,
        "-t",
        "app:1",
        p(&app_ctx),
    ]);
    let third = user.home().join("third-store");
    let third = p(&third);
    user.ok(&[
        "--root",
        third,
        "build",
        "-q",
        "-t",
        "busybox:latest",
        p(&base_ctx),
    ]);
    let cache_from = format!("type=local,src={}", p(&cache));
    let out = user.ok(&[
        "--root",
        third,
        "build",
        "--progress=plain",
        "--cache-from",
        &cache_from,
        "-t",
        "app:1",
        p(&app_ctx),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    let steps = rbuild_tests::plain_steps(&err);
    assert!(
        rbuild_tests::executed(&steps, "RUN").is_empty(),
        "every RUN from the cache: {:?}\n{err}",
        rbuild_tests::executed(&steps, "RUN")
    );
    let imported = id_and_layers(&user.ok(&["--root", third, "inspect", "app:1"]).stdout);
    assert_eq!(imported.0, root_id);

    // Nothing in the user's store belongs to root; the image's other owners are the
    // user's subordinate IDs.
    let store = user.store();
    assert!(
        store.join("oci").is_dir(),
        "the store is ~/.local/share/rbuild"
    );
    let mut owners = std::collections::BTreeSet::new();
    for e in walkdir::WalkDir::new(&store) {
        let e = e.expect("walk the store");
        let uid = e.metadata().unwrap().uid();
        assert_ne!(uid, 0, "{} is root's", e.path().display());
        owners.insert(uid);
    }
    assert!(owners.contains(&user.uid), "{owners:?}");
    assert!(owners.iter().any(|&u| u != user.uid), "{owners:?}");
}

#[test]
fn a_user_without_ranges_is_told_what_cannot_be_mapped() {
    let user = Unprivileged::new("rbuild-test-nosubids", false);
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let ok_df = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN echo hi > /f && mkdir /home && id -u > /home/me\n";
    let ctx = user.context(
        "ok",
        &[("Dockerfile", ok_df.as_bytes()), ("busybox", &busybox)],
    );
    let out = user.ok(&["build", "--progress=plain", "-t", "plain:1", p(&ctx)]);
    let err = String::from_utf8_lossy(&out.stderr);
    let warning = format!(
        "warning: rootless: {} has no range in /etc/subuid and /etc/subgid, so only uid {}",
        user.name, user.uid
    );
    assert_eq!(err.matches(&warning).count(), 1, "one warning: {err}");
    for what in [
        "COPY --chown",
        "RUN chown",
        "USER other than root",
        "usermod --add-subuids",
    ] {
        assert!(err.contains(what), "{what:?} in {err}");
    }
    let out = user.ok(&["run", "--rm", "plain:1", "cat", "/home/me"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");

    // Another owner: the step fails, naming its line and why.
    let bad_df = format!("{ok_df}COPY --chown=1000:1000 Dockerfile /home/copy\n");
    let ctx = user.context(
        "chown",
        &[("Dockerfile", bad_df.as_bytes()), ("busybox", &busybox)],
    );
    let out = user.run(&["build", "--progress=plain", "-t", "chown:1", p(&ctx)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:5"), "{err}");
    assert!(
        err.contains("to 1000:1000: Invalid argument (os error 22): the ID is not mapped in rbuild's user namespace"),
        "{err}"
    );

    let bad_df = format!("{ok_df}RUN chown 1234:5678 /f\n");
    let ctx = user.context(
        "run-chown",
        &[("Dockerfile", bad_df.as_bytes()), ("busybox", &busybox)],
    );
    let out = user.run(&["build", "--progress=plain", "-t", "chown:2", p(&ctx)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:5"), "{err}");
    assert!(err.contains("Invalid argument"), "chown's own error: {err}");
    assert!(
        err.contains("rootless without /etc/subuid, /etc/subgid ranges: only root is mapped"),
        "{err}"
    );

    let mut root_owned = Vec::new();
    for e in walkdir::WalkDir::new(user.store()) {
        let e = e.expect("walk the store");
        if e.metadata().unwrap().uid() != user.uid {
            root_owned.push(e.path().to_path_buf());
        }
    }
    assert!(root_owned.is_empty(), "not the user's: {root_owned:?}");
}

/// rbuild as root without CAP_SYS_ADMIN (dropped from the bounding set, as in a default
/// `docker run`): no namespace can be made.
fn without_sys_admin(env: &Env, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin", "--"])
        .arg(rbuild_bin())
        .args(args)
        .env("RBUILD_ROOT", env.root())
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("setpriv")
}

#[test]
fn without_namespaces_auto_picks_chroot_and_builds_the_same_image() {
    let work = tempfile::tempdir().unwrap();
    let write = |dir: &str, files: &[(&str, &[u8])]| {
        let d = work.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        for (f, b) in files {
            std::fs::write(d.join(f), b).unwrap();
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        d
    };
    let base: Vec<(&str, Vec<u8>)> = busybox_files();
    let base: Vec<(&str, &[u8])> = base.iter().map(|(f, b)| (*f, b.as_slice())).collect();
    let base_ctx = write("base", &base);
    let app_ctx = write(
        "app",
        &[("Dockerfile", APP.as_bytes()), ("data.txt", b"data\n")],
    );

    let chroot = Env::new();
    let ok = |args: &[&str]| {
        let out = without_sys_admin(&chroot, args);
        assert!(
            out.status.success(),
            "rbuild {args:?} without CAP_SYS_ADMIN: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = ok(&[
        "build",
        "--progress=plain",
        "-t",
        "busybox:latest",
        p(&base_ctx),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: no CAP_SYS_ADMIN, so no namespaces: RUN steps use chroot isolation"),
        "{err}"
    );
    assert!(err.contains("WARNING: chroot isolation: RUN steps share the host's network"));
    ok(&["build", "--progress=plain", "-t", "app:1", p(&app_ctx)]);
    let chrooted = id_and_layers(&ok(&["inspect", "app:1"]).stdout);
    let out = ok(&["run", "--rm", "app:1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1234:5678\n1000\n");

    let root = Env::new();
    for (tag, ctx) in [("busybox:latest", &base_ctx), ("app:1", &app_ctx)] {
        let out = root
            .cmd(&["build", "-q", "-t", tag, p(ctx)])
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        chrooted,
        id_and_layers(&root.ok(&["inspect", "app:1"]).stdout)
    );

    // What needs a mount or a namespace fails naming its line.
    let mount_ctx = write(
        "mount",
        &[(
            "Dockerfile",
            b"FROM busybox:latest\nRUN --mount=type=tmpfs,target=/scratch true\n",
        )],
    );
    let out = without_sys_admin(&chroot, &["build", "--progress=plain", p(&mount_ctx)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.contains("RUN --mount target=/scratch: chroot isolation mounts nothing"),
        "{err}"
    );

    // Asking for namespaces there is a clear error.
    let out = without_sys_admin(&chroot, &["--isolation=namespaces", "images"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--isolation=namespaces needs CAP_SYS_ADMIN"),
        "{err}"
    );
}
