//! What the executor's end-to-end tests share: a rootfs made of /bin/busybox, a spec
//! running a shell script in it, and ways to run it and look at the host afterwards.
#![allow(dead_code)] // each test binary uses its own part

use rbuild_executor::{
    CancelToken, CgroupOptions, ExecError, Network, RunExit, RunSpec, Security, Stream, run,
};
use std::path::PathBuf;

pub const APPLETS: &[&str] = &[
    "sh", "echo", "ls", "cat", "id", "sleep", "ps", "true", "false", "env", "pwd", "rm", "touch",
    "mkdir", "grep", "wc", "test", "kill", "stat", "hostname", "head", "ping", "nc", "mount",
    "unshare", "dd",
];

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir_all(base.join("bin")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", base.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            base.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            base.join("etc/group"),
            "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
        )
        .unwrap();
        std::fs::write(base.join("etc/lowerfile"), "from lower\n").unwrap();
        for d in ["upper", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Fixture { dir }
    }
    pub fn base(&self) -> PathBuf {
        self.dir.path().join("base")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    pub fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            lowerdirs: vec![self.base()],
            upperdir: self.upper(),
            workdir: self.dir.path().join("work"),
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: Network::None,
            hostname: "testhost".into(),
            mounts: vec![],
            secret_env: vec![],
            stdin: false,
            security: Security::default(),
            rlimits: vec![],
            cgroup: CgroupOptions::default(),
            extra_hosts: vec![],
            shm_size: None,
            platform: None,
        }
    }
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub exit: RunExit,
}

pub fn exec(spec: &RunSpec) -> Result<Out, ExecError> {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let exit = run(spec, &CancelToken::new(), &mut |s, b| match s {
        Stream::Stdout => o.extend_from_slice(b),
        Stream::Stderr => e.extend_from_slice(b),
    })?;
    Ok(Out {
        code: exit.code,
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        exit,
    })
}

pub fn sh(f: &Fixture, script: &str) -> Out {
    exec(&f.spec(script)).unwrap()
}

/// Host processes whose command line contains `needle`.
pub fn host_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(c);
            }
        }
    }
    found
}

/// The mountpoints of this machine's cgroup filesystems (v1 hierarchies and v2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            matches!(f.get(dash + 1), Some(&"cgroup") | Some(&"cgroup2"))
                .then(|| PathBuf::from(f[4]))
        })
        .collect()
}

/// A cgroup parent of a test's own (`CgroupOptions::parent`), removed at the end.
pub struct TestParent {
    pub name: String,
}

impl TestParent {
    pub fn new(tag: &str) -> TestParent {
        TestParent {
            name: format!("rbuild-test-{tag}-{}", std::process::id()),
        }
    }

    /// Options putting a run's cgroup under this parent.
    pub fn options(&self, pids_limit: Option<u64>) -> CgroupOptions {
        CgroupOptions {
            parent: self.name.clone(),
            pids_limit,
        }
    }

    /// The per-run cgroups under this parent, in every hierarchy.
    pub fn leaves(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for m in cgroup_mounts() {
            if let Ok(entries) = std::fs::read_dir(m.join(&self.name)) {
                out.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        out
    }

    /// Whether the parent was made in some hierarchy (a run had a cgroup).
    pub fn exists(&self) -> bool {
        cgroup_mounts().iter().any(|m| m.join(&self.name).is_dir())
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        for m in cgroup_mounts() {
            let _ = std::fs::remove_dir(m.join(&self.name));
        }
    }
}

/// `n` layers, bottom first: the fixture's base, then one dir per layer adding
/// `/layers/f<i>`; layer 10 adds `/gone/a` and `/gone/b`, layer 20 deletes `/layers/f5`
/// and `/gone/a` (whiteouts), layer 30 adds `/opq/lower`, layer 40 makes `/opq` opaque
/// with `/opq/upper` in it. Needs `n > 40`.
pub fn layer_stack(f: &Fixture, n: usize) -> Vec<PathBuf> {
    use rbuild_fsutil::whiteout::{make_whiteout, set_opaque};
    let mut lowers = vec![f.base()];
    for i in 1..n {
        let l = f.dir.path().join(format!("layer{i}"));
        std::fs::create_dir_all(l.join("layers")).unwrap();
        std::fs::write(l.join(format!("layers/f{i}")), format!("{i}")).unwrap();
        match i {
            10 => {
                std::fs::create_dir(l.join("gone")).unwrap();
                std::fs::write(l.join("gone/a"), "a").unwrap();
                std::fs::write(l.join("gone/b"), "b").unwrap();
            }
            20 => {
                make_whiteout(&l.join("layers/f5")).unwrap();
                std::fs::create_dir(l.join("gone")).unwrap();
                make_whiteout(&l.join("gone/a")).unwrap();
            }
            30 => {
                std::fs::create_dir(l.join("opq")).unwrap();
                std::fs::write(l.join("opq/lower"), "l").unwrap();
            }
            40 => {
                std::fs::create_dir(l.join("opq")).unwrap();
                set_opaque(&l.join("opq")).unwrap();
                std::fs::write(l.join("opq/upper"), "u").unwrap();
            }
            _ => {}
        }
        lowers.push(l);
    }
    lowers
}

/// A script checking a rootfs made by [`layer_stack`], and what it prints for `n` layers.
pub fn layer_stack_check(n: usize) -> (String, String) {
    let script = format!(
        "ls /layers | wc -l; cat /layers/f1 /layers/f{}; echo; \
         test -e /layers/f5 && echo f5; ls /gone; ls /opq",
        n - 1
    );
    let expected = format!("{}\n1{}\nb\nupper\n", n - 2, n - 1);
    (script, expected)
}
