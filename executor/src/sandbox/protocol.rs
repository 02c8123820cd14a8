//! The status protocol between the child and the parent. The child reports on a
//! close-on-exec pipe at a fixed fd ([`StatusPipe::FD`]) with fixed-size records
//! ([`Message`]), written with one raw `write` from a stack buffer: each mountpoint it
//! had to create (so the parent can remove it from the layer), and at most one failure,
//! after which it exits. A successful `execve` closes the pipe with no failure on it.

use super::syscall::exit_now;

/// A step of the child's setup, named in a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    Stdio = 1,
    Cgroup,
    CgroupNamespace,
    MakePrivate,
    Loopback,
    Hostname,
    OpenLayers,
    MountOverlay,
    OpenSources,
    Chroot,
    Workdir,
    Mountpoint,
    MountProc,
    MountDev,
    Devices,
    Devpts,
    Shm,
    Mount,
    Protect,
    Pivot,
    Chdir,
    Rlimits,
    Capabilities,
    SetUser,
    NoNewPrivs,
    Seccomp,
    Exec,
    Secrets,
}

const STEPS: [Step; 28] = [
    Step::Stdio,
    Step::Cgroup,
    Step::CgroupNamespace,
    Step::MakePrivate,
    Step::Loopback,
    Step::Hostname,
    Step::OpenLayers,
    Step::MountOverlay,
    Step::OpenSources,
    Step::Chroot,
    Step::Workdir,
    Step::Mountpoint,
    Step::MountProc,
    Step::MountDev,
    Step::Devices,
    Step::Devpts,
    Step::Shm,
    Step::Mount,
    Step::Protect,
    Step::Pivot,
    Step::Chdir,
    Step::Rlimits,
    Step::Capabilities,
    Step::SetUser,
    Step::NoNewPrivs,
    Step::Seccomp,
    Step::Exec,
    Step::Secrets,
];

impl Step {
    fn from_u32(v: u32) -> Option<Step> {
        STEPS.iter().copied().find(|s| *s as u32 == v)
    }
}

/// One record from the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Message {
    /// The child created mountpoint `index` of the plan (it was missing in the image).
    Created { index: u32 },
    /// Item `index` of `step` failed with `errno`; the child exits next.
    Failed { step: Step, index: u16, errno: i32 },
}

const KIND_CREATED: u32 = 1;
const KIND_FAILED: u32 = 2;

impl Message {
    /// Bytes per record: kind, a, b as little-endian 32-bit words.
    pub(super) const LEN: usize = 12;

    pub(super) fn encode(self) -> [u8; Self::LEN] {
        let (kind, a, b) = match self {
            Message::Created { index } => (KIND_CREATED, index, 0),
            Message::Failed { step, index, errno } => {
                (KIND_FAILED, ((step as u32) << 16) | u32::from(index), errno)
            }
        };
        let mut r = [0u8; Self::LEN];
        r[0..4].copy_from_slice(&kind.to_le_bytes());
        r[4..8].copy_from_slice(&a.to_le_bytes());
        r[8..12].copy_from_slice(&b.to_le_bytes());
        r
    }

    /// `None` for a record of no known kind or step.
    pub(super) fn decode(r: &[u8; Self::LEN]) -> Option<Message> {
        let w = |i: usize| [r[i], r[i + 1], r[i + 2], r[i + 3]];
        let (kind, a, b) = (
            u32::from_le_bytes(w(0)),
            u32::from_le_bytes(w(4)),
            i32::from_le_bytes(w(8)),
        );
        match kind {
            KIND_CREATED => Some(Message::Created { index: a }),
            KIND_FAILED => Some(Message::Failed {
                step: Step::from_u32(a >> 16)?,
                index: (a & 0xffff) as u16,
                errno: b,
            }),
            _ => None,
        }
    }

