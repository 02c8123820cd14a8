//! Running a command of another architecture: the kernel's binfmt_misc hands a foreign
//! ELF binary to the interpreter registered for it (Debian's `qemu-user-static` registers
//! `qemu-<arch>` handlers through `binfmt-support`). The handler must have the `F`
//! (fix-binary) flag: the kernel then opens the interpreter when it is registered, so it
//! works inside the container's root, where no emulator binary exists.
//!
//! Nothing here starts an emulator: the container execs the command as usual. This only
//! finds out, before the container is made, whether a handler that will take the
//! platform's binaries is registered, and says how to get one when none is. The cache key
//! of the step names its platform, never the emulator.
//!
//! `RBUILD_BINFMT_MISC_DIR` replaces `/proc/sys/fs/binfmt_misc` as the directory read —
//! for tests, which simulate a machine without emulators with an empty directory.

pub use crate::error::EmulationError;
use std::path::{Path, PathBuf};

/// Where the kernel shows binfmt_misc's handlers.
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The variable that replaces [`BINFMT_MISC_DIR`] (tests only).
pub const BINFMT_MISC_DIR_ENV: &str = "RBUILD_BINFMT_MISC_DIR";

/// A registered handler that takes the platform's binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The handler's name (`qemu-aarch64`).
    pub name: String,
    /// The interpreter the kernel runs (`/usr/libexec/qemu-binfmt/aarch64-binfmt-P`).
    pub interpreter: String,
}

/// The directory read: `RBUILD_BINFMT_MISC_DIR`, else the kernel's.
pub fn binfmt_dir() -> PathBuf {
    std::env::var_os(BINFMT_MISC_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINFMT_MISC_DIR))
}

/// The emulator that runs binaries of `platform` (`os/arch[/variant]`) here: None when
/// the machine runs them itself.
pub fn emulator_for(platform: &str) -> Result<Option<Emulator>, EmulationError> {
    let architecture = platform.split('/').nth(1).unwrap_or(platform);
    if runs_natively(architecture, std::env::consts::ARCH) {
        return Ok(None);
    }
    find(&binfmt_dir(), platform, architecture).map(Some)
}

/// Whether a machine of Rust's `host_arch` runs `architecture` (an OCI name) itself.
pub fn runs_natively(architecture: &str, host_arch: &str) -> bool {
    matches!(
        (host_arch, architecture),
        ("x86_64", "amd64" | "386") | ("aarch64", "arm64") | ("x86", "386") | ("arm", "arm")
    ) || (host_arch == "riscv64" && architecture == "riscv64")
}

/// The handler in `dir` that takes `architecture`'s executables.
fn find(dir: &Path, platform: &str, architecture: &str) -> Result<Emulator, EmulationError> {
    let header = elf_header(architecture).ok_or_else(|| EmulationError::UnknownArchitecture {
        platform: platform.to_string(),
        architecture: architecture.to_string(),
    })?;
    let status = std::fs::read_to_string(dir.join("status")).ok();
    let missing = || EmulationError::Missing {
        platform: platform.to_string(),
        host: host_platform(),
        dir: dir.to_path_buf(),
        mounted: status.is_some(),
    };
    if status.as_deref().map(str::trim) != Some("enabled") {
        return Err(missing());
    }
    let mut entries: Vec<(String, Entry)> = std::fs::read_dir(dir)
        .map_err(|_| missing())?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "status" || name == "register" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((name, parse_entry(&text)?))
        })
        .filter(|(_, e)| e.enabled && e.matches(&header))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((name, e)) = entries.iter().find(|(_, e)| e.flags.contains('F')) {
        return Ok(Emulator {
            name: name.clone(),
            interpreter: e.interpreter.clone(),
        });
    }
    match entries.into_iter().next() {
        Some((name, e)) => Err(EmulationError::NotFixBinary {
            platform: platform.to_string(),
            name,
            interpreter: e.interpreter,
        }),
        None => Err(missing()),
    }
}

/// The machine's platform as OCI names it, for messages.
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("linux/{arch}")
}

