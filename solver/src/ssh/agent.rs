//! OpenSSH's `ssh-agent`, started for `--ssh ID=KEYFILE…` with those keys added, for the
//! build's duration. Its socket is in a private (0700) temp dir; it is killed when the
//! build ends, and with rbuild if rbuild dies (parent-death signal). The keys live only
//! in the agent's memory.

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the agent may take to create its socket (it takes milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the build's own agent could not serve the key files.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("creating a directory for ssh-agent: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("key files need ssh-agent and ssh-add (Debian: openssh-client): {tool}: {source}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh-agent exited at start ({0})")]
    Exited(std::process::ExitStatus),
    #[error("ssh-agent did not accept connections on its socket within {}s", START_TIMEOUT.as_secs())]
    NoSocket,
    #[error(
        "ssh-add could not load {keys}: {stderr} (a key with a passphrase must be added to an agent first: pass the agent's socket instead)"
    )]
    Add { keys: String, stderr: String },
}

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
    pub(super) fn start(keys: &[PathBuf]) -> Result<StartedAgent, AgentError> {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-ssh-agent")
            .tempdir()
            .map_err(AgentError::TempDir)?;
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
        let child = cmd.spawn().map_err(|source| AgentError::Spawn {
            tool: "ssh-agent",
            source,
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

    /// Waits until the agent accepts a connection: its socket file appears at bind(),
    /// before listen(), so its existence alone is not enough (ssh-add got ECONNREFUSED).
    fn wait_for_socket(&mut self) -> Result<(), AgentError> {
        let start = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(AgentError::Exited(status));
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(AgentError::NoSocket);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// `ssh-add` of every key, never asking for a passphrase.
    fn add(&self, keys: &[PathBuf]) -> Result<(), AgentError> {
        let out = Command::new("ssh-add")
            .arg("-q")
            .args(keys)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| AgentError::Spawn {
                tool: "ssh-add",
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
        Err(AgentError::Add {
            keys: names.join(", "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Drop for StartedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
