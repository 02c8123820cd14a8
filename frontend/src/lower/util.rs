//! Small pure helpers of lowering: paths, image references, platforms,
//! durations, modes, ports, signals and progress prefixes.

use rbuild_graph::{Owner, Platform};
use regex::Regex;
use std::sync::OnceLock;

/// The solver's COPY path rules are the single definition of path cleaning.
pub use rbuild_graph::paths::clean_abs;

/// `p` resolved against the directory `dir` (both unix paths), cleaned; with
/// `keep_slash`, a trailing `/` (or `/.`) of `p` is kept, as COPY destinations need.
pub fn resolve_path(dir: &str, p: &str, keep_slash: bool) -> String {
    let p = if p.is_empty() || p == "." { "./" } else { p };
    let joined = if p.starts_with('/') {
        clean_abs(p)
    } else {
        clean_abs(&format!("{dir}/{p}"))
    };
    let wants_slash = p.ends_with('/') || p.ends_with("/.") || p == ".";
    if keep_slash && wants_slash && !joined.ends_with('/') {
        format!("{joined}/")
    } else {
        joined
    }
}

/// Last component of a path (`/run/x` → `x`).
pub fn base_name(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// A Docker image reference split into its normalized parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// `docker.io/library/alpine:latest`-style full form (`:latest` added when
    /// neither tag nor digest is given, as `docker build` does).
    pub fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.domain, self.path);
        match (&self.tag, &self.digest) {
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => s.push_str(":latest"),
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// Parses a reference with Docker's grammar (lower-case repository path,
/// optional registry host[:port], tag, digest); `None` when it is not one.
pub fn parse_image_ref(s: &str) -> Option<ImageRef> {
    static COMPONENT: OnceLock<Regex> = OnceLock::new();
    static DOMAIN: OnceLock<Regex> = OnceLock::new();
    static TAG: OnceLock<Regex> = OnceLock::new();
    static DIGEST: OnceLock<Regex> = OnceLock::new();
    let component = re(&COMPONENT, r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$");
    let domain_re = re(
        &DOMAIN,
        r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$",
    );
    // Docker's tag grammar is ASCII `[\w][\w.-]{0,127}`. Spelled as an ASCII class
    // with the length checked apart: a Unicode `\w` repeated 127 times compiles
    // to an NFA that cost every build ~40 ms.
    let tag_re = re(&TAG, r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$");
    let digest_re = re(
        &DIGEST,
        r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$",
    );

    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !digest_re.is_match(d) {
                return None;
            }
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let t = &rest[last_slash + i + 1..];
            if t.len() > 128 || !tag_re.is_match(t) {
                return None;
            }
            (&rest[..last_slash + i], Some(t.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() || name.len() > 255 {
        return None;
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            if !domain_re.is_match(first) {
                return None;
            }
            (first.to_string(), remainder.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if !path.split('/').all(|c| component.is_match(c)) {
        return None;
    }
    Some(ImageRef {
        domain,
        path,
        tag,
        digest,
    })
}

/// `os/arch[/variant]` (or just an architecture) into a platform; `None` if malformed.
pub fn parse_platform(s: &str, default: &Platform) -> Option<Platform> {
    let parts: Vec<&str> = s.trim().split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (os, arch, variant) = match parts.as_slice() {
        [one] if matches!(*one, "linux" | "windows" | "darwin" | "freebsd") => {
            (one.to_string(), default.architecture.clone(), None)
        }
        [arch] => ("linux".to_string(), arch.to_string(), None),
        [os, arch] => (os.to_string(), arch.to_string(), None),
        [os, arch, variant] => (os.to_string(), arch.to_string(), Some(variant.to_string())),
        _ => return None,
    };
    let (arch, variant) = match (arch.to_lowercase().as_str(), variant) {
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v),
        ("aarch64" | "arm64", None) => ("arm64".to_string(), Some("v8".to_string())),
        ("aarch64" | "arm64", v) => ("arm64".to_string(), v),
        ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
        ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
        ("i386" | "386", v) => ("386".to_string(), v),
        (a, v) => (a.to_string(), v),
    };
    Some(Platform {
        os: os.to_lowercase(),
        architecture: arch,
        variant,
    })
}

/// `platforms.Format`-style string, `linux/arm64/v8`.
pub fn format_platform(p: &Platform) -> String {
    p.to_string()
}

/// A Go `time.ParseDuration` string (`1m30s`, `500ms`, `2h`) in nanoseconds.
pub fn parse_duration_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if neg { -ns } else { ns })
}

/// Go's `Duration.String()` for whole-ish values (`1m30s`, `500ms`, `0s`).
pub fn format_duration_ns(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let body = if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim_float(ns as f64 / 1e3) + "µs"
    } else if ns < 1_000_000_000 {
        trim_float(ns as f64 / 1e6) + "ms"
    } else {
        let h = ns / 3_600_000_000_000;
        let m = (ns / 60_000_000_000) % 60;
        let s = (ns % 60_000_000_000) as f64 / 1e9;
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&trim_float(s));
        out.push('s');
        out
    };
    if neg { format!("-{body}") } else { body }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `--chmod` as octal mode bits (at most `07777`).
pub fn parse_chmod(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// `user[:group]` as written in `--chown` or USER.
pub fn parse_owner(s: &str) -> Option<Owner> {
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(':') {
        Some((u, g)) => Owner {
            user: u.to_string(),
            group: (!g.is_empty()).then(|| g.to_string()),
        },
        None => Owner {
            user: s.to_string(),
            group: None,
        },
    })
}

/// EXPOSE specs (`80`, `80/udp`, `8000-8002/tcp`, `[ip:]host:container/proto`) as `port/proto` keys.
pub fn parse_port_spec(raw: &str) -> Result<Vec<String>, String> {
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        p => return Err(format!("invalid proto: {p}")),
    };
    let bad = || format!("invalid containerPort: {port}");
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = port.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid range specified for port: {port}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Whether STOPSIGNAL accepts `s` (a number, or a signal name with or without `SIG`).
pub fn valid_signal(s: &str) -> bool {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ",
    ];
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if NAMES.contains(&name) {
        return true;
    }
    // RTMIN+n / RTMAX-n
    for (base, sep) in [("RTMIN", '+'), ("RTMAX", '-')] {
        if name == base {
            return true;
        }
        if let Some(n) = name
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix(sep))
            .and_then(|n| n.parse::<u32>().ok())
        {
            return n <= 15;
        }
    }
    false
}

/// A docker size (`64m`, `1g`, `512k`, `100`) in bytes; units are powers of 1024.
pub fn parse_ram_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((value * mult as f64) as u64)
}

