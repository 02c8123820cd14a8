//! SSH agents for `RUN --mount=type=ssh` (`--ssh`): which agent each id reaches, set up
//! once per build ([`SshAgents::start`]), and per step a socket of its own in front of
//! it ([`proxy`]).
//!
//! The rules are BuildKit's (`sshprovider`): an id with no path, or one empty path, is
//! `$SSH_AUTH_SOCK`; a path that is a socket is an agent; other paths are private key
//! files; one socket at most, and never a socket with keys; an id is given once. For key
//! files rbuild starts OpenSSH's `ssh-agent` with them for the build's duration
//! ([`agent`]) instead of holding keys itself: OpenSSH parses every key format and
//! keeps keys in a process that refuses ptrace and core dumps, and rbuild needs no
//! signature code (BuildKit keeps them in an in-memory keyring of its own).

mod agent;
pub use agent::AgentError;
pub(crate) mod proxy;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// One `--ssh` as given: `ID[=PATH[,PATH…]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshSpec {
    pub id: String,
    pub paths: Vec<PathBuf>,
}

/// The id a RUN mount names when it names none, and `--ssh default`'s.
pub const DEFAULT_ID: &str = "default";

/// What is wrong with an `--ssh`.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("--ssh {0}: given twice; give each id once")]
    Duplicate(String),
    #[error(
        "--ssh {0}: no agent socket: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); ssh-add) or name a socket or key file: --ssh {0}=PATH"
    )]
    NoSocket(String),
    #[error("--ssh {id}: {}: {source}", .path.display())]
    Path {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ssh {0}: only one agent socket may be given")]
    TwoSockets(String),
    #[error("--ssh {0}: give either an agent socket or key files, not both")]
    KeysAndSocket(String),
    /// Starting the agent for key files, or adding a key to it, failed.
    #[error("--ssh {id}: {source}")]
    Agent {
        id: String,
        #[source]
        source: agent::AgentError,
    },
}

/// The agents of a build by id. Agents started for key files stop when it drops.
#[derive(Debug, Default)]
pub struct SshAgents {
    by_id: BTreeMap<String, Upstream>,
}

#[derive(Debug)]
enum Upstream {
    /// An agent's socket the user gave (or `$SSH_AUTH_SOCK`).
    Socket(PathBuf),
    /// `ssh-agent` holding the given key files.
    Started(agent::StartedAgent),
}

impl SshAgents {
    /// Sets up the agents of `specs`; `auth_sock` is `$SSH_AUTH_SOCK`.
    pub fn start(specs: &[SshSpec], auth_sock: Option<OsString>) -> Result<SshAgents, SshError> {
        let mut by_id = BTreeMap::new();
        for spec in specs {
            let id = if spec.id.is_empty() {
                DEFAULT_ID.to_string()
            } else {
                spec.id.clone()
            };
            if by_id.contains_key(&id) {
                return Err(SshError::Duplicate(id));
            }
            let mut paths = spec.paths.clone();
            if paths.is_empty() || (paths.len() == 1 && paths[0].as_os_str().is_empty()) {
                match auth_sock.as_ref().filter(|s| !s.is_empty()) {
                    Some(sock) => paths = vec![PathBuf::from(sock)],
                    None => return Err(SshError::NoSocket(id)),
                }
            }
            let upstream = upstream(&id, &paths)?;
            by_id.insert(id, upstream);
        }
        Ok(SshAgents { by_id })
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The agent socket for `id`, if the build has one.
    pub(crate) fn socket(&self, id: &str) -> Option<&Path> {
        self.by_id.get(id).map(|u| match u {
            Upstream::Socket(p) => p.as_path(),
            Upstream::Started(a) => a.socket(),
        })
    }
}

/// Sorts `paths` into one socket or key files, and starts an agent for key files.
fn upstream(id: &str, paths: &[PathBuf]) -> Result<Upstream, SshError> {
    let mut socket = None;
    let mut keys = Vec::new();
    for p in paths {
        if socket.is_some() {
            return Err(SshError::TwoSockets(id.to_string()));
        }
        let meta = std::fs::metadata(p).map_err(|source| SshError::Path {
            id: id.to_string(),
            path: p.clone(),
            source,
        })?;
        if meta.file_type().is_socket() {
            socket = Some(p.clone());
        } else {
            keys.push(p.clone());
        }
    }
    match socket {
        Some(_) if !keys.is_empty() => Err(SshError::KeysAndSocket(id.to_string())),
        Some(s) => Ok(Upstream::Socket(s)),
        None => agent::StartedAgent::start(&keys)
            .map(Upstream::Started)
            .map_err(|source| SshError::Agent {
                id: id.to_string(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn spec(id: &str, paths: &[&Path]) -> SshSpec {
        SshSpec {
            id: id.into(),
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    #[test]
    fn buildkits_rules_for_sockets() {
        let d = tempfile::tempdir().unwrap();
        let (s1, s2) = (d.path().join("s1"), d.path().join("s2"));
        let _l1 = UnixListener::bind(&s1).unwrap();
        let _l2 = UnixListener::bind(&s2).unwrap();
        let key = d.path().join("key");
        std::fs::write(&key, "not a key").unwrap();

        let a = SshAgents::start(
            &[spec("", &[]), spec("gh", &[&s2])],
            Some(s1.clone().into()),
        )
        .unwrap();
        assert_eq!(a.socket("default"), Some(s1.as_path()));
        assert_eq!(a.socket("gh"), Some(s2.as_path()));
        assert_eq!(a.socket("other"), None);

        let err = |specs: &[SshSpec], sock: Option<&Path>| {
            SshAgents::start(specs, sock.map(|s| s.as_os_str().to_owned()))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[spec("default", &[])], None),
            "--ssh default: no agent socket: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); ssh-add) or name a socket or key file: --ssh default=PATH"
        );
        assert_eq!(
            err(&[spec("a", &[&s1]), spec("a", &[&s2])], None),
            "--ssh a: given twice; give each id once"
        );
        assert_eq!(
            err(&[spec("a", &[&s1, &s2])], None),
            "--ssh a: only one agent socket may be given"
        );
        assert_eq!(
            err(&[spec("a", &[&key, &s1])], None),
            "--ssh a: give either an agent socket or key files, not both"
        );
        let missing = d.path().join("missing");
        assert!(
            err(&[spec("a", &[&missing])], None)
                .ends_with("missing: No such file or directory (os error 2)")
        );
    }
}
