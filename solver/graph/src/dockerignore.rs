//! `.dockerignore` matching with Docker's pattern rules (moby/patternmatcher), which are
//! not gitignore's:
//!
//! - patterns are matched against the whole context-relative path (`*.go` only matches at
//!   the top level; use `**/*.go` for any depth);
//! - `*` and `?` never cross `/`; `**` matches any number of directories, zero included;
//! - a pattern that matches a directory also excludes everything below it;
//! - `!pattern` re-includes; the last matching pattern wins;
//! - lines are trimmed and cleaned like Go's `filepath.Clean` (`./a//b/../c` is `a/c`), and a
//!   leading `/` is dropped; a line *starting* with `#` is a comment.
//!
//! Deliberate differences from patternmatcher, where its regex translation leaks through:
//! `\x` always means a literal `x` (never a regex class such as `\d`), `^` outside brackets is
//! literal, and a negated class `[^a]` does not match `/` (as in Go's `filepath.Match`).

use regex::Regex;
use std::path::Path;

/// A malformed pattern: the line as written and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: PatternReason,
}

/// What makes a pattern malformed (Go's `filepath.Match` syntax errors, as patternmatcher
/// reports them).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatternReason {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("trailing '\\'")]
    TrailingBackslash,
    #[error("bad bracket expression: {0}")]
    Class(#[from] ClassError),
    /// The translated pattern is refused by the regex engine (e.g. too large).
    #[error("{0}")]
    Regex(#[from] regex::Error),
}

/// What is wrong with a bracket expression (`[…]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    #[error("missing ']'")]
    MissingClose,
    #[error("unexpected '-' or ']'")]
    Unexpected,
    #[error("trailing '\\'")]
    TrailingBackslash,
    #[error("range out of order")]
    RangeOutOfOrder,
}

/// How a pattern is matched; literal patterns avoid the regex (as patternmatcher does, whose
/// quirks for `**` at either end come from this split).
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard at all: the path must equal the pattern.
    Exact(String),
    /// `literal**`: any path starting with `literal`.
    Prefix(String),
    /// `**literal`: any path ending with `literal`, or equal to it without its leading `/`.
    Suffix(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(p) => path == p,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Regex(re) => re.is_match(path),
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exception: bool,
    matcher: Matcher,
}

impl Pattern {
    /// Whether the pattern matches `path` itself or one of its parent directories.
    fn matches_or_parent(&self, path: &str) -> bool {
        if self.matcher.matches(path) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| self.matcher.matches(&path[..i]))
    }
}

/// A parsed, ordered list of ignore patterns.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

impl Patterns {
    /// Parses .dockerignore text: comments (#), blank lines, trimmed, cleaned paths
    /// (filepath.Clean semantics, leading '/' removed), `!` exceptions.
    pub fn parse(text: &str) -> Result<Patterns, PatternError> {
        Patterns::from_list(&read_patterns(text))
    }

    /// Builds a matcher from pattern strings (as returned by [`read_ignore_file`] or given
    /// on a Local source). Each is trimmed and cleaned again; empty ones are skipped.
    pub fn from_list(patterns: &[String]) -> Result<Patterns, PatternError> {
        let mut out = Vec::with_capacity(patterns.len());
        for raw in patterns {
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let (exception, body) = match p.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, p),
            };
            if exception && body.is_empty() {
                return Err(PatternError {
                    pattern: raw.clone(),
                    reason: PatternReason::LoneExclamation,
                });
            }
            let text = normalize(body);
            let matcher = compile(&text).map_err(|reason| PatternError {
                pattern: raw.clone(),
                reason,
            })?;
            out.push(Pattern {
                text,
                exception,
                matcher,
            });
        }
        Ok(Patterns { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether a context-relative path (slash separated, no leading "./") is excluded. Later
    /// patterns win; `!` re-includes. The context root itself is never excluded.
    pub fn excluded(&self, rel_path: &str) -> bool {
        // Most contexts have no .dockerignore: skip normalising every path for nothing.
        if self.patterns.is_empty() {
            return false;
        }
        let path = normalize(rel_path);
        if path == "." {
            return false;
        }
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that could flip the current verdict needs evaluating.
            if p.exception != excluded {
                continue;
            }
            if p.matches_or_parent(&path) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// True when a directory can be skipped entirely (excluded and no `!` exception could
    /// re-include something below it). Conservative: false whenever unsure.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.excluded(rel_dir) {
            return false;
        }
        let dir = normalize(rel_dir);
        // Any pattern matching the directory (or a parent) matches everything below it too,
        // so only an exception that matches a path strictly below it can change a verdict.
        !self
            .patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| could_match_below(&p.text, &dir))
    }
}

