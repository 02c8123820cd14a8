//! Wildcard expansion of COPY sources against a real tree (the pure path rules are
//! in `rbuild_graph::paths`).

use rbuild_graph::paths::{glob_match, has_wildcard, join_rel, unescape};
use std::io;
use std::path::Path;

/// Expands a cleaned relative pattern against the tree under `root`, component by component
/// (`*` never crosses `/`). Returns matching relative paths, sorted; entries for which
/// `hidden(rel)` is true (e.g. `.dockerignore`d) do not match. Symlinks on the way are
/// followed inside `root` (an absolute target means `root`), never out of it.
pub fn expand_wildcard(
    root: &Path,
    pattern: &str,
    hidden: &dyn Fn(&str) -> bool,
) -> io::Result<Vec<String>> {
    let mut current: Vec<String> = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &current {
            if has_wildcard(comp) {
                // Symlinks on the way are resolved inside the root, never on the host.
                let dir = if base.is_empty() {
                    root.to_path_buf()
                } else {
                    rbuild_executor::resolve_in_root(root, base)?
                };
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(_) => continue,
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| glob_match(comp, name))
                    .collect();
                names.sort();
                for name in names {
                    let rel = join_rel(base, &name);
                    if !hidden(&rel) {
                        next.push(rel);
                    }
                }
            } else {
                let lit = unescape(comp);
                let rel = join_rel(base, &lit);
                let exists = rbuild_executor::resolve_in_root(root, &rel)
                    .map(|p| std::fs::symlink_metadata(p).is_ok())
                    .unwrap_or(false);
                if exists && !hidden(&rel) {
                    next.push(rel);
                }
            }
        }
        current = next;
    }
    current.retain(|p| !p.is_empty() || pattern.split('/').all(|c| c.is_empty()));
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_expansion_per_component() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/sub")).unwrap();
        for f in ["a.txt", "b.txt", "c.md", "src/x.txt", "src/sub/y.txt"] {
            std::fs::write(d.path().join(f), f).unwrap();
        }
        let none = |_: &str| false;
        assert_eq!(
            expand_wildcard(d.path(), "*.txt", &none).unwrap(),
            ["a.txt", "b.txt"]
        );
        assert_eq!(
            expand_wildcard(d.path(), "s*/*.txt", &none).unwrap(),
            ["src/x.txt"]
        );
        let hide_b = |p: &str| p == "b.txt";
        assert_eq!(
            expand_wildcard(d.path(), "*.txt", &hide_b).unwrap(),
            ["a.txt"]
        );
        assert!(
            expand_wildcard(d.path(), "*.none", &none)
                .unwrap()
                .is_empty()
        );
    }
}
