//! The JSON (exec) form of an instruction: a JSON array of strings, parsed
//! with the same acceptance rules as Go's `encoding/json` so that text
//! which is not valid JSON falls back to shell form exactly as BuildKit does.

use super::Parsed;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while_m_n, take_while1};
use nom::character::complete::{char, one_of, satisfy};
use nom::combinator::{opt, recognize};

/// Go's decoder refuses nesting deeper than this.
const MAX_DEPTH: usize = 10_000;

/// What the argument text of an instruction is, JSON-wise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArgs {
    /// A valid JSON array of strings.
    Strings(Vec<String>),
    /// Valid JSON array with a non-string element: BuildKit rejects it.
    NotStrings,
    /// Not a JSON array at all: the text is shell form.
    Invalid,
}

fn json_ws(i: &str) -> &str {
    i.trim_start_matches([' ', '\t', '\n', '\r'])
}

fn hex4(i: &str) -> Parsed<'_, u32> {
    let (i, _) = tag("\\u").parse(i)?;
    let (i, h) = take_while_m_n(4, 4, |c: char| c.is_ascii_hexdigit()).parse(i)?;
    // Four hex digits always fit.
    Ok((i, u32::from_str_radix(h, 16).unwrap_or(0)))
}

/// A JSON string literal, decoded (lone surrogates become U+FFFD like Go).
pub(crate) fn json_string(i: &str) -> Parsed<'_, String> {
    let (mut i, _) = char('"').parse(i)?;
    let mut out = String::new();
    loop {
        let (rest, run) = take_while(|c: char| c != '"' && c != '\\' && c >= ' ').parse(i)?;
        out.push_str(run);
        i = rest;
        if let Some(rest) = i.strip_prefix('"') {
            return Ok((rest, out));
        }
        if i.starts_with("\\u") {
            let (rest, hi) = hex4(i)?;
            i = rest;
            if (0xD800..0xE000).contains(&hi) {
                let pair = hex4(i).ok().filter(|(_, lo)| {
                    (0xD800..0xDC00).contains(&hi) && (0xDC00..0xE000).contains(lo)
                });
                match pair {
                    Some((rest, lo)) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                        i = rest;
                    }
                    None => out.push('\u{fffd}'),
                }
            } else {
                out.push(char::from_u32(hi).unwrap_or('\u{fffd}'));
            }
            continue;
        }
        let (rest, (_, e)) = (char('\\'), one_of("\"\\/bfnrt")).parse(i)?;
        out.push(match e {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            other => other,
        });
        i = rest;
    }
}

fn json_number(i: &str) -> Parsed<'_, &str> {
    recognize((
        opt(char('-')),
        alt((
            tag("0"),
            recognize((
                satisfy(|c| ('1'..='9').contains(&c)),
                take_while(|c: char| c.is_ascii_digit()),
            )),
        )),
        opt((char('.'), take_while1(|c: char| c.is_ascii_digit()))),
        opt((
            one_of("eE"),
            opt(one_of("+-")),
            take_while1(|c: char| c.is_ascii_digit()),
        )),
    ))
    .parse(i)
}

fn json_scalar(i: &str) -> Parsed<'_, ()> {
    alt((
        json_string.map(|_| ()),
        tag("true").map(|_| ()),
        tag("false").map(|_| ()),
        tag("null").map(|_| ()),
        json_number.map(|_| ()),
    ))
    .parse(i)
}

