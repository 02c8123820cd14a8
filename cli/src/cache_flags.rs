//! `--cache-to` / `--cache-from`: parsing docker's `type=…,key=value` entries, importing
//! cache metadata before a build and exporting the build's cache after it.

use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_cache::registry::{Reference, RegistryClient};
use rbuild_cache::remote_cache::{self, CacheConfig, CacheSource, ImportedCache};
use rbuild_graph::{BuildGraph, VertexId};
use rbuild_solver::cache_export::{CacheMode, export_records};
use rbuild_solver::{Outcome, SolveOptions, Solver};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Where `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    /// An OCI layout directory.
    Local {
        dest: PathBuf,
        tag: String,
        mode: CacheMode,
        ignore_error: bool,
    },
    /// A registry repository and tag.
    Registry {
        reference: String,
        mode: CacheMode,
        ignore_error: bool,
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
        },
        "registry" => CacheTo::Registry {
            reference: take(&mut m, "ref").ok_or_else(|| {
                format!("{flag} {raw:?}: type=registry needs ref=REGISTRY/REPO:TAG")
            })?,
            mode: mode(flag, &mut m)?,
            ignore_error: bool_attr(flag, &mut m, "ignore-error")?,
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

/// Reads the metadata of every `--cache-from` source (no layer blob). A source that cannot
/// be read is a warning and the build goes on without it, as with docker.
pub fn import(
    runtime: &tokio::runtime::Runtime,
    client: &RegistryClient,
    from: &[CacheFrom],
    warn: &mut dyn FnMut(String),
) -> Option<Arc<ImportedCache>> {
    if from.is_empty() {
        return None;
    }
    let mut imported = ImportedCache::new();
    for spec in from {
        let got = match spec {
            CacheFrom::Local { src, tag } => remote_cache::load_local(src, tag)
                .map(|cfg| (CacheSource::Local(src.clone()), cfg))
                .map_err(anyhow::Error::from),
            CacheFrom::Registry { reference } => Reference::parse(reference)
                .map_err(anyhow::Error::from)
                .and_then(|r| {
                    let cfg = runtime
                        .block_on(remote_cache::load_registry(client, &r))
                        .map_err(anyhow::Error::from)?;
                    let source = CacheSource::Registry {
                        client: client.clone(),
                        reference: r,
                    };
                    Ok((source, cfg))
                }),
        };
        match got {
            Ok((source, cfg)) => imported.add(source, cfg),
            Err(e) => warn(format!(
                "WARNING: cannot import cache from {}: {e}; building without it",
                describe_from(spec)
            )),
        }
    }
    Some(Arc::new(imported))
}

fn describe_from(spec: &CacheFrom) -> String {
    match spec {
        CacheFrom::Local { src, .. } => format!("type=local,src={}", src.display()),
        CacheFrom::Registry { reference } => format!("type=registry,ref={reference}"),
    }
}

/// The one-line summary printed after a build that imported cache.
pub fn import_summary(imported: &ImportedCache) -> String {
    let (blobs, bytes) = imported.fetched();
    format!(
        "imported cache: {} records, fetched {blobs} blobs ({bytes} bytes)",
        imported.len()
    )
}

/// What a build hands the cache export.
pub struct Built<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub client: &'a RegistryClient,
    pub solver: &'a Solver,
    pub opts: &'a SolveOptions,
    pub graph: &'a BuildGraph,
    pub outcomes: &'a HashMap<VertexId, Outcome>,
    pub root: VertexId,
}

impl Built<'_> {
    /// The records `mode` exports.
    fn records(&self, mode: CacheMode) -> Result<CacheConfig> {
        Ok(CacheConfig::new(export_records(
            self.graph,
            self.outcomes,
            self.root,
            mode,
        )?))
    }

    /// Fetches the imported blobs an export needs and the destination lacks.
    fn fetch(&self, needed: &[rbuild_cache::Layer]) -> Result<()> {
        self.runtime
            .block_on(self.solver.ensure_layers(needed, self.opts))
            .context("cannot get the layers to export")
    }
}

/// Runs the local and registry `--cache-to` exports (inline metadata is written by the
/// export vertex, with the image).
/// A failure fails the build unless the entry says `ignore-error=true`.
pub fn export(
    store: &Store,
    built: &Built,
    to: &[CacheTo],
    note: &mut dyn FnMut(String),
) -> Result<()> {
    for spec in to {
        let (ignore_error, what) = match spec {
            CacheTo::Inline => continue,
            CacheTo::Local {
                dest, ignore_error, ..
            } => (*ignore_error, format!("type=local,dest={}", dest.display())),
            CacheTo::Registry {
                reference,
                ignore_error,
                ..
            } => (*ignore_error, format!("type=registry,ref={reference}")),
        };
        let result = export_one(store, built, spec);
        match result {
            Ok(s) => note(format!(
                "exported cache to {what}: {} records, {} blobs, manifest {}",
                s.records, s.blobs, s.manifest_digest
            )),
            Err(e) if ignore_error => note(format!(
                "WARNING: cache export to {what} failed (ignored): {e:#}"
            )),
            Err(e) => return Err(e.context(format!("cannot export the cache to {what}"))),
        }
    }
    Ok(())
}

fn export_one(store: &Store, built: &Built, spec: &CacheTo) -> Result<remote_cache::ExportSummary> {
    match spec {
        CacheTo::Inline => bail!("inline cache is written with the image"),
        CacheTo::Local {
            dest, tag, mode, ..
        } => {
            let cfg = built.records(*mode)?;
            built.fetch(&remote_cache::needed_for_local(store, &cfg, dest))?;
            Ok(remote_cache::export_local(store, &cfg, dest, tag)?)
        }
        CacheTo::Registry {
            reference, mode, ..
        } => {
            let cfg = built.records(*mode)?;
            let r = Reference::parse(reference)?;
            let needed = built.runtime.block_on(remote_cache::needed_for_registry(
                store,
                built.client,
                &r,
                &cfg,
            ))?;
            built.fetch(&needed)?;
            Ok(built.runtime.block_on(remote_cache::export_registry(
                store,
                built.client,
                &r,
                &cfg,
            ))?)
        }
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
                ignore_error: false
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
                ignore_error: true
            }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheTo::Inline);
        assert_eq!(
            parse_cache_to("localhost:5000/c:1").unwrap(),
            CacheTo::Registry {
                reference: "localhost:5000/c:1".into(),
                mode: CacheMode::Min,
                ignore_error: false
            }
        );
        for (bad, says) in [
            ("type=local", "dest=DIR"),
            ("type=registry", "ref="),
            ("type=gha", "not supported"),
            ("type=local,dest=x,mode=all", "mode=min or mode=max"),
            ("type=inline,mode=max", "only mode=min"),
            ("type=local,dest=x,colour=red", "unknown attribute"),
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

    #[test]
    fn unreadable_sources_are_warnings() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let client = RegistryClient::new(Default::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut warnings = Vec::new();
        let imported = import(
            &rt,
            &client,
            &[CacheFrom::Local {
                src: dir.path().join("none"),
                tag: "latest".into(),
            }],
            &mut |w| warnings.push(w),
        )
        .unwrap();
        assert!(imported.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("cannot import cache from type=local"),
            "{}",
            warnings[0]
        );
        assert!(import(&rt, &client, &[], &mut |_| {}).is_none());
    }
}
