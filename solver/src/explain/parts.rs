//! The named inputs of a step's cache key: its op's encoding split into parts (a RUN's
//! command, each env entry by name, workdir, user, network, each mount; each field of each
//! COPY/ADD/WORKDIR action; an image's reference, digest and platform), and what the ops add
//! while solving ([`Facts`], via `RuntimeKey::add_named`). Each part is kept as a short
//! digest; only values that are never secret are kept in clear ([`CLEAR`]).
//!
//! The split is generic over the op's JSON encoding, so a field added to an op later is a
//! part of its own without anything here changing.

use crate::context::Selected;
use rbuild_graph::{BuildGraph, CopySource, EnvMap, ExecOp, FileAction, Op, VertexId};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Hex digits of a part's digest in a record (64 bits: a change going unseen is a
/// 1 in 2^64 event, and the record stays small).
pub(crate) const DIGEST_HEX: usize = 16;

/// Parts whose values are kept in clear, by op kind: image references and digests, the
/// platform, network and security modes, the context's name. Nothing a user could put a
/// secret into without it being public anyway.
const CLEAR: &[(&str, &str)] = &[
    ("image", "reference"),
    ("image", "digest"),
    ("image", "platform"),
    ("image", "manifest"),
    ("exec", "network"),
    ("exec", "security"),
    ("local", "name"),
];

/// Options of a RUN's mounts kept in clear: how it is shared and made, never what it holds
/// (a secret mount's content is no part of the op at all).
const MOUNT_CLEAR: &[&str] = &[
    "type", "sharing", "readonly", "required", "mode", "uid", "gid", "size",
];

/// A part as a record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// [`DIGEST_HEX`] hex digits.
    pub digest: String,
    /// The value, for parts in [`CLEAR`].
    pub clear: Option<String>,
}

/// 16 hex digits of blake3 over `bytes`.
pub(crate) fn short_digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..DIGEST_HEX].to_string()
}

/// What the ops named while computing a runtime key (`RuntimeKey::add_named`).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Name → part.
    pub(crate) named: BTreeMap<String, Part>,
    /// Names of the parts that are a context selection's digest.
    pub(crate) selections: Vec<String>,
    /// Per selection name, its entries (only when asked for: it walks the selection again).
    pub(crate) entries: BTreeMap<String, Vec<Selected>>,
    pub(crate) want_entries: bool,
}

impl Facts {
    /// Facts with the entries of each selection listed.
    pub(crate) fn listing() -> Facts {
        Facts {
            want_entries: true,
            ..Default::default()
        }
    }

    pub(crate) fn add(&mut self, name: &str, bytes: &[u8], clear: Option<&str>) {
        self.named.insert(
            name.to_string(),
            Part {
                digest: short_digest(bytes),
                clear: clear.map(str::to_string),
            },
        );
    }
}

