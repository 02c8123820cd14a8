//! `--output` values, as buildx reads them: `type=oci|docker|tar|local|image|registry`
//! with `dest=PATH` (`-` is stdout), `name=NAME` (more names for the image), `push=true`,
//! `compression=gzip`; a bare path means `type=local,dest=PATH` and a bare `-` means
//! `type=tar,dest=-`. Every value is checked here, before anything is built: an unknown
//! type or key, a name that is not an image reference and an option rbuild cannot honour
//! (`compression=zstd`) are refused with what to write instead.

use rbuild_cache::registry::reference::Reference;
use std::path::PathBuf;

/// Where an archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `dest=-`: rbuild's stdout.
    Stdout,
    File(PathBuf),
}

/// What an `--output` writes, outside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An OCI archive (what `skopeo copy oci-archive:` reads).
    Oci(Dest),
    /// A `docker save` tarball (what `docker load` reads).
    Docker(Dest),
    /// The root filesystem as one tar.
    Tar(Dest),
    /// The root filesystem copied into a directory.
    Local(PathBuf),
    /// Nothing beside the store (`type=image`, `type=registry`, `type=docker` without
    /// `dest`): the image is stored, named and maybe pushed.
    Store,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: Kind,
    /// `name=`: names the built image gets, as with `-t`.
    pub names: Vec<String>,
    /// `push=true` (or `type=registry`): push those names.
    pub push: bool,
}

impl Output {
    fn new(kind: Kind) -> Output {
        Output {
            kind,
            names: Vec::new(),
            push: false,
        }
    }

    /// Whether it writes to stdout.
    pub fn to_stdout(&self) -> bool {
        matches!(
            self.kind,
            Kind::Oci(Dest::Stdout) | Kind::Docker(Dest::Stdout) | Kind::Tar(Dest::Stdout)
        )
    }
}

const KEYS: &str = "type, dest, name, push, compression=gzip, oci-mediatypes=true";

/// `type=oci,dest=out.tar` → [("type", "oci"), ("dest", "out.tar")], in order.
fn fields(spec: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(',')
        .map(|field| {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("--output {spec:?}: {field:?} is not key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn yes(spec: &str, key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "--output {spec:?}: {key}={v:?} is not true or false"
        )),
    }
}

/// Parses one `--output` value; the error is the message the user sees.
pub fn parse_output(spec: &str) -> Result<Output, String> {
    if spec == "-" {
        return Ok(Output::new(Kind::Tar(Dest::Stdout)));
    }
    if !spec.contains('=') {
        return Ok(Output::new(Kind::Local(PathBuf::from(spec))));
    }
    let mut kind = None;
    let mut dest = None;
    let mut names = Vec::new();
    let mut push = false;
    for (k, v) in fields(spec)? {
        match k.as_str() {
            "type" => kind = Some(v),
            "dest" => dest = Some(v),
            "name" => {
                for n in v.split(',').filter(|n| !n.is_empty()) {
                    Reference::parse(n).map_err(|e| format!("--output {spec:?}: name={e}"))?;
                    names.push(n.to_string());
                }
            }
            "push" => push = yes(spec, &k, &v)?,
            "compression" if v == "gzip" => {}
            "compression" => {
                return Err(format!(
                    "--output {spec:?}: compression={v} is not supported: rbuild writes gzip layers only; leave out compression= (or write compression=gzip)"
                ));
            }
            "oci-mediatypes" if yes(spec, &k, &v)? => {}
            "oci-mediatypes" => {
                return Err(format!(
                    "--output {spec:?}: oci-mediatypes=false is not supported: rbuild writes OCI media types only"
                ));
            }
            _ => {
                return Err(format!(
                    "--output {spec:?}: unknown key {k:?}; rbuild knows {KEYS}"
                ));
            }
        }
    }
    let kind = kind.unwrap_or_else(|| "local".to_string());
    let archive = |wrap: fn(Dest) -> Kind, d: Option<String>| match d.as_deref() {
        None | Some("-") => wrap(Dest::Stdout),
        Some(p) => wrap(Dest::File(PathBuf::from(p))),
    };
    let kind = match kind.as_str() {
        "oci" => archive(Kind::Oci, dest),
        "tar" => archive(Kind::Tar, dest),
        // Without dest, buildx loads the image into docker: here, into the store.
        "docker" if dest.is_none() => Kind::Store,
        "docker" => archive(Kind::Docker, dest),
        "local" => match dest.as_deref() {
            None => return Err(format!("--output {spec:?} needs dest=DIRECTORY")),
            Some("-") => {
                return Err(format!(
                    "--output {spec:?}: a directory cannot go to stdout; write type=tar,dest=- for the root filesystem as a tar"
                ));
            }
            Some(d) => Kind::Local(PathBuf::from(d)),
        },
        "image" | "registry" => {
            if let Some(d) = dest {
                return Err(format!(
                    "--output {spec:?}: type={kind} stores the image and takes no dest={d}; write type=oci,dest={d} for an archive"
                ));
            }
            push |= kind == "registry";
            Kind::Store
        }
        other => {
            return Err(format!(
                "--output type={other} is not supported; use oci, docker, tar, local, image or registry"
            ));
        }
    };
    Ok(Output { kind, names, push })
}

