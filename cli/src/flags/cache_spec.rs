//! `--cache-to` / `--cache-from` values: docker's `type=…,key=value` entries, read into
//! where a cache export writes and where an import reads.

use anyhow::{Result, anyhow};
use rbuild_cache::remote_cache::ExportOptions;
use rbuild_solver::cache_export::CacheMode;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    /// An OCI layout directory.
    Local {
        dest: PathBuf,
        tag: String,
        mode: CacheMode,
        ignore_error: bool,
        /// `merge=`, `max-size=`: what happens to the records already there.
        share: ExportOptions,
        /// `cache-mounts=true`: the contents of the build's cache mounts go too.
        cache_mounts: bool,
    },
    /// A registry repository and tag.
    Registry {
        reference: String,
        mode: CacheMode,
        ignore_error: bool,
        share: ExportOptions,
        cache_mounts: bool,
    },
    /// Into the built image's config (always mode=min, as in BuildKit).
    Inline,
}

/// Where `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    Local {
        src: PathBuf,
        tag: String,
    },
    /// A cache manifest or an image with inline cache metadata.
    Registry {
        reference: String,
    },
}

/// BuildKit attributes that change only how blobs are encoded; rbuild exports layers as
/// they are stored, so these are accepted and have no effect.
const IGNORED_ATTRS: &[&str] = &[
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatype",
    "image-manifest",
];

/// `type=x,k=v,…` → map; a bare value (no `=`) is `type=registry,ref=VALUE`, as in docker.
fn attrs(flag: &str, raw: &str) -> Result<BTreeMap<String, String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!("{flag}: empty value"));
    }
    if !raw.contains('=') {
        return Ok(BTreeMap::from([
            ("type".to_string(), "registry".to_string()),
            ("ref".to_string(), raw.to_string()),
        ]));
    }
    let mut out = BTreeMap::new();
    for part in raw.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "{flag} {raw:?}: {part:?} is not key=value (example: type=local,dest=/tmp/cache)"
            ));
        };
        let k = k.trim().to_ascii_lowercase();
        if out.insert(k.clone(), v.trim().to_string()).is_some() {
            return Err(format!("{flag} {raw:?}: {k} is given twice"));
        }
    }
    Ok(out)
}

fn take(map: &mut BTreeMap<String, String>, key: &str) -> Option<String> {
    map.remove(key).filter(|v| !v.is_empty())
}

fn no_leftovers(flag: &str, raw: &str, map: BTreeMap<String, String>) -> Result<(), String> {
    match map.keys().find(|k| !IGNORED_ATTRS.contains(&k.as_str())) {
        Some(k) => Err(format!("{flag} {raw:?}: unknown attribute {k:?}")),
        None => Ok(()),
    }
}

fn unsupported_type(flag: &str, t: &str) -> String {
    format!(
        "{flag}: cache type {t:?} is not supported; use type=local, type=registry or type=inline"
    )
}

fn mode(flag: &str, map: &mut BTreeMap<String, String>) -> Result<CacheMode, String> {
    match take(map, "mode").as_deref() {
        None | Some("min") => Ok(CacheMode::Min),
        Some("max") => Ok(CacheMode::Max),
        Some(other) => Err(format!("{flag}: mode={other}: use mode=min or mode=max")),
    }
}

fn bool_attr(flag: &str, map: &mut BTreeMap<String, String>, key: &str) -> Result<bool, String> {
    match take(map, key).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!("{flag}: {key}={other}: use true or false")),
    }
}

/// A size: bytes, or a number with a binary unit (`512k`, `10MB`, `2GiB`, `1t`), as
/// docker's memory flags read it.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let shift = match &v[digits..] {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `merge=true|false` (default true) and `max-size=SIZE` of a local or registry export.
fn share(flag: &str, map: &mut BTreeMap<String, String>) -> Result<ExportOptions, String> {
    let merge = match take(map, "merge").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(format!("{flag}: merge={other}: use true or false")),
    };
    let max_size = match take(map, "max-size") {
        None => None,
        Some(v) => Some(parse_size(&v).ok_or_else(|| {
            format!("{flag}: max-size={v}: use a size such as 500MB or 2GiB (bytes without a unit)")
        })?),
    };
    if max_size.is_some() && !merge {
        return Err(format!(
            "{flag}: max-size bounds a merged cache; it cannot be used with merge=false"
        ));
    }
    Ok(ExportOptions { merge, max_size })
}

/// Parses one `--cache-to` value.
pub fn parse_cache_to(raw: &str) -> Result<CacheTo, String> {
    let flag = "--cache-to";
    let mut m = attrs(flag, raw)?;
    let kind = take(&mut m, "type").ok_or_else(|| {
        format!("{flag} {raw:?}: type= is missing (type=local, type=registry or type=inline)")
    })?;
    let out = match kind.as_str() {
        "local" => CacheTo::Local {
            dest: take(&mut m, "dest")
                .map(PathBuf::from)
                .ok_or_else(|| format!("{flag} {raw:?}: type=local needs dest=DIR"))?,
            tag: take(&mut m, "tag").unwrap_or_else(|| "latest".into()),
            mode: mode(flag, &mut m)?,
            ignore_error: bool_attr(flag, &mut m, "ignore-error")?,
            share: share(flag, &mut m)?,
            cache_mounts: bool_attr(flag, &mut m, "cache-mounts")?,
        },
        "registry" => CacheTo::Registry {
            reference: take(&mut m, "ref").ok_or_else(|| {
                format!("{flag} {raw:?}: type=registry needs ref=REGISTRY/REPO:TAG")
            })?,
            mode: mode(flag, &mut m)?,
            ignore_error: bool_attr(flag, &mut m, "ignore-error")?,
            share: share(flag, &mut m)?,
            cache_mounts: bool_attr(flag, &mut m, "cache-mounts")?,
        },
        "inline" => {
            if mode(flag, &mut m)? == CacheMode::Max {
                return Err(format!(
                    "{flag}: type=inline supports only mode=min; export mode=max with type=registry or type=local"
                ));
            }
            CacheTo::Inline
        }
        other => return Err(unsupported_type(flag, other)),
    };
    no_leftovers(flag, raw, m)?;
    Ok(out)
}