/// Whether `pattern` could match some path strictly inside `dir` (without matching `dir` or
/// a parent of it, which `excluded` already accounts for).
fn could_match_below(pattern: &str, dir: &str) -> bool {
    let segs: Vec<&str> = pattern.split('/').collect();
    let dsegs: Vec<&str> = dir.split('/').collect();
    for (i, dseg) in dsegs.iter().enumerate() {
        let Some(seg) = segs.get(i) else {
            return false;
        };
        // `**` spans any depth (and, at either end, matches by plain prefix/suffix), and a
        // trailing escape may have been split from what it escapes: assume a match.
        if seg.contains("**") || seg.ends_with('\\') {
            return true;
        }
        match compile(seg) {
            Ok(m) if m.matches(dseg) => {}
            Ok(_) => return false,
            Err(_) => return true,
        }
    }
    segs.len() > dsegs.len()
}

/// Splits .dockerignore text into pattern strings the way Docker reads the file: UTF-8 BOM
/// dropped, lines starting with `#` skipped (before trimming, so ` #x` is a pattern), lines
/// trimmed, blank ones skipped, each path cleaned with a leading `/` removed, `!` kept in
/// front.
pub fn read_patterns(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (invert, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let body = if body.is_empty() {
            String::new()
        } else {
            normalize(body)
        };
        out.push(if invert { format!("!{body}") } else { body });
    }
    out
}

/// `filepath.Clean`, then a leading `/` dropped (patterns are relative to the context).
fn normalize(p: &str) -> String {
    let cleaned = clean(p);
    match cleaned.strip_prefix('/') {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => cleaned,
    }
}

/// Go's `filepath.Clean` on Unix: collapses `//`, drops `.` elements, resolves `..` against
/// a preceding element (or drops it at the root), removes a trailing `/`; "" becomes ".".
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// One bracket expression: `[` `^`? items `]`; `-` ranges; `\` escapes inside.
struct Class {
    negated: bool,
    /// Inclusive ranges; a single character is `(c, c)`.
    ranges: Vec<(char, char)>,
}

/// Parses a class body starting just after `[`, with Go `filepath.Match` syntax rules.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Class, ClassError> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Ok(Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            class_char(chars)?
        } else {
            lo
        };
        if hi < lo {
            return Err(ClassError::RangeOutOfOrder);
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, ClassError> {
    match chars.next() {
        None => Err(ClassError::MissingClose),
        Some('-' | ']') => Err(ClassError::Unexpected),
        Some('\\') => chars.next().ok_or(ClassError::TrailingBackslash),
        Some(c) => Ok(c),
    }
}

fn class_to_regex(class: &Class) -> String {
    let esc = |c: char| -> String {
        if c.is_alphanumeric() {
            c.to_string()
        } else {
            format!("\\x{{{:x}}}", c as u32)
        }
    };
    let mut out = String::from(if class.negated { "[^/" } else { "[" });
    for &(lo, hi) in &class.ranges {
        out.push_str(&esc(lo));
        if hi != lo {
            out.push('-');
            out.push_str(&esc(hi));
        }
    }
    out.push(']');
    out
}

/// Translates a cleaned pattern (no `!`) into a matcher.
fn compile(pattern: &str) -> Result<Matcher, PatternReason> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut chars = pattern.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is the same as `**`.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '\\' => {
                let Some(e) = chars.next() else {
                    return Err(PatternReason::TrailingBackslash);
                };
                re.push_str(&regex::escape(e.encode_utf8(&mut [0; 4])));
                kind = Kind::Regex;
            }
            '[' => {
                let class = parse_class(&mut chars)?;
                re.push_str(&class_to_regex(&class));
                kind = Kind::Regex;
            }
            _ => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact(pattern.to_string()),
        Kind::Prefix => {
            let prefix = pattern.strip_suffix("**/").or(pattern.strip_suffix("**"));
            Matcher::Prefix(prefix.unwrap_or(pattern).to_string())
        }
        Kind::Suffix => Matcher::Suffix(pattern.strip_prefix("**").unwrap_or(pattern).to_string()),
        Kind::Regex => {
            re.push('$');
            Matcher::Regex(Regex::new(&re)?)
        }
    })
}

