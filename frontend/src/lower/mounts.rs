//! `RUN --mount=` fields into a checked mount description (before the
//! `from=` source is turned into a graph input).

use super::util::{base_name, parse_ram_size};
use crate::ast::MountSpec;

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
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// Checks and normalizes one mount. `expand` applies the stage's variables to a value.
pub fn parse_mount(
    spec: &MountSpec,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<ParsedMount, String> {
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
    };
    let mut ro_set = false;
    for (key, raw) in &spec.fields {
        let key = key.to_ascii_lowercase();
        let value = if key == "from" {
            if raw.contains('$') {
                return Err(
                    "'from' doesn't support variable expansion, define an alias stage instead"
                        .into(),
                );
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
                    _ => {
                        return Err(format!(
                            "unsupported mount type {value:?} (use bind, cache, tmpfs, secret or ssh)"
                        ));
                    }
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
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.kind.name()
                    ));
                }
                m.required = parse_bool(&key, &value)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key 'size' for mount type '{}'",
                        m.kind.name()
                    ));
                }
                m.size =
                    Some(parse_ram_size(&value).ok_or(format!("invalid value for size: {value}"))?);
            }
            "id" => m.id = value,
            "sharing" => {
                let v = value.to_ascii_lowercase();
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(format!(
                        "unsupported sharing value {value:?} (use shared, private or locked)"
                    ));
                }
                m.sharing = Some(v);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid value {value} for mode"))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for gid"))?,
                )
            }
            other => return Err(format!("unexpected key '{other}' in mount")),
        }
    }
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind.name()
                ));
            }
        }
    }
    if !ro_set {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            m.kind.name()
        ));
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if !m.source.is_empty() && !m.id.is_empty() {
                return Err("both source and id can't be set".into());
            }
            if !m.source.is_empty() {
                m.id = std::mem::take(&mut m.source);
            }
            if m.id.is_empty() {
                if m.target.is_empty() {
                    return Err("invalid secret mount: one of source, id, target required".into());
                }
                m.id = base_name(&m.target).to_string();
            }
            if m.target.is_empty() {
                m.target = format!("/run/secrets/{}", m.id);
            }
        }
        MountType::Ssh if m.id.is_empty() => m.id = "default".into(),
        MountType::Tmpfs if m.from.is_some() => {
            return Err("tmpfs mount should not have a from".into());
        }
        _ => {}
    }
    if m.kind != MountType::Ssh && m.target.is_empty() {
        return Err(format!("mount type '{}' needs a target", m.kind.name()));
    }
    if m.kind == MountType::Cache && m.id.is_empty() {
        m.id = m.target.clone();
    }
    Ok(m)
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
        parse_mount(&spec(fields), &mut |v| Ok(v.to_string())).unwrap_err()
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
        let t = ok(&[("type", "tmpfs"), ("target", "/t"), ("size", "1m")]);
        assert_eq!(t.size, Some(1 << 20));
        let rw = ok(&[("target", "/src"), ("rw", "")]);
        assert!(!rw.readonly);
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
