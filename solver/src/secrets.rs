//! Build secrets (`--secret`): where each id's value comes from, read only when a step
//! that mounts it runs. A secret is known to the graph by its id alone (and its mount
//! options); its value is never part of a vertex, a cache key, a record or an event, so
//! a changed value does not invalidate the cache, as in BuildKit.
//!
//! The rules are buildx's and BuildKit's secrets store's: an entry with neither `src`
//! nor `env` is the environment variable named like its id when one is set, else the
//! file of that name; `env` wins over `src`; a file is checked when the build starts
//! and may hold at most 500 KiB; a later entry for an id replaces an earlier one.

use rbuild_executor::SecretValue;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// The most bytes a secret may hold (BuildKit's `MaxSecretSize`).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// One `--secret` as given (buildx's fields, `type=env` already applied).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretSpec {
    pub id: String,
    /// `src=`/`source=`: a file.
    pub src: Option<PathBuf>,
    /// `env=`: an environment variable of rbuild's.
    pub env: Option<String>,
}

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of rbuild's; unset reads as empty (BuildKit's rule).
    Env(String),
}

/// What is wrong with a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--secret: the id is missing; write --secret id=ID,src=FILE or id=ID,env=VAR")]
    MissingId,
    #[error("secret {id:?}: cannot read {}: {source}", .path.display())]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id:?} is too big ({size} bytes): a secret may hold at most 500 KiB")]
    TooBig { id: String, size: u64 },
}

/// The build's secrets by id. Holds where values come from, never a value.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_id: BTreeMap<String, SecretSource>,
}

impl Secrets {
    /// The secrets of `specs`, with buildx's defaults applied; `env_set` says whether
    /// rbuild's environment has a variable of that name. Files are checked now (present,
    /// at most [`MAX_SECRET_SIZE`]), so a wrong path fails before anything is built.
    pub fn resolve(
        specs: &[SecretSpec],
        env_set: impl Fn(&str) -> bool,
    ) -> Result<Secrets, SecretError> {
        let mut by_id = BTreeMap::new();
        for s in specs {
            if s.id.is_empty() {
                return Err(SecretError::MissingId);
            }
            let (src, env) = match (&s.src, &s.env) {
                (None, None) if env_set(&s.id) => (None, Some(s.id.clone())),
                (None, None) => (Some(PathBuf::from(&s.id)), None),
                (src, env) => (src.clone(), env.clone()),
            };
            if let Some(path) = &src {
                let size = std::fs::metadata(path)
                    .map_err(|source| SecretError::Read {
                        id: s.id.clone(),
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if size > MAX_SECRET_SIZE {
                    return Err(SecretError::TooBig {
                        id: s.id.clone(),
                        size,
                    });
                }
            }
            let source = match (env, src) {
                (Some(var), _) => SecretSource::Env(var),
                (None, Some(path)) => SecretSource::File(path),
                (None, None) => unreachable!("one of them is set above"),
            };
            by_id.insert(s.id.clone(), source);
        }
        Ok(Secrets { by_id })
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Where secret `id` comes from; None when the build has no such secret.
    pub fn source(&self, id: &str) -> Option<&SecretSource> {
        self.by_id.get(id)
    }

    /// The value of secret `id`, read now; None when the build has no such secret.
    pub fn value(&self, id: &str) -> Result<Option<SecretValue>, SecretError> {
        let Some(source) = self.by_id.get(id) else {
            return Ok(None);
        };
        let bytes = match source {
            SecretSource::Env(var) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .unwrap_or_default(),
            SecretSource::File(path) => {
                let read = |source| SecretError::Read {
                    id: id.to_string(),
                    path: path.clone(),
                    source,
                };
                let mut bytes = Vec::new();
                std::fs::File::open(path)
                    .map_err(read)?
                    .take(MAX_SECRET_SIZE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(read)?;
                if bytes.len() as u64 > MAX_SECRET_SIZE {
                    return Err(SecretError::TooBig {
                        id: id.to_string(),
                        size: bytes.len() as u64,
                    });
                }
                bytes
            }
        };
        Ok(Some(SecretValue::new(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, src: Option<&str>, env: Option<&str>) -> SecretSpec {
        SecretSpec {
            id: id.into(),
            src: src.map(PathBuf::from),
            env: env.map(String::from),
        }
    }

    #[test]
    fn buildx_rules_for_where_a_value_comes_from() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("tok");
        std::fs::write(&file, "v").unwrap();
        let f = file.to_str().unwrap();
        let set = |n: &str| n == "FROM_ENV";
        let s = Secrets::resolve(
            &[
                spec("a", Some(f), None),
                spec("FROM_ENV", None, None),
                spec("b", None, Some("VAR")),
                // env wins over src (the file is still checked).
                spec("c", Some(f), Some("VAR")),
            ],
            set,
        )
        .unwrap();
        assert_eq!(s.source("a"), Some(&SecretSource::File(file.clone())));
        assert_eq!(
            s.source("FROM_ENV"),
            Some(&SecretSource::Env("FROM_ENV".into()))
        );
        assert_eq!(s.source("b"), Some(&SecretSource::Env("VAR".into())));
        assert_eq!(s.source("c"), Some(&SecretSource::Env("VAR".into())));
        assert_eq!(s.value("a").unwrap().unwrap().as_bytes(), b"v");
        assert!(s.value("zz").unwrap().is_none());

        // The id alone names a file when no variable has that name; a later entry wins.
        let s = Secrets::resolve(
            &[
                spec(f, None, None),
                spec("d", None, Some("X")),
                spec("d", Some(f), None),
            ],
            set,
        )
        .unwrap();
        assert_eq!(s.source(f), Some(&SecretSource::File(file.clone())));
        assert_eq!(s.source("d"), Some(&SecretSource::File(file.clone())));
        let e = Secrets::resolve(&[spec("d", Some("/nope/x"), None)], set).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret \"d\": cannot read /nope/x: No such file or directory (os error 2)"
        );
        let e = Secrets::resolve(&[spec("missing", None, None)], set).unwrap_err();
        assert!(e.to_string().contains("cannot read missing"), "{e}");
        assert!(matches!(
            Secrets::resolve(&[spec("", Some(f), None)], set),
            Err(SecretError::MissingId)
        ));
    }

    #[test]
    fn values_are_bounded_and_unset_variables_read_empty() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let e = Secrets::resolve(&[spec("big", big.to_str(), None)], |_| false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret \"big\" is too big (512001 bytes): a secret may hold at most 500 KiB"
        );
        let s = Secrets::resolve(
            &[spec("e", None, Some("RBUILD_TEST_SURELY_UNSET_VAR"))],
            |_| false,
        )
        .unwrap();
        assert_eq!(s.value("e").unwrap().unwrap().as_bytes(), b"");
    }
}
