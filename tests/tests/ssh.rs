//! `--ssh` and `RUN --mount=type=ssh` through the rbuild binary, with OpenSSH's
//! `ssh-agent` and a key made by `ssh-keygen`: a step lists the key and gets data signed
//! through its socket (a static probe speaks the agent protocol, as `ssh-add -l` would),
//! cannot remove keys, sees the socket's owner and mode as asked; a key file works like
//! an agent; a missing required agent names its id and line; nothing of the key reaches
//! the store. Needs root, busybox-static, gcc and openssh-client.

use rbuild_tests::Env;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A test's own ssh-agent, killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent (scripts/install-deps.sh installs openssh-client)");
        // It creates the socket right away; the loop ends when it is there.
        while !socket.exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Agent { child, socket }
    }

    fn ssh_add(&self, args: &[&str]) -> Output {
        Command::new("ssh-add")
            .args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key without a passphrase: (private key file, the .pub line's fields).
fn keygen(dir: &Path, comment: &str) -> (PathBuf, Vec<String>) {
    let key = dir.join(comment);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.split_whitespace().map(String::from).collect())
}

/// A context with the static agent probe and `dockerfile`.
fn context(env: &Env, dockerfile: &str) -> PathBuf {
    let ctx = env.context("ctx", &[("Dockerfile", dockerfile)]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("probe/agent_probe.c");
    let st = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(ctx.join("agent_probe"))
        .arg(&src)
        .status()
        .expect("gcc (scripts/install-deps.sh)");
    assert!(st.success(), "building {}", src.display());
    ctx
}

const DOCKERFILE: &str = "\
FROM busybox:latest
COPY agent_probe /bin/agent_probe
RUN --mount=type=ssh agent_probe > /probe.txt; echo \"$SSH_AUTH_SOCK\" >> /probe.txt; stat -c '%a %u %g' \"$SSH_AUTH_SOCK\" >> /probe.txt
RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock,uid=1000,gid=1000,mode=0660 stat -c '%a %u %g' /tmp/deploy.sock > /deploy.txt && su app -c 'SSH_AUTH_SOCK=/tmp/deploy.sock agent_probe' >> /deploy.txt
";

/// What the probe prints for an agent holding one key, after a read-only refusal.
fn expected_probe(public: &[String]) -> String {
    format!(
        "keys 1\nkey {} {}\nsign ok\nremove refused\nkeys 1\n",
        public[1], public[2]
    )
}

/// Every file under `root` that holds `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path()).is_ok_and(|d| d.windows(needle.len()).any(|w| w == needle))
        })
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// The private key's base64 body lines: what would show if it leaked.
fn key_lines(key: &Path) -> Vec<String> {
    std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(String::from)
        .collect()
}

#[test]
fn a_step_reaches_the_users_agent_read_only() {
    let env = Env::new();
    env.busybox_base();
    let (key, public) = keygen(env.work.path(), "rbuild-test-key");
    let agent = Agent::start(env.work.path());
    assert!(agent.ssh_add(&["-q", p(&key)]).status.success());
    let ctx = context(&env, DOCKERFILE);
    let out = env
        .cmd(&[
            "build",
            "--progress=plain",
            "-t",
            "ssh:1",
            "--ssh",
            "default",
            "--ssh",
            &format!("deploy={}", p(&agent.socket)),
            p(&ctx),
        ])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rootfs = env.umoci_unpack("ssh:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("probe.txt")).unwrap(),
        format!(
            "{}/run/buildkit/ssh_agent.0\n600 0 0\n",
            expected_probe(&public)
        )
    );
    // A non-root user reaches a socket given to it by uid/mode.
    assert_eq!(
        std::fs::read_to_string(rootfs.join("deploy.txt")).unwrap(),
        format!("660 1000 1000\n{}", expected_probe(&public))
    );
    // The user's agent still holds the key: the step could not remove it.
    let listed = agent.ssh_add(&["-L"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&public[1]));
    assert!(!rootfs.join("run").exists() && !rootfs.join("tmp/deploy.sock").exists());
}

#[test]
fn a_key_file_is_served_by_an_agent_for_the_build() {
    let env = Env::new();
    env.busybox_base();
    let (key, public) = keygen(env.work.path(), "rbuild-file-key");
    let ctx = context(&env, DOCKERFILE);
    let out = env
        .cmd(&[
            "build",
            "--progress=plain",
            "-t",
            "ssh:2",
            "--ssh",
            &format!("default={}", p(&key)),
            "--ssh",
            &format!("deploy={}", p(&key)),
            p(&ctx),
        ])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rootfs = env.umoci_unpack("ssh:2");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("probe.txt")).unwrap(),
        format!(
            "{}/run/buildkit/ssh_agent.0\n600 0 0\n",
            expected_probe(&public)
        )
    );
    // The agent rbuild started is gone with the build, and no byte of the key is in
    // the store.
    let agents = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains("rbuild-ssh-agent"))
        .count();
    assert_eq!(agents, 0, "ssh-agent processes left");
    for line in key_lines(&key) {
        let found = files_holding(env.root(), line.as_bytes());
        assert!(found.is_empty(), "key material in {found:?}");
    }
    let out = env
        .cmd(&[
            "build",
            "--progress=plain",
            "--ssh",
            &format!(
                "default={}",
                p(&env.work.path().join("rbuild-file-key.pub"))
            ),
            p(&ctx),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--ssh default: ssh-add could not load"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_agent_is_skipped_or_named_with_its_line() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox:latest\nRUN --mount=type=ssh test ! -e /run/buildkit/ssh_agent.0 && echo \"sock=$SSH_AUTH_SOCK\"\nRUN --mount=type=ssh,id=gh,required=true true\n",
        )],
    );
    let out = env
        .cmd(&["build", "--progress=plain", p(&ctx)])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("sock=/run/buildkit/ssh_agent.0"),
        "optional: skipped: {t}"
    );
    assert!(
        t.contains("Dockerfile:3: [3/3] RUN --mount=type=ssh,id=gh,required=true true: ssh agent \"gh\" is required but was not provided: pass --ssh gh (the agent at $SSH_AUTH_SOCK) or --ssh gh=SOCKET|KEYFILE"),
        "{t}"
    );
    let out = env
        .cmd(&["build", "--progress=plain", "--ssh", "default", p(&ctx)])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--ssh default: no agent socket: SSH_AUTH_SOCK is not set"),
        "{}",
        text(&out)
    );
}
