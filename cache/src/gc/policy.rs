//! The cache policy applied after each build: keep the build cache (what no tagged image
//! needs) under a size, by default the smaller of 10% of the filesystem holding the root
//! and 20 GB. It is read from `<root>/gc.toml` and the environment (which wins):
//!
//! ```toml
//! enabled = true          # RBUILD_GC=0 turns it off
//! keep-storage = "20GB"   # or "10%" of the filesystem; RBUILD_GC_KEEP_STORAGE
//! ```
//!
//! A build that added nothing costs nothing here. Otherwise the bytes it added are
//! added to an estimate kept in `gc-state` (measured by the last prune), and only when
//! the estimate passes the limit does prune run and measure.

use super::{PruneOptions, PruneReport, units};
use crate::error::CacheError;
use crate::{Store, lease};
use std::path::{Path, PathBuf};

/// The default share of the filesystem the build cache may take.
const DEFAULT_PERCENT: f64 = 10.0;
/// The default cap, whatever the filesystem's size.
const DEFAULT_CAP: u64 = 20 << 30;
/// Finished use logs kept before they are folded into the records' last use.
const FOLD_LOGS_AT: usize = 64;

/// How much the build cache may keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepStorage {
    /// The smaller of 10% of the filesystem and 20 GB.
    Default,
    Bytes(u64),
    /// Percent of the filesystem holding the root.
    Percent(f64),
}

/// The policy after each build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcPolicy {
    pub enabled: bool,
    pub keep_storage: KeepStorage,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            enabled: true,
            keep_storage: KeepStorage::Default,
        }
    }
}

/// A policy setting that does not read, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
}

/// What `gc.toml` may say.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    enabled: Option<bool>,
    keep_storage: Option<String>,
}

fn keep_storage(text: &str) -> Result<KeepStorage, units::UnitError> {
    if let Some(p) = text.trim().strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(KeepStorage::Percent(v)),
            _ => Err(units::UnitError::Percent(text.to_string())),
        };
    }
    units::parse_size(text).map(KeepStorage::Bytes)
}

fn switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

