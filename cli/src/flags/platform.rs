//! `--platform` and `--allow` of a build: what rbuild can build for (the host's platform,
//! in any spelling docker accepts) and which entitlements it knows.

use anyhow::{Result, bail};
use rbuild_frontend::lower::parse_platform;
use rbuild_graph::Platform;

/// `--platform`: every platform of the comma-separated list must be `host`'s (spelled
/// any way docker accepts: `amd64`, `linux/x86_64`, `linux/amd64/v1`, `local`). Another
/// one is refused rather than silently building the host's.
pub fn check_platform(value: &str, host: &Platform) -> Result<()> {
    for p in value.split(',').map(str::trim) {
        if p.eq_ignore_ascii_case("local") {
            continue;
        }
        let Some(mut parsed) = parse_platform(p, host) else {
            bail!("--platform {p:?}: not a platform; write it as os/arch[/variant], e.g. {host}");
        };
        // `amd64/v1` is plain amd64 (containerd's normalization).
        if parsed.architecture == "amd64" && parsed.variant.as_deref() == Some("v1") {
            parsed.variant = None;
        }
        if &parsed != host {
            bail!(
                "--platform {p}: rbuild builds only for this machine's platform, {host}; building for {parsed} (or for several platforms) is not supported yet. Leave out --platform, or run rbuild on a {parsed} machine"
            );
        }
    }
    Ok(())
}

/// `--allow` values: whether `security.insecure` is among them. Unknown ones are
/// refused rather than ignored, as buildx does.
pub fn entitlements(allow: &[String]) -> Result<bool> {
    let mut insecure = false;
    for a in allow {
        match a.trim() {
            "security.insecure" => insecure = true,
            "network.host" => {}
            other => bail!(
                "--allow {other:?}: unknown entitlement (rbuild knows security.insecure and network.host)"
            ),
        }
    }
    Ok(insecure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_host_platform_is_built() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        for ok in [
            "linux/amd64",
            "amd64",
            "x86_64",
            "linux/x86_64",
            "Linux/AMD64",
            "linux/amd64/v1",
            "local",
            "linux/amd64,local",
        ] {
            check_platform(ok, &amd64).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = check_platform("linux/arm64", &amd64)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--platform linux/arm64: rbuild builds only for this machine's platform, linux/amd64; building for linux/arm64/v8"), "{e}");
        assert!(e.contains("not supported yet"), "{e}");
        let e = check_platform("linux/amd64,linux/arm/v7", &amd64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--platform linux/arm/v7"), "{e}");
        let e = check_platform("linux//x", &amd64).unwrap_err().to_string();
        assert!(e.contains("not a platform"), "{e}");
        // What the host is, whatever it is, is accepted.
        assert!(check_platform(&Platform::host().to_string(), &Platform::host()).is_ok());
    }
}
