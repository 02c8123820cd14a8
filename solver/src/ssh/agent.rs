//! OpenSSH's `ssh-agent`, started for `--ssh ID=KEYFILE…` with those keys added, for the
//! build's duration. Its socket is in a private (0700) temp dir; it is killed when the
//! build ends, and with rbuild if rbuild dies (parent-death signal). The keys live only
//! in the agent's memory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the agent may take to create its socket (it takes milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `ssh-agent` holding the keys it was started with.
#[derive(Debug)]
pub(super) struct StartedAgent {
    child: Child,
    socket: PathBuf,
    // Removed after the agent is gone (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl StartedAgent {
    /// Starts `ssh-agent` and adds `keys` to it; the error says what failed.
    pub(super) fn start(keys: &[PathBuf]) -> Result<StartedAgent, String> {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-ssh-agent")
            .tempdir()
            .map_err(|e| format!("creating a directory for ssh-agent: {e}"))?;
        let socket = dir.path().join("agent.sock");
        let mut cmd = Command::new("ssh-agent");
        cmd.arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no state of the parent's.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            format!("key files need ssh-agent and ssh-add (Debian: openssh-client): ssh-agent: {e}")
        })?;
        let mut agent = StartedAgent {
            child,
            socket,
            _dir: dir,
        };
        agent.wait_for_socket()?;
        agent.add(keys)?;
        Ok(agent)
    }

    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }

    fn wait_for_socket(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while !self.socket.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("ssh-agent exited at start ({status})"));
            }
            if start.elapsed() > START_TIMEOUT {
                return Err("ssh-agent did not create its socket".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// `ssh-add` of every key, never asking for a passphrase.
    fn add(&self, keys: &[PathBuf]) -> Result<(), String> {
        let out = Command::new("ssh-add")
            .arg("-q")
            .args(keys)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "key files need ssh-agent and ssh-add (Debian: openssh-client): ssh-add: {e}"
                )
            })?;
        if out.status.success() {
            return Ok(());
        }
        let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
        Err(format!(
            "ssh-add could not load {}: {} (a key with a passphrase must be added to an agent first: pass the agent's socket instead)",
            names.join(", "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Drop for StartedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