/// What stdout can take: one archive, never a terminal, and not beside `-q`'s image ID or
/// `--run`'s output.
pub fn check_stdout(
    outputs: &[Output],
    quiet: bool,
    run: bool,
    stdout_is_terminal: bool,
) -> Result<(), String> {
    let n = outputs.iter().filter(|o| o.to_stdout()).count();
    if n == 0 {
        return Ok(());
    }
    if n > 1 {
        return Err(
            "more than one --output writes to stdout; give all but one a dest=FILE".to_string(),
        );
    }
    if stdout_is_terminal {
        return Err("--output to stdout (`-o -`, dest=- or no dest) refused: stdout is a terminal; redirect it (`> image.tar`, `| tar -t`) or give dest=FILE".to_string());
    }
    if quiet {
        return Err("-q prints the image ID on stdout, where --output writes its archive: leave out -q (--iidfile FILE writes the ID to a file)".to_string());
    }
    if run {
        return Err("--run's container writes to stdout, where --output writes its archive: give the output a dest=FILE".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(spec: &str) -> Kind {
        parse_output(spec).unwrap().kind
    }

    #[test]
    fn output_specs() {
        assert_eq!(
            kind("type=oci,dest=/tmp/x.tar"),
            Kind::Oci(Dest::File("/tmp/x.tar".into()))
        );
        assert_eq!(
            kind("type=docker, dest = a.tar"),
            Kind::Docker(Dest::File("a.tar".into()))
        );
        assert_eq!(kind("out"), Kind::Local("out".into()));
        assert_eq!(kind("dest=d"), Kind::Local("d".into()));
        assert_eq!(
            parse_output("type=oci,bogus"),
            Err(r#"--output "type=oci,bogus": "bogus" is not key=value"#.into())
        );
        assert_eq!(
            parse_output("type=bogus,dest=x"),
            Err("--output type=bogus is not supported; use oci, docker, tar, local, image or registry".into())
        );
        assert_eq!(
            parse_output("type=local"),
            Err(r#"--output "type=local" needs dest=DIRECTORY"#.into())
        );
    }

    #[test]
    fn dash_is_stdout() {
        assert_eq!(kind("-"), Kind::Tar(Dest::Stdout));
        assert_eq!(kind("type=tar,dest=-"), Kind::Tar(Dest::Stdout));
        assert_eq!(kind("type=tar"), Kind::Tar(Dest::Stdout));
        assert_eq!(kind("type=oci"), Kind::Oci(Dest::Stdout));
        assert_eq!(kind("type=docker,dest=-"), Kind::Docker(Dest::Stdout));
        assert_eq!(kind("type=docker"), Kind::Store);
        assert!(parse_output("type=local,dest=-").is_err());
    }

    #[test]
    fn names_push_and_options() {
        let o = parse_output("type=image,name=named:1,push=true").unwrap();
        assert_eq!(
            (o.kind, o.names, o.push),
            (Kind::Store, vec!["named:1".into()], true)
        );
        let o = parse_output("type=registry,name=r:5000/a:1").unwrap();
        assert!(o.push);
        let e = parse_output("type=image,name=UPPER:1").unwrap_err();
        assert!(e.contains("must be lowercase"), "{e}");
        let e = parse_output("type=oci,dest=x,compression=zstd").unwrap_err();
        assert!(e.contains("compression=zstd is not supported"), "{e}");
        assert!(parse_output("type=oci,dest=x,compression=gzip").is_ok());
        let e = parse_output("type=oci,dest=x,colour=blue").unwrap_err();
        assert!(e.contains("unknown key \"colour\""), "{e}");
        assert!(parse_output("type=image,dest=x").is_err());
    }

    #[test]
    fn stdout_takes_one_archive_and_no_terminal() {
        let out = |s: &str| parse_output(s).unwrap();
        let tar = [out("-")];
        assert!(check_stdout(&tar, false, false, false).is_ok());
        assert!(
            check_stdout(&tar, false, false, true)
                .unwrap_err()
                .contains("terminal")
        );
        assert!(
            check_stdout(&tar, true, false, false)
                .unwrap_err()
                .contains("-q")
        );
        assert!(
            check_stdout(&tar, false, true, false)
                .unwrap_err()
                .contains("--run")
        );
        let two = [out("-"), out("type=oci")];
        assert!(check_stdout(&two, false, false, false).is_err());
        assert!(check_stdout(&[out("d")], true, true, true).is_ok());
    }
}
