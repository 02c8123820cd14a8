//! A stage's variables (image ENV and ARGs) as a persistent map, and `$VAR` expansion of
//! raw text with them (heredoc bodies, progress names), where quotes are literal.

use rbuild_graph::EnvMap;

/// The variables of a stage. A persistent map: every RUN keeps a snapshot of it as its
/// environment, sharing what did not change, and a lookup is a tree search, so lowering
/// stays linear in a Dockerfile whose environment keeps growing.
pub(super) type Env = EnvMap;

pub(super) fn env_get(env: &Env, key: &str) -> Option<String> {
    env.get(key).map(String::from)
}

pub(super) fn env_set(env: &mut Env, key: &str, value: &str) {
    env.insert(key, value);
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}` (and `-`/`+` without the colon)
/// in text where quotes are literal (heredoc bodies, progress names). Unset
/// variables are kept as written when `keep_unset`, else replaced by "".
pub fn expand_raw(text: &str, env: &dyn Fn(&str) -> Option<String>, keep_unset: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() && chars[i + 1] == '$' {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        if is_name_start(next) {
            let mut j = i + 1;
            while j < chars.len() && is_name(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            match env(&name) {
                Some(v) => out.push_str(&v),
                None if keep_unset => out.extend(&chars[i..j]),
                None => {}
            }
            i = j;
        } else if next == '{' {
            let Some(close) = chars[i + 2..].iter().position(|c| *c == '}') else {
                out.extend(&chars[i..]);
                break;
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let end = i + 3 + close;
            let name_len = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_len);
            let value = env(name);
            let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            let replaced = if let Some(w) = op.strip_prefix(":-") {
                Some(if set_nonempty {
                    value.unwrap_or_default()
                } else {
                    w.into()
                })
            } else if let Some(w) = op.strip_prefix('-') {
                Some(value.unwrap_or_else(|| w.into()))
            } else if let Some(w) = op.strip_prefix(":+") {
                Some(if set_nonempty {
                    w.into()
                } else {
                    String::new()
                })
            } else if let Some(w) = op.strip_prefix('+') {
                Some(if value.is_some() {
                    w.into()
                } else {
                    String::new()
                })
            } else if op.is_empty() {
                value
            } else {
                // Other operators: leave the text untouched.
                out.extend(&chars[i..end]);
                i = end;
                continue;
            };
            match replaced {
                Some(v) => out.push_str(&v),
                None if keep_unset => out.extend(&chars[i..end]),
                None => {}
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_expansion_keeps_quotes() {
        let env = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand_raw("'$A' \"${A}\" $B", &env, true), "'1' \"1\" $B");
        assert_eq!(expand_raw("$B-${B:-x}-${A:+y}", &env, false), "-x-y");
        assert_eq!(expand_raw("\\$A", &env, false), "$A");
    }
}
