//! Credentials from Docker's `config.json`: `auths`, `credsStore`, `credHelpers`;
//! `login`/`logout` storage with atomic writes.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use super::RegistryError;
use super::reference::{DOCKER_HUB, DOCKER_HUB_AUTH_KEY, normalize_registry};

/// A secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (basic auth, or exchanged for a bearer token).
    Basic { username: String, password: String },
    /// OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(String),
    /// A ready bearer token (`registrytoken`), sent as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(***)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(***)"),
        }
    }
}

/// Where the client looks for credentials.
#[derive(Debug, Clone, Default)]
pub enum CredentialSource {
    /// Never send credentials.
    Anonymous,
    /// Docker's `config.json` in this directory; `None` = `$DOCKER_CONFIG` or `~/.docker`.
    DockerConfig(Option<PathBuf>),
    /// Fixed credentials per registry name (`docker.io`, `host:port`).
    Static(Vec<(String, Credential)>),
    /// `DockerConfig(None)`.
    #[default]
    Default,
}

impl CredentialSource {
    /// Directory whose `config.json` `login`/`logout` write.
    pub fn config_dir(&self) -> Option<PathBuf> {
        match self {
            CredentialSource::DockerConfig(Some(d)) => Some(d.clone()),
            _ => default_config_dir(),
        }
    }

    /// Credential for `registry` (a normalised name like `docker.io` or `host:5000`).
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        self.lookup_with(registry, None)
    }

    /// `lookup`, finding credential helpers in `helper_path` instead of `$PATH`.
    fn lookup_with(
        &self,
        registry: &str,
        helper_path: Option<&OsStr>,
    ) -> Result<Option<Credential>, RegistryError> {
        match self {
            CredentialSource::Anonymous => Ok(None),
            CredentialSource::Static(list) => Ok(list
                .iter()
                .find(|(r, _)| normalize_registry(r) == registry)
                .map(|(_, c)| c.clone())),
            CredentialSource::DockerConfig(_) | CredentialSource::Default => {
                let Some(dir) = self.config_dir() else {
                    return Ok(None);
                };
                let Some(cfg) = read_config(&dir.join("config.json"))? else {
                    return Ok(None);
                };
                if let Some(helper) = helper_for(&cfg, registry) {
                    // Not in the store: fall back to `auths`.
                    if let Some(c) = helper_get(&helper, &server_url(registry), helper_path)? {
                        return Ok(Some(c));
                    }
                }
                auths_entry(&cfg, registry)
            }
        }
    }
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    config_dir_from(
        std::env::var_os("DOCKER_CONFIG"),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// Pure part of [`default_config_dir`].
pub fn config_dir_from(docker_config: Option<OsString>, home: Option<PathBuf>) -> Option<PathBuf> {
    match docker_config {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => home.map(|h| h.join(".docker")),
    }
}

/// The key Docker uses in `auths` and sends to helpers for a registry.
pub fn server_url(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn read_config(path: &Path) -> Result<Option<Value>, RegistryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RegistryError::Credentials(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(Value::Object(Map::new())));
    }
    serde_json::from_str(&text).map(Some).map_err(|e| {
        RegistryError::Credentials(format!(
            "{} is not valid JSON ({e}); fix or remove it",
            path.display()
        ))
    })
}

