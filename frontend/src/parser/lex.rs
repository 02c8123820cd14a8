//! nom tokenisers for one joined instruction line: the keyword split, the
//! leading `--flags`, BuildKit's quote-aware word splitting (ENV/LABEL/ARG)
//! and the parser-directive comment syntax.

use super::Parsed;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{anychar, char, satisfy};
use nom::combinator::{eof, map, opt, value};
use nom::multi::{fold_many0, fold_many1};

/// Go's `unicode.IsSpace` (the Unicode White_Space property, as Rust's).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `unicode.IsSpace` on a single byte as BuildKit's byte-wise flag
/// scanner applies it: only ASCII whitespace counts.
pub(crate) fn is_go_ascii_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// The characters of BuildKit's `[\t\v\f\r ]+` splitter.
pub(crate) fn is_ascii_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Go regexp's `\s` (ASCII only).
pub(crate) fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Splits `line` into keyword, flags and the trimmed argument text.
/// The argument text is a subslice of `line` (callers use its offset).
pub(crate) fn split_command(line: &str, esc: char) -> (&str, Vec<String>, &str) {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_ascii_blank) {
        Some(i) => {
            let rest = trimmed[i..].trim_start_matches(is_ascii_blank);
            (&trimmed[..i], Some(rest))
        }
        None => (trimmed, None),
    };
    match rest {
        Some(rest) => {
            let (flags, args) = extract_flags(rest, esc);
            (cmd, flags, args.trim())
        }
        None => (cmd, Vec::new(), &trimmed[trimmed.len()..]),
    }
}

/// One piece of a flag word: quotes are removed and the escape character
/// takes the next character literally (also inside quotes).
fn flag_piece(esc: char) -> impl FnMut(&str) -> Parsed<'_, String> {
    move |i: &str| {
        let escaped = alt((
            map(preceded_char(esc), |c| c.to_string()),
            value(String::new(), (char(esc), eof)),
        ));
        let quoted = |q: char| {
            move |i| {
                let (i, _) = char(q).parse(i)?;
                let (i, body) = fold_many0(
                    alt((
                        map(preceded_char(esc), Some),
                        value(None, (char(esc), eof)),
                        map(satisfy(move |c| c != q && c != esc), Some),
                    )),
                    String::new,
                    |mut s, c: Option<char>| {
                        s.extend(c);
                        s
                    },
                )
                .parse(i)?;
                let (i, _) = opt(char(q)).parse(i)?;
                Ok((i, body))
            }
        };
        alt((
            quoted('"'),
            quoted('\''),
            escaped,
            map(
                take_while1(|c: char| !is_go_ascii_space(c) && c != '"' && c != '\'' && c != esc),
                str::to_string,
            ),
        ))
        .parse(i)
    }
}

fn preceded_char(esc: char) -> impl FnMut(&str) -> Parsed<'_, char> {
    move |i: &str| {
        let (i, _) = char(esc).parse(i)?;
        anychar(i)
    }
}

/// Leading `--name[=value]` words of `line`, and the text after them.
/// A bare `--` ends the flags and is dropped.
pub(crate) fn extract_flags(line: &str, esc: char) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut input = line;
    loop {
        let after_ws = input.trim_start_matches(is_go_ascii_space);
        if !after_ws.starts_with("--") {
            return (flags, after_ws);
        }
        let parsed: Parsed<'_, String> = fold_many1(flag_piece(esc), String::new, |mut s, p| {
            s.push_str(&p);
            s
        })
        .parse(after_ws);
        let Ok((rest, word)) = parsed else {
            // Cannot happen: the word starts with "--"; stop treating it as flags.
            return (flags, after_ws);
        };
        if word == "--" {
            return (flags, rest);
        }
        flags.push(word);
        input = rest;
    }
}

/// One piece of an ENV/LABEL/ARG word: quotes and escapes are kept as written.
fn kv_piece(esc: char) -> impl FnMut(&str) -> Parsed<'_, String> {
    move |i: &str| {
        let escaped = alt((
            map(preceded_char(esc), move |c| format!("{esc}{c}")),
            value(String::new(), (char(esc), eof)),
        ));
        let single = map(
            (char('\''), take_while(|c| c != '\''), opt(char('\''))),
            |(_, body, close): (char, &str, Option<char>)| {
                let mut s = String::with_capacity(body.len() + 2);
                s.push('\'');
                s.push_str(body);
                s.extend(close);
                s
            },
        );
        let double = |i| {
            let (i, _) = char('"').parse(i)?;
            let (i, body) = fold_many0(
                alt((
                    map(preceded_char(esc), move |c| format!("{esc}{c}")),
                    value(String::new(), (char(esc), eof)),
                    map(
                        take_while1(move |c: char| c != '"' && c != esc),
                        str::to_string,
                    ),
                )),
                || String::from("\""),
                |mut s, p| {
                    s.push_str(&p);
                    s
                },
            )
            .parse(i)?;
            let (i, close) = opt(char('"')).parse(i)?;
            let mut body = body;
            body.extend(close);
            Ok((i, body))
        };
        alt((
            double,
            single,
            escaped,
            map(
                take_while1(|c: char| !is_space(c) && c != '"' && c != '\'' && c != esc),
                str::to_string,
            ),
        ))
        .parse(i)
    }
}

