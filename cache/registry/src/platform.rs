//! The platform an image is for (`linux/amd64`, `linux/arm64/v8`), as oci-spec's
//! [`Platform`], and how an index entry is matched against the one wanted.

pub use oci_spec::image::Platform;
use oci_spec::image::{Arch, Os};

/// `os/architecture[/variant]`; an empty variant counts as none.
pub fn of(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
    let mut p = Platform::default();
    p.set_os(Os::from(os));
    p.set_architecture(Arch::from(architecture));
    p.set_variant(variant.filter(|v| !v.is_empty()).map(str::to_string));
    p
}

/// The platform of this machine in OCI terms (`linux/amd64`, `linux/arm64/v8` …).
pub fn host() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        other => (other, None),
    };
    of(std::env::consts::OS, arch, variant)
}

/// `linux/arm64/v8`, as error messages name a platform.
pub fn name(p: &Platform) -> String {
    match variant(p) {
        Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
        None => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// The variant, an empty one counting as none.
pub(crate) fn variant(p: &Platform) -> Option<&str> {
    p.variant().as_deref().filter(|v| !v.is_empty())
}

/// Does an index entry's platform `have` satisfy `want`? An absent variant on
/// either side matches, except that arm64's implicit variant is v8.
pub fn matches(want: &Platform, have: &Platform) -> bool {
    if want.os() != have.os() || want.architecture() != have.architecture() {
        return false;
    }
    fn norm(p: &Platform) -> Option<&str> {
        match (p.architecture(), variant(p)) {
            (Arch::ARM64, None) => Some("v8"),
            (_, v) => v,
        }
    }
    match (norm(want), norm(have)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_platform_is_linux() {
        let p = host();
        assert_eq!(p.os(), &Os::Linux);
        assert!(!p.architecture().to_string().is_empty());
    }

    #[test]
    fn names_and_matching() {
        assert_eq!(name(&of("linux", "arm64", Some("v8"))), "linux/arm64/v8");
        assert_eq!(name(&of("linux", "amd64", Some(""))), "linux/amd64");
        let arm64 = of("linux", "arm64", None);
        assert!(matches(&arm64, &of("linux", "arm64", Some("v8"))));
        assert!(!matches(&arm64, &of("linux", "arm64", Some("v9"))));
        assert!(matches(
            &of("linux", "arm", None),
            &of("linux", "arm", Some("v6"))
        ));
        assert!(!matches(&of("linux", "amd64", None), &arm64));
        assert!(!matches(
            &of("windows", "amd64", None),
            &of("linux", "amd64", None)
        ));
    }
}
