//! Shell-word expansion with Docker's (BuildKit's) semantics: quote removal, escapes and
//! `$VAR` / `${VAR...}` substitution, as applied to Dockerfile instruction arguments.
//!
//! This is deliberately *not* a POSIX shell: there is no command substitution, no globbing of
//! file names, no `~`, and the supported `${...}` forms are exactly Docker's:
//! `${v}`, `${v:-w}` `${v-w}`, `${v:+w}` `${v+w}`, `${v:?w}` `${v?w}`,
//! `${v#p}` `${v##p}` `${v%p}` `${v%%p}`, `${v/p/r}` `${v//p/r}`.
//! Patterns support `*`, `?` and `\` escapes (no bracket expressions, like BuildKit).

use regex::{NoExpand, Regex};
use std::collections::BTreeSet;

/// An expansion failure. `offset` is the 0-based byte offset in the word where it went wrong:
/// the opening quote of an unterminated quoted string, or the `$` that starts a failing
/// `${...}` expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    pub message: String,
    pub offset: usize,
}

impl ShellError {
    fn new(message: impl Into<String>, offset: usize) -> ShellError {
        ShellError {
            message: message.into(),
            offset,
        }
    }

    /// The message as `docker build` prints it: `failed to process "<word>": <message>`.
    pub fn docker_message(&self, word: &str) -> String {
        format!("failed to process {word:?}: {}", self.message)
    }
}

/// Expands words the way a Dockerfile does, with a configurable escape character
/// (`\` by default, `` ` `` with the `# escape=`` ` `` directive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// The escape character this lexer uses.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands one word (quotes removed, variables substituted), as for ENV/LABEL/WORKDIR/USER values.
    /// Whitespace is kept as written.
    pub fn expand_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ShellError> {
        let mut ex = Expander::new(word, self.escape, env);
        let (text, _) = ex.process_until(None, false)?;
        Ok(text)
    }

    /// Expands and splits into words, as for COPY/ADD sources, EXPOSE, VOLUME, FROM.
    /// Splitting happens after expansion: unquoted whitespace (literal or coming from a
    /// variable's value) separates words; quoted or escaped whitespace does not. Empty
    /// words (e.g. `""`) are dropped, as Docker does.
    pub fn expand_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ShellError> {
        let mut ex = Expander::new(word, self.escape, env);
        let (_, words) = ex.process_until(None, false)?;
        Ok(words.finish())
    }

    /// Expands like [`Lexer::expand_word`] and [`Lexer::expand_words`] at once, also reporting
    /// which variable names were looked up (for "undefined variable" or "unused build-arg"
    /// warnings).
    pub fn expand(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expansion, ShellError> {
        let mut ex = Expander::new(word, self.escape, env);
        let (value, words) = ex.process_until(None, false)?;
        Ok(Expansion {
            value,
            words: words.finish(),
            matched: ex.matched,
            unmatched: ex.unmatched,
        })
    }
}

/// The full result of [`Lexer::expand`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded word, as [`Lexer::expand_word`] returns it.
    pub value: String,
    /// The split words, as [`Lexer::expand_words`] returns them.
    pub words: Vec<String>,
    /// Names that were looked up and set (possibly empty).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// Accumulates split words. `in_word` tracks whether something (possibly an empty quoted
/// string) has started the current word.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the current word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.done.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.done.push(self.word);
        }
        self.done
    }
}