fn clear_value(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parts of `op`'s encoding, by name: top-level fields, with a RUN's `env` split by
/// variable, its `mounts` by target, and a file op's `actions` by index and field.
/// A RUN's environment is left out: a record keeps it as a delta from the step before
/// (`env_parts`), not whole per step.
pub(crate) fn static_parts(op: &Op) -> BTreeMap<String, Part> {
    let kind = op.kind();
    let mut out = BTreeMap::new();
    let Ok(Value::Object(fields)) = serde_json::to_value(without_env(op).as_ref()) else {
        return out;
    };
    let mut put = |name: String, v: &Value, clear: Option<String>| {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        out.insert(
            name,
            Part {
                digest: short_digest(&bytes),
                clear,
            },
        );
    };
    for (field, v) in &fields {
        if field == "op" {
            continue;
        }
        match (field.as_str(), v) {
            ("env", Value::Object(env)) => {
                for (k, v) in env {
                    put(format!("env:{k}"), v, None);
                }
            }
            ("mounts", Value::Array(mounts)) => {
                let targets: Vec<&str> = mounts
                    .iter()
                    .map(|m| m.get("target").and_then(Value::as_str).unwrap_or(""))
                    .collect();
                for (i, m) in mounts.iter().enumerate() {
                    let Value::Object(mf) = m else {
                        put(mount_part(&targets, i, "mount"), m, None);
                        continue;
                    };
                    // Each option of the mount its own part (`mount:sharing:/c`), so a
                    // miss names the option that changed.
                    for (f, v) in mf {
                        match (f.as_str(), v) {
                            ("target", _) => {}
                            ("kind", Value::Object(kind)) => {
                                for (o, v) in kind {
                                    let clear = MOUNT_CLEAR.contains(&o.as_str()).then(|| {
                                        match (o.as_str(), v.as_u64()) {
                                            ("mode", Some(m)) => format!("{m:o}"),
                                            _ => clear_value(v),
                                        }
                                    });
                                    put(mount_part(&targets, i, o), v, clear);
                                }
                            }
                            _ => put(mount_part(&targets, i, f), v, None),
                        }
                    }
                }
            }
            ("actions", Value::Array(actions)) => {
                for (i, a) in actions.iter().enumerate() {
                    match a {
                        Value::Object(af) => {
                            for (f, v) in af {
                                put(format!("a{i}:{f}"), v, None);
                            }
                        }
                        other => put(format!("a{i}"), other, None),
                    }
                }
            }
            _ => {
                let clear = CLEAR
                    .contains(&(kind, field.as_str()))
                    .then(|| clear_value(v));
                put(field.clone(), v, clear);
            }
        }
    }
    out
}

/// The name of the option `option` of the mount `i` of a RUN whose mounts have `targets`:
/// `mount:OPTION:TARGET` (the target last, as it may hold any character), `mountN:…` for
/// the Nth other mount on the same target. Named by target rather than position, so a
/// mount added before another does not make that one look changed.
pub(crate) fn mount_part(targets: &[&str], i: usize, option: &str) -> String {
    let target = targets.get(i).copied().unwrap_or("");
    let n = targets.iter().take(i).filter(|t| **t == target).count();
    let n = if n == 0 { String::new() } else { n.to_string() };
    format!("mount{n}:{option}:{target}")
}

/// The target and option a [`mount_part`] name holds.
fn parse_mount_part(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("mount")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let (option, target) = rest.strip_prefix(':')?.split_once(':')?;
    Some((target, option))
}

/// 16 hex digits of the op's own encoding (no inputs, no environment): finds an
/// instruction again when steps were inserted before it or a variable changed.
pub(crate) fn op_digest(op: &Op) -> String {
    short_digest(&serde_json::to_vec(without_env(op).as_ref()).unwrap_or_default())
}

/// `op` with a RUN's environment emptied: what is encoded of a step besides it (the
/// environment of a long Dockerfile is most of every RUN's encoding).
fn without_env(op: &Op) -> Cow<'_, Op> {
    match op {
        Op::Exec(e) if !e.env.is_empty() => Cow::Owned(Op::Exec(ExecOp {
            env: EnvMap::new(),
            ..e.clone()
        })),
        _ => Cow::Borrowed(op),
    }
}

/// The name of the part of the variable `var` of a RUN's environment.
pub(crate) fn env_part(var: &str) -> String {
    format!("env:{var}")
}

/// The digest of a variable's value, as a record keeps it.
pub(crate) fn env_value_digest(value: &str) -> String {
    short_digest(&serde_json::to_vec(value).unwrap_or_default())
}

/// Whether a variable's name says it may hold a secret (the words of BuildKit's
/// SecretsUsedInArgOrEnv, matched more eagerly): its value is then never shown.
pub fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const ANYWHERE: &[&str] = &[
        "passw",
        "pword",
        "secret",
        "token",
        "apikey",
        "api_key",
        "credential",
        "private",
        "auth",
        "cert",
        "cookie",
        "session",
        "signing",
    ];
    if ANYWHERE.iter().any(|w| lower.contains(w)) {
        return true;
    }
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| matches!(t, "key" | "pass" | "pw" | "pwd" | "pat" | "dsn" | "salt"))
}

