//! `--secret` and `--ssh` values, read as buildx reads them. `--secret` is a CSV record of
//! `key=value` fields (`id`, `src`/`source`, `env`, `type=file|env`); with `type=env` a
//! `src` names the variable. `--ssh` is `ID[=PATH[,PATH…]]`. Where values come from (the
//! environment, files, agents) is settled when the build starts
//! (`rbuild_solver::secrets`, `rbuild_solver::ssh`).

use anyhow::{Result, anyhow, bail};
use rbuild_solver::secrets::SecretSpec;
use rbuild_solver::ssh::SshSpec;
use std::path::PathBuf;

/// Every `--secret`, in order (an empty value is skipped, as buildx does).
pub fn parse_secrets(raw: &[String]) -> Result<Vec<SecretSpec>> {
    raw.iter()
        .filter(|r| !r.is_empty())
        .map(|r| parse_secret(r))
        .collect()
}

fn parse_secret(raw: &str) -> Result<SecretSpec> {
    let example = "write --secret id=ID,src=FILE or --secret id=ID,env=VARIABLE";
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(raw.as_bytes());
    let record = reader
        .records()
        .next()
        .transpose()
        .map_err(|e| anyhow!("--secret {raw:?}: not a CSV record: {e}"))?
        .unwrap_or_default();
    let mut spec = SecretSpec::default();
    let mut env_type = false;
    for field in record.iter() {
        let Some((key, value)) = field.split_once('=') else {
            bail!("--secret {raw:?}: invalid field '{field}' must be a key=value pair; {example}");
        };
        let set = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key.to_ascii_lowercase().as_str() {
            "type" => match value {
                "file" => env_type = false,
                "env" => env_type = true,
                other => {
                    bail!("--secret {raw:?}: unsupported secret type {other:?} (use file or env)")
                }
            },
            "id" => spec.id = value.to_string(),
            "source" | "src" => spec.src = set(value).map(PathBuf::from),
            "env" => spec.env = set(value),
            other => bail!("--secret {raw:?}: unexpected key '{other}' in '{field}'; {example}"),
        }
    }
    // `type=env,src=VAR` names the variable (buildx's rule).
    if env_type && spec.env.is_none() {
        spec.env = spec.src.take().map(|p| p.to_string_lossy().into_owned());
    }
    Ok(spec)
}

/// Every `--ssh`, in order (an empty value is skipped, as buildx does).
pub fn parse_ssh(raw: &[String]) -> Vec<SshSpec> {
    raw.iter()
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('=') {
            Some((id, paths)) => SshSpec {
                id: id.to_string(),
                paths: paths.split(',').map(PathBuf::from).collect(),
            },
            None => SshSpec {
                id: r.clone(),
                paths: Vec::new(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(raw: &str) -> Result<SecretSpec> {
        parse_secret(raw)
    }

    fn spec(id: &str, src: Option<&str>, env: Option<&str>) -> SecretSpec {
        SecretSpec {
            id: id.into(),
            src: src.map(PathBuf::from),
            env: env.map(String::from),
        }
    }

    #[test]
    fn secrets_as_buildx_reads_them() {
        assert_eq!(
            secret("id=tok,src=/s/t").unwrap(),
            spec("tok", Some("/s/t"), None)
        );
        assert_eq!(
            secret("ID=tok,source=/s/t,type=file").unwrap(),
            spec("tok", Some("/s/t"), None)
        );
        assert_eq!(
            secret("id=tok,env=TOKEN").unwrap(),
            spec("tok", None, Some("TOKEN"))
        );
        assert_eq!(
            secret("type=env,id=tok,src=TOKEN").unwrap(),
            spec("tok", None, Some("TOKEN"))
        );
        assert_eq!(secret("id=TOKEN").unwrap(), spec("TOKEN", None, None));
        // CSV quoting keeps a comma in a path.
        assert_eq!(
            secret(r#"id=a,"src=/x,y""#).unwrap(),
            spec("a", Some("/x,y"), None)
        );
        let cases = [
            (
                "tok",
                "--secret \"tok\": invalid field 'tok' must be a key=value pair; write --secret id=ID,src=FILE or --secret id=ID,env=VARIABLE",
            ),
            (
                "id=a,type=ssh",
                "--secret \"id=a,type=ssh\": unsupported secret type \"ssh\" (use file or env)",
            ),
            (
                "id=a,target=/x",
                "--secret \"id=a,target=/x\": unexpected key 'target' in 'target=/x'; write --secret id=ID,src=FILE or --secret id=ID,env=VARIABLE",
            ),
        ];
        for (raw, message) in cases {
            assert_eq!(secret(raw).unwrap_err().to_string(), message, "{raw}");
        }
        assert_eq!(
            parse_secrets(&["".into(), "id=a".into()]).unwrap(),
            [spec("a", None, None)]
        );
    }

    #[test]
    fn ssh_as_buildx_reads_it() {
        let raw: Vec<String> = ["default", "gh=/k1,/k2", "x=", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = parse_ssh(&raw);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].id.as_str(), s[0].paths.len()), ("default", 0));
        assert_eq!(s[1].paths, [PathBuf::from("/k1"), PathBuf::from("/k2")]);
        assert_eq!(s[2].paths, [PathBuf::new()], "= alone is $SSH_AUTH_SOCK");
    }
}
