//! The build flags that say what goes into the image besides the Dockerfile: `--label`
//! (config labels), `--annotation` (manifest annotations), and the attestation flags
//! (`--provenance`, `--sbom`, `--attest`), which rbuild accepts only turned off.

use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// `--label KEY=VALUE` (a bare `KEY` is an empty value, as docker's); a later one wins.
pub fn labels(values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
        if k.trim().is_empty() {
            bail!("--label {v:?}: the label has no name; write KEY=VALUE");
        }
        out.insert(k.to_string(), val.to_string());
    }
    Ok(out)
}

/// `--annotation [TYPE[PLATFORM]:]KEY=VALUE`, buildx's form. rbuild writes one image
/// manifest per image, so `manifest` (the default) is what it can annotate; an index or a
/// descriptor is refused, and so is a platform other than `host` (checked by
/// `check_platform`).
pub fn annotations(
    values: &[String],
    check_platform: impl Fn(&str) -> Result<()>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((key, value)) = v.split_once('=') else {
            bail!("--annotation {v:?}: write it as KEY=VALUE or manifest:KEY=VALUE");
        };
        let key = match key.split_once(':') {
            Some((kind, rest)) => {
                let (kind, platform) = match kind.split_once('[') {
                    Some((k, p)) => (k, Some(p.trim_end_matches(']'))),
                    None => (kind, None),
                };
                match kind {
                    "manifest" => {}
                    "index" | "index-descriptor" | "manifest-descriptor" => bail!(
                        "--annotation {v:?}: rbuild writes an image manifest, not an image index or its descriptors, so only manifest annotations can be written: use manifest:KEY=VALUE or KEY=VALUE"
                    ),
                    // Not a type: the colon is part of the key.
                    _ => {
                        out.insert(key.to_string(), value.to_string());
                        continue;
                    }
                }
                if let Some(p) = platform {
                    check_platform(p)?;
                }
                rest
            }
            None => key,
        };
        if key.is_empty() {
            bail!("--annotation {v:?}: the annotation has no key");
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// Why attestations are refused, for every flag that would ask for one.
const NO_ATTESTATIONS: &str = "rbuild writes no provenance or SBOM attestations yet (it writes none unless asked, unlike buildx, which adds a min provenance when pushing); turn it off with false";

/// `--provenance`, `--sbom` and `--attest`: accepted when they turn attestations off
/// (`false`, `0`, `disabled=true`; `--attest type=…,disabled=true`), refused otherwise.
pub fn check_attestations(
    provenance: Option<&str>,
    sbom: Option<&str>,
    attest: &[String],
) -> Result<()> {
    for (flag, value) in [("--provenance", provenance), ("--sbom", sbom)] {
        if let Some(v) = value
            && !is_off(v)
        {
            bail!("{flag}={v}: {NO_ATTESTATIONS} ({flag}=false)");
        }
    }
    for a in attest {
        let fields: Vec<(&str, &str)> = a
            .split(',')
            .map(|f| f.split_once('=').unwrap_or((f, "")))
            .collect();
        let kind = fields.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
        let Some(kind @ ("provenance" | "sbom")) = kind else {
            bail!("--attest {a:?}: give type=provenance or type=sbom");
        };
        let disabled = fields
            .iter()
            .any(|(k, v)| *k == "disabled" && matches!(*v, "true" | "1"));
        if !disabled {
            bail!("--attest {a}: {NO_ATTESTATIONS} (--attest type={kind},disabled=true)");
        }
    }
    Ok(())
}

fn is_off(v: &str) -> bool {
    matches!(v.trim(), "false" | "0" | "disabled=true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_annotations() {
        let l = labels(&["a=1".into(), "b".into(), "a=2=x".into()]).unwrap();
        assert_eq!(l["a"], "2=x");
        assert_eq!(l["b"], "");
        assert!(labels(&["=x".into()]).is_err());

        let host_only = |p: &str| -> Result<()> {
            if p == "linux/amd64" {
                Ok(())
            } else {
                bail!("not the host: {p}")
            }
        };
        let a = annotations(
            &[
                "org.opencontainers.image.source=https://x".into(),
                "manifest:com.example.a=1".into(),
                "manifest[linux/amd64]:com.example.b=2".into(),
                "urn:x:y=3".into(),
            ],
            host_only,
        )
        .unwrap();
        assert_eq!(a["org.opencontainers.image.source"], "https://x");
        assert_eq!(a["com.example.a"], "1");
        assert_eq!(a["com.example.b"], "2");
        assert_eq!(a["urn:x:y"], "3");
        let e = annotations(&["index:k=v".into()], host_only).unwrap_err();
        assert!(e.to_string().contains("not an image index"), "{e}");
        assert!(annotations(&["manifest[linux/arm64]:k=v".into()], host_only).is_err());
        assert!(annotations(&["novalue".into()], host_only).is_err());
    }

    #[test]
    fn attestations_only_off() {
        check_attestations(Some("false"), Some("0"), &[]).unwrap();
        check_attestations(
            None,
            None,
            &[
                "type=provenance,disabled=true".into(),
                "type=sbom,disabled=true".into(),
            ],
        )
        .unwrap();
        let e = check_attestations(Some("mode=max"), None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--provenance=mode=max: rbuild writes no provenance"),
            "{e}"
        );
        let e = check_attestations(None, Some("true"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--sbom=false"), "{e}");
        assert!(check_attestations(None, None, &["type=sbom".into()]).is_err());
        assert!(check_attestations(None, None, &["type=other,disabled=true".into()]).is_err());
    }
}