/// A value fit to print: short, on one line.
fn printable(v: &str) -> Option<String> {
    (v.chars().count() <= 64 && !v.chars().any(char::is_control)).then(|| format!("{v:?}"))
}

/// How a part is named to people, and its current value when that may be shown.
pub(crate) struct Named {
    pub what: String,
    pub now: Option<String>,
    /// A digest that moved rather than a value that changed (`moved a → b`).
    pub moves: bool,
    /// An env entry: added/removed read as set/unset.
    pub variable: bool,
    /// What the part belongs to when it is one of several (`mount /c` for its `sharing`):
    /// a whole mount added or removed is said once, by this name, not once per option.
    pub whole: Option<String>,
}

fn named(what: impl Into<String>, now: Option<String>) -> Named {
    Named {
        what: what.into(),
        now,
        moves: false,
        variable: false,
        whole: None,
    }
}

/// What the part `name` of vertex `v` is, said to people: `ARG VERSION`, `WORKDIR`, `COPY
/// src/: destination`, `base image digest`. `now` is the current value when it is safe to
/// print (never a secret-looking variable, never a command or file content).
pub(crate) fn describe(graph: &BuildGraph, v: VertexId, name: &str) -> Named {
    let op = &graph.vertex(v).op;
    match op {
        Op::Exec(e) => {
            if let Some(var) = name.strip_prefix("env:") {
                let kw = if graph.build_args(v).iter().any(|a| a == var) {
                    "ARG"
                } else {
                    "ENV"
                };
                let now = e
                    .env
                    .get(var)
                    .filter(|_| !looks_secret(var))
                    .and_then(printable);
                return Named {
                    variable: true,
                    ..named(format!("{kw} {var}"), now)
                };
            }
            if let Some((target, option)) = parse_mount_part(name) {
                let what = match option {
                    "content" => format!("RUN --mount={target}"),
                    "mount" => format!("mount {target}"),
                    o => format!("mount {target}: {o}"),
                };
                return Named {
                    whole: Some(format!("mount {target}")),
                    ..named(what, None)
                };
            }
            match name {
                "args" => named("command", None),
                "cwd" => named("WORKDIR", printable(&e.cwd)),
                "user" => named(
                    "USER",
                    printable(if e.user.is_empty() { "root" } else { &e.user }),
                ),
                "network" => named("network mode", None),
                "security" => named("security mode", None),
                "settings" => named("--add-host/--ulimit/--shm-size/--cgroup-parent", None),
                "platform" => named("platform", None),
                other => named(other, None),
            }
        }
        Op::File(f) => describe_action(graph, v, f, name),
        Op::Image {
            reference, digest, ..
        } => match name {
            "reference" => named("base image", printable(reference)),
            "digest" | "manifest" => Named {
                moves: true,
                ..named("base image digest", digest.clone())
            },
            "platform" => named("platform", None),
            other => named(other, None),
        },
        Op::Local { .. } if name == "exclude" => named(".dockerignore", None),
        _ => named(name, None),
    }
}