fn helper_for(cfg: &Value, registry: &str) -> Option<String> {
    if let Some(helpers) = cfg.get("credHelpers").and_then(Value::as_object) {
        for (k, v) in helpers {
            if normalize_registry(k) == registry
                && let Some(h) = v.as_str().filter(|s| !s.is_empty())
            {
                return Some(h.to_string());
            }
        }
    }
    cfg.get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Find the `auths` entry for `registry`; keys may carry a scheme or path.
pub fn auths_entry(cfg: &Value, registry: &str) -> Result<Option<Credential>, RegistryError> {
    let Some(auths) = cfg.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let exact = auths.get(&server_url(registry));
    let entry = exact.or_else(|| {
        auths
            .iter()
            .find(|(k, _)| normalize_registry(k) == registry)
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else { return Ok(None) };
    parse_auth_entry(entry, registry)
}

fn parse_auth_entry(entry: &Value, registry: &str) -> Result<Option<Credential>, RegistryError> {
    let s = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(t) = s("identitytoken") {
        return Ok(Some(Credential::IdentityToken(t.to_string())));
    }
    if let Some(t) = s("registrytoken") {
        return Ok(Some(Credential::RegistryToken(t.to_string())));
    }
    if let Some(a) = s("auth") {
        let bad = || {
            RegistryError::Credentials(format!(
                "the `auth` entry for {registry} in config.json is not base64 of user:password; run `rbuild login {registry}` again"
            ))
        };
        let raw = B64.decode(a.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (u, p) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    if let (Some(u), Some(p)) = (s("username"), s("password")) {
        return Ok(Some(Credential::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    Ok(None)
}

/// Run `docker-credential-<helper> <verb>` with `input` on stdin.
fn run_helper(
    helper: &str,
    verb: &str,
    input: &str,
    path: Option<&OsStr>,
) -> Result<(bool, String), RegistryError> {
    let prog = format!("docker-credential-{helper}");
    let mut cmd = Command::new(&prog);
    if let Some(p) = path {
        // On Unix a PATH set for the child is also where the program is looked up.
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RegistryError::Credentials(format!(
                "cannot run credential helper {prog} (configured in config.json): {e}; install it or remove it from config.json"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits early closes stdin; its exit status tells the story.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RegistryError::Credentials(format!("credential helper {prog} failed: {e}")))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Ok((out.status.success(), text))
}

fn helper_get(
    helper: &str,
    server: &str,
    path: Option<&OsStr>,
) -> Result<Option<Credential>, RegistryError> {
    let (ok, out) = run_helper(helper, "get", server, path)?;
    if !ok {
        if out.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(RegistryError::Credentials(format!(
            "credential helper docker-credential-{helper} failed for {server}: {}",
            out.trim()
        )));
    }
    let v: Value = serde_json::from_str(&out).map_err(|e| {
        RegistryError::Credentials(format!(
            "credential helper docker-credential-{helper} printed invalid JSON: {e}"
        ))
    })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    if user == "<token>" {
        return Ok(Some(Credential::IdentityToken(secret.to_string())));
    }
    Ok(Some(Credential::Basic {
        username: user.to_string(),
        password: secret.to_string(),
    }))
}

/// Store `username:password` for `registry` in `dir/config.json` (or its helper).
pub fn store_credentials(
    dir: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<(), RegistryError> {
    store_credentials_with(dir, registry, username, password, None)
}

fn store_credentials_with(
    dir: &Path,
    registry: &str,
    username: &str,
    password: &str,
    helper_path: Option<&OsStr>,
) -> Result<(), RegistryError> {
    let path = dir.join("config.json");
    let mut cfg = read_config(&path)?.unwrap_or_else(|| Value::Object(Map::new()));
    let key = server_url(registry);
    let helper = helper_for(&cfg, registry);
    let obj = cfg.as_object_mut().ok_or_else(|| {
        RegistryError::Credentials(format!("{} is not a JSON object", path.display()))
    })?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("just made an object");
    // Drop aliases of the same registry so one entry remains.
    auths.retain(|k, _| k == &key || normalize_registry(k) != registry);
    if let Some(h) = helper {
        let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
        let (ok, out) = run_helper(&h, "store", &input.to_string(), helper_path)?;
        if !ok {
            return Err(RegistryError::Credentials(format!(
                "credential helper docker-credential-{h} could not store credentials: {}",
                out.trim()
            )));
        }
        auths.insert(key, Value::Object(Map::new()));
    } else {
        let mut entry = Map::new();
        entry.insert(
            "auth".into(),
            Value::String(B64.encode(format!("{username}:{password}"))),
        );
        auths.insert(key, Value::Object(entry));
    }
    write_config_atomic(&path, &cfg)
}

/// Remove stored credentials for `registry`; `Ok(false)` when there were none.
pub fn erase_credentials(dir: &Path, registry: &str) -> Result<bool, RegistryError> {
    erase_credentials_with(dir, registry, None)
}

fn erase_credentials_with(
    dir: &Path,
    registry: &str,
    helper_path: Option<&OsStr>,
) -> Result<bool, RegistryError> {
    let path = dir.join("config.json");
    let Some(mut cfg) = read_config(&path)? else {
        return Ok(false);
    };
    if let Some(h) = helper_for(&cfg, registry) {
        // Erasing a missing entry is not an error for us.
        let _ = run_helper(&h, "erase", &server_url(registry), helper_path)?;
    }
    let mut removed = false;
    if let Some(auths) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        let before = auths.len();
        auths.retain(|k, _| normalize_registry(k) != registry);
        removed = auths.len() != before;
    }
    if removed {
        write_config_atomic(&path, &cfg)?;
    }
    Ok(removed)
}

/// temp file + fsync + rename, mode 0600: a crash leaves the old or the new file.
fn write_config_atomic(path: &Path, cfg: &Value) -> Result<(), RegistryError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| {
        RegistryError::Credentials(format!("cannot write {}: {e}", path.display()))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(io)?;
    let text = serde_json::to_string_pretty(cfg)
        .map_err(|e| RegistryError::Credentials(format!("cannot serialise config.json: {e}")))?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.write_all(b"\n").map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_dir_honours_docker_config() {
        assert_eq!(
            config_dir_from(Some("/x/y".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/y"))
        );
        assert_eq!(
            config_dir_from(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker"))
        );
        assert_eq!(config_dir_from(None, None), None);
    }

    #[test]
    fn auths_entries() {
        let cfg = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": B64.encode("hub:secret:with:colons")},
            "http://127.0.0.1:5000/v2/": {"username": "u", "password": "p"},
            "ghcr.io": {"identitytoken": "refresh"},
            "empty.io": {},
            "bad.io": {"auth": "%%%"},
        }});
        assert_eq!(
            auths_entry(&cfg, "docker.io").unwrap(),
            Some(Credential::Basic {
                username: "hub".into(),
                password: "secret:with:colons".into()
            })
        );
        assert_eq!(
            auths_entry(&cfg, "127.0.0.1:5000").unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            auths_entry(&cfg, "ghcr.io").unwrap(),
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert_eq!(auths_entry(&cfg, "empty.io").unwrap(), None);
        assert_eq!(auths_entry(&cfg, "other.io").unwrap(), None);
        let err = auths_entry(&cfg, "bad.io").unwrap_err().to_string();
        assert!(err.contains("bad.io") && err.contains("login"), "{err}");
    }

    #[test]
    fn store_and_erase_keep_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"other.io":{"auth":"eDp5"}},"psFormat":"x"}"#,
        )
        .unwrap();
        store_credentials(dir.path(), "127.0.0.1:5000", "user", "pa:ss").unwrap();
        store_credentials(dir.path(), "docker.io", "hub", "pw").unwrap();
        let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(cfg["psFormat"], "x");
        assert_eq!(cfg["auths"]["other.io"]["auth"], "eDp5");
        assert_eq!(
            cfg["auths"]["127.0.0.1:5000"]["auth"],
            B64.encode("user:pa:ss")
        );
        assert_eq!(
            cfg["auths"][DOCKER_HUB_AUTH_KEY]["auth"],
            B64.encode("hub:pw")
        );
        let src = CredentialSource::DockerConfig(Some(dir.path().to_path_buf()));
        assert_eq!(
            src.lookup("127.0.0.1:5000").unwrap(),
            Some(Credential::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(erase_credentials(dir.path(), "127.0.0.1:5000").unwrap());
        assert!(!erase_credentials(dir.path(), "127.0.0.1:5000").unwrap());
        assert_eq!(src.lookup("127.0.0.1:5000").unwrap(), None);
        assert!(src.lookup("docker.io").unwrap().is_some());
        // no temp files left behind
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn invalid_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{nope").unwrap();
        let src = CredentialSource::DockerConfig(Some(dir.path().to_path_buf()));
        let err = src.lookup("x.io").unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("not valid JSON"),
            "{err}"
        );
        let missing = CredentialSource::DockerConfig(Some(dir.path().join("none")));
        assert_eq!(missing.lookup("x.io").unwrap(), None);
    }

    #[test]
    fn static_and_anonymous() {
        let c = Credential::Basic {
            username: "a".into(),
            password: "hunter2".into(),
        };
        let src = CredentialSource::Static(vec![("https://index.docker.io/v1/".into(), c.clone())]);
        assert_eq!(src.lookup("docker.io").unwrap(), Some(c));
        assert_eq!(
            CredentialSource::Anonymous.lookup("docker.io").unwrap(),
            None
        );
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let script = r#"#!/bin/sh
d=$(dirname "$0")
case "$1" in
get)
  read url
  case "$url" in
  reg.example:5000) echo '{"ServerURL":"reg.example:5000","Username":"hu","Secret":"hs"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"rt"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
  esac ;;
store) cat > "$d/stored" ;;
erase) read url; echo "$url" > "$d/erased" ;;
esac
"#;
        let helper = bin.path().join("docker-credential-fake");
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sys_path = std::env::var_os("PATH").unwrap_or_default();
        let mut path = OsString::from(bin.path());
        path.push(":");
        path.push(&sys_path);
        let path = Some(path.as_os_str());

        let cfg = tempfile::tempdir().unwrap();
        std::fs::write(
            cfg.path().join("config.json"),
            json!({"credsStore": "fake", "credHelpers": {"special.io": "missing"},
                   "auths": {"fallback.io": {"auth": B64.encode("fu:fp")}}})
            .to_string(),
        )
        .unwrap();
        let src = CredentialSource::DockerConfig(Some(cfg.path().to_path_buf()));
        assert_eq!(
            src.lookup_with("reg.example:5000", path).unwrap(),
            Some(Credential::Basic {
                username: "hu".into(),
                password: "hs".into()
            })
        );
        assert_eq!(
            src.lookup_with("docker.io", path).unwrap(),
            Some(Credential::IdentityToken("rt".into()))
        );
        // Not in the store: the `auths` entry is used.
        assert_eq!(
            src.lookup_with("fallback.io", path).unwrap(),
            Some(Credential::Basic {
                username: "fu".into(),
                password: "fp".into()
            })
        );
        assert_eq!(src.lookup_with("nowhere.io", path).unwrap(), None);
        // credHelpers wins over credsStore; a missing helper is named.
        let err = src.lookup_with("special.io", path).unwrap_err().to_string();
        assert!(err.contains("docker-credential-missing"), "{err}");

        store_credentials_with(cfg.path(), "new.io:5000", "nu", "np", path).unwrap();
        let stored: Value =
            serde_json::from_slice(&std::fs::read(bin.path().join("stored")).unwrap()).unwrap();
        assert_eq!(
            stored,
            json!({"ServerURL": "new.io:5000", "Username": "nu", "Secret": "np"})
        );
        let cfgv: Value =
            serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap())
                .unwrap();
        // The secret stays in the helper; config.json only lists the registry.
        assert_eq!(cfgv["auths"]["new.io:5000"], json!({}));
        assert_eq!(cfgv["credsStore"], "fake");

        assert!(erase_credentials_with(cfg.path(), "new.io:5000", path).unwrap());
        assert_eq!(
            std::fs::read_to_string(bin.path().join("erased")).unwrap(),
            "new.io:5000\n"
        );
    }
}
