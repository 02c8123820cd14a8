//! Several `--target`s in one build, and `build --run`: which tags go to which
//! target, and where the `--run` command ends and the context begins.

use anyhow::{Result, bail};
use rbuild_cache::registry::reference::Reference;
use std::path::PathBuf;

/// Splits `-t` values among the targets built (`stages`: the `--target`
/// names, or one `None` for the default last stage). `-t NAME` names the
/// last target; `-t STAGE=NAME` names the target built from STAGE (stage
/// names match case-insensitively, as in FROM). Image names cannot contain
/// `=`, so the two forms cannot be confused.
pub fn assign_tags(tags: &[String], stages: &[Option<String>]) -> Result<Vec<Vec<String>>> {
    let mut out = vec![Vec::new(); stages.len()];
    let Some(last) = stages.len().checked_sub(1) else {
        return Ok(out);
    };
    for tag in tags {
        let name = tag.split_once('=').map_or(tag.as_str(), |(_, n)| n);
        if !name.is_empty()
            && let Err(e) = Reference::parse(name)
        {
            bail!("-t {tag:?}: {e}");
        }
        match tag.split_once('=') {
            None => out[last].push(tag.clone()),
            Some((stage, name)) => {
                if name.is_empty() {
                    bail!("-t {tag:?}: no image name after '='; write -t STAGE=NAME[:TAG]");
                }
                let Some(i) = stages
                    .iter()
                    .position(|s| s.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(stage)))
                else {
                    bail!(
                        "-t {tag:?}: {stage:?} is not a --target of this build; name one of the stages given with --target"
                    );
                };
                out[i].push(name.to_string());
            }
        }
    }
    Ok(out)
}

/// `rbuild build --run -- CMD… CONTEXT`: without a context before `--`, the
/// last word after it is the context. Returns (context, command).
pub fn split_run_command(
    context: Option<PathBuf>,
    mut after_dashes: Vec<String>,
) -> (Option<PathBuf>, Vec<String>) {
    match context {
        Some(c) => (Some(c), after_dashes),
        None => {
            let ctx = after_dashes.pop().map(PathBuf::from);
            (ctx, after_dashes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn plain_tags_name_the_last_target_and_stage_tags_pick_one() {
        let stages = [Some("test".to_string()), Some("app".to_string())];
        let got = assign_tags(
            &s(&["me/app:1", "TEST=me/test", "app=me/app:latest"]),
            &stages,
        )
        .unwrap();
        assert_eq!(got, [s(&["me/test"]), s(&["me/app:1", "me/app:latest"])]);
        assert!(assign_tags(&s(&["prod=x"]), &stages).is_err());
        assert!(assign_tags(&s(&["app="]), &stages).is_err());
        // The default target (no --target) has no stage name to pick.
        assert_eq!(assign_tags(&s(&["x"]), &[None]).unwrap(), [s(&["x"])]);
        assert!(assign_tags(&s(&["a=x"]), &[None]).is_err());
        let e = assign_tags(&s(&["UPPER:1"]), &[None])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be lowercase"), "{e}");
    }

    #[test]
    fn the_context_follows_the_run_command() {
        let (c, cmd) = split_run_command(None, s(&["sh", "-c", "exit 3", "ctx"]));
        assert_eq!(c, Some(PathBuf::from("ctx")));
        assert_eq!(cmd, s(&["sh", "-c", "exit 3"]));
        let (c, cmd) = split_run_command(Some("d".into()), s(&["echo", "."]));
        assert_eq!(c, Some(PathBuf::from("d")));
        assert_eq!(cmd, s(&["echo", "."]));
        assert_eq!(split_run_command(None, vec![]), (None, vec![]));
    }
}