/// The first 20 bytes of an executable of `architecture` (OCI name): ELF magic, class,
/// byte order, version, type `ET_EXEC`, machine. What a magic handler is matched against.
pub fn elf_header(architecture: &str) -> Option<[u8; 20]> {
    // (64-bit, big-endian, e_machine)
    let (wide, big, machine): (bool, bool, u16) = match architecture {
        "amd64" => (true, false, 62),
        "386" => (false, false, 3),
        "arm64" => (true, false, 183),
        "arm" => (false, false, 40),
        "riscv64" => (true, false, 243),
        "ppc64le" => (true, false, 21),
        "ppc64" => (true, true, 21),
        "s390x" => (true, true, 22),
        "mips64le" => (true, false, 8),
        "mips64" => (true, true, 8),
        "loong64" => (true, false, 258),
        _ => return None,
    };
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if wide { 2 } else { 1 };
    h[5] = if big { 2 } else { 1 };
    h[6] = 1;
    let (e_type, e_machine) = if big {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    h[16..18].copy_from_slice(&e_type);
    h[18..20].copy_from_slice(&e_machine);
    Some(h)
}

/// One binfmt_misc handler as its file in the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Entry {
    /// Whether a file starting with `header` is this handler's.
    fn matches(&self, header: &[u8]) -> bool {
        if self.magic.is_empty() || self.offset + self.magic.len() > header.len() {
            return false;
        }
        self.magic.iter().enumerate().all(|(i, m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header[self.offset + i] & mask == *m
        })
    }
}

/// The kernel's text for a handler (`enabled`, `interpreter …`, `flags: …`, `offset …`,
/// `magic …`, `mask …`); None for extension handlers and what is not one.
fn parse_entry(text: &str) -> Option<Entry> {
    let mut e = Entry {
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if line == "enabled" {
            e.enabled = true;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            e.interpreter = v.to_string();
        } else if let Some(v) = line.strip_prefix("flags:") {
            e.flags = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("offset ") {
            e.offset = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("magic ") {
            e.magic = hex(v.trim())?;
        } else if let Some(v) = line.strip_prefix("mask ") {
            e.mask = hex(v.trim())?;
        }
    }
    (!e.magic.is_empty()).then_some(e)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::INSTALL_HINT;

    /// What Debian's qemu-user-static registers for aarch64.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn dir_with(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        for (n, t) in entries {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn debian_aarch64_handler_takes_arm64_only() {
        let e = parse_entry(AARCH64).unwrap();
        assert!(e.enabled && e.flags.contains('F'));
        assert!(e.matches(&elf_header("arm64").unwrap()));
        assert!(!e.matches(&elf_header("amd64").unwrap()));
        assert!(!e.matches(&elf_header("arm").unwrap()));
    }

    #[test]
    fn finds_the_fix_binary_handler() {
        let d = dir_with(&[
            (
                "python3.11",
                "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n",
            ),
            ("qemu-aarch64", AARCH64),
        ]);
        let e = find(d.path(), "linux/arm64/v8", "arm64").unwrap();
        assert_eq!(e.name, "qemu-aarch64");
        assert_eq!(e.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
    }

    #[test]
    fn missing_and_unfixed_handlers_say_what_to_do() {
        let d = dir_with(&[]);
        let e = find(d.path(), "linux/arm64/v8", "arm64")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a RUN for linux/arm64/v8 needs an emulator"),
            "{e}"
        );
        assert!(e.contains(INSTALL_HINT), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = find(empty.path(), "linux/arm64/v8", "arm64")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not mounted there") && e.contains("mount -t binfmt_misc"),
            "{e}"
        );
        let d = dir_with(&[("qemu-aarch64", &AARCH64.replace("flags: PF", "flags: P"))]);
        let e = find(d.path(), "linux/arm64/v8", "arm64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("without the F (fix-binary) flag"), "{e}");
        let d = dir_with(&[("qemu-aarch64", &AARCH64.replace("enabled", "disabled"))]);
        assert!(matches!(
            find(d.path(), "linux/arm64", "arm64"),
            Err(EmulationError::Missing { .. })
        ));
        assert!(matches!(
            find(d.path(), "linux/sparc", "sparc"),
            Err(EmulationError::UnknownArchitecture { .. })
        ));
    }

    #[test]
    fn native_architectures_need_no_emulator() {
        assert!(runs_natively("amd64", "x86_64"));
        assert!(runs_natively("386", "x86_64"));
        assert!(!runs_natively("arm64", "x86_64"));
        assert!(runs_natively("arm64", "aarch64"));
        assert!(!runs_natively("amd64", "aarch64"));
    }
}
