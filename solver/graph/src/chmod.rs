//! `--chmod` modes: octal (`755`, `0644`) or chmod(1)'s symbolic clauses (`u+x`, `go-w`,
//! `a=rX`, `u=rwx,go=u-w`), with the rules BuildKit HEAD applies them by (its copier
//! parses the mode with a umask of 0):
//!
//! - a clause is `[ugoa]*` then one or more `op perms` (`+`, `-`, `=`), clauses joined by `,`;
//!   no `who` means every class (the umask does not apply);
//! - `X` counts only after `+`: it adds execute where the file is a directory or the
//!   file's mode *before* the `--chmod` had any execute bit (`=X` and `-X` do nothing);
//! - `s` and `t` count unless the clause names only `o`; `u`, `g`, `o` as perms copy
//!   that class's current bits;
//! - an octal mode replaces the permission, set-id and sticky bits.
//!
//! [`ChmodSpec::parse`] checks a mode where the Dockerfile is lowered; the file op applies
//! it to each copied entry with [`ModeSet::apply`].

/// What a `--chmod` value is wrong with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// Starts with a digit but is not an octal number up to `07777` (BuildKit's message).
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    Octal(String),
    /// A symbolic mode that chmod(1) would not accept.
    #[error("invalid chmod parameter: '{mode}': {reason} at character {at}")]
    Syntax {
        mode: String,
        reason: &'static str,
        /// 1-based position of the offending character (one past the end when it is missing).
        at: usize,
    },
}

/// A checked `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChmodSpec {
    /// Octal bits (at most `07777`).
    Octal(u32),
    /// A symbolic mode, applied to each entry's own mode.
    Symbolic(ModeSet),
}

impl ChmodSpec {
    /// Parses `--chmod=s`: all digits is octal; anything else is symbolic.
    pub fn parse(s: &str) -> Result<ChmodSpec, ChmodError> {
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            return parse_octal(s)
                .map(ChmodSpec::Octal)
                .ok_or_else(|| ChmodError::Octal(s.to_string()));
        }
        ModeSet::parse(s).map(ChmodSpec::Symbolic)
    }
}

/// Octal mode bits (at most `07777`).
pub fn parse_octal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

const SUID: u32 = 0o4000;
const SGID: u32 = 0o2000;
const STICKY: u32 = 0o1000;
const RWXU: u32 = 0o700;
const RWXG: u32 = 0o070;
const RWXO: u32 = 0o007;
/// Everything `a` names: set-id bits and the nine permission bits (not sticky).
const STANDARD: u32 = SUID | SGID | RWXU | RWXG | RWXO;
/// Every bit a mode set may change.
const ALL: u32 = 0o7777;

/// One step of a symbolic mode, applied in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Set(u32),
    Clear(u32),
    /// Set these bits when the entry is a directory or was executable by anyone.
    SetIfX(u32),
    /// Copy the current bits of class `from` (`u`, `g` or `o`) onto the classes named.
    Copy {
        from: u8,
        to_u: bool,
        to_g: bool,
        to_o: bool,
        clear: bool,
        set: bool,
    },
}

/// A parsed symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeSet {
    cmds: Vec<Cmd>,
}

/// The parser's position in the mode text.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn fail(&self, reason: &'static str) -> ChmodError {
        ChmodError::Syntax {
            mode: self.text.to_string(),
            reason,
            at: self.i + 1,
        }
    }
}

