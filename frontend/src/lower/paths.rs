//! Container paths: WORKDIR, COPY destinations and mount targets resolved against the
//! working directory, with the graph's path cleaning.

/// The graph crate's path rules (the solver's COPY uses them too) are the single definition
/// of path cleaning.
pub use rbuild_graph::paths::{clean_abs, clean_rel};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
