//! The closest of some names to a mistyped one (`imagse` → `images`, `bbase:lates` →
//! `bbase:latest`, `buidl` → the stage `build`), when one is close enough to say so.

/// The closest of `candidates` to `word`: at most one edit (a transposition counts as
/// one) per three characters, at least one; on a tie, the one nearest in length.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 1.max(c.len() / 3))
        .min_by_key(|(d, c)| (*d, c.len().abs_diff(word.len())))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_only() {
        let cmds = ["image", "images", "inspect", "build", "push"];
        assert_eq!(closest("imagse", cmds), Some("images"));
        assert_eq!(closest("biuld", cmds), Some("build"));
        assert_eq!(closest("ps", cmds), None);
        assert_eq!(closest("version", cmds), None);
        assert_eq!(
            closest("bbase:lates", ["bbase:latest", "busybox:latest"]),
            Some("bbase:latest")
        );
        assert_eq!(closest("buidl", ["build", "test"]), Some("build"));
    }
}
