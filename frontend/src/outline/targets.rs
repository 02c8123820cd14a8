//! `--call targets`: the stages of a Dockerfile, each with its description (the comment
//! above its FROM that starts with its name), the default (last) one marked. Only the
//! parsed file is needed: nothing is lowered or resolved.

use super::{doc_comment, table};
use crate::lint::{JsonLocation, base64_of};
use crate::{Diagnostic, parser};
use serde::Serialize;

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Empty for an unnamed stage.
    pub name: String,
    pub description: String,
    /// The last stage, built when no `--target` is given.
    pub default: bool,
    /// The FROM's image as written (before ARG expansion).
    pub base: String,
    /// The FROM's `--platform` as written.
    pub platform: String,
    /// The FROM's line.
    pub line: usize,
}

/// The stages, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    pub targets: Vec<Target>,
}

/// The stages of a Dockerfile. `file` names it in errors.
pub fn targets(source: &str, file: &str) -> Result<Targets, Diagnostic> {
    let df = parser::parse(source).map_err(|d| d.in_file(file))?;
    let mut targets = Vec::new();
    for node in df.nodes.iter().filter(|n| n.keyword == "from") {
        let name = match node.args.as_slice() {
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => name.to_lowercase(),
            _ => String::new(),
        };
        let platform = node
            .flags
            .iter()
            .find_map(|f| f.strip_prefix("--platform="))
            .unwrap_or_default()
            .to_string();
        targets.push(Target {
            description: doc_comment(Some(node), &name),
            name,
            default: false,
            base: node.args.first().cloned().unwrap_or_default(),
            platform,
            line: node.span.start_line,
        });
    }
    if let Some(last) = targets.last_mut() {
        last.default = true;
    }
    Ok(Targets { targets })
}

impl Targets {
    /// buildx's text: `TARGET  DESCRIPTION`, the default one marked `(default)`.
    pub fn to_text(&self) -> String {
        let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".to_string()]];
        for t in &self.targets {
            let name = match (t.name.is_empty(), t.default) {
                (true, true) => "(default)".to_string(),
                (false, true) => format!("{} (default)", t.name),
                _ => t.name.clone(),
            };
            rows.push(vec![name, t.description.clone()]);
        }
        table::render(&rows, 1)
    }

    /// BuildKit's `targets.List` JSON (fields in its order, empty ones left out);
    /// serialize it with serde_json.
    pub fn json<'a>(&'a self, source: &str) -> impl Serialize + 'a {
        JsonList {
            targets: self
                .targets
                .iter()
                .map(|t| JsonTarget {
                    name: &t.name,
                    default: t.default,
                    description: &t.description,
                    base: &t.base,
                    platform: &t.platform,
                    location: JsonLocation::lines(t.line, t.line),
                })
                .collect(),
            sources: vec![base64_of(source)],
        }
    }
}

#[derive(Serialize)]
struct JsonList<'a> {
    targets: Vec<JsonTarget<'a>>,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct JsonTarget<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    default: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    base: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    platform: &'a str,
    location: JsonLocation,
}
