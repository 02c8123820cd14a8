//! `--output` values: `type=oci|docker|tar|local,dest=PATH`, or a bare path for
//! `type=local,dest=PATH`, read into where and how the built image is written.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where `--output` writes the image, outside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI archive (what `skopeo copy oci-archive:` reads).
    Oci(PathBuf),
    /// A `docker save` tarball (what `docker load` reads).
    Docker(PathBuf),
    /// The root filesystem as one tar.
    Tar(PathBuf),
    /// The root filesystem copied into a directory.
    Local(PathBuf),
}

/// `type=oci,dest=out.tar` → {"type": "oci", "dest": "out.tar"}; a bare path means
/// `type=local,dest=PATH`.
fn fields(spec: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if !spec.contains('=') {
        out.insert("type".to_string(), "local".to_string());
        out.insert("dest".to_string(), spec.to_string());
        return Ok(out);
    }
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("--output {spec:?}: {field:?} is not key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Parses one `--output` value; the error is the message the user sees.
pub fn parse_output(spec: &str) -> Result<Output, String> {
    let fields = fields(spec)?;
    let kind = fields.get("type").map(String::as_str).unwrap_or("local");
    let dest = fields
        .get("dest")
        .map(PathBuf::from)
        .ok_or_else(|| format!("--output {spec:?} needs dest=PATH"))?;
    Ok(match kind {
        "oci" => Output::Oci(dest),
        "docker" => Output::Docker(dest),
        "tar" => Output::Tar(dest),
        "local" => Output::Local(dest),
        other => {
            return Err(format!(
                "--output type={other} is not supported; use oci, docker, tar or local"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        assert_eq!(
            parse_output("type=oci,dest=/tmp/x.tar"),
            Ok(Output::Oci("/tmp/x.tar".into()))
        );
        assert_eq!(
            parse_output("type=docker, dest = a.tar"),
            Ok(Output::Docker("a.tar".into()))
        );
        assert_eq!(parse_output("out"), Ok(Output::Local("out".into())));
        assert_eq!(parse_output("dest=d"), Ok(Output::Local("d".into())));
        assert_eq!(
            parse_output("type=oci,bogus"),
            Err(r#"--output "type=oci,bogus": "bogus" is not key=value"#.into())
        );
        assert_eq!(
            parse_output("type=bogus"),
            Err(r#"--output "type=bogus" needs dest=PATH"#.into())
        );
        assert_eq!(
            parse_output("type=bogus,dest=x"),
            Err("--output type=bogus is not supported; use oci, docker, tar or local".into())
        );
    }
}
