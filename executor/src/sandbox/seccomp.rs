//! Seccomp: the profile (`executor/seccomp/default.toml`, rbuild's own format with
//! docker's default semantics) compiled in the parent into BPF for the step's
//! capabilities, the running kernel and the host architecture; the child sets
//! `no_new_privs` and installs the programs last, just before the exec, so nothing of
//! the setup (mounts, pivot_root) is filtered.
//!
//! The BPF comes from seccompiler, which gives a filter a single match action: the
//! allow-list is one program (mismatch: the profile's default errno), and each errno a
//! rule asks for (clone3 → ENOSYS) is one more (match: that errno, mismatch: allow).
//! The kernel runs every installed program and keeps the most restrictive answer, ERRNO
//! over ALLOW, and of two ERRNOs the one of the program installed last: so clone3 gets
//! ENOSYS rather than the allow-list's EPERM. Each program starts by checking the
//! architecture and kills a process of another one (a 32-bit x86 or arm binary).

use super::capabilities;
use super::protocol::{StatusPipe, Step};
use super::syscall::errno;
use crate::error::{ProfileError, SeccompError};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The profile every sandboxed RUN step gets.
const PROFILE: &str = include_str!("../../seccomp/default.toml");

/// The profile as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    default: String,
    rule: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Rule {
    syscalls: Vec<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    if_caps: Vec<String>,
    #[serde(default)]
    unless_caps: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
    #[serde(default, rename = "why")]
    _why: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arg {
    arg: u8,
    op: Op,
    value: u64,
    #[serde(default)]
    mask: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq,
}

/// The architectures rbuild builds filters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    fn host() -> Result<Arch, SeccompError> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Aarch64),
            other => Err(SeccompError::Architecture(other)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn target(self) -> TargetArch {
        match self {
            Arch::X86_64 => TargetArch::x86_64,
            Arch::Aarch64 => TargetArch::aarch64,
        }
    }

    /// The number of syscall `name` on this architecture, if it has it.
    fn number(self, name: &str) -> Option<i64> {
        match self {
            Arch::X86_64 => name.parse::<syscalls::x86_64::Sysno>().ok().map(|s| s.id()),
            Arch::Aarch64 => {
                // The syscalls crate names arm64's newfstatat (79) after the generic
                // table's `fstatat`; the kernel and libseccomp call it newfstatat.
                let name = if name == "newfstatat" {
                    "fstatat"
                } else {
                    name
                };
                name.parse::<syscalls::aarch64::Sysno>()
                    .ok()
                    .map(|s| s.id())
            }
        }
        .map(i64::from)
    }
}

/// What a profile is compiled for.
pub(super) struct Target {
    pub arch: Arch,
    /// The capabilities the step holds (bit n = capability n).
    pub caps: u64,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

/// The programs the child installs, in order.
pub(super) struct SeccompPlan {
    programs: Vec<BpfProgram>,
}

/// Parent side: the profile compiled for a step holding `caps` on this machine.
pub(super) fn plan(caps: u64) -> Result<SeccompPlan, SeccompError> {
    let target = Target {
        arch: Arch::host()?,
        caps,
        kernel: kernel_version(),
    };
    let programs = compile(profile()?, &target)?;
    Ok(SeccompPlan { programs })
}

/// The default profile, parsed once.
fn profile() -> Result<&'static Profile, SeccompError> {
    static PARSED: OnceLock<Result<Profile, toml::de::Error>> = OnceLock::new();
    PARSED
        .get_or_init(|| toml::from_str(PROFILE))
        .as_ref()
        .map_err(|e| ProfileError::Parse(e.clone()).into())
}

/// The running kernel's (major, minor); (0, 0) when unreadable, which keeps every
/// `min-kernel` rule out.
fn kernel_version() -> (u32, u32) {
    // SAFETY: uname fills the struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (0, 0);
    }
    let release: String = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect();
    parse_version(&release).unwrap_or((0, 0))
}