impl GcPolicy {
    /// The policy of the store at `root`: `gc.toml` there if it exists, then the
    /// variables `env` finds (`RBUILD_GC`, `RBUILD_GC_KEEP_STORAGE`).
    pub fn load(
        root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<GcPolicy, PolicyError> {
        let mut policy = GcPolicy::default();
        let path = root.join("gc.toml");
        let file_err = |message: String| PolicyError::File {
            path: path.clone(),
            message,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let f: PolicyFile = toml::from_str(&text).map_err(|e| {
                    file_err(format!(
                        "{}; it takes `enabled = true|false` and `keep-storage = \"20GB\"` or \"10%\"",
                        e.to_string().trim_end()
                    ))
                })?;
                if let Some(e) = f.enabled {
                    policy.enabled = e;
                }
                if let Some(k) = f.keep_storage {
                    policy.keep_storage =
                        keep_storage(&k).map_err(|m| file_err(format!("keep-storage: {m}")))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(format!("cannot read it: {e}"))),
        }
        if let Some(v) = env("RBUILD_GC") {
            policy.enabled = switch(&v).ok_or_else(|| PolicyError::Env {
                var: "RBUILD_GC",
                value: v.clone(),
                message: "use 1 or 0 (on or off)".into(),
            })?;
        }
        if let Some(v) = env("RBUILD_GC_KEEP_STORAGE") {
            policy.keep_storage = keep_storage(&v).map_err(|e| PolicyError::Env {
                var: "RBUILD_GC_KEEP_STORAGE",
                value: v.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(policy)
    }

    /// The limit in bytes for the filesystem holding `root`.
    pub fn limit(&self, root: &Path) -> u64 {
        let fs = filesystem_size(root).unwrap_or(u64::MAX);
        let share = |p: f64| (fs as f64 * p / 100.0) as u64;
        match self.keep_storage {
            KeepStorage::Default => share(DEFAULT_PERCENT).min(DEFAULT_CAP),
            KeepStorage::Bytes(b) => b,
            KeepStorage::Percent(p) => share(p),
        }
    }
}

/// Total bytes of the filesystem holding `p`.
fn filesystem_size(p: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statvfs for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks as u64).saturating_mul(st.f_frsize as u64))
}

fn state_path(store: &Store) -> PathBuf {
    store.root().join("gc-state")
}

/// The build cache's size as last measured (plus what builds added since).
fn load_estimate(store: &Store) -> Option<u64> {
    std::fs::read_to_string(state_path(store))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Saves the estimate. It is only an estimate: no fsync, and losing it costs a measure.
pub(super) fn save_estimate(store: &Store, bytes: u64) {
    let p = state_path(store);
    let tmp = store
        .root()
        .join(format!("{}gc-state", crate::fsutil::temp_prefix()));
    if std::fs::write(&tmp, format!("{bytes}\n")).is_ok() && std::fs::rename(&tmp, &p).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

impl Store {
    /// Applies `policy` after a build: when this process added data and the build cache
    /// may now exceed the limit, prunes the least recently used records until it fits.
    /// Returns what was freed, if anything was. A prune running elsewhere makes this a
    /// no-op (it measures anyway).
    pub fn gc_after_build(&self, policy: &GcPolicy) -> Result<Option<PruneReport>, CacheError> {
        if !policy.enabled {
            return Ok(None);
        }
        let added = self.bytes_added();
        let logs = lease::count(&self.leases_dir());
        if added == 0 && logs < FOLD_LOGS_AT {
            return Ok(None);
        }
        let Some(_turn) = self.lock_prune(false)? else {
            return Ok(None);
        };
        let limit = policy.limit(self.root());
        match load_estimate(self).map(|e| e.saturating_add(added)) {
            Some(e) if e <= limit => {
                save_estimate(self, e);
                if logs >= FOLD_LOGS_AT {
                    self.fold_use_logs()?;
                }
                Ok(None)
            }
            _ => {
                let report = self.prune_locked(&PruneOptions {
                    keep_storage: Some(limit),
                    ..Default::default()
                })?;
                Ok((report.swept.bytes > 0).then_some(report))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn file_then_environment() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            GcPolicy::load(t.path(), env(&[])).unwrap(),
            GcPolicy::default()
        );
        std::fs::write(
            t.path().join("gc.toml"),
            "enabled = true\nkeep-storage = \"5GB\"\n",
        )
        .unwrap();
        let p = GcPolicy::load(t.path(), env(&[])).unwrap();
        assert_eq!(p.keep_storage, KeepStorage::Bytes(5 << 30));
        assert_eq!(p.limit(t.path()), 5 << 30);
        let p = GcPolicy::load(
            t.path(),
            env(&[("RBUILD_GC_KEEP_STORAGE", "1%"), ("RBUILD_GC", "off")]),
        )
        .unwrap();
        assert!(!p.enabled);
        assert_eq!(p.keep_storage, KeepStorage::Percent(1.0));
        assert!(p.limit(t.path()) > 0);
        let d = GcPolicy::default().limit(t.path());
        assert!(d > 0 && d <= DEFAULT_CAP);
    }

    #[test]
    fn bad_settings_name_where_they_are() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("gc.toml"), "keep-storage = \"lots\"\n").unwrap();
        let e = GcPolicy::load(t.path(), env(&[])).unwrap_err().to_string();
        assert!(e.contains("gc.toml") && e.contains("keep-storage"), "{e}");
        std::fs::write(t.path().join("gc.toml"), "keep_storage = \"1GB\"\n").unwrap();
        let e = GcPolicy::load(t.path(), env(&[])).unwrap_err().to_string();
        assert!(e.contains("gc.toml") && e.contains("line 1"), "{e}");
        std::fs::remove_file(t.path().join("gc.toml")).unwrap();
        let e = GcPolicy::load(t.path(), env(&[("RBUILD_GC", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("RBUILD_GC=\"maybe\""), "{e}");
        let e = GcPolicy::load(t.path(), env(&[("RBUILD_GC_KEEP_STORAGE", "200%")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("0% to 100%"), "{e}");
    }
}
