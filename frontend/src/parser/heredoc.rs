//! Heredoc markers (`<<EOF`, `<<-"EOF"`, `2<<EOF`) in an instruction line.
//!
//! BuildKit finds them by splitting the line into shell words (quotes and
//! escapes kept, variables left unexpanded) and matching each word against
//! `^(\d*)<<(-?)\s*([^<]*)$`; the delimiter is that word with quotes removed,
//! and a quoted delimiter turns off expansion of the body.

use super::Parsed;
use nom::Parser;
use nom::bytes::complete::{tag, take_while};
use nom::combinator::{eof, opt};

use super::lex::{is_re_space, is_space};

/// The shell lexer always uses `\` here, whatever the escape directive says.
const ESC: char = '\\';
/// `${a:-${a:-...}}` nesting beyond this is treated as a lexing error.
const MAX_NESTING: usize = 256;

/// A heredoc marker found in an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError(pub String);

/// Finished words and whether a word is in progress. The partial word
/// itself lives in [`Lexer::buf`], shared by nested `${...}` scans exactly as
/// BuildKit shares it: a nested scan drops the partial word before it.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, c: char) {
        if is_space(c) {
            if self.in_word && !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(buf, c);
        }
    }
    fn add_raw_char(&mut self, buf: &mut String, c: char) {
        buf.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, buf: &mut String, s: &str) {
        s.chars().for_each(|c| self.add_char(buf, c));
    }
    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}

/// A shell word lexer with an empty environment where unset variables are
/// left as written (BuildKit's `SkipUnsetEnv`).
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    depth: usize,
    /// The word being built (see [`Words`]).
    buf: String,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(LexError("substitutions nested too deeply".into()));
        }
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();
        self.buf.clear();
        while let Some(c) = self.peek() {
            if stop == Some(c) {
                self.next();
                return Ok((result, words.finish(&mut self.buf)));
            }
            match c {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&mut self.buf, &tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&mut self.buf, &tmp);
                }
                '\'' => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&mut self.buf, &tmp);
                }
                '"' => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&mut self.buf, &tmp);
                }
                _ => {
                    let mut c = self.next().unwrap_or(c);
                    if c == ESC {
                        if self.raw_escapes {
                            words.add_raw_char(&mut self.buf, c);
                            result.push(c);
                        }
                        match self.next() {
                            None => break,
                            Some(n) => {
                                words.add_raw_char(&mut self.buf, n);
                                c = n;
                            }
                        }
                    } else {
                        words.add_char(&mut self.buf, c);
                    }
                    result.push(c);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(LexError(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish(&mut self.buf)))
    }

    fn process_single_quote(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(LexError(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ));
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(LexError(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut c = self.next().unwrap_or(ESC);
                    if c == ESC {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == ESC => {
                                self.next();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(d) = self.peek().filter(|d| d.is_numeric()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    /// `$name` / `${...}` with every variable unset: kept as written.
    fn process_dollar(&mut self) -> Result<String, LexError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err(LexError("syntax error: missing '}'".into())),
            Some('{' | '}' | ':') => return Err(LexError("syntax error: bad substitution".into())),
            _ => {}
        }
        let name = self.process_name();
        let Some(c) = self.next() else {
            return Err(LexError("syntax error: missing '}'".into()));
        };
        match c {
            '}' => Ok(format!("${{{name}}}")),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = c.to_string();
                let mut op = c;
                if c == ':' {
                    let Some(n) = self.next() else {
                        return Err(LexError("syntax error: missing '}'".into()));
                    };
                    modifier.push(n);
                    op = n;
                }
                let raw = op == '#' || op == '%';
                if c == ':' && raw {
                    return Err(LexError(format!(
                        "unsupported modifier ({modifier}) in substitution"
                    )));
                }
                let (word, _) = self.process_stop_on(Some('}'), raw)?;
                Ok(format!("${{{name}{modifier}{word}}}"))
            }
            '/' => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true)?;
                let (replacement, _) = self.process_stop_on(Some('}'), true)?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            other => Err(LexError(format!(
                "unsupported modifier ({other}) in substitution"
            ))),
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            self.next();
            out.push(c);
        }
        out
    }
}

fn shell_words(text: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<String>, LexError> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        raw_quotes,
        raw_escapes,
        depth: 0,
        buf: String::new(),
    };
    lx.process_stop_on(None, raw_escapes).map(|(_, w)| w)
}

