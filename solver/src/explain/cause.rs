//! Why a step ran instead of coming from the cache ([`Miss`], a list of [`Cause`]s), and
//! how that reads (`ARG VERSION changed (now "2")`, `COPY src/: src/main.rs changed
//! (content)`, `parent step #3 changed`).

use rbuild_graph::VertexId;

/// One reason a step missed the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// `--no-cache`: nothing was looked up.
    NoCache,
    /// No earlier build of this Dockerfile and target is recorded (`imported`: and the
    /// imported cache carried no record of it either).
    FirstBuild { imported: bool },
    /// The last build had no such step here (`was`: it had a step of another kind).
    NewStep { was: Option<String> },
    /// A named input of the key changed. Values are given only where safe to print:
    /// `old` only for values the record keeps in clear.
    Changed {
        what: String,
        change: Change,
        old: Option<String>,
        now: Option<String>,
        /// A digest that moved (`moved a → b`), not a value that changed.
        moves: bool,
    },
    /// What a COPY (or a bind mount) selects from the context changed; `details` name the
    /// first files (`src/main.rs changed (content)`, `src/new.rs added`, `2 removed`).
    Content { what: String, details: Vec<String> },
    /// An input step's result changed (input 0: the parent step).
    Input { index: usize, vertex: VertexId },
    /// The same inputs as the last build, but its result is not in the cache any more.
    Gone,
    /// The key changed and no named input did (a new rbuild version, say).
    Unexplained,
}

/// How a named input changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Modified,
    /// An env variable that was set and is now unset, or the reverse.
    Set,
    Unset,
}

/// Why one step ran.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Miss {
    pub causes: Vec<Cause>,
}

/// `sha256:0123456789ab` for digests, the value otherwise.
fn short(v: &str) -> &str {
    match v.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => &v[..7 + 12],
        _ => v,
    }
}

impl Cause {
    /// A stable name of the kind of cause, for machine-readable output.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::NoCache => "no-cache",
            Cause::FirstBuild { .. } => "first-build",
            Cause::NewStep { .. } => "new-step",
            Cause::Changed { .. } => "changed",
            Cause::Content { .. } => "content",
            Cause::Input { index: 0, .. } => "parent",
            Cause::Input { .. } => "source",
            Cause::Gone => "gone",
            Cause::Unexplained => "unexplained",
        }
    }

    /// The cause in words; `step` names another step (`#3` in progress output, its
    /// description elsewhere).
    pub fn text(&self, step: &dyn Fn(VertexId) -> String) -> String {
        match self {
            Cause::NoCache => "--no-cache".into(),
            Cause::FirstBuild { imported: false } => "first build".into(),
            Cause::FirstBuild { imported: true } => {
                "first build: not in the local history; imported cache has no record for it".into()
            }
            Cause::NewStep { was: None } => "new step: the last build had none here".into(),
            Cause::NewStep { was: Some(k) } => {
                let k = match k.as_str() {
                    "exec" => "RUN",
                    "file" => "COPY/ADD/WORKDIR",
                    "image" => "FROM",
                    other => other,
                };
                format!("new step: the last build had a {k} step here")
            }
            Cause::Changed {
                what,
                change,
                old,
                now,
                moves,
            } => {
                let now_part = |now: &Option<String>| match now {
                    Some(n) => format!(" (now {})", short(n)),
                    None => String::new(),
                };
                match change {
                    Change::Added => format!("{what} added{}", now_part(now)),
                    Change::Removed => format!("{what} removed"),
                    Change::Set => format!("{what} set{}", now_part(now)),
                    Change::Unset => format!("{what} unset"),
                    Change::Modified => match (old, now) {
                        (Some(o), Some(n)) => {
                            let verb = if *moves { "moved" } else { "changed:" };
                            format!("{what} {verb} {} → {}", short(o), short(n))
                        }
                        _ => format!("{what} changed{}", now_part(now)),
                    },
                }
            }
            Cause::Content { what, details } => format!("{what}: {}", details.join(", ")),
            Cause::Input { index: 0, vertex } => format!("parent step {} changed", step(*vertex)),
            Cause::Input { vertex, .. } => format!("source step {} changed", step(*vertex)),
            Cause::Gone => {
                "same inputs as the last build, but its cached result is gone (pruned?)".into()
            }
            Cause::Unexplained => "its cache key changed, but none of its named inputs".into(),
        }
    }

    /// The steps this cause names.
    pub fn steps(&self) -> Option<VertexId> {
        match self {
            Cause::Input { vertex, .. } => Some(*vertex),
            _ => None,
        }
    }
}

impl Miss {
    /// The causes in words, joined with `; `.
    pub fn text(&self, step: &dyn Fn(VertexId) -> String) -> String {
        let mut parts: Vec<String> = Vec::new();
        for c in &self.causes {
            let t = c.text(step);
            if !parts.contains(&t) {
                parts.push(t);
            }
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_as_the_issue_asks() {
        let name = |v: VertexId| format!("#{}", v.0);
        let changed = |what: &str, old: Option<&str>, now: Option<&str>, moves| Cause::Changed {
            what: what.into(),
            change: Change::Modified,
            old: old.map(Into::into),
            now: now.map(Into::into),
            moves,
        };
        let d1 = format!("sha256:{}", "a".repeat(64));
        let d2 = format!("sha256:{}", "b".repeat(64));
        let cases = [
            (Cause::NoCache, "--no-cache".to_string()),
            (Cause::FirstBuild { imported: false }, "first build".into()),
            (
                changed("ARG VERSION", None, Some("\"2\""), false),
                "ARG VERSION changed (now \"2\")".into(),
            ),
            (
                changed("base image digest", Some(&d1), Some(&d2), true),
                "base image digest moved sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb".into(),
            ),
            (
                Cause::Content {
                    what: "COPY src/".into(),
                    details: vec!["src/main.rs changed (content)".into()],
                },
                "COPY src/: src/main.rs changed (content)".into(),
            ),
            (
                Cause::Input {
                    index: 0,
                    vertex: VertexId(3),
                },
                "parent step #3 changed".into(),
            ),
        ];
        for (cause, text) in cases {
            assert_eq!(cause.text(&name), text);
        }
        let miss = Miss {
            causes: vec![Cause::Gone, Cause::Gone],
        };
        assert_eq!(miss.text(&name), Cause::Gone.text(&name));
    }
}