/// A file op's part `a{i}:{field}` (or `a{i}:content`, a COPY's selection). A source in
/// the context is named as in the Dockerfile, relative to the context.
fn describe_action(graph: &BuildGraph, v: VertexId, f: &rbuild_graph::FileOp, name: &str) -> Named {
    let Some((index, field)) = name
        .strip_prefix('a')
        .and_then(|r| r.split_once(':'))
        .and_then(|(i, f)| Some((i.parse::<usize>().ok()?, f)))
    else {
        return named(name, None);
    };
    let Some(action) = f.actions.get(index) else {
        return named(format!("action {}: {field}", index + 1), None);
    };
    match action {
        FileAction::Copy(c) => {
            let kw = if c.unpack_archive { "ADD" } else { "COPY" };
            let (prefix, source) = match &c.source {
                CopySource::Input { input, path } => {
                    let from_context = graph
                        .vertex(v)
                        .inputs
                        .get(*input)
                        .is_some_and(|i| matches!(graph.vertex(*i).op, Op::Local { .. }));
                    let path = if from_context {
                        path.trim_start_matches('/')
                    } else {
                        path.as_str()
                    };
                    let path = if path.is_empty() { "." } else { path };
                    (format!("{kw} {path}"), printable(path))
                }
                CopySource::Inline { .. } => (format!("{kw} <<heredoc → {}", c.dest), None),
                CopySource::Http { url, .. } => (format!("ADD {url}"), printable(url)),
                CopySource::Git { remote, .. } => (format!("ADD {remote}"), printable(remote)),
            };
            let (what, now) = match field {
                "content" => return named(prefix, None),
                "source" if source.is_none() => ("content".into(), None),
                "source" => ("source".into(), source),
                "dest" => ("destination".into(), printable(&c.dest)),
                "owner" => ("--chown".into(), None),
                "mode" => ("--chmod".into(), c.mode.map(|m| format!("{m:o}"))),
                "exclude" => ("--exclude".into(), None),
                other => (other.to_string(), None),
            };
            named(format!("{prefix}: {what}"), now)
        }
        FileAction::Mkdir { path, .. } => named(format!("WORKDIR {path}: {field}"), None),
        FileAction::Rm { path, .. } => named(format!("rm {path}: {field}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::{ExecOp, VertexMeta};

    fn exec(env: &[(&str, &str)]) -> Op {
        Op::Exec(ExecOp {
            args: vec!["sh".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: "/src".into(),
            user: String::new(),
            network: Default::default(),
            mounts: vec![],
            security: Default::default(),
            settings: Default::default(),
            platform: None,
        })
    }

    #[test]
    fn a_run_splits_by_field_and_leaves_its_environment_to_the_delta() {
        let parts = static_parts(&exec(&[("VERSION", "1"), ("PATH", "/bin")]));
        let names: Vec<&str> = parts.keys().map(String::as_str).collect();
        assert_eq!(names, ["args", "cwd", "network", "user"]);
        assert_eq!(parts["network"].clear.as_deref(), Some("host"));
        // The instruction is found again whatever its environment holds.
        assert_eq!(
            op_digest(&exec(&[("VERSION", "1")])),
            op_digest(&exec(&[("VERSION", "2")]))
        );
        assert_ne!(op_digest(&exec(&[])), op_digest(&Op::Scratch));
        assert_ne!(env_value_digest("1"), env_value_digest("2"));
        assert_eq!(env_part("VERSION"), "env:VERSION");
    }

    #[test]
    fn mounts_are_named_by_target_and_option() {
        let targets = ["/c", "/t", "/c"];
        assert_eq!(mount_part(&targets, 0, "sharing"), "mount:sharing:/c");
        assert_eq!(mount_part(&targets, 2, "sharing"), "mount1:sharing:/c");
        assert_eq!(
            parse_mount_part("mount1:sharing:/a:b#c"),
            Some(("/a:b#c", "sharing"))
        );
        assert_eq!(parse_mount_part("mounts"), None);
    }

    #[test]
    fn secret_looking_values_are_never_shown() {
        for name in [
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "api_key",
            "SSH_KEY",
            "NPM_AUTH",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["VERSION", "BASE", "KEYBOARD", "MONKEY_VERSION"] {
            assert!(!looks_secret(name), "{name}");
        }
        let mut g = BuildGraph::new();
        let v = g.add(
            exec(&[("VERSION", "2"), ("GITHUB_TOKEN", "ghp_x")]),
            vec![],
            VertexMeta::default(),
        );
        g.mark_build_args(v, vec!["VERSION".into(), "GITHUB_TOKEN".into()]);
        let version = describe(&g, v, "env:VERSION");
        assert_eq!(
            (version.what.as_str(), version.now.as_deref()),
            ("ARG VERSION", Some("\"2\""))
        );
        let token = describe(&g, v, "env:GITHUB_TOKEN");
        assert_eq!((token.what.as_str(), token.now), ("ARG GITHUB_TOKEN", None));
    }
}
