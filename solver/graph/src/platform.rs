//! The platform an image or a step is for (OS / architecture / variant).
//!
//! This struct is the platform's *key encoding*: it is serialized into the ops whose cache
//! keys it is part of, so its fields and their order are fixed (oci-spec's `Platform`
//! serializes `architecture` before `os` and would change every such key). Everywhere the
//! platform meets OCI documents (index entries, configs, the registry client) it is
//! oci-spec's [`oci_spec::image::Platform`], converted here in one place.

use serde::{Deserialize, Serialize};
use std::fmt;

/// OS / architecture / variant, as in OCI image indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine rbuild runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8".to_string())),
            "arm" => ("arm", Some("v7".to_string())),
            "x86" => ("386", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl From<&Platform> for oci_spec::image::Platform {
    /// The OCI form of the platform; an empty variant counts as none.
    fn from(p: &Platform) -> Self {
        let mut o = oci_spec::image::Platform::default();
        o.set_os(oci_spec::image::Os::from(p.os.as_str()));
        o.set_architecture(oci_spec::image::Arch::from(p.architecture.as_str()));
        o.set_variant(p.variant.clone().filter(|v| !v.is_empty()));
        o
    }
}

impl From<&oci_spec::image::Platform> for Platform {
    /// The key form of an OCI platform (its OS version and features are not part of it).
    fn from(o: &oci_spec::image::Platform) -> Self {
        Platform {
            os: o.os().to_string(),
            architecture: o.architecture().to_string(),
            variant: o.variant().clone().filter(|v| !v.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_oci_spec() {
        for (os, arch, variant) in [
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v7")),
            ("linux", "riscv64", None),
            ("windows", "amd64", None),
        ] {
            let p = Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            };
            let o = oci_spec::image::Platform::from(&p);
            assert_eq!(o.os().to_string(), os);
            assert_eq!(o.architecture().to_string(), arch);
            assert_eq!(Platform::from(&o), p);
        }
    }

    #[test]
    fn empty_variant_is_none_and_key_encoding_is_fixed() {
        let p = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: Some(String::new()),
        };
        assert_eq!(oci_spec::image::Platform::from(&p).variant(), &None);
        // The key encoding: os before architecture, no variant when absent.
        let q = Platform { variant: None, ..p };
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"os":"linux","architecture":"amd64"}"#
        );
    }
}