/// Parses one `--cache-from` value.
pub fn parse_cache_from(raw: &str) -> Result<CacheFrom, String> {
    let flag = "--cache-from";
    let mut m = attrs(flag, raw)?;
    let kind = take(&mut m, "type")
        .ok_or_else(|| format!("{flag} {raw:?}: type= is missing (type=local or type=registry)"))?;
    let out = match kind.as_str() {
        "local" => CacheFrom::Local {
            src: take(&mut m, "src")
                .map(PathBuf::from)
                .ok_or_else(|| format!("{flag} {raw:?}: type=local needs src=DIR"))?,
            tag: take(&mut m, "tag").unwrap_or_else(|| "latest".into()),
        },
        "registry" => CacheFrom::Registry {
            reference: take(&mut m, "ref").ok_or_else(|| {
                format!("{flag} {raw:?}: type=registry needs ref=REGISTRY/REPO:TAG")
            })?,
        },
        other => return Err(unsupported_type(flag, other)),
    };
    // `digest=` pins a local cache in BuildKit; rbuild reads the tag.
    m.remove("digest");
    no_leftovers(flag, raw, m)?;
    Ok(out)
}

/// Parsed `--cache-to` and `--cache-from` flags.
#[derive(Debug, Default)]
pub struct CacheFlags {
    pub to: Vec<CacheTo>,
    pub from: Vec<CacheFrom>,
}

impl CacheFlags {
    pub fn parse(to: &[String], from: &[String]) -> Result<CacheFlags> {
        Ok(CacheFlags {
            to: to
                .iter()
                .map(|r| parse_cache_to(r))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow!(e))?,
            from: from
                .iter()
                .map(|r| parse_cache_from(r))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow!(e))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_entries() {
        assert_eq!(
            parse_cache_to("type=local,dest=/tmp/c,mode=max").unwrap(),
            CacheTo::Local {
                dest: "/tmp/c".into(),
                tag: "latest".into(),
                mode: CacheMode::Max,
                ignore_error: false,
                share: ExportOptions::default(),
                cache_mounts: false,
            }
        );
        assert_eq!(
            parse_cache_to(
                "type=registry,ref=localhost:5000/c:1,ignore-error=true,compression=zstd"
            )
            .unwrap(),
            CacheTo::Registry {
                reference: "localhost:5000/c:1".into(),
                mode: CacheMode::Min,
                ignore_error: true,
                share: ExportOptions::default(),
                cache_mounts: false,
            }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheTo::Inline);
        assert_eq!(
            parse_cache_to("type=registry,ref=r/c:x,max-size=2GiB").unwrap(),
            CacheTo::Registry {
                reference: "r/c:x".into(),
                mode: CacheMode::Min,
                ignore_error: false,
                share: ExportOptions {
                    merge: true,
                    max_size: Some(2 << 30)
                },
                cache_mounts: false,
            }
        );
        assert_eq!(
            parse_cache_to("type=local,dest=d,merge=false,cache-mounts=true").unwrap(),
            CacheTo::Local {
                dest: "d".into(),
                tag: "latest".into(),
                mode: CacheMode::Min,
                ignore_error: false,
                share: ExportOptions {
                    merge: false,
                    max_size: None
                },
                cache_mounts: true,
            }
        );
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(
            parse_cache_to("localhost:5000/c:1").unwrap(),
            CacheTo::Registry {
                reference: "localhost:5000/c:1".into(),
                mode: CacheMode::Min,
                ignore_error: false,
                share: ExportOptions::default(),
                cache_mounts: false,
            }
        );
        for (bad, says) in [
            ("type=local", "dest=DIR"),
            ("type=registry", "ref="),
            ("type=gha", "not supported"),
            ("type=local,dest=x,mode=all", "mode=min or mode=max"),
            ("type=inline,mode=max", "only mode=min"),
            ("type=local,dest=x,colour=red", "unknown attribute"),
            ("type=local,dest=x,max-size=lots", "such as 500MB"),
            ("type=local,dest=x,max-size=1x", "such as 500MB"),
            ("type=local,dest=x,merge=maybe", "true or false"),
            (
                "type=registry,ref=r/c,merge=false,max-size=1G",
                "merge=false",
            ),
            ("dest=x", "type= is missing"),
            ("type=local,dest", "not key=value"),
            ("type=local,dest=a,dest=b", "twice"),
            ("", "empty"),
        ] {
            let e = parse_cache_to(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn cache_from_entries() {
        assert_eq!(
            parse_cache_from("type=local,src=/tmp/c").unwrap(),
            CacheFrom::Local {
                src: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(
            parse_cache_from("myregistry:5000/app:1").unwrap(),
            CacheFrom::Registry {
                reference: "myregistry:5000/app:1".into()
            }
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=r/app").unwrap(),
            CacheFrom::Registry {
                reference: "r/app".into()
            }
        );
        assert!(parse_cache_from("type=local").is_err());
        assert!(parse_cache_from("type=inline").is_err());
        assert!(parse_cache_from("type=local,src=x,mode=max").is_err());
    }
}