/// `(\d*)<<(-?)\s*([^<]*)$` on a whole word: (chomp, delimiter text).
fn marker_syntax(word: &str) -> Parsed<'_, (bool, &str)> {
    let (i, _) = take_while(|c: char| c.is_ascii_digit()).parse(word)?;
    let (i, _) = tag("<<").parse(i)?;
    let (i, dash) = opt(tag("-")).parse(i)?;
    let (i, _) = take_while(is_re_space).parse(i)?;
    let (i, rest) = take_while(|c| c != '<').parse(i)?;
    let (i, _) = eof.parse(i)?;
    Ok((i, (dash.is_some(), rest)))
}

fn quote_count(s: &str) -> usize {
    s.chars().filter(|&c| c == '\'' || c == '"').count()
}

/// The heredoc a single word introduces, if any (BuildKit's `ParseHeredoc`).
pub(crate) fn parse_marker(word: &str) -> Result<Option<Marker>, LexError> {
    let Ok((_, (chomp, rest))) = marker_syntax(word) else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let words = shell_words(rest, false, false)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = shell_words(rest, true, false)?;
    if raw.len() != words.len() {
        return Err(LexError(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    }
    Ok(Some(Marker {
        expand: quote_count(&words[0]) == quote_count(&raw[0]),
        name: words[0].clone(),
        chomp,
    }))
}

/// Every heredoc marker of an instruction line, in order.
pub(crate) fn markers_in_line(line: &str) -> Result<Vec<Marker>, LexError> {
    // A line the shell lexer cannot split (an unterminated quote) has no heredocs.
    let words = shell_words(line, true, true).unwrap_or_default();
    let mut out = Vec::new();
    for w in &words {
        if let Some(m) = parse_marker(w)? {
            out.push(m);
        }
    }
    Ok(out)
}

/// `<<-` bodies: leading tabs removed from every line.
pub(crate) fn chomp_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        markers_in_line(line)
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.expand, m.chomp))
            .collect()
    }

    #[test]
    fn finds_markers_like_buildkit() {
        assert_eq!(names("RUN <<EOF"), vec![("EOF".into(), true, false)]);
        assert_eq!(
            names("RUN --mount=x <<-'EOT' cat <<\"E2\" > f"),
            vec![("EOT".into(), false, true), ("E2".into(), false, false)]
        );
        assert_eq!(names("COPY << EOF /x"), vec![("EOF".into(), true, false)]);
        assert_eq!(names("RUN 3<<EOF"), vec![("EOF".into(), true, false)]);
        assert!(names("RUN echo '<<EOF'").is_empty());
        assert!(names("RUN echo \"unterminated <<EOF").is_empty());
        assert!(names("RUN a <<- EOF").is_empty());
        assert!(names("RUN echo $((1<<2))").is_empty());
        // A nested ${...} scan drops the partial word before it (BuildKit quirk).
        assert!(names("COPY <<EOF${y:-z}k=v /x").is_empty());
        assert_eq!(
            names("COPY <<EOF${y} /x"),
            vec![("EOF${y}".into(), true, false)]
        );
    }

    #[test]
    fn words_keep_unset_variables() {
        assert_eq!(
            shell_words("a ${x:-y z} \"$b c\"", true, true).unwrap(),
            vec!["a", "${x:-y", "z}", "\"$b c\""]
        );
        assert!(shell_words("${", true, true).is_err());
        let deep = "${a:-".repeat(10_000);
        assert!(shell_words(&deep, true, true).is_err());
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp_tabs("\t\ta\n\tb\t\nc"), "a\nb\t\nc");
    }
}