    /// Every whole record in `bytes` (a torn one at the end is ignored).
    pub(super) fn decode_all(bytes: &[u8]) -> Vec<Message> {
        bytes
            .chunks_exact(Self::LEN)
            .filter_map(|r| Message::decode(r.try_into().ok()?))
            .collect()
    }
}

/// The child's end of the status pipe, once it sits at [`StatusPipe::FD`].
#[derive(Clone, Copy)]
pub(super) struct StatusPipe(i32);

impl StatusPipe {
    /// Where the child keeps its end: after stdin, stdout and stderr.
    pub(super) const FD: i32 = 3;

    /// The pipe at [`StatusPipe::FD`].
    pub(super) const fn at_fixed_fd() -> StatusPipe {
        StatusPipe(Self::FD)
    }

    /// Child side: sends one record.
    pub(super) fn send(self, m: Message) {
        let r = m.encode();
        // SAFETY: writing a stack buffer to a descriptor; a failed write is ignored
        // (the parent then sees a setup that stopped without a reason).
        unsafe {
            libc::write(self.0, r.as_ptr().cast(), r.len());
        }
    }

    /// Child side: reports that item `index` of `step` failed with `errno`, and exits 127.
    pub(super) fn fail(self, step: Step, index: usize, errno: i32) -> ! {
        self.send(Message::Failed {
            step,
            index: index as u16,
            errno,
        });
        exit_now(127)
    }
}

/// What the child said, read by the parent once the child is gone.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Report {
    /// Per mountpoint of the plan: whether the child created it.
    pub created: Vec<bool>,
    /// The failure, if setup (or the exec) failed.
    pub failure: Option<Failure>,
}

/// A setup step that failed in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failure {
    pub step: Step,
    pub index: usize,
    pub errno: i32,
}

impl Report {
    /// Reads the records of a child whose plan had `mountpoints` mountpoints.
    pub(super) fn read(bytes: &[u8], mountpoints: usize) -> Report {
        let mut report = Report {
            created: vec![false; mountpoints],
            failure: None,
        };
        for m in Message::decode_all(bytes) {
            match m {
                Message::Created { index } => {
                    if let Some(c) = report.created.get_mut(index as usize) {
                        *c = true;
                    }
                }
                Message::Failed { step, index, errno } => {
                    report.failure = Some(Failure {
                        step,
                        index: usize::from(index),
                        errno,
                    })
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip() {
        let failed = Message::Failed {
            step: Step::Mount,
            index: 2,
            errno: -5,
        };
        let mut bytes = Message::Created { index: 7 }.encode().to_vec();
        bytes.extend(failed.encode());
        bytes.push(9); // a torn record is ignored
        assert_eq!(
            Message::decode_all(&bytes),
            vec![Message::Created { index: 7 }, failed]
        );
        // The wire format: kind, then step << 16 | index, then errno.
        assert_eq!(
            failed.encode(),
            [
                2,
                0,
                0,
                0,
                2,
                0,
                Step::Mount as u8,
                0,
                0xfb,
                0xff,
                0xff,
                0xff
            ]
        );
    }

    #[test]
    fn every_step_decodes() {
        for s in STEPS {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
        assert_eq!(Step::from_u32(0), None);
        assert_eq!(Step::from_u32(STEPS.len() as u32 + 1), None);
    }

    #[test]
    fn report_marks_created_mountpoints_and_keeps_the_failure() {
        let mut bytes = Vec::new();
        for m in [
            Message::Created { index: 1 },
            Message::Created { index: 99 }, // out of range: ignored
            Message::Failed {
                step: Step::Chdir,
                index: 0,
                errno: libc::ENOENT,
            },
        ] {
            bytes.extend(m.encode());
        }
        let r = Report::read(&bytes, 3);
        assert_eq!(r.created, vec![false, true, false]);
        assert_eq!(
            r.failure,
            Some(Failure {
                step: Step::Chdir,
                index: 0,
                errno: libc::ENOENT
            })
        );
    }
}
