//! Platforms: as `FROM --platform` and the predefined platform ARGs write them
//! (`linux/arm64/v8`, with Docker's architecture aliases), the predefined ARGs themselves,
//! and a build for several platforms.
//!
//! A build for several platforms lowers the target once per platform into one graph. What
//! does not depend on the target platform is shared by the graph's dedup: the context, and
//! every stage whose `FROM --platform=$BUILDPLATFORM` (or a constant) makes its vertices
//! the same for each platform. A RUN of a stage whose platform is not the build platform
//! carries that platform (`ExecOp::platform`) for the executor to emulate.
//!
//! The ARG scoping is BuildKit's: `BUILDPLATFORM`, `TARGETARCH`, … are global ARGs, seen
//! by FROM lines; inside a stage only after an `ARG TARGETARCH` (without a value) names
//! them (`args.rs`).

use super::{Context, Lowerer, Shared, TargetImage, lower_each, lower_each_with};
use crate::Diagnostic;
use rbuild_graph::{BuildGraph, Platform, VertexId};

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

/// The predefined ARGs of one platform: `{prefix}PLATFORM`, `OS`, `ARCH`, `VARIANT`
/// (`BUILD…` for the build platform, `TARGET…` for the target).
pub(super) fn platform_args(prefix: &str, p: &Platform) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}PLATFORM"), format_platform(p)),
        (format!("{prefix}OS"), p.os.clone()),
        (format!("{prefix}ARCH"), p.architecture.clone()),
        (
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ),
    ]
}

/// Lowers `targets` once per platform of `platforms` (empty: the options' platform alone)
/// into one graph, platform-major. Vertices the platforms share are in it once.
pub(super) fn lower_platforms(
    ins: &[crate::ast::Instruction],
    cx: &Context,
    targets: &[String],
    platforms: &[Platform],
) -> Result<(BuildGraph, Vec<TargetImage>, Option<VertexId>), Diagnostic> {
    if platforms.is_empty() {
        return lower_each(ins, cx, targets);
    }
    // One graph and one set of resolved base images (by reference and platform) for all.
    let mut shared = Shared::default();
    let mut images = Vec::new();
    let mut context = None;
    for p in platforms {
        let one = super::LowerOptions {
            platform: p.clone(),
            ..cx.opts.clone()
        };
        let cx = Context { opts: &one, ..*cx };
        let (imgs, ctx) = lower_each_with(ins, &cx, targets, &mut shared)?;
        images.extend(imgs);
        context = context.or(ctx);
    }
    Ok((shared.graph, images, context))
}

impl Lowerer<'_> {
    /// The platform a RUN of a stage for `p` carries: none when it is the build platform.
    pub(super) fn foreign(&self, p: &Platform) -> Option<Platform> {
        (*p != self.opts.build_platform).then(|| p.clone())
    }

    /// The `[label i/n]` label of stage `i`'s progress names: its name (none for a lone
    /// stage), after its platform when that is not the build platform, as BuildKit names
    /// the steps of a multi-platform build (`[linux/arm64 build 2/3]`).
    pub(super) fn progress_label(&self, i: usize) -> Option<String> {
        let name = (!self.single_stage).then(|| self.stage_label(i));
        match (self.foreign(&self.stages[i].platform), name) {
            (Some(p), Some(n)) => Some(format!("{p} {n}")),
            (Some(p), None) => Some(p.to_string()),
            (None, n) => n,
        }
    }
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
