//! The text lowering writes for people: progress names (`[build 2/5] RUN make`) and the
//! Go-formatted lists of history entries, as BuildKit writes them.

use super::env::{Env, env_get, expand_raw};

/// The `[stage i/n]` progress counter of one stage.
pub(super) struct Steps {
    pub label: Option<String>,
    pub index: usize,
    pub total: usize,
}

impl Steps {
    /// The prefix of the next counted step (empty when the stage counts none).
    pub fn next(&mut self, onbuild: bool) -> String {
        if self.total == 0 {
            return String::new();
        }
        self.index += 1;
        let mut p = step_prefix(self.label.as_deref(), self.index, self.total);
        if onbuild {
            p.push_str("ONBUILD ");
        }
        p
    }
}

/// BuildKit's progress name: the instruction as written, variables expanded, keyword upper-cased.
pub(super) fn display_name(original: &str, env: &Env) -> String {
    let expanded = expand_raw(original.trim(), &|k| env_get(env, k), true);
    match expanded.split_once(' ') {
        Some((kw, rest)) => format!("{} {rest}", kw.to_ascii_uppercase()),
        None => expanded.to_ascii_uppercase(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn display_name_expands_and_uppercases() {
        let env: Env = [("V", "1.2")].into_iter().collect();
        assert_eq!(display_name("run echo $V $U", &env), "RUN echo 1.2 $U");
        assert_eq!(display_name("copy . /app", &env), "COPY . /app");
    }

    #[test]
    fn steps_count_and_mark_onbuild() {
        let mut s = Steps {
            label: Some("build".into()),
            index: 0,
            total: 3,
        };
        assert_eq!(s.next(false), "[build 1/3] ");
        assert_eq!(s.next(true), "[build 2/3] ONBUILD ");
        let mut none = Steps {
            label: None,
            index: 0,
            total: 0,
        };
        assert_eq!(none.next(false), "");
    }
}