/// `"6.18.44-foo"` → (6, 18).
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What a rule (or the default) gives: allow, or an errno.
fn action(name: &str) -> Result<SeccompAction, SeccompError> {
    const ERRNOS: [(&str, i32); 5] = [
        ("EPERM", libc::EPERM),
        ("ENOSYS", libc::ENOSYS),
        ("EACCES", libc::EACCES),
        ("EINVAL", libc::EINVAL),
        ("ENOTSUP", libc::ENOTSUP),
    ];
    if name == "allow" {
        return Ok(SeccompAction::Allow);
    }
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, e)| SeccompAction::Errno(*e as u32))
        .ok_or_else(|| ProfileError::Action(name.to_string()).into())
}

impl Rule {
    /// Whether the rule is part of the filter for `t`.
    fn applies(&self, t: &Target) -> Result<bool, SeccompError> {
        for a in &self.arches {
            if a != "x86_64" && a != "aarch64" {
                return Err(ProfileError::Architecture(a.clone()).into());
            }
        }
        if !self.arches.is_empty() && !self.arches.iter().any(|a| a == t.arch.name()) {
            return Ok(false);
        }
        let held = |name: &String| -> Result<bool, SeccompError> {
            let cap = capabilities::by_name(name)
                .ok_or_else(|| ProfileError::Capability(name.clone()))?;
            Ok(t.caps & (1u64 << cap) != 0)
        };
        for c in &self.if_caps {
            if !held(c)? {
                return Ok(false);
            }
        }
        for c in &self.unless_caps {
            if held(c)? {
                return Ok(false);
            }
        }
        if let Some(v) = &self.min_kernel {
            let min = parse_version(v).ok_or_else(|| ProfileError::MinKernel(v.clone()))?;
            if t.kernel < min {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The rule's argument conditions. Each compares the low 32 bits: every argument
    /// the profile looks at is an int or flags the kernel truncates to 32 bits, so
    /// comparing 64 would let a caller slip past a rule with garbage in the high half.
    fn conditions(&self) -> Result<Vec<SeccompCondition>, SeccompError> {
        self.args
            .iter()
            .map(|a| {
                let op = match (a.op, a.mask) {
                    (Op::Eq, None) => SeccompCmpOp::Eq,
                    (Op::Ne, None) => SeccompCmpOp::Ne,
                    (Op::Lt, None) => SeccompCmpOp::Lt,
                    (Op::Le, None) => SeccompCmpOp::Le,
                    (Op::Gt, None) => SeccompCmpOp::Gt,
                    (Op::Ge, None) => SeccompCmpOp::Ge,
                    (Op::MaskedEq, Some(m)) => SeccompCmpOp::MaskedEq(m),
                    (op, mask) => {
                        return Err(ProfileError::Mask {
                            op: format!("{op:?}"),
                            mask,
                        }
                        .into());
                    }
                };
                if a.value > u64::from(u32::MAX) {
                    return Err(ProfileError::ArgumentValue(a.value).into());
                }
                Ok(SeccompCondition::new(
                    a.arg,
                    SeccompCmpArgLen::Dword,
                    op,
                    a.value,
                )?)
            })
            .collect()
    }
}

/// The rules of one syscall under one action.
enum Chain {
    /// Some rule applies unconditionally.
    Always,
    /// Any of these (each a set of conditions that must all hold).
    AnyOf(Vec<SeccompRule>),
}

/// `profile` as BPF programs for `t`, in installation order: the program of the
/// allow rules first, then one per errno the rules ask for.
fn compile(profile: &Profile, t: &Target) -> Result<Vec<BpfProgram>, SeccompError> {
    let default = action(&profile.default)?;
    // Per action (by its return value, so errnos sort after allow), per syscall number.
    let mut by_action: BTreeMap<u32, (SeccompAction, BTreeMap<i64, Chain>)> = BTreeMap::new();
    for rule in &profile.rule {
        if !rule.applies(t)? {
            continue;
        }
        let act = action(rule.action.as_deref().unwrap_or("allow"))?;
        let conditions = rule.conditions()?;
        let chains = &mut by_action
            .entry(order(&act))
            .or_insert_with(|| (act, BTreeMap::new()))
            .1;
        for name in &rule.syscalls {
            let Some(nr) = t.arch.number(name) else {
                continue; // not a syscall of this architecture
            };
            let chain = chains.entry(nr).or_insert(Chain::AnyOf(Vec::new()));
            match chain {
                Chain::Always => {}
                _ if conditions.is_empty() => *chain = Chain::Always,
                Chain::AnyOf(rules) => rules.push(SeccompRule::new(conditions.clone())?),
            }
        }
    }
    let mut programs = Vec::new();
    for (_, (act, chains)) in by_action {
        if act == default {
            continue;
        }
        let rules = chains
            .into_iter()
            .map(|(nr, c)| match c {
                Chain::Always => (nr, Vec::new()),
                Chain::AnyOf(rules) => (nr, rules),
            })
            .collect();
        // What a syscall this program does not name gets: the default in the allow
        // list, allow in an errno program (the allow list has answered for it).
        let mismatch = if act == SeccompAction::Allow {
            default.clone()
        } else {
            SeccompAction::Allow
        };
        let filter = SeccompFilter::new(rules, mismatch, act, t.arch.target())?;
        programs.push(BpfProgram::try_from(filter)?);
    }
    Ok(programs)
}

/// Installation order of an action's program: allow first, errnos after.
fn order(a: &SeccompAction) -> u32 {
    match a {
        SeccompAction::Allow => 0,
        other => u32::from(other.clone()) & 0xffff | 0x1_0000,
    }
}

/// Child side, last before the exec: `no_new_privs` (when asked, and always before a
/// filter: without CAP_SYS_ADMIN the kernel wants it), then the filters.
///
/// # Safety
/// Child only.
pub(super) unsafe fn install(no_new_privs: bool, plan: Option<&SeccompPlan>, st: StatusPipe) {
    // SAFETY: see the function's contract; each sock_fprog points into a program the
    // plan owns, alive for the call.
    unsafe {
        if (no_new_privs || plan.is_some())
            && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            st.fail(Step::NoNewPrivs, 0, errno());
        }
        for (i, program) in plan.map_or(&[][..], |p| &p.programs).iter().enumerate() {
            let fprog = libc::sock_fprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            let rc = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            );
            if rc != 0 {
                st.fail(Step::Seccomp, i, errno());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    /// Runs classic BPF the way the kernel runs a seccomp filter, over a
    /// `seccomp_data` for syscall `nr` with `args`.
    fn eval(program: &BpfProgram, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &program[pc];
            pc += 1;
            let k = ins.k;
            match ins.code {
                0x20 => {
                    let o = k as usize;
                    acc = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                0x54 => acc &= k,
                0x05 => pc += k as usize,
                0x06 => return k,
                code => {
                    let taken = match code {
                        0x15 => acc == k,
                        0x25 => acc > k,
                        0x35 => acc >= k,
                        0x45 => acc & k != 0,
                        other => panic!("instruction {other:#x} not expected in a filter"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
        }
    }

    /// What the installed programs answer together: the most restrictive action,
    /// and of equals the last installed.
    fn verdict(programs: &[BpfProgram], arch: u32, nr: i64, args: [u64; 6]) -> Verdict {
        let mut best = libc::SECCOMP_RET_ALLOW;
        for p in programs.iter().rev() {
            let r = eval(p, arch, nr, args);
            if ((r & 0xffff_0000) as i32) < ((best & 0xffff_0000) as i32) {
                best = r;
            }
        }
        match best & 0xffff_0000 {
            libc::SECCOMP_RET_ALLOW => Verdict::Allow,
            libc::SECCOMP_RET_ERRNO => Verdict::Errno((best & 0xffff) as i32),
            libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
            other => panic!("unexpected action {other:#x}"),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Verdict {
        Allow,
        Errno(i32),
        Kill,
    }

    /// Docker's default capabilities.
    const DOCKER_CAPS: u64 = (1 << 0)
        | (1 << 1)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 6)
        | (1 << 7)
        | (1 << 8)
        | (1 << 10)
        | (1 << 13)
        | (1 << 18)
        | (1 << 27)
        | (1 << 29)
        | (1 << 31);

    fn programs(arch: Arch, caps: u64, kernel: (u32, u32)) -> Vec<BpfProgram> {
        compile(profile().unwrap(), &Target { arch, caps, kernel }).unwrap()
    }

    fn nr(arch: Arch, name: &str) -> i64 {
        arch.number(name)
            .unwrap_or_else(|| panic!("{name} on {arch:?}"))
    }

    #[test]
    fn the_profile_parses_and_names_only_real_syscalls() {
        let p = profile().unwrap();
        for rule in &p.rule {
            for name in &rule.syscalls {
                let on: Vec<Arch> = [Arch::X86_64, Arch::Aarch64]
                    .into_iter()
                    .filter(|a| a.number(name).is_some())
                    .collect();
                assert!(
                    !on.is_empty(),
                    "{name} is a syscall of neither architecture"
                );
                for a in &rule.arches {
                    assert!(on.iter().any(|x| x.name() == a), "{name} is not on {a}");
                }
            }
        }
    }

    #[test]
    fn syscall_numbers_are_the_kernels() {
        // x86_64 against libc's table of the architecture this test runs on.
        #[cfg(target_arch = "x86_64")]
        for (name, n) in [
            ("read", libc::SYS_read),
            ("newfstatat", libc::SYS_newfstatat),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("unshare", libc::SYS_unshare),
            ("keyctl", libc::SYS_keyctl),
            ("execve", libc::SYS_execve),
            ("arch_prctl", libc::SYS_arch_prctl),
        ] {
            assert_eq!(Arch::X86_64.number(name), Some(n), "{name}");
        }
        // arm64 has the asm-generic table (include/uapi/asm-generic/unistd.h).
        for (name, n) in [
            ("read", 63),
            ("write", 64),
            ("openat", 56),
            ("close", 57),
            ("newfstatat", 79),
            ("fstat", 80),
            ("exit_group", 94),
            ("unshare", 97),
            ("mount", 40),
            ("umount2", 39),
            ("pivot_root", 41),
            ("personality", 92),
            ("socket", 198),
            ("keyctl", 219),
            ("clone", 220),
            ("execve", 221),
            ("mmap", 222),
            ("wait4", 260),
            ("renameat2", 276),
            ("bpf", 280),
            ("clone3", 435),
        ] {
            assert_eq!(Arch::Aarch64.number(name), Some(n), "{name}");
        }
    }

    #[test]
    fn a_build_step_gets_dockers_default_semantics() {
        for (arch, audit) in [
            (Arch::X86_64, AUDIT_ARCH_X86_64),
            (Arch::Aarch64, AUDIT_ARCH_AARCH64),
        ] {
            let p = programs(arch, DOCKER_CAPS, (6, 18));
            let v = |name: &str, args: [u64; 6]| verdict(&p, audit, nr(arch, name), args);
            let none = [0u64; 6];
            let eperm = Verdict::Errno(libc::EPERM);
            for ok in [
                "read",
                "openat",
                "newfstatat",
                "execve",
                "wait4",
                "chroot",
                "ptrace",
            ] {
                assert_eq!(v(ok, none), Verdict::Allow, "{ok} on {arch:?}");
            }
            for refused in [
                "unshare",
                "setns",
                "mount",
                "umount2",
                "pivot_root",
                "keyctl",
                "add_key",
                "request_key",
                "bpf",
                "perf_event_open",
                "reboot",
                "kexec_load",
                "init_module",
                "finit_module",
                "delete_module",
                "swapon",
                "syslog",
                "open_by_handle_at",
                "clock_settime",
                "io_uring_setup",
            ] {
                assert_eq!(v(refused, none), eperm, "{refused} on {arch:?}");
            }
            // Threads and forks, but no namespaces; clone3 falls back.
            let sigchld = libc::SIGCHLD as u64;
            assert_eq!(v("clone", [sigchld, 0, 0, 0, 0, 0]), Verdict::Allow);
            let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
            assert_eq!(v("clone", [thread, 0, 0, 0, 0, 0]), Verdict::Allow);
            for ns in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET] {
                let flags = ns as u64 | sigchld;
                assert_eq!(v("clone", [flags, 0, 0, 0, 0, 0]), eperm, "{ns:#x}");
            }
            assert_eq!(v("clone3", none), Verdict::Errno(libc::ENOSYS));
            // personality: the allowed values only.
            for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
                assert_eq!(v("personality", [ok, 0, 0, 0, 0, 0]), Verdict::Allow);
            }
            let no_aslr = libc::ADDR_NO_RANDOMIZE as u64;
            assert_eq!(v("personality", [no_aslr, 0, 0, 0, 0, 0]), eperm);
            // socket: not AF_ALG, not AF_VSOCK, also with garbage in the high half.
            for (family, verdict) in [
                (libc::AF_INET, Verdict::Allow),
                (libc::AF_UNIX, Verdict::Allow),
                (libc::AF_NETLINK, Verdict::Allow),
                (39, Verdict::Allow),
                (41, Verdict::Allow),
                (libc::AF_ALG, Verdict::Errno(libc::EPERM)),
                (libc::AF_VSOCK, Verdict::Errno(libc::EPERM)),
            ] {
                let f = family as u64;
                assert_eq!(v("socket", [f, 0, 0, 0, 0, 0]), verdict, "family {f}");
                let high = f | (1 << 40);
                assert_eq!(v("socket", [high, 0, 0, 0, 0, 0]), verdict, "family {f}");
            }
            // Another architecture (a 32-bit binary) is killed, never let through.
            assert_eq!(verdict(&p, AUDIT_ARCH_I386, 0, none), Verdict::Kill);
        }
        // x86_64's own calls.
        let p = programs(Arch::X86_64, DOCKER_CAPS, (6, 18));
        let arch_prctl = nr(Arch::X86_64, "arch_prctl");
        assert_eq!(
            verdict(&p, AUDIT_ARCH_X86_64, arch_prctl, [0; 6]),
            Verdict::Allow
        );
    }

    #[test]
    fn capabilities_and_kernel_version_choose_the_rules() {
        let arch = Arch::X86_64;
        let sys_admin = 1u64 << 21;
        let p = programs(arch, DOCKER_CAPS | sys_admin, (6, 18));
        let v = |p: &[BpfProgram], name: &str, a0: u64| {
            verdict(p, AUDIT_ARCH_X86_64, nr(arch, name), [a0, 0, 0, 0, 0, 0])
        };
        assert_eq!(v(&p, "mount", 0), Verdict::Allow);
        assert_eq!(v(&p, "unshare", 0), Verdict::Allow);
        assert_eq!(v(&p, "clone3", 0), Verdict::Allow);
        let newuser = libc::CLONE_NEWUSER as u64;
        assert_eq!(v(&p, "clone", newuser), Verdict::Allow);
        // Never, whatever the capabilities.
        assert_eq!(v(&p, "keyctl", 0), Verdict::Errno(libc::EPERM));
        assert_eq!(v(&p, "pivot_root", 0), Verdict::Errno(libc::EPERM));

        let old = programs(arch, DOCKER_CAPS, (4, 4));
        assert_eq!(v(&old, "ptrace", 0), Verdict::Errno(libc::EPERM));
        let no_chroot = programs(arch, DOCKER_CAPS & !(1 << 18), (6, 18));
        assert_eq!(v(&no_chroot, "chroot", 0), Verdict::Errno(libc::EPERM));
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_version("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(parse_version("4.8"), Some((4, 8)));
        assert_eq!(parse_version("5"), None);
        assert!((4, 8) < (4, 10) && (4, 10) < (5, 0));
    }

    #[test]
    fn bad_profiles_are_refused_with_a_reason() {
        let t = Target {
            arch: Arch::X86_64,
            caps: 0,
            kernel: (6, 0),
        };
        for (text, want) in [
            (
                "default = \"EPERM\"\n[[rule]]\nsyscalls = [\"read\"]\naction = \"EFOO\"",
                "EFOO",
            ),
            (
                "default = \"EPERM\"\n[[rule]]\nsyscalls = [\"read\"]\nif-caps = [\"CAP_X\"]",
                "CAP_X",
            ),
            (
                "default = \"EPERM\"\n[[rule]]\nsyscalls = [\"read\"]\nargs = [{ arg = 0, op = \"eq\", value = 1, mask = 3 }]",
                "mask",
            ),
        ] {
            let p: Profile = toml::from_str(text).unwrap();
            let e = compile(&p, &t).err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
        }
        let typo = "default = \"EPERM\"\n[[rule]]\nsyscall = [\"read\"]";
        assert!(toml::from_str::<Profile>(typo).is_err());
    }
}
