//! Helpers for rbuild's end-to-end tests: a temp store, the `rbuild` binary,
//! a busybox base image built from the host's busybox-static, and readers for
//! `--progress=plain` output.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
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

    /// `rbuild inspect TAG`: the image's JSON object (docker's shape).
    pub fn inspect(&self, tag: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", tag]);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
        v[0].clone()
    }

    /// The bytes of blob `digest` in this store.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read(self.root().join("oci/blobs/sha256").join(hex)).expect("blob in the store")
    }

    /// The stored manifest of image `tag`.
    pub fn manifest(&self, tag: &str) -> serde_json::Value {
        let digest = self.inspect(tag)["ManifestDigest"]
            .as_str()
            .expect("manifest digest")
            .to_string();
        serde_json::from_slice(&self.blob(&digest)).expect("manifest JSON")
    }

    /// The layer digests of image `tag`, bottom first.
    pub fn layer_digests(&self, tag: &str) -> Vec<String> {
        self.manifest(tag)["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_string())
            .collect()
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

    /// Builds `busybox:multi`, an image index of a busybox base for linux/amd64 (the
    /// host's busybox-static) and linux/arm64 (Debian's busybox-static for arm64, see
    /// [`arm64_busybox`]), with rbuild's own multi-platform build: the arm64 image's RUN
    /// steps run through QEMU.
    pub fn multi_busybox_base(&self) {
        let ctx = self.work.path().join("busybox-multi");
        std::fs::create_dir_all(&ctx).expect("base ctx");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let df = std::fs::read_to_string(repo.join("examples/busybox-base/Dockerfile"))
            .expect("base Dockerfile");
        // One context, a busybox per architecture.
        let df = df.replace(
            "COPY busybox /bin/busybox",
            "ARG TARGETARCH\nCOPY busybox-$TARGETARCH /bin/busybox",
        );
        assert!(
            df.contains("busybox-$TARGETARCH"),
            "the base Dockerfile changed"
        );
        std::fs::write(ctx.join("Dockerfile"), df).expect("write Dockerfile");
        std::fs::copy("/bin/busybox", ctx.join("busybox-amd64"))
            .expect("/bin/busybox (apt-get install busybox-static)");
        std::fs::copy(arm64_busybox(), ctx.join("busybox-arm64")).expect("arm64 busybox");
        self.ok(&[
            "build",
            "--progress=plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "busybox:multi",
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

/// Debian's static busybox for arm64, which `scripts/install-deps.sh` unpacks from
/// `apt-get download busybox-static:arm64` into `$RBUILD_TEST_CACHE/busybox-arm64`
/// (default `/var/cache/rbuild-test`). Missing is a failure, not a skip.
pub fn arm64_busybox() -> PathBuf {
    let cache =
        std::env::var("RBUILD_TEST_CACHE").unwrap_or_else(|_| "/var/cache/rbuild-test".into());
    let p = Path::new(&cache).join("busybox-arm64/bin/busybox");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-deps.sh (it fetches busybox-static:arm64)",
        p.display()
    );
    p
}

/// A free loopback TCP port (it may be taken again before it is used).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A Debian `docker-registry` on a free 127.0.0.1 port with its storage in a
/// temp dir; killed on drop.
pub struct Registry {
    child: Option<std::process::Child>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Holds `config.yml`, `registry.log`, the storage (`data/`) and any auth files.
    pub dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Registry {
    /// A registry without auth.
    pub fn start() -> Registry {
        Self::start_with("", &[])
    }

    /// `auth` is the YAML `auth:` section (may be empty); `{dir}` in it is
    /// replaced by the registry's dir, where `files` (name, content) are written.
    pub fn start_with(auth: &str, files: &[(&str, &[u8])]) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-test-registry")
            .tempdir()
            .expect("registry dir");
        for (name, data) in files {
            std::fs::write(dir.path().join(name), data).expect("write registry file");
        }
        let auth = auth.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("auth.yml"), &auth).expect("write auth");
        let mut reg = Registry {
            child: None,
            host: String::new(),
            dir,
        };
        // The free port can be taken by someone else before the registry binds
        // it: then the registry exits and another port is tried.
        for _ in 0..5 {
            if reg.serve(free_port()) {
                return reg;
            }
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// Copies `tag` from the store at `root` into this registry as `repo_tag`
    /// (with skopeo, so the test does not depend on rbuild's own push); returns
    /// the reference.
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

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.host
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// Kills the registry process (the storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.serve(port) {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not restart on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Runs the registry on `port`; true once it answers there.
    fn serve(&mut self, port: u16) -> bool {
        use std::io::{Read, Write};
        use std::time::{Duration, Instant};
        let d = self.dir.path();
        let auth = std::fs::read_to_string(d.join("auth.yml")).unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-secret\n{auth}",
            d.display()
        );
        let cfg = d.join("config.yml");
        std::fs::write(&cfg, config).expect("write registry config");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(d.join("registry.log"))
            .expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .env_clear()
            .spawn()
            .expect("start docker-registry (scripts/install-deps.sh installs it)");
        self.child = Some(child);
        self.host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                break;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&self.host) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read(&mut buf).is_ok_and(|n| n >= 5) && buf.starts_with(b"HTTP/") {
                    // Make sure it was our registry that answered.
                    std::thread::sleep(Duration::from_millis(200));
                    if let Some(c) = self.child.as_mut()
                        && c.try_wait().ok().flatten().is_none()
                    {
                        return true;
                    }
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop();
        false
    }
}

/// What `--progress=plain` said about each numbered step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub cached: bool,
    pub done: bool,
    pub error: Option<String>,
    /// Why it ran instead of coming from the cache (`#N CACHE MISS: …`).
    pub miss: Option<String>,
    pub output: Vec<String>,
}

impl Step {
    /// Whether this is one of the actions a build ends with (export, push, run): they act
    /// every time and are never CACHED.
    pub fn is_action(&self) -> bool {
        self.name == "exporting to image"
            || self.name.starts_with("pushing ")
            || self.name.starts_with("running ")
    }
}

/// Reads BuildKit-style plain progress (`#N name`, `#N CACHED`, `#N DONE 0.1s`,
/// `#N 0.123 output`, `#N ERROR: …`, and rbuild's `#N CACHE MISS: …`) into steps, in
/// order of first appearance.
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
        } else if let Some(m) = text.strip_prefix("CACHE MISS: ") {
            step.miss = Some(m.to_string());
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

/// The registry's raw document (manifest or index) for `reference`, read by skopeo.
pub fn skopeo_raw(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

/// One file the server serves.
#[derive(Clone, Default)]
pub struct Served {
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Default)]
struct State {
    files: std::collections::HashMap<String, Served>,
    /// (method, path) of every request.
    log: Vec<(String, String)>,
}

/// An HTTP/1.1 server on a free loopback port (tests of `ADD <url>` and URL contexts): GET and HEAD of the files it is given,
/// `If-None-Match` answered with 304, 404 for anything else; one request per connection.
pub struct FileServer {
    port: u16,
    state: std::sync::Arc<std::sync::Mutex<State>>,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut rd = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if rd.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut if_none_match = None;
                loop {
                    let mut h = String::new();
                    if rd.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("if-none-match")
                    {
                        if_none_match = Some(v.trim().to_string());
                    }
                }
                let served = {
                    let mut s = st.lock().unwrap();
                    s.log.push((method.clone(), path.clone()));
                    s.files.get(&path).cloned()
                };
                let resp = match served {
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                    Some(f) => {
                        let mut head = String::new();
                        if let Some(e) = &f.etag {
                            head.push_str(&format!("ETag: {e}\r\n"));
                        }
                        if let Some(lm) = &f.last_modified {
                            head.push_str(&format!("Last-Modified: {lm}\r\n"));
                        }
                        if f.etag.is_some() && if_none_match == f.etag {
                            format!("HTTP/1.1 304 Not Modified\r\n{head}Connection: close\r\n\r\n")
                                .into_bytes()
                        } else {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
                                f.body.len()
                            )
                            .into_bytes();
                            if method == "GET" {
                                r.extend_from_slice(&f.body);
                            }
                            r
                        }
                    }
                };
                let _ = conn.write_all(&resp);
            }
        });
        FileServer { port, state }
    }

    pub fn serve(&self, path: &str, f: Served) {
        self.state.lock().unwrap().files.insert(path.into(), f);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.log
            .iter()
            .filter(|(m, q)| m == method && q == path)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_progress() {
        let text = "\n#1 [a 1/2] FROM busybox\n#1 CACHED\n\n#2 [a 2/2] RUN echo hi\n#2 CACHE MISS: first build\n#2 0.012 hi\n#2 DONE 0.1s\n\n#3 [b 2/2] RUN false\n#3 ERROR: exit code: 1\n";
        let steps = plain_steps(text);
        assert_eq!(steps.len(), 3);
        assert!(steps[0].cached && !steps[0].done);
        assert_eq!(steps[1].output, ["hi"]);
        assert_eq!(steps[1].miss.as_deref(), Some("first build"));
        assert_eq!(executed(&steps, "RUN"), ["[a 2/2] RUN echo hi"]);
        assert_eq!(steps[2].error.as_deref(), Some("exit code: 1"));
    }
}
