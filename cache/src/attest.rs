//! Attestations: in-toto statements (SLSA provenance, an SPDX SBOM) about an image, kept
//! as an *attestation manifest* beside it in its image index, the way buildx pushes them:
//! an OCI manifest whose layers are the statements (`application/vnd.in-toto+json`, each
//! annotated with its predicate type), listed in the index with the platform
//! `unknown/unknown` and annotations naming the image manifest it is about. Tools that pick
//! a platform from the index never take it for an image.
//!
//! The config of an attestation manifest lists its layer digests as `diff_ids` (the
//! statements are not compressed), so the store reads it as it reads any image; it is not
//! an entry of the store's `index.json` (it would be listed as an image): prune keeps it
//! through the index that names it.

use crate::error::CacheError;
use crate::oci::{descriptor, manifest_json, with_annotations};
use crate::{Store, StoredImage};
pub use oci_spec::image::Descriptor;
use oci_spec::image::{
    ImageManifest, ImageManifestBuilder, MediaType, Platform, PlatformBuilder, SCHEMA_VERSION,
};
use rbuild_registry::reference::{familiar_name, split_tag};
use serde_json::{Value, json};
use std::path::Path;

/// The media type of an in-toto statement layer.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The layer annotation naming a statement's predicate type.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Index entry annotations: what kind of entry, and the manifest it is about.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// SLSA provenance v0.2, as BuildKit writes it.
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v0.2";
/// An SPDX document.
pub const SPDX: &str = "https://spdx.dev/Document";

/// One statement's predicate, before it is wrapped.
pub struct Predicate {
    pub predicate_type: &'static str,
    pub predicate: Value,
}

/// Whether an index entry is an attestation manifest.
pub fn is_attestation(d: &Descriptor) -> bool {
    crate::oci::annotation(d, REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST)
}

/// The in-toto statement of `p` about the image manifest `manifest_digest`, named
/// `subject` (`pkg:docker/NAME@TAG?platform=…`, or `_` for an unnamed image).
pub fn statement(subject: &str, manifest_digest: &str, p: &Predicate) -> Value {
    let hex = manifest_digest
        .strip_prefix("sha256:")
        .unwrap_or(manifest_digest);
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": p.predicate_type,
        "subject": [{ "name": subject, "digest": { "sha256": hex } }],
        "predicate": p.predicate,
    })
}

/// `pkg:docker/…` for an image name (`docker.io/library/app:1` → `pkg:docker/app@1`) on
/// `platform` (`linux/arm64/v8`), as BuildKit names subjects and materials.
pub fn docker_purl(name: &str, platform: &str) -> String {
    let (name, digest) = match name.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (name, None),
    };
    let (repo, tag) = split_tag(name);
    let mut out = format!("pkg:docker/{}", familiar_name(repo));
    if let Some(v) = digest.or(tag) {
        out.push('@');
        out.push_str(v);
    }
    out.push_str("?platform=");
    out.push_str(&platform.replace('/', "%2F"));
    out
}

