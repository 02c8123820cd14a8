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

/// Which attestations a build adds to its image index (`--provenance`, `--sbom`,
/// `--attest`). None unless asked: buildx adds a min provenance when it pushes, rbuild
/// keeps a build's digests the same whether or not it pushes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attestations {
    pub provenance: Option<ProvenanceMode>,
    pub sbom: bool,
}

/// SLSA provenance detail: `min` leaves out the build arguments, `max` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenanceMode {
    Min,
    Max,
}

impl Attestations {
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom
    }
}

/// Reads `--provenance`, `--sbom` and then each `--attest type=…` (a later one wins), as
/// buildx spells them: `true`/`false`/`1`/`0`, or `key=value` lists (`mode=min|max`,
/// `disabled=true`).
pub fn attestations(
    provenance: Option<&str>,
    sbom: Option<&str>,
    attest: &[String],
) -> Result<Attestations> {
    let mut out = Attestations::default();
    if let Some(v) = provenance {
        out.provenance = provenance_value("--provenance", v, v)?;
    }
    if let Some(v) = sbom {
        out.sbom = sbom_value("--sbom", v, v)?;
    }
    for a in attest {
        let mut rest = Vec::new();
        let mut kind = None;
        for f in a.split(',') {
            match f.split_once('=') {
                Some(("type", t)) => kind = Some(t),
                _ => rest.push(f),
            }
        }
        let rest = rest.join(",");
        let rest = if rest.is_empty() { "true" } else { &rest };
        match kind {
            Some("provenance") => out.provenance = provenance_value("--attest", a, rest)?,
            Some("sbom") => out.sbom = sbom_value("--attest", a, rest)?,
            _ => bail!("--attest {a:?}: give type=provenance or type=sbom"),
        }
    }
    Ok(out)
}

/// `true`, `false`, or `key=value` fields; calls `field` for each key other than
/// `disabled`. Returns whether the attestation is on.
fn switch_or_fields(
    flag: &str,
    whole: &str,
    v: &str,
    mut field: impl FnMut(&str, &str) -> Result<()>,
) -> Result<bool> {
    match v.trim() {
        "true" | "1" => return Ok(true),
        "false" | "0" => return Ok(false),
        _ => {}
    }
    let mut on = true;
    for f in v.split(',') {
        let Some((k, val)) = f.split_once('=') else {
            bail!(
                "{flag} {whole:?}: write true, false or KEY=VALUE fields (mode=max, disabled=true)"
            );
        };
        match k {
            "disabled" => on = !matches!(val, "true" | "1"),
            _ => field(k, val)?,
        }
    }
    Ok(on)
}

fn provenance_value(flag: &str, whole: &str, v: &str) -> Result<Option<ProvenanceMode>> {
    let mut mode = ProvenanceMode::Min;
    let on = switch_or_fields(flag, whole, v, |k, val| {
        match (k, val) {
            ("mode", "min") => mode = ProvenanceMode::Min,
            ("mode", "max") => mode = ProvenanceMode::Max,
            ("mode", _) => bail!("{flag} {whole:?}: mode is min or max"),
            ("version", "v0.2") | ("builder-id", _) => {}
            ("version", _) => {
                bail!("{flag} {whole:?}: rbuild writes SLSA provenance v0.2 (version=v0.2)")
            }
            _ => {
                bail!("{flag} {whole:?}: unknown field {k:?} (mode, version, builder-id, disabled)")
            }
        }
        Ok(())
    })?;
    Ok(on.then_some(mode))
}

fn sbom_value(flag: &str, whole: &str, v: &str) -> Result<bool> {
    switch_or_fields(flag, whole, v, |k, _| {
        if k == "generator" {
            bail!(
                "{flag} {whole:?}: rbuild writes the SBOM itself (SPDX, from the image's dpkg and apk databases); leave out generator="
            );
        }
        bail!("{flag} {whole:?}: unknown field {k:?} (disabled)")
    })
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
    fn attestations_as_buildx_spells_them() {
        let none = attestations(Some("false"), Some("0"), &[]).unwrap();
        assert!(!none.any());
        let a = attestations(Some("mode=max"), Some("true"), &[]).unwrap();
        assert_eq!(a.provenance, Some(ProvenanceMode::Max));
        assert!(a.sbom);
        assert_eq!(
            attestations(Some("1"), None, &[]).unwrap().provenance,
            Some(ProvenanceMode::Min)
        );
        // --attest comes after the flags and wins.
        let a = attestations(
            Some("true"),
            None,
            &["type=provenance,disabled=true".into(), "type=sbom".into()],
        )
        .unwrap();
        assert_eq!(a.provenance, None);
        assert!(a.sbom);
        let e = |p: Option<&str>, s: Option<&str>, at: &[String]| {
            attestations(p, s, at).unwrap_err().to_string()
        };
        assert!(e(Some("mode=full"), None, &[]).contains("mode is min or max"));
        assert!(e(None, Some("generator=img"), &[]).contains("leave out generator="));
        assert!(e(None, None, &["type=other".into()]).contains("type=provenance or type=sbom"));
        assert!(e(Some("version=v1"), None, &[]).contains("v0.2"));
    }
}
