//! `RUN --mount=`: the fields checked and normalized into a mount description
//! (`parse_mount`), then lowered to the exec's mounts and inputs (`run_mounts`), a `from=`
//! source becoming an input of the exec.

use super::Lowerer;
use super::env::env_get;
use super::paths::{base_name, clean_abs, resolve_path};
use super::state::{StageCx, StageState};
use super::values::parse_ram_size;
use crate::Diagnostic;
use crate::ast::{MountSpec, Span};
use crate::shell::ShellError;
use rbuild_graph::{ExecMount, MountKind, SSH_SOCKET_MODE, VertexId};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// What is wrong with a `--mount`; lowering reports it as `invalid --mount: <this>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("'from' doesn't support variable expansion, define an alias stage instead")]
    FromVariable,
    /// A value's variables could not be expanded.
    #[error("{0}")]
    Expand(#[from] ShellError),
    #[error("unsupported mount type {0:?} (use bind, cache, tmpfs, secret or ssh)")]
    UnsupportedType(String),
    #[error("unexpected key '{0}' in mount")]
    UnknownKey(String),
    /// A key that only some mount types take (`required`, `size`).
    #[error("unexpected key '{key}' for mount type '{}'", .kind.name())]
    KeyNotForType { key: &'static str, kind: MountType },
    #[error("invalid value for {key}: {value}")]
    InvalidBool { key: String, value: String },
    #[error("invalid value for size: {0}")]
    InvalidSize(String),
    /// `mode`, `uid` or `gid` that is not a number (octal for mode).
    #[error("invalid value {value} for {key}")]
    InvalidNumber { key: &'static str, value: String },
    #[error("unsupported sharing value {0:?} (use shared, private or locked)")]
    UnsupportedSharing(String),
    /// `mode`, `uid` or `gid` on a mount that creates no file (bind, tmpfs).
    #[error("{key} not allowed for {:?} type mounts", .kind.name())]
    FileInfoNotAllowed { key: &'static str, kind: MountType },
    #[error("invalid cache sharing set for {} mount", .0.name())]
    SharingNotCache(MountType),
    #[error("secret mount should not have a from")]
    SecretWithFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    /// `env=` that cannot name an environment variable.
    #[error("invalid value {0:?} for env: name an environment variable, e.g. env=TOKEN")]
    InvalidEnvName(String),
    #[error("ssh does not support source")]
    SshSource,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid secret mount: one of source, id, target required")]
    SecretUnnamed,
    #[error("tmpfs mount should not have a from")]
    TmpfsWithFrom,
    #[error("mount type '{}' needs a target", .0.name())]
    NoTarget(MountType),
}

/// One `--mount`, validated, values expanded (except `from`), defaults not yet applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMount {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: String,
    pub target: String,
    pub readonly: bool,
    pub id: String,
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<u64>,
    /// `env=`: a secret's value as this environment variable (ignored by other types,
    /// as BuildKit does).
    pub env: Option<String>,
}

fn parse_bool(key: &str, value: &str) -> Result<bool, MountError> {
    match value.to_ascii_lowercase().as_str() {
        "" | "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(MountError::InvalidBool {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Checks and normalizes one mount. `expand` applies the stage's variables to a value.
pub fn parse_mount(
    spec: &MountSpec,
    expand: &mut dyn FnMut(&str) -> Result<String, ShellError>,
) -> Result<ParsedMount, MountError> {
    let mut m = ParsedMount {
        kind: MountType::Bind,
        from: None,
        source: String::new(),
        target: String::new(),
        readonly: false,
        id: String::new(),
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut ro_set = false;
    for (key, raw) in &spec.fields {
        let key = key.to_ascii_lowercase();
        let value = if key == "from" {
            if raw.contains('$') {
                return Err(MountError::FromVariable);
            }
            raw.clone()
        } else {
            expand(raw)?
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(MountError::UnsupportedType(value)),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = value,
            "target" | "dst" | "destination" => m.target = value,
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &value)?;
                ro_set = true;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &value)?;
                ro_set = true;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(MountError::KeyNotForType {
                        key: "required",
                        kind: m.kind,
                    });
                }
                m.required = parse_bool(&key, &value)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(MountError::KeyNotForType {
                        key: "size",
                        kind: m.kind,
                    });
                }
                m.size = Some(parse_ram_size(&value).ok_or(MountError::InvalidSize(value))?);
            }
            "id" => m.id = value,
            "env" => {
                if value.is_empty() || value.contains('=') {
                    return Err(MountError::InvalidEnvName(value));
                }
                m.env = Some(value)
            }
            "sharing" => {
                let v = value.to_ascii_lowercase();
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(MountError::UnsupportedSharing(value));
                }
                m.sharing = Some(v);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| MountError::InvalidNumber { key: "mode", value })?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| MountError::InvalidNumber { key: "uid", value })?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| MountError::InvalidNumber { key: "gid", value })?,
                )
            }
            other => return Err(MountError::UnknownKey(other.to_string())),
        }
    }
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info {
        for (key, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfoNotAllowed { key, kind: m.kind });
            }
        }
    }
    if !ro_set {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret && m.from.is_some() {
        return Err(MountError::SecretWithFrom);
    }
    if m.kind == MountType::Secret && m.sharing.is_some() {
        return Err(MountError::SecretSharing);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(m.kind));
    }
    match m.kind {
        MountType::Secret => {
            if !m.source.is_empty() && !m.id.is_empty() {
                return Err(MountError::SecretSourceAndId);
            }
            if !m.source.is_empty() {
                m.id = std::mem::take(&mut m.source);
            }
            if m.id.is_empty() {
                if m.target.is_empty() {
                    return Err(MountError::SecretUnnamed);
                }
                m.id = base_name(&m.target).to_string();
            }
            // With `env=` and no target the secret is only the variable (BuildKit's rule).
            if m.target.is_empty() && m.env.is_none() {
                m.target = format!("/run/secrets/{}", base_name(&m.id));
            }
        }
        MountType::Ssh => {
            if !m.source.is_empty() {
                return Err(MountError::SshSource);
            }
            if m.id.is_empty() {
                m.id = "default".into();
            }
        }
        MountType::Tmpfs if m.from.is_some() => {
            return Err(MountError::TmpfsWithFrom);
        }
        _ => {}
    }
    let may_lack_target = match m.kind {
        MountType::Ssh => true,
        MountType::Secret => m.env.is_some(),
        _ => false,
    };
    if !may_lack_target && m.target.is_empty() {
        return Err(MountError::NoTarget(m.kind));
    }
    if m.kind == MountType::Cache && m.id.is_empty() {
        m.id = m.target.clone();
    }
    Ok(m)
}