/// BuildKit's `parseWords`: whitespace-separated words, quotes kept,
/// whitespace inside quotes does not split.
pub(crate) fn kv_words(rest: &str, esc: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut input = rest;
    loop {
        input = input.trim_start_matches(is_space);
        if input.is_empty() {
            return words;
        }
        let parsed: Parsed<'_, String> = fold_many1(kv_piece(esc), String::new, |mut s, p| {
            s.push_str(&p);
            s
        })
        .parse(input);
        match parsed {
            Ok((rest, word)) => {
                if !word.is_empty() {
                    words.push(word);
                }
                input = rest;
            }
            // Unreachable (every non-space character starts a piece); never loop.
            Err(_) => return words,
        }
    }
}

/// A parser directive found in a comment line (`# escape=\``).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirectiveLine<'a> {
    /// Lower-cased name.
    pub name: String,
    pub value: &'a str,
    /// Byte offset of the value in the line.
    pub value_offset: usize,
}

/// Matches `#\s*name\s*=\s*value` (BuildKit's directive regexp) on a line
/// whose leading whitespace is already removed.
pub(crate) fn directive_line(line: &str) -> Option<DirectiveLine<'_>> {
    let body = line.strip_prefix('#')?.trim_start_matches(is_space);
    let name_p = (
        satisfy(|c: char| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    );
    let mut p = (
        nom::combinator::recognize(name_p),
        take_while(is_re_space),
        tag("="),
    );
    let res: Parsed<'_, _> = p.parse(body);
    let (after, (name, _, _)) = res.ok()?;
    if after.is_empty() {
        return None;
    }
    let trimmed = after.trim_start_matches(is_re_space);
    let value = if trimmed.is_empty() {
        // `.+?` backtracks into the whitespace: the value is its last character.
        let last = after.chars().next_back()?;
        &after[after.len() - last.len_utf8()..]
    } else {
        trimmed.trim_end_matches(is_re_space)
    };
    let value_offset = value.as_ptr() as usize - line.as_ptr() as usize;
    Some(DirectiveLine {
        name: name.to_ascii_lowercase(),
        value,
        value_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_command_trims_and_extracts_flags() {
        let (cmd, flags, args) =
            split_command("  COPY --from=a \t--chown=\"x y\" -- src dst  ", '\\');
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=a", "--chown=x y"]);
        assert_eq!(args, "src dst");
        let (cmd, flags, args) = split_command("CMD", '\\');
        assert_eq!((cmd, flags.len(), args), ("CMD", 0, ""));
    }

    #[test]
    fn flags_stop_at_first_non_flag_word() {
        let (flags, rest) = extract_flags("--a=1 b --c", '\\');
        assert_eq!(flags, vec!["--a=1"]);
        assert_eq!(rest, "b --c");
        let (flags, rest) = extract_flags("--doit", '\\');
        assert_eq!(flags, vec!["--doit"]);
        assert_eq!(rest, "");
        let (flags, rest) = extract_flags("--x=a\\ b c", '\\');
        assert_eq!(flags, vec!["--x=a b"]);
        assert_eq!(rest, "c");
    }

    #[test]
    fn kv_words_keep_quotes_and_escapes() {
        assert_eq!(
            kv_words(r#"a="x y" b=c\ d 'e f'"#, '\\'),
            vec![r#"a="x y""#, r"b=c\ d", "'e f'"]
        );
        assert_eq!(kv_words(r#"n='a\'b''"#, '\\'), vec![r"n='a\'b''"]);
        assert_eq!(kv_words("a \\", '\\'), vec!["a"]);
        assert_eq!(
            kv_words(r#"x="unterminated"#, '\\'),
            vec![r#"x="unterminated"#]
        );
    }

    #[test]
    fn directive_regexp_semantics() {
        let d = directive_line("# escape = ` ").unwrap();
        assert_eq!((d.name.as_str(), d.value), ("escape", "`"));
        let d = directive_line("#SYNTAX=docker/dockerfile:1").unwrap();
        assert_eq!(
            (d.name.as_str(), d.value),
            ("syntax", "docker/dockerfile:1")
        );
        assert!(directive_line("# just a comment").is_none());
        assert!(directive_line("# 1a=b").is_none());
        assert_eq!(directive_line("#escape= ").unwrap().value, " ");
    }
}