/// One installed package of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `deb` or `apk`.
    pub kind: &'static str,
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// The installed packages of a dpkg `status` file (paragraphs whose `Status` ends in
/// `installed`).
pub fn dpkg_packages(status: &str) -> Vec<Package> {
    paragraphs(status, ": ")
        .into_iter()
        .filter(|f| {
            field(f, "Status").is_some_and(|s| s.split_whitespace().last() == Some("installed"))
        })
        .filter_map(|f| {
            Some(Package {
                kind: "deb",
                name: field(&f, "Package")?.to_string(),
                version: field(&f, "Version").unwrap_or_default().to_string(),
                arch: field(&f, "Architecture").unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// The packages of an apk `installed` database (`P:`, `V:`, `A:` lines).
pub fn apk_packages(installed: &str) -> Vec<Package> {
    paragraphs(installed, ":")
        .into_iter()
        .filter_map(|f| {
            Some(Package {
                kind: "apk",
                name: field(&f, "P")?.to_string(),
                version: field(&f, "V").unwrap_or_default().to_string(),
                arch: field(&f, "A").unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// Blank-line separated paragraphs of `key SEP value` lines (continuation lines, which
/// start with a space, are skipped: no field used here has them).
fn paragraphs(text: &str, sep: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((k, v)) = line.split_once(sep) {
            cur.push((k.to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// An os-release's `ID` and `VERSION_ID` (`debian`, `12`), when it has them.
pub type Distro = (Option<String>, Option<String>);

/// `ID` and `VERSION_ID` of an os-release file (`debian`, `12`).
pub fn os_release(text: &str) -> Distro {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    (get("ID"), get("VERSION_ID"))
}

/// An SPDX 2.3 document of `packages`, named for the image `name`; `namespace_id` makes
/// its namespace unique (the image's config digest), `created` is an RFC 3339 time.
pub fn spdx_document(
    name: &str,
    namespace_id: &str,
    created: &str,
    packages: &[Package],
    distro: Distro,
) -> Value {
    let qualifier = match &distro {
        (Some(id), Some(v)) => format!("&distro={id}-{v}"),
        (Some(id), None) => format!("&distro={id}"),
        _ => String::new(),
    };
    let namespace = match &distro.0 {
        Some(id) => id.as_str(),
        None => "unknown",
    };
    let pkgs: Vec<Value> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let purl = format!(
                "pkg:{}/{namespace}/{}@{}?arch={}{qualifier}",
                p.kind,
                p.name,
                purl_escape(&p.version),
                p.arch
            );
            json!({
                "name": p.name,
                "SPDXID": format!("SPDXRef-Package-{}-{i}", p.kind),
                "versionInfo": p.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": purl,
                }],
            })
        })
        .collect();
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://rbuild.invalid/spdx/{namespace_id}"),
        "creationInfo": {
            "created": created,
            "creators": [concat!("Tool: rbuild-", env!("CARGO_PKG_VERSION"))],
        },
        "packages": pkgs,
    })
}

/// A version as a purl writes it (`:` and `+` escaped).
fn purl_escape(v: &str) -> String {
    v.replace('%', "%25")
        .replace(':', "%3A")
        .replace('+', "%2B")
}

impl Store {
    /// The file at `path` (absolute, no `..`) in `image`'s filesystem, if it is a regular
    /// file there: looked up from the top layer down, stopping at a whiteout or an opaque
    /// directory on its way.
    pub fn image_file(
        &self,
        image: &StoredImage,
        path: &str,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        let rel = Path::new(path.trim_start_matches('/'));
        for layer in image.layers.iter().rev() {
            let snap = self.snapshot(layer)?;
            let p = snap.join(rel);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_file() => {
                    return std::fs::read(&p)
                        .map(Some)
                        .map_err(|source| CacheError::Io {
                            op: "read",
                            path: p,
                            source,
                        });
                }
                Ok(_) => return Ok(None),
                Err(_) => {}
            }
            // An opaque directory (or a whiteout) on the way hides the layers below.
            let mut dir = snap.clone();
            for c in rel.parent().into_iter().flat_map(|p| p.components()) {
                dir.push(c);
                let Ok(m) = std::fs::symlink_metadata(&dir) else {
                    break;
                };
                if rbuild_fsutil::whiteout::is_whiteout(&m)
                    || rbuild_fsutil::whiteout::is_opaque(&dir)
                {
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// The packages installed in `image` (dpkg's status, apk's database) and its
    /// os-release (`ID`, `VERSION_ID`).
    pub fn image_packages(
        &self,
        image: &StoredImage,
    ) -> Result<(Vec<Package>, Distro), CacheError> {
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        let mut packages = Vec::new();
        if let Some(s) = self.image_file(image, "/var/lib/dpkg/status")? {
            packages.extend(dpkg_packages(&text(s)));
        }
        if let Some(s) = self.image_file(image, "/lib/apk/db/installed")? {
            packages.extend(apk_packages(&text(s)));
        }
        let release = match self.image_file(image, "/etc/os-release")? {
            Some(b) => os_release(&text(b)),
            None => match self.image_file(image, "/usr/lib/os-release")? {
                Some(b) => os_release(&text(b)),
                None => (None, None),
            },
        };
        Ok((packages, release))
    }

    /// Stores the attestation manifest of `statements` (serialized in-toto statements,
    /// with their predicate types) about the image manifest `subject`; returns its index
    /// entry (platform `unknown/unknown`, annotated with what it is about).
    pub fn put_attestation(
        &self,
        subject: &str,
        statements: &[(&str, Vec<u8>)],
    ) -> Result<Descriptor, CacheError> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (predicate_type, bytes) in statements {
            let digest = self.put_blob(bytes)?;
            let d = descriptor(
                MediaType::Other(IN_TOTO.into()),
                &digest,
                bytes.len() as u64,
            )?;
            layers.push(with_annotations(d, &[(PREDICATE_TYPE, predicate_type)]));
            diff_ids.push(digest);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .map_err(|e| self.corrupt_attestation(e.to_string()))?;
        let config_digest = self.put_blob(&config)?;
        let m: ImageManifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(
                MediaType::ImageConfig,
                &config_digest,
                config.len() as u64,
            )?)
            .layers(layers)
            .build()
            .map_err(|e| self.corrupt_attestation(e.to_string()))?;
        let bytes = manifest_json(&m);
        let digest = self.put_blob(&bytes)?;
        let mut entry = descriptor(MediaType::ImageManifest, &digest, bytes.len() as u64)?;
        entry.set_platform(Some(unknown_platform()?));
        Ok(with_annotations(
            entry,
            &[
                (REFERENCE_DIGEST, subject),
                (REFERENCE_TYPE, ATTESTATION_MANIFEST),
            ],
        ))
    }

    fn corrupt_attestation(&self, reason: String) -> CacheError {
        CacheError::Corrupt {
            path: self.oci_dir(),
            reason: format!("attestation: {reason}"),
        }
    }
}

fn unknown_platform() -> Result<Platform, CacheError> {
    PlatformBuilder::default()
        .architecture("unknown")
        .os("unknown")
        .build()
        .map_err(|e| CacheError::Corrupt {
            path: Default::default(),
            reason: format!("attestation platform: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_databases() {
        let status = "Package: gcc-12\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.2.0-14\nDescription: x\n continued\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u7\n";
        let p = dpkg_packages(status);
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["gcc-12", "libc6"]
        );
        assert_eq!(p[1].version, "2.36-9+deb12u7");
        let apk = "C:Q1x=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\n";
        let a = apk_packages(apk);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].name.as_str(), a[0].arch.as_str()), ("musl", "x86_64"));
        assert_eq!(
            os_release("PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\nVERSION_ID=\"12\"\n"),
            (Some("debian".into()), Some("12".into()))
        );
    }

    #[test]
    fn spdx_purls_and_subjects() {
        let doc = spdx_document(
            "app:1",
            "abc",
            "2026-01-01T00:00:00Z",
            &dpkg_packages(
                "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u7\n",
            ),
            (Some("debian".into()), Some("12".into())),
        );
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(
            doc["packages"][0]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            docker_purl("docker.io/library/app:1", "linux/arm64/v8"),
            "pkg:docker/app@1?platform=linux%2Farm64%2Fv8"
        );
        assert_eq!(
            docker_purl("127.0.0.1:5000/team/app", "linux/amd64"),
            "pkg:docker/127.0.0.1:5000/team/app?platform=linux%2Famd64"
        );
        let s = statement(
            "_",
            "sha256:00ff",
            &Predicate {
                predicate_type: SPDX,
                predicate: doc,
            },
        );
        assert_eq!(s["subject"][0]["digest"]["sha256"], "00ff");
        assert_eq!(s["predicateType"], SPDX);
    }
}