/// Reads the ignore file for a build: `<Dockerfile path>.dockerignore` beside the Dockerfile
/// (e.g. `dockerfiles/app.Dockerfile.dockerignore`) wins over `<context>/.dockerignore`.
/// Returns the patterns as strings (they go into the graph's Local op); no file means none.
/// A relative `dockerfile` is taken as given (relative to the current directory).
pub fn read_ignore_file(context: &Path, dockerfile: &Path) -> std::io::Result<Vec<String>> {
    let mut candidates = Vec::with_capacity(2);
    if let Some(name) = dockerfile.file_name().filter(|n| *n != "-") {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        candidates.push(dockerfile.with_file_name(specific));
    }
    candidates.push(context.join(".dockerignore"));
    for path in candidates {
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(read_patterns(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Patterns {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Patterns::from_list(&list).unwrap_or_else(|e| panic!("{list:?}: {e}"))
    }

    #[test]
    fn clean_like_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a//b", "a/b"),
            ("./a/./b/", "a/b"),
            ("a/../b", "b"),
            ("a/b/../../..", ".."),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/c/../../d", "a/d"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn reading_lines() {
        let text = "\u{feff}test1\n/test2\n/a/file/here\n\nlastfile\n# comment\n ! /inverted/abs/path \n  #not-a-comment\r\n./x/../y/\n!\n";
        assert_eq!(
            read_patterns(text),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "#not-a-comment",
                "y",
                "!"
            ]
        );
        // A lone `!` is an error when building the matcher.
        let e = Patterns::parse("a\n!\n").unwrap_err();
        assert_eq!(e.reason, PatternReason::LoneExclamation, "{e}");
    }

    #[test]
    fn single_pattern_table() {
        // (pattern, path, excluded) — including parent-directory matching.
        let table: &[(&str, &str, bool)] = &[
            ("*", "file", true),
            ("*", "dir/file", true), // parent "dir" matches
            ("*.go", "main.go", true),
            ("*.go", "pkg/main.go", false),
            ("**/*.go", "pkg/main.go", true),
            ("**/*.go", "main.go", true),
            ("**/*.go", "a/b/c/main.go", true),
            ("**/*.go", "a/b/main.gox", false),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("?", "/", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("file[0-9].txt", "file3.txt", true),
            ("file[0-9].txt", "filex.txt", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            ("a[^b-d]e", "ace", false),
            ("a[^b]c", "a/c", false),
            ("[\\]a]", "]", true),
            ("[x\\-]", "-", true),
            ("[a-ζ]*", "α", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a\\\\", "a\\", true),
            ("a\\d", "ad", true),
            ("a\\d", "a1", false),
            ("**", "anything/at/all", true),
            ("**/", "file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/a/b", true),
            ("dir/**", "dir", false),
            ("**/dir", "dir", true),
            ("**/dir", "a/b/dir", true),
            ("**/dir", "a/dir/file", true),
            ("**/dir", "adir", false),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("**file", "dir/file", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            (".*", ".git", true),
            (".*", ".git/config", true),
            (".*", "x.git", false),
            ("abc.def", "abcZdef", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            ("a^b*", "a^bc", true),
            ("node_modules", "node_modules", true),
            ("node_modules", "node_modules/x/y.js", true),
            ("node_modules", "src/node_modules", false),
            ("/node_modules", "node_modules/x", true),
            ("./node_modules", "node_modules/x", true),
            ("node_modules/", "node_modules/x", true),
            ("build/../dist", "dist/app.js", true),
            ("build/../dist", "build/dist", false),
            ("docs/*", "docs/README.md", true),
            ("docs/*", "docs", false),
            ("안녕*", "안녕하세요", true),
        ];
        let mut failures = Vec::new();
        for &(pattern, path, want) in table {
            let got = pats(&[pattern]).excluded(path);
            if got != want {
                failures.push(format!("{pattern:?} on {path:?}: got {got}, want {want}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn exceptions_and_ordering() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["*.go", "!main.go"], "main.go", false),
            (&["*.go", "!main.go"], "util.go", true),
            (&["!main.go", "*.go"], "main.go", true),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs", "!docs/README.md"], "docs/other.md", true),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (&["**", "!util/docker/web"], "util/docker/other", true),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (&["**", "!dist/*.whl"], "dist/p-1.0+g08-py3.whl", false),
            (&["*", "!src", "src/*.tmp"], "src/main.rs", false),
            (&["*", "!src", "src/*.tmp"], "src/x.tmp", true),
            (&["*", "!src", "src/*.tmp"], "README", true),
            (&["a", "!a/b", "a/b/c"], "a/b/c/d", true),
            (&["a", "!a/b", "a/b/c"], "a/b/x", false),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README.md",
                false,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-secret.md",
                true,
            ),
            (&["!x"], "x", false),
            (&["*"], ".", false),
            (&["*"], "", false),
        ];
        let mut failures = Vec::new();
        for &(list, path, want) in table {
            let got = pats(list).excluded(path);
            if got != want {
                failures.push(format!("{list:?} on {path:?}: got {got}, want {want}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for bad in [
            "[", "a[", "[^", "[^bc", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "a/[z-a]",
        ] {
            let list = vec![bad.to_string()];
            assert!(
                Patterns::from_list(&list).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let list = vec!["ok".to_string(), "!a[".to_string()];
        let e = Patterns::from_list(&list).unwrap_err();
        assert_eq!(e.pattern, "!a[");
    }

    #[test]
    fn arbitrary_patterns_never_panic() {
        // Every pattern of up to 3 characters over the syntax alphabet either compiles or is
        // rejected, and matching never panics.
        let alphabet: Vec<char> = "*?[]\\!/a.-^".chars().collect();
        let mut patterns = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            patterns.extend(longer);
        }
        patterns.dedup();
        let mut compiled = 0;
        for p in &patterns {
            if let Ok(m) = Patterns::from_list(std::slice::from_ref(p)) {
                compiled += 1;
                for path in ["a", "a/b", ".", "-", "a.b/c", "**/a"] {
                    m.excluded(path);
                    m.can_skip_dir(path);
                }
            }
        }
        assert!(
            compiled > patterns.len() / 2,
            "{compiled} of {}",
            patterns.len()
        );
    }

    #[test]
    fn skipping_directories() {
        let p = pats(&["node_modules", "build", "!build/keep.txt", "!**/important"]);
        assert!(
            !p.can_skip_dir("node_modules"),
            "**/important could be inside"
        );
        let p = pats(&["node_modules", "build", "!build/keep.txt"]);
        assert!(p.can_skip_dir("node_modules"));
        assert!(p.can_skip_dir("node_modules/sub"));
        assert!(!p.can_skip_dir("build"));
        assert!(!p.can_skip_dir("src"), "not excluded at all");
        let p = pats(&["*", "!src/*.rs"]);
        assert!(p.can_skip_dir("target"));
        assert!(!p.can_skip_dir("src"));
        let p = pats(&["*", "!s*/lib/*.rs"]);
        assert!(!p.can_skip_dir("src"));
        assert!(!p.can_skip_dir("src/lib"));
        assert!(p.can_skip_dir("src/bin"));
        assert!(p.can_skip_dir("target"));
        let p = pats(&["**"]);
        assert!(p.can_skip_dir("anything"));
        assert!(!pats(&[]).can_skip_dir("x"));
        assert!(pats(&[]).is_empty());
        assert!(!pats(&["a"]).has_exceptions());
        assert!(pats(&["a", "!b"]).has_exceptions());
    }

    #[test]
    fn ignore_file_location() {
        let dir = std::env::temp_dir().join(format!("rbuild-dockerignore-{}", std::process::id()));
        let ctx = dir.join("ctx");
        let dfdir = ctx.join("dockerfiles");
        std::fs::create_dir_all(&dfdir).unwrap();
        let dockerfile = dfdir.join("app.Dockerfile");
        std::fs::write(&dockerfile, "FROM scratch\n").unwrap();

        // Nothing present: no patterns.
        assert!(read_ignore_file(&ctx, &dockerfile).unwrap().is_empty());

        std::fs::write(ctx.join(".dockerignore"), "# c\n/target\n!target/keep\n").unwrap();
        assert_eq!(
            read_ignore_file(&ctx, &dockerfile).unwrap(),
            ["target", "!target/keep"]
        );

        // The Dockerfile-specific file wins over the context one.
        std::fs::write(dfdir.join("app.Dockerfile.dockerignore"), "./secrets//\n").unwrap();
        assert_eq!(read_ignore_file(&ctx, &dockerfile).unwrap(), ["secrets"]);
        // ... but only for that Dockerfile.
        assert_eq!(
            read_ignore_file(&ctx, &ctx.join("Dockerfile")).unwrap(),
            ["target", "!target/keep"]
        );
        // Stdin Dockerfile: only the context file counts.
        assert_eq!(
            read_ignore_file(&ctx, Path::new("-")).unwrap(),
            ["target", "!target/keep"]
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
