//! `--format` templates: the small part of Go's text/template that docker users type —
//! `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{upper …}}`/`{{lower …}}`,
//! the escapes `\t` and `\n`, and docker's `table` prefix (a header row, aligned columns).
//! Values print as Go prints them (`[a b]` for a list, `map[k:v]` for an object).
//! Anything else (`range`, `if`, pipelines) is refused with what is known. [`print`]
//! writes a listing to stdout.

use serde_json::Value;

/// One `{{…}}` action.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// `.A.B` (empty path: `.`).
    Field(Vec<String>),
    Json(Vec<String>),
    Upper(Vec<String>),
    Lower(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Action(Action),
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `table …`: print a header and align the tab-separated columns.
    pub table: bool,
    parts: Vec<Part>,
}

fn path(arg: &str, src: &str) -> Result<Vec<String>, String> {
    let Some(rest) = arg.strip_prefix('.') else {
        return Err(format!(
            "--format {src:?}: {arg:?} is not a field; write {{{{.Field}}}}, {{{{json .}}}} or {{{{json .Field}}}}"
        ));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    Ok(rest.split('.').map(String::from).collect())
}

fn action(inner: &str, src: &str) -> Result<Action, String> {
    let words: Vec<&str> = inner.split_whitespace().collect();
    match words.as_slice() {
        [one] => path(one, src).map(Action::Field),
        ["json", arg] => path(arg, src).map(Action::Json),
        ["upper", arg] => path(arg, src).map(Action::Upper),
        ["lower", arg] => path(arg, src).map(Action::Lower),
        _ => Err(format!(
            "--format {src:?}: {{{{{inner}}}}} is not supported; rbuild's templates know {{{{.Field}}}}, {{{{.A.B}}}}, {{{{json .}}}}, {{{{json .Field}}}}, upper and lower"
        )),
    }
}

/// Reads a `--format` value.
pub fn parse(src: &str) -> Result<Template, String> {
    let (table, body) = match src.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
            (true, rest.trim_start())
        }
        _ => (false, src),
    };
    let body = body.replace("\\t", "\t").replace("\\n", "\n");
    let mut parts = Vec::new();
    let mut rest = body.as_str();
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("--format {src:?}: a {{{{ without its }}}}"))?;
        let inner = after[..close].trim_matches('-').trim();
        parts.push(Part::Action(action(inner, src)?));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(Template { table, parts })
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Result<&'a Value, String> {
    let mut cur = v;
    for key in path {
        cur = match cur {
            Value::Object(m) => m.get(key).ok_or_else(|| {
                let known: Vec<&str> = m.keys().map(String::as_str).collect();
                format!("no field {key:?} (known: {})", known.join(", "))
            })?,
            // Go prints <no value> for a field of nothing.
            Value::Null => return Ok(&Value::Null),
            _ => return Err(format!("{key:?} is not a field of a {}", kind(cur))),
        };
    }
    Ok(cur)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        _ => "value",
    }
}

/// A value as Go's text/template prints it.
pub fn go_text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

impl Template {
    /// The template applied to `v`.
    pub fn render(&self, v: &Value) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(Action::Field(path)) => out.push_str(&go_text(lookup(v, path)?)),
                Part::Action(Action::Json(path)) => {
                    out.push_str(&serde_json::to_string(lookup(v, path)?).unwrap_or_default())
                }
                Part::Action(Action::Upper(path)) => {
                    out.push_str(&go_text(lookup(v, path)?).to_uppercase())
                }
                Part::Action(Action::Lower(path)) => {
                    out.push_str(&go_text(lookup(v, path)?).to_lowercase())
                }
            }
        }
        Ok(out)
    }

    /// The header of a `table`: each field's name as `header` says it (docker's column
    /// names), the text between kept.
    pub fn header(&self, header: impl Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Action(
                    Action::Field(path)
                    | Action::Json(path)
                    | Action::Upper(path)
                    | Action::Lower(path),
                ) => header(&path.join(".")),
            })
            .collect()
    }

    /// Renders every row (with the header for a `table`), its tab-separated cells aligned.
    pub fn render_all(
        &self,
        rows: &[Value],
        header: impl Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.header(header));
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        Ok(if self.table {
            align(&lines)
        } else {
            lines.iter().map(|l| format!("{l}\n")).collect()
        })
    }
}

/// Tab-separated cells as columns, three spaces apart.
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = c.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        let last = r.len().saturating_sub(1);
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

/// Prints a listing on stdout; a reader that went away (`| head`) ends it quietly.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_json_and_go_values() {
        let v =
            json!({"ID": "abc", "Tag": "1", "Config": {"Cmd": ["sh", "-c"], "Env": null}, "N": 3});
        let r = |t: &str| parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.ID}}:{{.Tag}}"), "abc:1");
        assert_eq!(r("{{ .Config.Cmd }}"), "[sh -c]");
        assert_eq!(r("{{json .Config.Cmd}}"), r#"["sh","-c"]"#);
        assert_eq!(r("{{.Config.Env}}"), "<no value>");
        assert_eq!(r("{{.N}}\\t{{upper .ID}}"), "3\tABC");
        assert_eq!(r("{{json .}}"), serde_json::to_string(&v).unwrap());
        assert_eq!(r("{{.Config}}"), "map[Cmd:[sh -c] Env:<no value>]");
        let e = parse("{{.Nope}}").unwrap().render(&v).unwrap_err();
        assert!(e.contains("no field \"Nope\""), "{e}");
    }

    #[test]
    fn refusals() {
        assert!(parse("{{range .}}").unwrap_err().contains("not supported"));
        assert!(parse("{{.ID").unwrap_err().contains("without"));
        assert!(parse("{{ID}}").unwrap_err().contains("not a field"));
    }

    #[test]
    fn tables_have_a_header_and_columns() {
        let t = parse("table {{.Repository}}\\t{{.ID}}").unwrap();
        assert!(t.table);
        let rows = [
            json!({"Repository": "busybox", "ID": "1"}),
            json!({"Repository": "a", "ID": "22"}),
        ];
        let out = t.render_all(&rows, |f| f.to_uppercase()).unwrap();
        assert_eq!(out, "REPOSITORY   ID\nbusybox      1\na            22\n");
        let plain = parse("{{.ID}}")
            .unwrap()
            .render_all(&rows, |f| f.into())
            .unwrap();
        assert_eq!(plain, "1\n22\n");
    }
}