/// Cursor over the word being expanded.
struct Expander<'a> {
    src: &'a str,
    pos: usize,
    escape: char,
    env: &'a dyn Fn(&str) -> Option<String>,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a> Expander<'a> {
    fn new(src: &'a str, escape: char, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Expander {
            src,
            pos: 0,
            escape,
            env,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Processes text until `stop` (consumed) or the end of the word (when `stop` is None).
    /// `raw` keeps escape characters in the output: used for patterns, whose escapes are
    /// interpreted later by the pattern matcher.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw: bool,
    ) -> Result<(String, Words), ShellError> {
        let start = self.pos;
        let mut out = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((out, words));
            }
            match ch {
                '$' => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                    words.add_str(&v);
                }
                '\'' => {
                    let v = self.single_quoted()?;
                    out.push_str(&v);
                    words.add_raw_str(&v);
                }
                '"' => {
                    let v = self.double_quoted(raw)?;
                    out.push_str(&v);
                    words.add_raw_str(&v);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if raw {
                            out.push(ch);
                            words.add_raw_char(ch);
                        }
                        // An escape at the very end of the word is dropped.
                        let Some(escaped) = self.next() else { break };
                        out.push(escaped);
                        words.add_raw_char(escaped);
                    } else {
                        out.push(ch);
                        words.add_char(ch);
                    }
                }
            }
        }
        match stop {
            None => Ok((out, words)),
            Some(c) => Err(ShellError::new(
                format!("unexpected end of statement while looking for matching {c}"),
                start,
            )),
        }
    }

    /// `'...'`: everything literal, no escapes at all.
    fn single_quoted(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.next();
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ShellError::new(
                        "unexpected end of statement while looking for matching single-quote",
                        start,
                    ));
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character only escapes `"`, `$` and itself and is
    /// kept literally before anything else.
    fn double_quoted(&mut self, raw: bool) -> Result<String, ShellError> {
        let start = self.pos;
        self.next();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ShellError::new(
                        "unexpected end of statement while looking for matching double-quote",
                        start,
                    ));
                }
                Some('"') => {
                    self.next();
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        if raw {
                            out.push(ch);
                        }
                        match self.peek() {
                            // Reported as an unterminated quote on the next turn.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                ch = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = (self.env)(name);
        let seen = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        seen.insert(name.to_string());
        value
    }

    /// `$name`, `${name}` and `${name<modifier>...}`; the scanner is on the `$`.
    fn dollar(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                // A lone `$` (or `$` before a non-name character) is literal.
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::new("syntax error: missing '}'", start)),
            Some('{' | '}' | ':') => {
                return Err(ShellError::new("syntax error: bad substitution", start));
            }
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return Err(ShellError::new("syntax error: missing '}'", start));
        };
        let mut modifier = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => Ok(self.lookup(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if op == ':' {
                    null_is_unset = true;
                    match self.next() {
                        Some(c) => {
                            op = c;
                            modifier.push(c);
                        }
                        None => return Err(ShellError::new("syntax error: missing '}'", start)),
                    }
                }
                // Trim patterns keep their escapes for the pattern matcher.
                let raw = op == '#' || op == '%';
                let word = self.operand(Some('}'), raw, start, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                let unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => {
                        if unset {
                            let message = if !word.is_empty() {
                                word
                            } else if value.is_none() {
                                "is not allowed to be unset".to_string()
                            } else {
                                "is not allowed to be empty".to_string()
                            };
                            Err(ShellError::new(format!("{name}: {message}"), start))
                        } else {
                            Ok(value.unwrap_or_default())
                        }
                    }
                    '#' | '%' => {
                        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let value = value.unwrap_or_default();
                        let trimmed = if op == '#' {
                            trim_prefix(pattern, &value, greedy)
                        } else {
                            trim_suffix(pattern, &value, greedy)
                        };
                        trimmed.map_err(|e| {
                            ShellError::new(
                                format!("invalid pattern ({pattern}) in substitution: {e}"),
                                start,
                            )
                        })
                    }
                    _ => Err(ShellError::new(
                        format!("unsupported modifier ({modifier}) in substitution"),
                        start,
                    )),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern =
                    self.operand(Some('/'), true, start, "syntax error: missing '/' in ${}")?;
                let replacement =
                    self.operand(Some('}'), true, start, "syntax error: missing '}'")?;
                let value = self.lookup(&name).unwrap_or_default();
                let re = shell_pattern_to_regex(&pattern, true, false).map_err(|e| {
                    ShellError::new(
                        format!("invalid pattern ({pattern}) in substitution: {e}"),
                        start,
                    )
                })?;
                if all {
                    Ok(re.replace_all(&value, NoExpand(&replacement)).into_owned())
                } else {
                    Ok(re.replace(&value, NoExpand(&replacement)).into_owned())
                }
            }
            _ => Err(ShellError::new(
                format!("unsupported modifier ({modifier}) in substitution"),
                start,
            )),
        }
    }

    /// The operand of a `${...}` modifier, up to `stop`. Running off the end of the word is
    /// reported as `at_end_msg` (whatever went wrong inside), at the `$` of the expression.
    fn operand(
        &mut self,
        stop: Option<char>,
        raw: bool,
        start: usize,
        at_end_msg: &str,
    ) -> Result<String, ShellError> {
        match self.process_until(stop, raw) {
            Ok((s, _)) => Ok(s),
            Err(_) if self.at_end() => Err(ShellError::new(at_end_msg, start)),
            Err(e) => Err(e),
        }
    }

    /// A variable name: letters, digits and `_`; a leading digit reads a positional
    /// parameter (all following digits); a special parameter is a single character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// Decimal digits (Unicode `Nd`, approximated for non-ASCII by `is_numeric`).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// POSIX special parameters; never set in a Dockerfile, so they expand to nothing.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Why a `${v#p}`-style pattern is unusable; expansion reports it as
/// `invalid pattern (P) in substitution: <this>`.
#[derive(Debug, thiserror::Error)]
enum PatternError {
    #[error("invalid escape '\\{0}'")]
    InvalidEscape(char),
    #[error("invalid escape '\\' at end of pattern")]
    TrailingEscape,
    #[error("{0}")]
    Regex(#[from] regex::Error),
}

/// Converts a substitution pattern (`*`, `?`, `\`-escapes) to a regex. `\}` and `\/` are the
/// escaped delimiters of `${...}` and stand for the plain character.
fn shell_pattern_to_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Regex, PatternError> {
    let mut out = String::with_capacity(pattern.len() + 8);
    if anchored {
        out.push('^');
    }
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(if greedy { ".*" } else { ".*?" }),
            '?' => out.push('.'),
            '\\' => match chars.peek().copied() {
                Some('}' | '/') => {}
                Some(e @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push_str(&regex::escape(&e.to_string()));
                }
                Some(e) => return Err(PatternError::InvalidEscape(e)),
                None => return Err(PatternError::TrailingEscape),
            },
            _ => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    Ok(Regex::new(&out)?)
}

/// `${v#p}` / `${v##p}`: removes the shortest (longest when greedy) matching prefix.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternError> {
    let re = shell_pattern_to_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// `${v%p}` / `${v%%p}`: the shortest rightmost match is found as a leftmost match of the
/// reversed pattern in the reversed value (regexes only search leftmost).
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternError> {
    let reversed = trim_prefix(&reverse_pattern(pattern), &reverse(value), greedy)?;
    Ok(reverse(&reversed))
}

fn reverse(s: &str) -> String {
    s.chars().rev().collect()
}

/// Reverses a pattern keeping each `\x` escape pair in order (`a\*c` -> `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let mut units: Vec<String> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let mut unit = c.to_string();
        if c == '\\'
            && let Some(n) = chars.next()
        {
            unit.push(n);
        }
        units.push(unit);
    }
    units.into_iter().rev().collect()
}

#[cfg(test)]
mod tests;
