//! Helpers for rbuild's end-to-end tests: a temp store, the `rbuild` binary,
//! a busybox base image built from the host's busybox-static, and readers for
//! `--progress=plain` output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `rbuild` binary of this workspace: `RBUILD_BIN`, or beside the test executable.
pub fn rbuild_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RBUILD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/rbuild
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("rbuild");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rbuild` (scripts/test.sh does) or set RBUILD_BIN",
        bin.display()
    );
    bin
}

/// A temp store root and a scratch dir for contexts, removed on drop.
pub struct Env {
    pub root: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            root: tempfile::Builder::new()
                .prefix("rbuild-test-root")
                .tempdir()
                .expect("temp root"),
            work: tempfile::Builder::new()
                .prefix("rbuild-test-work")
                .tempdir()
                .expect("temp work dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command running rbuild on this store.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(rbuild_bin());
        c.env("RBUILD_ROOT", self.root.path()).args(args);
        c
    }

    /// Runs rbuild and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rbuild")
    }

    /// Runs rbuild and panics with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rbuild {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Writes `files` (path → content) into a new context dir named `name`.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).expect("context dir");
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write context file");
        }
        dir
    }

    /// Builds `busybox:latest` from the host's static busybox and the repo's
    /// examples/busybox-base/Dockerfile.
    pub fn busybox_base(&self) {
        let ctx = self.work.path().join("busybox-base");
        std::fs::create_dir_all(&ctx).expect("base ctx");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::copy(
            repo.join("examples/busybox-base/Dockerfile"),
            ctx.join("Dockerfile"),
        )
        .expect("base Dockerfile");
        std::fs::copy("/bin/busybox", ctx.join("busybox"))
            .expect("/bin/busybox (apt-get install busybox-static)");
        self.ok(&[
            "build",
            "--progress=plain",
            "-t",
            "busybox:latest",
            ctx.to_str().expect("utf-8 path"),
        ]);
    }

    /// Unpacks an image of this store with umoci; returns the rootfs dir.
    pub fn umoci_unpack(&self, tag: &str) -> PathBuf {
        let bundle = self
            .work
            .path()
            .join(format!("bundle-{}", tag.replace([':', '/'], "_")));
        let _ = std::fs::remove_dir_all(&bundle);
        let image = format!("{}/oci:{}", self.root().display(), tag);
        let out = Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle)
            .output()
            .expect("umoci (apt-get install umoci)");
        assert!(
            out.status.success(),
            "umoci unpack {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bundle.join("rootfs")
    }

    /// `skopeo inspect --config` of an image in this store, as JSON.
    pub fn skopeo_config(&self, tag: &str) -> serde_json::Value {
        let image = format!("oci:{}/oci:{}", self.root().display(), tag);
        let out = Command::new("skopeo")
            .args(["inspect", "--config", &image])
            .output()
            .expect("skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo inspect {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
    }
}

/// Debian's `docker-registry` serving plain HTTP on a free 127.0.0.1 port,
/// with its storage in a temp dir; killed (and the dir removed) on drop.
pub struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts one, retrying on another port when the chosen one was taken meanwhile.
    pub fn start() -> Registry {
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("rbuild-test-registry")
                .tempdir()
                .expect("registry dir");
            match Self::try_start(dir) {
                Ok(r) => return r,
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start:\n{last_log}");
    }

    fn try_start(dir: tempfile::TempDir) -> Result<Registry, String> {
        use std::io::{Read, Write};
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-tests\n",
            dir.path().display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("registry config");
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .env_clear()
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let mut reg = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reg.child.try_wait().ok().flatten().is_some() {
                break;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&reg.host) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/" {
                    // Another process may own the port: ours must still be alive.
                    std::thread::sleep(Duration::from_millis(200));
                    if reg.child.try_wait().ok().flatten().is_none() {
                        return Ok(reg);
                    }
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default())
    }

    /// Copies `oci:ROOT/oci:TAG` of a store to `HOST/repo_tag` with skopeo.
    pub fn push_from(&self, root: &Path, tag: &str, repo_tag: &str) -> String {
        let dest = format!("{}/{repo_tag}", self.host);
        let out = Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}/oci:{tag}", root.display()))
            .arg(format!("docker://{dest}"))
            .arg("--dest-tls-verify=false")
            .output()
            .expect("skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy to {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dest
    }
}

/// What `--progress=plain` said about each numbered step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub cached: bool,
    pub done: bool,
    pub error: Option<String>,
    pub output: Vec<String>,
}

/// Reads BuildKit-style plain progress (`#N name`, `#N CACHED`, `#N DONE 0.1s`,
/// `#N 0.123 output`, `#N ERROR: …`) into steps, in order of first appearance.
pub fn plain_steps(stderr: &str) -> Vec<Step> {
    let mut order: Vec<u64> = Vec::new();
    let mut steps: BTreeMap<u64, Step> = BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((num, text)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(n) = num.parse::<u64>() else { continue };
        let step = steps.entry(n).or_insert_with(|| {
            order.push(n);
            Step::default()
        });
        if text == "CACHED" {
            step.cached = true;
        } else if text.starts_with("DONE ") {
            step.done = true;
        } else if let Some(e) = text.strip_prefix("ERROR: ") {
            step.error = Some(e.to_string());
        } else if let Some((t, out)) = text.split_once(' ')
            && t.contains('.')
            && t.parse::<f64>().is_ok()
        {
            step.output.push(out.to_string());
        } else if step.name.is_empty() {
            step.name = text.to_string();
        }
    }
    order.into_iter().filter_map(|n| steps.remove(&n)).collect()
}

/// Names of the steps that executed (DONE, not CACHED) and whose name contains `needle`.
pub fn executed(steps: &[Step], needle: &str) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s.done && !s.cached && s.name.contains(needle))
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_progress() {
        let text = "\n#1 [a 1/2] FROM busybox\n#1 CACHED\n\n#2 [a 2/2] RUN echo hi\n#2 0.012 hi\n#2 DONE 0.1s\n\n#3 [b 2/2] RUN false\n#3 ERROR: exit code: 1\n";
        let steps = plain_steps(text);
        assert_eq!(steps.len(), 3);
        assert!(steps[0].cached && !steps[0].done);
        assert_eq!(steps[1].output, ["hi"]);
        assert_eq!(executed(&steps, "RUN"), ["[a 2/2] RUN echo hi"]);
        assert_eq!(steps[2].error.as_deref(), Some("exit code: 1"));
    }
}