impl ModeSet {
    /// Parses a symbolic mode (see the module doc).
    pub fn parse(s: &str) -> Result<ModeSet, ChmodError> {
        let mut c = Cursor {
            text: s,
            bytes: s.as_bytes(),
            i: 0,
        };
        if s.is_empty() {
            return Err(c.fail("empty mode"));
        }
        let mut cmds = Vec::new();
        // Whether a `=` already cleared its classes (a later copy or perm list reuses it).
        let mut equal_done = false;
        loop {
            let mut who = 0u32;
            while let Some(b) = c.peek() {
                who |= match b {
                    b'a' => STANDARD,
                    b'u' => SUID | RWXU,
                    b'g' => SGID | RWXG,
                    b'o' => RWXO,
                    _ => break,
                };
                c.i += 1;
            }
            // One or more `op perms` for this `who`.
            let mut first = true;
            loop {
                let op = c
                    .peek()
                    .ok_or_else(|| c.fail("missing operator (+, - or =)"))?;
                match op {
                    b'+' | b'-' => {}
                    b'=' => equal_done = false,
                    _ if first => return Err(c.fail("expected u, g, o, a, +, - or =")),
                    _ => return Err(c.fail("expected r, w, x, X, s, t, u, g, o, +, -, = or ','")),
                }
                first = false;
                c.i += 1;
                who &= !STICKY;
                let (mut perm, mut perm_x) = (0u32, 0u32);
                loop {
                    match c.peek() {
                        Some(b'r') => perm |= 0o444,
                        Some(b'w') => perm |= 0o222,
                        Some(b'x') => perm |= 0o111,
                        Some(b'X') if op == b'+' => perm_x = 0o111,
                        Some(b'X') => {}
                        Some(b's') if who == 0 || who & !RWXO != 0 => perm |= SUID | SGID,
                        Some(b't') if who == 0 || who & !RWXO != 0 => {
                            who |= STICKY;
                            perm |= STICKY;
                        }
                        Some(b's' | b't') => {}
                        Some(from @ (b'u' | b'g' | b'o')) => {
                            if perm != 0 {
                                push_op(&mut cmds, op, who, perm);
                                perm = 0;
                            }
                            if op == b'=' {
                                equal_done = true;
                            }
                            if perm_x != 0 {
                                cmds.push(Cmd::SetIfX(masked(who, perm_x)));
                                perm_x = 0;
                            }
                            cmds.push(copy_cmd(from, who, op));
                        }
                        _ => {
                            if perm != 0 || (op == b'=' && !equal_done) {
                                if op == b'=' {
                                    equal_done = true;
                                }
                                push_op(&mut cmds, op, who, perm);
                            }
                            if perm_x != 0 {
                                cmds.push(Cmd::SetIfX(masked(who, perm_x)));
                            }
                            break;
                        }
                    }
                    c.i += 1;
                }
                match c.peek() {
                    None => return Ok(ModeSet { cmds }),
                    Some(b',') => {
                        c.i += 1;
                        break;
                    }
                    Some(_) => {} // another `op perms` for the same `who`
                }
            }
        }
    }

    /// The mode `mode` (its low 12 bits) becomes; `is_dir` lets `+X` apply.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let old = mode & ALL;
        let mut new = old;
        for cmd in &self.cmds {
            match *cmd {
                Cmd::Set(b) => new |= b,
                Cmd::Clear(b) => new &= !b,
                Cmd::SetIfX(b) => {
                    if is_dir || old & 0o111 != 0 {
                        new |= b;
                    }
                }
                Cmd::Copy {
                    from,
                    to_u,
                    to_g,
                    to_o,
                    clear,
                    set,
                } => {
                    let value = match from {
                        b'u' => (new & RWXU) >> 6,
                        b'g' => (new & RWXG) >> 3,
                        _ => new & RWXO,
                    };
                    let targets = [(to_u, 6), (to_g, 3), (to_o, 0)];
                    if clear {
                        let cleared = if set { 0o7 } else { value };
                        for (on, shift) in targets {
                            if on {
                                new &= !(cleared << shift);
                            }
                        }
                    }
                    if set {
                        for (on, shift) in targets {
                            if on {
                                new |= value << shift;
                            }
                        }
                    }
                }
            }
        }
        new & ALL
    }
}

/// The bits a clause changes: those of its classes, or all when it names none.
fn masked(who: u32, bits: u32) -> u32 {
    if who == 0 { bits } else { who & bits }
}

/// `+`, `-` or `=` with a permission list.
fn push_op(cmds: &mut Vec<Cmd>, op: u8, who: u32, perm: u32) {
    match op {
        b'+' => cmds.push(Cmd::Set(masked(who, perm))),
        b'-' => cmds.push(Cmd::Clear(masked(who, perm))),
        _ => {
            cmds.push(Cmd::Clear(if who == 0 { STANDARD } else { who }));
            cmds.push(Cmd::Set(masked(who, perm)));
        }
    }
}

