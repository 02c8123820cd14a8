//! Resource limits: the step gets containerd's defaults (1024 open files) with the
//! caller's `--ulimit`s on top, whatever rbuild's own limits are, so a build behaves
//! the same on every host. Planned in the parent, set by the child with raw
//! `prlimit64` calls before it drops its capabilities.

use super::protocol::{StatusPipe, Step};
use super::syscall::errno;
use crate::spec::{DEFAULT_RLIMITS, Rlimit};

/// One limit the child sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Parent side: the defaults, each replaced by the caller's limit on the same
/// resource. A default above rbuild's own hard limit is lowered to it (raising a hard
/// limit needs CAP_SYS_RESOURCE, which RUN steps never hold); the caller's limits are
/// taken as given, and one that cannot be set fails the run, naming it.
pub(super) fn plan(requested: &[Rlimit]) -> Vec<Limit> {
    let mut out: Vec<Limit> = Vec::new();
    for d in DEFAULT_RLIMITS {
        if requested.iter().any(|r| r.resource == d.resource) {
            continue;
        }
        let hard = d.hard.min(current_hard(d.resource.raw()));
        out.push(Limit {
            resource: d.resource.raw(),
            soft: d.soft.min(hard),
            hard,
        });
    }
    for r in requested {
        // The last one given for a resource wins, as with repeated --ulimit flags.
        out.retain(|l| l.resource != r.resource.raw());
        out.push(Limit {
            resource: r.resource.raw(),
            soft: r.soft,
            hard: r.hard,
        });
    }
    out
}

/// This process's hard limit on `resource` (unlimited when unknown).
fn current_hard(resource: u32) -> u64 {
    let mut cur = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves, reading into a struct we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            std::ptr::null::<libc::rlimit64>(),
            &mut cur,
        )
    };
    if rc == 0 { cur.rlim_max } else { u64::MAX }
}

/// Child side: sets each limit.
///
/// # Safety
/// Child only.
pub(super) unsafe fn apply(limits: &[Limit], st: StatusPipe) {
    for (i, l) in limits.iter().enumerate() {
        let new = libc::rlimit64 {
            rlim_cur: l.soft,
            rlim_max: l.hard,
        };
        // SAFETY: prlimit64 on ourselves from a struct on the stack.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                l.resource,
                &new,
                std::ptr::null_mut::<libc::rlimit64>(),
            )
        };
        if rc != 0 {
            st.fail(Step::Rlimits, i, errno());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Resource;

    #[test]
    fn defaults_unless_the_caller_says_otherwise() {
        let nofile = Resource::Nofile.raw();
        let plan_nofile = plan(&[]);
        assert_eq!(plan_nofile.len(), 1);
        assert_eq!(plan_nofile[0].resource, nofile);
        assert!(plan_nofile[0].hard <= 1024 && plan_nofile[0].soft <= plan_nofile[0].hard);

        let asked = [
            Rlimit {
                resource: Resource::Nofile,
                soft: 10,
                hard: 20,
            },
            Rlimit {
                resource: Resource::Nproc,
                soft: 5,
                hard: 5,
            },
            Rlimit {
                resource: Resource::Nproc,
                soft: 7,
                hard: 7,
            },
        ];
        let p = plan(&asked);
        assert_eq!(
            p,
            vec![
                Limit {
                    resource: nofile,
                    soft: 10,
                    hard: 20
                },
                Limit {
                    resource: Resource::Nproc.raw(),
                    soft: 7,
                    hard: 7
                },
            ]
        );
    }

    #[test]
    fn resources_by_dockers_names() {
        assert_eq!(Resource::from_name("nofile"), Some(Resource::Nofile));
        assert_eq!(Resource::from_name("NPROC"), Some(Resource::Nproc));
        assert_eq!(Resource::from_name("bogus"), None);
        assert_eq!(Resource::Memlock.name(), "memlock");
        assert_eq!(Resource::Nofile.raw(), 7, "RLIMIT_NOFILE");
    }
}