/// The inputs and mounts of an exec being assembled; input 0 is the rootfs it runs on.
pub(super) struct ExecInputs {
    pub inputs: Vec<VertexId>,
    pub mounts: Vec<ExecMount>,
}

impl ExecInputs {
    pub fn new(root: VertexId) -> Self {
        ExecInputs {
            inputs: vec![root],
            mounts: Vec::new(),
        }
    }

    /// Adds `v` as a new input; its index.
    pub fn push(&mut self, v: VertexId) -> usize {
        self.inputs.push(v);
        self.inputs.len() - 1
    }

    /// The input index of `v`, added once however many mounts read it.
    pub fn input_of(&mut self, v: VertexId) -> usize {
        match self.inputs[1..].iter().position(|x| *x == v) {
            Some(p) => p + 1,
            None => self.push(v),
        }
    }
}

impl Lowerer<'_> {
    /// The `--mount`s of a RUN of stage `cx` as exec mounts; `cwd` is what relative targets
    /// resolve against. A bind without `from=` reads the build context.
    pub(super) fn run_mounts(
        &mut self,
        cx: &StageCx,
        st: &StageState,
        span: Span,
        specs: &[MountSpec],
        cwd: &str,
        exec: &mut ExecInputs,
    ) -> Result<(), Diagnostic> {
        let mut ssh_count = 0;
        for spec in specs {
            let mut unset = BTreeSet::new();
            let mut expand = |w: &str| {
                let e = self.lexer.expand(w, &|k| env_get(&st.env, k))?;
                unset.extend(e.unmatched);
                Ok(e.value)
            };
            let m = parse_mount(spec, &mut expand).map_err(|e| {
                self.err(span, "--mount", format!("invalid --mount: {e}"))
                    .help("write mounts as --mount=type=bind|cache|tmpfs|secret|ssh,target=PATH[,from=STAGE][,source=PATH]")
            })?;
            self.report_undefined(st, &unset, span);
            if matches!(m.kind, MountType::Secret | MountType::Ssh) {
                let secret = m.kind == MountType::Secret;
                self.capture(|c| c.mount(cx.index, secret, &m.id, m.required, span.start_line));
            }
            // SSH mounts are numbered in order, those with a target too (as BuildKit's
            // LLB does); one without a target is /run/buildkit/ssh_agent.N.
            let ssh_index = ssh_count;
            if m.kind == MountType::Ssh {
                ssh_count += 1;
            }
            let target = if m.kind == MountType::Ssh && m.target.is_empty() {
                format!("/run/buildkit/ssh_agent.{ssh_index}")
            } else if m.kind == MountType::Secret && m.target.is_empty() {
                // `env=` only: no file.
                String::new()
            } else {
                resolve_path(cwd, &m.target, false)
            };
            if target == "/" {
                return Err(self
                    .err(span, "--mount", "invalid mount target \"/\"")
                    .help("mount somewhere below /, e.g. target=/src"));
            }
            let from_vertex = match &m.from {
                Some(f) => {
                    let r = self.resolve_from(cx.index, f, span)?;
                    Some(self.ref_vertex(&r, cx.done, &st.platform, span)?)
                }
                None => None,
            };
            let source = clean_abs(&m.source);
            let kind = match m.kind {
                MountType::Bind => {
                    let v = match from_vertex {
                        Some(v) => v,
                        None => self.context_vertex(),
                    };
                    MountKind::Bind {
                        input: exec.input_of(v),
                        source,
                        readonly: m.readonly,
                    }
                }
                MountType::Cache => MountKind::Cache {
                    id: m.id.clone(),
                    sharing: m.sharing.clone().unwrap_or_else(|| "shared".into()),
                    from: from_vertex.map(|v| exec.input_of(v)),
                    source,
                    mode: m.mode.unwrap_or(0o755),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                },
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
                MountType::Secret => MountKind::Secret {
                    id: m.id.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o400),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    env: m.env.clone(),
                },
                MountType::Ssh => MountKind::Ssh {
                    id: m.id.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(SSH_SOCKET_MODE),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                },
            };
            exec.mounts.push(ExecMount { target, kind });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fields: &[(&str, &str)]) -> MountSpec {
        MountSpec {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn ok(fields: &[(&str, &str)]) -> ParsedMount {
        parse_mount(&spec(fields), &mut |v| Ok(v.replace("$X", "x"))).unwrap()
    }

    fn err(fields: &[(&str, &str)]) -> String {
        parse_mount(&spec(fields), &mut |v| Ok(v.to_string()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_per_type() {
        let b = ok(&[("target", "/src"), ("from", "build")]);
        assert_eq!(b.kind, MountType::Bind);
        assert!(b.readonly);
        assert_eq!(b.from.as_deref(), Some("build"));
        let c = ok(&[("type", "cache"), ("target", "/root/$X")]);
        assert_eq!(c.id, "/root/x");
        assert!(!c.readonly);
        let s = ok(&[("type", "secret"), ("id", "tok")]);
        assert_eq!(s.target, "/run/secrets/tok");
        let s = ok(&[("type", "secret"), ("target", "/etc/key")]);
        assert_eq!(s.id, "key");
        // The default file is named after the id's last component.
        let s = ok(&[("type", "secret"), ("id", "npm/token")]);
        assert_eq!(s.target, "/run/secrets/token");
        // env= alone: no file; with a target: both.
        let s = ok(&[("type", "secret"), ("id", "tok"), ("env", "TOKEN")]);
        assert_eq!((s.target.as_str(), s.env.as_deref()), ("", Some("TOKEN")));
        let s = ok(&[("type", "secret"), ("id", "t"), ("env", "T"), ("dst", "/k")]);
        assert_eq!((s.target.as_str(), s.env.as_deref()), ("/k", Some("T")));
        let h = ok(&[("type", "ssh"), ("mode", "0666"), ("uid", "1000")]);
        assert_eq!(
            (h.id.as_str(), h.mode, h.uid),
            ("default", Some(0o666), Some(1000))
        );
        let t = ok(&[("type", "tmpfs"), ("target", "/t"), ("size", "1m")]);
        assert_eq!(t.size, Some(1 << 20));
        let rw = ok(&[("target", "/src"), ("rw", "")]);
        assert!(!rw.readonly);
    }

    /// The exact texts users see after `invalid --mount: ` (BuildKit's, where it has one).
    #[test]
    fn error_messages() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("from", "$S"), ("target", "/x")],
                "'from' doesn't support variable expansion, define an alias stage instead",
            ),
            (
                &[("type", "nfs")],
                "unsupported mount type \"nfs\" (use bind, cache, tmpfs, secret or ssh)",
            ),
            (&[("bogus", "1")], "unexpected key 'bogus' in mount"),
            (
                &[("required", "true")],
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                &[("type", "cache"), ("size", "1m")],
                "unexpected key 'size' for mount type 'cache'",
            ),
            (&[("ro", "maybe")], "invalid value for ro: maybe"),
            (
                &[("type", "tmpfs"), ("size", "lots")],
                "invalid value for size: lots",
            ),
            (
                &[("type", "cache"), ("mode", "9")],
                "invalid value 9 for mode",
            ),
            (
                &[("type", "cache"), ("uid", "x")],
                "invalid value x for uid",
            ),
            (
                &[("type", "cache"), ("gid", "-")],
                "invalid value - for gid",
            ),
            (
                &[("type", "cache"), ("sharing", "all")],
                "unsupported sharing value \"all\" (use shared, private or locked)",
            ),
            (
                &[("target", "/x"), ("uid", "1")],
                "uid not allowed for \"bind\" type mounts",
            ),
            (
                &[("type", "tmpfs"), ("target", "/x"), ("sharing", "locked")],
                "invalid cache sharing set for tmpfs mount",
            ),
            (
                &[("type", "secret"), ("id", "a"), ("from", "b")],
                "secret mount should not have a from",
            ),
            (
                &[("type", "secret"), ("id", "a"), ("source", "b")],
                "both source and id can't be set",
            ),
            (
                &[("type", "secret")],
                "invalid secret mount: one of source, id, target required",
            ),
            (
                &[("type", "tmpfs"), ("target", "/t"), ("from", "b")],
                "tmpfs mount should not have a from",
            ),
            (&[("type", "cache")], "mount type 'cache' needs a target"),
            (
                &[("type", "secret"), ("id", "a"), ("sharing", "locked")],
                "secret mount should not define sharing",
            ),
            (
                &[("type", "secret"), ("id", "a"), ("env", "A=B")],
                "invalid value \"A=B\" for env: name an environment variable, e.g. env=TOKEN",
            ),
            (
                &[("type", "ssh"), ("source", "/x")],
                "ssh does not support source",
            ),
        ];
        for (fields, message) in cases {
            assert_eq!(err(fields), *message, "{fields:?}");
        }
        let failing = parse_mount(&spec(&[("target", "${X:?unset}")]), &mut |_| {
            Err(ShellError {
                message: "X: unset".into(),
                offset: 0,
            })
        });
        assert_eq!(failing.unwrap_err().to_string(), "X: unset");
    }

    #[test]
    fn rejects_bad_fields() {
        assert!(err(&[("type", "nfs"), ("target", "/x")]).contains("unsupported mount type"));
        assert!(err(&[("target", "/x"), ("mode", "755")]).contains("mode not allowed"));
        assert!(err(&[("target", "/x"), ("sharing", "shared")]).contains("sharing"));
        assert!(err(&[("from", "$STAGE"), ("target", "/x")]).contains("variable expansion"));
        assert!(err(&[("bogus", "1")]).contains("unexpected key 'bogus'"));
        assert!(err(&[("type", "bind")]).contains("needs a target"));
        assert!(err(&[("type", "cache"), ("target", "/c"), ("uid", "x")]).contains("uid"));
    }
}