/// `ug=o` and the like: the classes named (all when none) take class `from`'s bits.
fn copy_cmd(from: u8, who: u32, op: u8) -> Cmd {
    let all = who == 0;
    Cmd::Copy {
        from,
        to_u: all || who & 0o400 != 0,
        to_g: all || who & 0o040 != 0,
        to_o: all || who & 0o004 != 0,
        clear: op != b'+',
        set: op != b'-',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        ModeSet::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .apply(mode, dir)
    }

    #[test]
    fn octal() {
        assert_eq!(ChmodSpec::parse("755"), Ok(ChmodSpec::Octal(0o755)));
        assert_eq!(ChmodSpec::parse("0"), Ok(ChmodSpec::Octal(0)));
        assert_eq!(ChmodSpec::parse("7777"), Ok(ChmodSpec::Octal(0o7777)));
        for bad in ["10000", "64a", "8", "0755x"] {
            assert_eq!(
                ChmodSpec::parse(bad),
                Err(ChmodError::Octal(bad.to_string()))
            );
        }
    }

    #[test]
    fn symbolic_like_chmod() {
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("go-w", 0o777, true), 0o755);
        assert_eq!(sym("u=rw,g=r,o=r", 0o777, false), 0o644);
        assert_eq!(sym("u+rw,g+r,o-x,o+w", 0o700, true), 0o742);
        assert_eq!(sym("+x", 0o600, false), 0o711);
        assert_eq!(sym("a-rwx", 0o4777, false), 0o4000, "s is not rwx");
        assert_eq!(sym("=", 0o1777, true), 0o1000, "= keeps the sticky bit");
        assert_eq!(sym("u+x-w", 0o644, false), 0o544);
        assert_eq!(sym("go=u-w", 0o755, false), 0o755);
        assert_eq!(sym("u=rwx,go=u-w", 0o600, false), 0o755);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("o=g", 0o751, false), 0o755);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("g+s", 0o755, true), 0o2755);
        assert_eq!(sym("o+s", 0o755, false), 0o755, "o alone ignores s");
        assert_eq!(sym("+t", 0o755, true), 0o1755);
        assert_eq!(sym("o+t", 0o755, true), 0o755, "o alone ignores t");
        assert_eq!(sym("a+r,a-r", 0o600, false), 0o200);
        assert_eq!(sym("u+", 0o640, false), 0o640, "no perms: no change");
        assert_eq!(sym("u=", 0o740, false), 0o040);
    }

    #[test]
    fn capital_x_only_for_dirs_and_executables() {
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        assert_eq!(sym("a+X", 0o600, true), 0o711);
        // Only after `+`: `=rX` is `=r`, as BuildKit's parser has it.
        assert_eq!(sym("a=rX", 0o700, true), 0o444);
        assert_eq!(sym("a=rX", 0o755, false), 0o444);
        assert_eq!(sym("a-X", 0o755, false), 0o755);
        // The mode before the --chmod decides, not one a previous clause made.
        assert_eq!(sym("a-x,a+X", 0o744, false), 0o755);
        assert_eq!(sym("u+x,go+X", 0o644, false), 0o744);
    }

    #[test]
    fn bad_symbolic() {
        let err = |s: &str| ChmodSpec::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("u+q"),
            "invalid chmod parameter: 'u+q': expected r, w, x, X, s, t, u, g, o, +, -, = or ',' at character 3"
        );
        assert_eq!(
            err("u"),
            "invalid chmod parameter: 'u': missing operator (+, - or =) at character 2"
        );
        assert!(err("x+r").contains("at character 1"));
        assert!(err("u+x,").contains("missing operator"));
        assert!(err("").contains("empty mode"));
        assert!(err("-1").contains("character 2"));
        assert!(ChmodSpec::parse("u+x,g-w,o=").is_ok());
    }
}
