//! Path rules of COPY/ADD/WORKDIR as small pure functions: cleaning, wildcard patterns,
//! where a source lands. No I/O: walking a tree for a pattern is the solver's.

/// The trailing slash is dropped: see [`dest_is_dir`] for what it means.
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A source path relative to its root (`""` is the root itself): leading `/` and `./` removed.
pub fn clean_rel(path: &str) -> String {
    clean_abs(path)[1..].to_string()
}

/// Joins a cleaned relative path onto another (either may be empty).
pub fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The last component of a cleaned path (`""` for the root).
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// Whether `dest` names a directory to copy into: a trailing `/` (or `/.`, or `.`), or more
/// than one source matched (Docker's rule: several sources need a directory destination).
pub fn dest_is_dir(dest: &str, matches: usize) -> bool {
    dest.ends_with('/') || dest.ends_with("/.") || dest == "." || matches > 1
}

/// Where one matched source goes (absolute, inside the rootfs). A directory source copies
/// its contents into `dest`; a file goes to `dest/<name>` when dest is (or must be) a
/// directory, else it becomes `dest` itself.
pub fn copy_target(
    dest: &str,
    dest_dir: bool,
    dest_exists_as_dir: bool,
    src_name: &str,
    src_is_dir: bool,
) -> String {
    let d = clean_abs(dest);
    if src_is_dir || !(dest_dir || dest_exists_as_dir) || src_name.is_empty() {
        d
    } else if d == "/" {
        format!("/{src_name}")
    } else {
        format!("{d}/{src_name}")
    }
}

/// Whether a path component contains glob metacharacters.
pub fn has_wildcard(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Shell-style match of one path component (`*`, `?`, `[a-z]`, `[!x]`/`[^x]`, `\` escapes),
/// as Go's `filepath.Match` does for a single element. A malformed class never matches.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0usize, 0usize);
    // Backtracking point for the most recent `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = match_class(p, pi, n[ni])
                        && ok
                    {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {}
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns (matched, index after `]`).
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == '!' || p[i] == '^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        if i >= p.len() {
            return None;
        }
        if p[i] == ']' && !first {
            break;
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if i + 1 < p.len() && p[i] == '-' && p[i + 1] != ']' {
            hi = p[i + 1];
            if hi == '\\' {
                hi = *p.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i + 1))
}

/// Removes glob escapes from a literal component.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs("app/"), "/app");
        assert_eq!(clean_abs("/a/./b/../c//"), "/a/c");
        assert_eq!(clean_abs("../.."), "/");
        assert_eq!(clean_rel("./src/"), "src");
        assert_eq!(clean_rel("."), "");
        assert_eq!(clean_rel("/"), "");
        assert_eq!(base_name("a/b/c.txt"), "c.txt");
        assert_eq!(join_rel("", "x"), "x");
        assert_eq!(join_rel("a", "x"), "a/x");
    }

    #[test]
    fn dest_directory_rules() {
        assert!(dest_is_dir("/app/", 1));
        assert!(dest_is_dir("/app/.", 1));
        assert!(!dest_is_dir("/app", 1));
        assert!(dest_is_dir("/app", 2));
    }

    #[test]
    fn file_into_dir_or_as_file() {
        // trailing slash: into the dir, keeping the name
        assert_eq!(
            copy_target("/app/", true, false, "a.txt", false),
            "/app/a.txt"
        );
        // no slash, dest absent: the file becomes dest
        assert_eq!(copy_target("/app", false, false, "a.txt", false), "/app");
        // no slash but dest is an existing dir: into it
        assert_eq!(
            copy_target("/app", false, true, "a.txt", false),
            "/app/a.txt"
        );
        // a directory source: its contents go to dest
        assert_eq!(copy_target("/app/", true, false, "src", true), "/app");
        assert_eq!(copy_target("/", true, true, "a", false), "/a");
    }

    #[test]
    fn globbing() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("[^a-c]x", "dx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "a"));
        assert!(glob_match("*a*b*", "xxaybzb"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("[a", "a"));
        assert!(has_wildcard("x*"));
        assert!(!has_wildcard("x\\*"));
        assert!(!has_wildcard("plain"));
    }
}