/// Skips one JSON value of any kind. Iterative, so deep nesting cannot
/// overflow the stack. `depth` is the nesting the value starts at.
fn skip_value(mut i: &str, depth: usize) -> Option<&str> {
    let mut stack: Vec<char> = Vec::new();
    'value: loop {
        i = json_ws(i);
        if let Some(rest) = i.strip_prefix('[') {
            if depth + stack.len() + 1 > MAX_DEPTH {
                return None;
            }
            let rest = json_ws(rest);
            if let Some(rest) = rest.strip_prefix(']') {
                i = rest;
            } else {
                stack.push('[');
                i = rest;
                continue 'value;
            }
        } else if let Some(rest) = i.strip_prefix('{') {
            if depth + stack.len() + 1 > MAX_DEPTH {
                return None;
            }
            let rest = json_ws(rest);
            if let Some(rest) = rest.strip_prefix('}') {
                i = rest;
            } else {
                stack.push('{');
                i = object_key(rest)?;
                continue 'value;
            }
        } else {
            i = json_scalar(i).ok()?.0;
        }
        // A value is complete: close containers or move to the next element.
        loop {
            i = json_ws(i);
            match stack.last() {
                None => return Some(i),
                Some('[') => {
                    if let Some(rest) = i.strip_prefix(',') {
                        i = rest;
                        continue 'value;
                    }
                    i = i.strip_prefix(']')?;
                    stack.pop();
                }
                Some(_) => {
                    if let Some(rest) = i.strip_prefix(',') {
                        i = object_key(json_ws(rest))?;
                        continue 'value;
                    }
                    i = i.strip_prefix('}')?;
                    stack.pop();
                }
            }
        }
    }
}

/// `"key" :` inside an object.
fn object_key(i: &str) -> Option<&str> {
    let (i, _) = json_string(i).ok()?;
    json_ws(i).strip_prefix(':')
}

/// Classifies the argument text of an instruction.
pub(crate) fn parse_json_array(rest: &str) -> JsonArgs {
    let Some(mut i) = rest.trim_start().strip_prefix('[') else {
        return JsonArgs::Invalid;
    };
    let mut out = Vec::new();
    let mut all_strings = true;
    i = json_ws(i);
    if let Some(rest) = i.strip_prefix(']') {
        i = rest;
    } else {
        loop {
            i = json_ws(i);
            if let Ok((rest, s)) = json_string(i) {
                out.push(s);
                i = rest;
            } else {
                match skip_value(i, 1) {
                    Some(rest) => {
                        all_strings = false;
                        i = rest;
                    }
                    None => return JsonArgs::Invalid,
                }
            }
            i = json_ws(i);
            if let Some(rest) = i.strip_prefix(',') {
                i = rest;
            } else if let Some(rest) = i.strip_prefix(']') {
                i = rest;
                break;
            } else {
                return JsonArgs::Invalid;
            }
        }
    }
    if !json_ws(i).is_empty() {
        return JsonArgs::Invalid;
    }
    if all_strings {
        JsonArgs::Strings(out)
    } else {
        JsonArgs::NotStrings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArgs {
        JsonArgs::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays_of_strings() {
        assert_eq!(parse_json_array("[]"), strings(&[]));
        assert_eq!(
            parse_json_array(" [ \"a\" ,\t\"b\" ] "),
            strings(&["a", "b"])
        );
        assert_eq!(
            parse_json_array(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u2665"]"#),
            strings(&["\" \\ / \u{8} \u{c} \n \r \t \0 \u{2665}"])
        );
        assert_eq!(
            parse_json_array(r#"["\ud83d\ude00", "\ud800x"]"#),
            strings(&["😀", "\u{fffd}x"])
        );
    }

    #[test]
    fn non_strings_are_rejected_only_when_valid_json() {
        assert_eq!(
            parse_json_array(r#"[ "echo", [ "nested json" ] ]"#),
            JsonArgs::NotStrings
        );
        assert_eq!(
            parse_json_array(r#"["a", 1, {"k": [true, null]}]"#),
            JsonArgs::NotStrings
        );
        assert_eq!(parse_json_array(r#"["a", [1"#), JsonArgs::Invalid);
        assert_eq!(parse_json_array(r#"["a", 01]"#), JsonArgs::Invalid);
    }

    #[test]
    fn invalid_json_is_shell_form() {
        for s in [
            "['a']",
            r#"["a""#,
            r#"["a]"#,
            r#"["a"] x"#,
            "echo [",
            "[\u{a0}\"a\"]",
            "[\"a\tb\"]",
            r#"["\x"]"#,
            "[\"a\",]",
        ] {
            assert_eq!(parse_json_array(s), JsonArgs::Invalid, "{s}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("[{}{}]", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(parse_json_array(&deep), JsonArgs::Invalid);
        let ok = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_json_array(&ok), JsonArgs::NotStrings);
    }
}
