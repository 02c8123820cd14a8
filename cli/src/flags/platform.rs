//! `--platform` and `--allow` of a build: the platforms to build for (each in any spelling
//! docker accepts), the platforms an `--annotation` may name, and the entitlements rbuild
//! knows.

use anyhow::{Result, bail};
use rbuild_frontend::lower::parse_platform;
use rbuild_graph::Platform;

/// `--platform`: the comma-separated list of platforms to build for, each `os/arch[/variant]`
/// spelled any way docker accepts (`amd64`, `linux/x86_64`, `linux/amd64/v1`, `local` for
/// the host's), without repeats, in the order given.
pub fn parse_platforms(value: &str, host: &Platform) -> Result<Vec<Platform>> {
    let mut out: Vec<Platform> = Vec::new();
    for p in value.split(',').map(str::trim) {
        let parsed = if p.eq_ignore_ascii_case("local") {
            host.clone()
        } else {
            let Some(mut parsed) = parse_platform(p, host) else {
                bail!(
                    "--platform {p:?}: not a platform; write it as os/arch[/variant], e.g. {host}"
                );
            };
            // `amd64/v1` is plain amd64 (containerd's normalization).
            if parsed.architecture == "amd64" && parsed.variant.as_deref() == Some("v1") {
                parsed.variant = None;
            }
            parsed
        };
        if parsed.os != "linux" {
            bail!(
                "--platform {p}: rbuild builds Linux images only; write linux/{}",
                parsed.architecture
            );
        }
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// A platform an `--annotation` names must be one the build makes (`platforms`; none
/// given: `host`).
pub fn check_platform(value: &str, host: &Platform, platforms: &[Platform]) -> Result<()> {
    let built = if platforms.is_empty() {
        std::slice::from_ref(host)
    } else {
        platforms
    };
    for p in parse_platforms(value, host)? {
        if !built.contains(&p) {
            let list: Vec<String> = built.iter().map(Platform::to_string).collect();
            bail!(
                "--annotation for {p}: the build makes {}; name one of them or add {p} to --platform",
                list.join(", ")
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
    fn platforms_are_parsed_in_order_without_repeats() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        for one in [
            "linux/amd64",
            "amd64",
            "x86_64",
            "linux/x86_64",
            "Linux/AMD64",
            "linux/amd64/v1",
            "local",
            "linux/amd64,local",
        ] {
            let got = parse_platforms(one, &amd64).unwrap_or_else(|e| panic!("{one}: {e}"));
            assert_eq!(got, vec![amd64.clone()], "{one}");
        }
        let two = parse_platforms("linux/arm64, linux/amd64", &amd64).unwrap();
        let names: Vec<String> = two.iter().map(Platform::to_string).collect();
        assert_eq!(names, ["linux/arm64/v8", "linux/amd64"]);
        let e = parse_platforms("linux//x", &amd64).unwrap_err().to_string();
        assert!(e.contains("not a platform"), "{e}");
        let e = parse_platforms("windows/amd64", &amd64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Linux images only"), "{e}");
        let e = check_platform("linux/arm64", &amd64, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("the build makes linux/amd64"), "{e}");
        check_platform("linux/arm64", &amd64, &two).unwrap();
    }
}