/// BuildKit's progress prefix: `[name  3/12] `; the index is right-aligned to
/// the width of the total.
pub fn step_prefix(stage: Option<&str>, index: usize, total: usize) -> String {
    let width = total.to_string().len();
    match stage {
        Some(s) => format!("[{s} {index:>width$}/{total}] "),
        None => format!("[{index:>width$}/{total}] "),
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", inner.join(" "))
}

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// First line of a heredoc, with `...` when it has more.
pub fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string();
    if lines.next().is_some() {
        first + "..."
    } else {
        first
    }
}

/// `RUN <<EOF` alone (the command is one heredoc word, optionally quoted or `<<-`).
pub fn is_single_heredoc(cmd: &str) -> bool {
    static HEREDOC: OnceLock<Regex> = OnceLock::new();
    re(
        &HEREDOC,
        r#"^\s*[0-9]*<<-?\s*['"]?[A-Za-z_][A-Za-z0-9_]*['"]?\s*$"#,
    )
    .is_match(cmd)
}

/// Whether a source is a URL (ADD from HTTP/git).
pub fn is_url(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://") || l.starts_with("git@")
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}` (and `-`/`+` without the colon)
/// in text where quotes are literal (heredoc bodies, progress names). Unset
/// variables are kept as written when `keep_unset`, else replaced by "".
pub fn expand_raw(text: &str, env: &dyn Fn(&str) -> Option<String>, keep_unset: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() && chars[i + 1] == '$' {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        if is_name_start(next) {
            let mut j = i + 1;
            while j < chars.len() && is_name(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            match env(&name) {
                Some(v) => out.push_str(&v),
                None if keep_unset => out.extend(&chars[i..j]),
                None => {}
            }
            i = j;
        } else if next == '{' {
            let Some(close) = chars[i + 2..].iter().position(|c| *c == '}') else {
                out.extend(&chars[i..]);
                break;
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let end = i + 3 + close;
            let name_len = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_len);
            let value = env(name);
            let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            let replaced = if let Some(w) = op.strip_prefix(":-") {
                Some(if set_nonempty {
                    value.unwrap_or_default()
                } else {
                    w.into()
                })
            } else if let Some(w) = op.strip_prefix('-') {
                Some(value.unwrap_or_else(|| w.into()))
            } else if let Some(w) = op.strip_prefix(":+") {
                Some(if set_nonempty {
                    w.into()
                } else {
                    String::new()
                })
            } else if let Some(w) = op.strip_prefix('+') {
                Some(if value.is_some() {
                    w.into()
                } else {
                    String::new()
                })
            } else if op.is_empty() {
                value
            } else {
                // Other operators: leave the text untouched.
                out.extend(&chars[i..end]);
                i = end;
                continue;
            };
            match replaced {
                Some(v) => out.push_str(&v),
                None if keep_unset => out.extend(&chars[i..end]),
                None => {}
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_dockers_ascii_grammar() {
        let long = "a".repeat(128);
        assert!(parse_image_ref(&format!("img:{long}")).is_some());
        assert!(parse_image_ref(&format!("img:{long}a")).is_none());
        assert!(parse_image_ref("img:v1.2_3-x").is_some());
        assert!(parse_image_ref("img:.v1").is_none());
        assert!(parse_image_ref("img:tä").is_none());
    }

    #[test]
    fn paths_resolve_like_docker() {
        assert_eq!(resolve_path("/app", "sub", false), "/app/sub");
        assert_eq!(resolve_path("/app", "../etc/", true), "/etc/");
        assert_eq!(resolve_path("/app", ".", true), "/app/");
        assert_eq!(resolve_path("/app", "", true), "/app/");
        assert_eq!(resolve_path("/", "/x//y/.", true), "/x/y/");
        assert_eq!(resolve_path("/", "/x//y/.", false), "/x/y");
        assert_eq!(clean_abs("/../a/./b/.."), "/a");
        assert_eq!(base_name("/run/secrets/tok"), "tok");
    }

    #[test]
    fn image_refs_normalize_and_reject() {
        let n = |s: &str| parse_image_ref(s).map(|r| r.normalized());
        assert_eq!(
            n("alpine").as_deref(),
            Some("docker.io/library/alpine:latest")
        );
        assert_eq!(
            n("alpine:3.19").as_deref(),
            Some("docker.io/library/alpine:3.19")
        );
        assert_eq!(
            n("localhost:5000/me/app").as_deref(),
            Some("localhost:5000/me/app:latest")
        );
        assert_eq!(n("ghcr.io/a/b:v1").as_deref(), Some("ghcr.io/a/b:v1"));
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&d),
            Some(format!(
                "docker.io/library/busybox@sha256:{}",
                "a".repeat(64)
            ))
        );
        assert_eq!(n("Build"), None);
        assert_eq!(n("my stage"), None);
        assert_eq!(n("a:b:c"), None);
        assert_eq!(n(""), None);
        assert_eq!(
            n("foo--bar"),
            Some("docker.io/library/foo--bar:latest".into())
        );
    }

    #[test]
    fn platforms_parse() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let p = parse_platform("linux/arm64", &host).unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            parse_platform("linux/arm/v7", &host).unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            parse_platform("x86_64", &host).unwrap().to_string(),
            "linux/amd64"
        );
        assert!(parse_platform("linux//", &host).is_none());
    }

    #[test]
    fn durations_match_go() {
        assert_eq!(parse_duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Some(500_000_000));
        assert_eq!(parse_duration_ns("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration_ns("0"), Some(0));
        assert_eq!(parse_duration_ns("10"), None);
        assert_eq!(parse_duration_ns("abc"), None);
        assert_eq!(format_duration_ns(90_000_000_000), "1m30s");
        assert_eq!(format_duration_ns(500_000_000), "500ms");
        assert_eq!(format_duration_ns(0), "0s");
        assert_eq!(format_duration_ns(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn chmod_and_owner() {
        assert_eq!(parse_chmod("755"), Some(0o755));
        assert_eq!(parse_chmod("0644"), Some(0o644));
        assert_eq!(parse_chmod("7777"), Some(0o7777));
        assert_eq!(parse_chmod("17777"), None);
        assert_eq!(parse_chmod("u+x"), None);
        assert_eq!(parse_chmod("8"), None);
        assert_eq!(
            parse_owner("1000:1000"),
            Some(Owner {
                user: "1000".into(),
                group: Some("1000".into())
            })
        );
        assert_eq!(parse_owner("app").unwrap().group, None);
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("http").is_err());
        assert!(valid_signal("SIGTERM"));
        assert!(valid_signal("kill"));
        assert!(valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGFOO"));
        assert!(!valid_signal("0"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_ram_size("64m"), Some(64 << 20));
        assert_eq!(parse_ram_size("1g"), Some(1 << 30));
        assert_eq!(parse_ram_size("100"), Some(100));
        assert_eq!(parse_ram_size("1x"), None);
    }

    #[test]
    fn prefixes_pad_like_buildkit() {
        assert_eq!(step_prefix(Some("build"), 2, 5), "[build 2/5] ");
        assert_eq!(step_prefix(None, 3, 12), "[ 3/12] ");
        assert_eq!(
            go_quoted_list(&["a b".into(), "c".into()]),
            r#"["a b" "c"]"#
        );
    }

    #[test]
    fn heredoc_detection_and_summary() {
        assert!(is_single_heredoc("<<EOF"));
        assert!(is_single_heredoc("<<-'EOT'"));
        assert!(!is_single_heredoc("<<EOF cat"));
        assert!(!is_single_heredoc("cat <<EOF"));
        assert_eq!(summarize_heredoc("echo a\necho b\n"), "echo a...");
        assert_eq!(summarize_heredoc("echo a\n"), "echo a");
    }

    #[test]
    fn raw_expansion_keeps_quotes() {
        let env = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand_raw("'$A' \"${A}\" $B", &env, true), "'1' \"1\" $B");
        assert_eq!(expand_raw("$B-${B:-x}-${A:+y}", &env, false), "-x-y");
        assert_eq!(expand_raw("\\$A", &env, false), "$A");
    }
}
