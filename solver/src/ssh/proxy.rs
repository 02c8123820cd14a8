//! The agent socket one RUN step sees: a listening socket rbuild owns, in a private
//! (0700) temp dir, owned and moded as the mount says and bound into the container, in
//! front of the build's agent. It is read-only, as BuildKit's: listing identities and
//! signing are forwarded; adding, removing, locking and extensions are answered with
//! the agent protocol's failure (draft-miller-ssh-agent: a message is a 32-bit
//! big-endian length, then a type byte and its contents). The step gets a socket of its
//! own so `uid=`/`mode=` hold whoever owns the user's agent, and OpenSSH's agent, which
//! refuses peers of other uids than its own and root, sees rbuild.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
/// The longest message OpenSSH's agent accepts.
const MAX_MESSAGE: usize = 256 * 1024;

/// A step's agent socket; stops accepting and removes the socket when dropped.
pub(crate) struct AgentProxy {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl AgentProxy {
    /// Listens on a new socket owned `uid:gid` with `mode`, forwarding to the agent at
    /// `upstream`.
    pub(crate) fn start(upstream: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rbuild-ssh").tempdir()?;
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket)?;
        std::os::unix::fs::chown(&socket, Some(uid), Some(gid))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode & 0o777))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = stop.clone();
            let upstream = upstream.to_path_buf();
            std::thread::Builder::new()
                .name("rbuild-ssh-proxy".into())
                .spawn(move || accept_loop(listener, &upstream, &stop))?
        };
        Ok(AgentProxy {
            socket,
            stop,
            accept: Some(accept),
            _dir: dir,
        })
    }

    /// The socket to bind into the step.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees `stop`.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: UnixListener, upstream: &Path, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let upstream = upstream.to_path_buf();
        // A connection ends when the step's process closes it; every process of the
        // step is gone when the step ends, so none outlives it for long.
        let _ = std::thread::Builder::new()
            .name("rbuild-ssh-conn".into())
            .spawn(move || {
                let agent = UnixStream::connect(&upstream).ok();
                let _ = serve(client, agent);
            });
    }
}

/// Answers `client`'s requests one by one: the allowed ones by `agent` (failure when
/// there is none), the others with failure.
fn serve<C: Read + Write, A: Read + Write>(mut client: C, mut agent: Option<A>) -> io::Result<()> {
    while let Some(request) = read_message(&mut client)? {
        let allowed = matches!(
            request.first(),
            Some(&(SSH_AGENTC_REQUEST_IDENTITIES | SSH_AGENTC_SIGN_REQUEST))
        );
        let reply = match agent.as_mut().filter(|_| allowed) {
            Some(a) => match write_message(a, &request).and_then(|()| read_message(a)) {
                Ok(Some(reply)) => reply,
                // The agent went away: this and later requests fail.
                _ => {
                    agent = None;
                    vec![SSH_AGENT_FAILURE]
                }
            },
            None => vec![SSH_AGENT_FAILURE],
        };
        write_message(&mut client, &reply)?;
    }
    Ok(())
}

/// One message's contents; None at a clean end of stream.
fn read_message(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent message of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

fn write_message(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(4 + body.len());
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(body);
    w.write_all(&msg)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// An agent that answers every request with `[type + 100]` and records the types.
    fn fake_agent(dir: &Path) -> (PathBuf, Arc<std::sync::Mutex<Vec<u8>>>) {
        let path = dir.join("upstream.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let mut c = c.unwrap();
                let log = log.clone();
                std::thread::spawn(move || {
                    while let Ok(Some(m)) = read_message(&mut c) {
                        log.lock().unwrap().push(m[0]);
                        write_message(&mut c, &[m[0] + 100, 1, 2]).unwrap();
                    }
                });
            }
        });
        (path, seen)
    }

    #[test]
    fn forwards_listing_and_signing_and_refuses_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let (upstream, seen) = fake_agent(d.path());
        let proxy = AgentProxy::start(&upstream, 0o660, 1234, 5678).unwrap();
        let meta = std::fs::metadata(proxy.socket()).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o660, 1234, 5678)
        );
        let mut c = UnixStream::connect(proxy.socket()).unwrap();
        let mut ask = |body: &[u8]| {
            write_message(&mut c, body).unwrap();
            read_message(&mut c).unwrap().unwrap()
        };
        assert_eq!(ask(&[11]), [111, 1, 2]);
        assert_eq!(ask(&[13, 0, 0, 0, 0]), [113, 1, 2]);
        // add identity, remove all, lock, extension: refused, never forwarded.
        for t in [17u8, 19, 22, 27] {
            assert_eq!(ask(&[t, 9]), [SSH_AGENT_FAILURE]);
        }
        assert_eq!(*seen.lock().unwrap(), [11, 13]);
        drop(c);
        let socket = proxy.socket().to_path_buf();
        drop(proxy);
        assert!(!socket.exists(), "the socket goes with the step");
    }

    #[test]
    fn without_an_agent_every_request_fails() {
        let mut out = Vec::new();
        let mut input = Vec::new();
        write_message(&mut input, &[11]).unwrap();
        let mut stream = io::Cursor::new(input);
        let mut both = ReadWrite(&mut stream, &mut out);
        serve::<_, UnixStream>(&mut both, None).unwrap();
        assert_eq!(out, [0, 0, 0, 1, SSH_AGENT_FAILURE]);
        let mut huge = io::Cursor::new(((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec());
        assert!(read_message(&mut huge).is_err());
    }

    struct ReadWrite<'a>(&'a mut io::Cursor<Vec<u8>>, &'a mut Vec<u8>);
    impl Read for ReadWrite<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for ReadWrite<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
