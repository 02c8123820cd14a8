//! Platforms as `FROM --platform` and the predefined platform ARGs write them
//! (`linux/arm64/v8`), with Docker's architecture aliases.

use rbuild_graph::Platform;

/// `os/arch[/variant]` (or just an architecture) into a platform; `None` if malformed.
pub fn parse_platform(s: &str, default: &Platform) -> Option<Platform> {
    let parts: Vec<&str> = s.trim().split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (os, arch, variant) = match parts.as_slice() {
        [one] if matches!(*one, "linux" | "windows" | "darwin" | "freebsd") => {
            (one.to_string(), default.architecture.clone(), None)
        }
        [arch] => ("linux".to_string(), arch.to_string(), None),
        [os, arch] => (os.to_string(), arch.to_string(), None),
        [os, arch, variant] => (os.to_string(), arch.to_string(), Some(variant.to_string())),
        _ => return None,
    };
    let (arch, variant) = match (arch.to_lowercase().as_str(), variant) {
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v),
        ("aarch64" | "arm64", None) => ("arm64".to_string(), Some("v8".to_string())),
        ("aarch64" | "arm64", v) => ("arm64".to_string(), v),
        ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
        ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
        ("i386" | "386", v) => ("386".to_string(), v),
        (a, v) => (a.to_string(), v),
    };
    Some(Platform {
        os: os.to_lowercase(),
        architecture: arch,
        variant,
    })
}

/// `platforms.Format`-style string, `linux/arm64/v8`.
pub fn format_platform(p: &Platform) -> String {
    p.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let p = parse_platform("linux/arm64", &host).unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            parse_platform("linux/arm/v7", &host).unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            parse_platform("x86_64", &host).unwrap().to_string(),
            "linux/amd64"
        );
        assert!(parse_platform("linux//", &host).is_none());
    }
}
