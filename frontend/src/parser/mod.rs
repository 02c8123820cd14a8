//! Dockerfile parser: directives, line continuations, heredocs and the
//! generic per-instruction nodes BuildKit's parser produces.
//!
//! The line handling (which lines join, which are comments, where a heredoc
//! body ends) is a small loop over physical lines; the tokenising of one
//! joined instruction line is done with nom in [`lex`], [`json`] and
//! [`heredoc`].

mod heredoc;
mod json;
mod lex;

use crate::Diagnostic;
use crate::ast::{Directives, Dockerfile, Heredoc, Node, Span};

pub(crate) use heredoc::parse_marker;

/// What the nom tokenisers return: the rest of the input and the `T` read from it (the
/// error is nom's own; a failed tokeniser means "not this form", never a user error).
type Parsed<'a, T> = nom::IResult<&'a str, T>;
use json::JsonArgs;

/// Every instruction keyword, upper-case, for messages and suggestions.
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses a whole Dockerfile (or a single instruction line, e.g. an ONBUILD trigger).
///
/// A Dockerfile without FROM is not a parse error (lowering reports it);
/// one without any instruction is.
pub fn parse(source: &str) -> Result<Dockerfile, Diagnostic> {
    Parser::new(source).run()
}

/// An error inside one joined instruction line; `offset` is a byte offset
/// into that line, turned into a source column when possible.
struct LineError {
    message: String,
    help: Option<String>,
    offset: usize,
}

impl LineError {
    fn new(message: impl Into<String>, offset: usize) -> Self {
        LineError {
            message: message.into(),
            help: None,
            offset,
        }
    }
    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

struct Parser<'a> {
    source: &'a str,
    lines: Vec<&'a str>,
    directives: Directives,
    /// Still looking for parser directives (only at the very top).
    in_directives: bool,
    seen_directives: Vec<String>,
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape (plus blanks after it) that continues the
/// line; an escaped escape (`\\` at the end) does not continue it.
fn trim_continuation(line: &str, esc: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(esc)
        && !before.ends_with(esc)
    {
        return (before, false);
    }
    (line, true)
}

/// Byte offset of `part` inside `whole` (`part` must be a subslice).
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(whole.as_ptr() as usize)
        .min(whole.len())
}

/// 1-based character column of byte `offset` of `line`.
fn column_of(line: &str, offset: usize) -> usize {
    let mut off = offset.min(line.len());
    while !line.is_char_boundary(off) {
        off -= 1;
    }
    line[..off].chars().count() + 1
}

/// Levenshtein distance, for did-you-mean suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `options` within distance 2 (BuildKit's rule), if any.
pub(crate) fn suggest<'o>(word: &str, options: &[&'o str]) -> Option<&'o str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for &opt in options {
        let d = edit_distance(&lower, &opt.to_lowercase());
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, opt));
        }
    }
    best.map(|(_, o)| o)
}

/// The escape character the `# escape=` directive of `source` selects.
pub(crate) fn escape_of(source: &str) -> char {
    let src = source.strip_prefix('\u{feff}').unwrap_or(source);
    for line in src.lines() {
        match lex::directive_line(line.trim_start()) {
            Some(d) if d.name == "escape" => return if d.value == "`" { '`' } else { '\\' },
            Some(d) if d.name == "syntax" || d.name == "check" => {}
            _ => break,
        }
    }
    '\\'
}

/// Go's `%q` of one string (used by messages that quote user text).
pub(crate) fn go_quote(s: &str) -> String {
    crate::dump::quote(s)
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Self {
        Parser {
            source,
            lines: source.split_inclusive('\n').collect(),
            directives: Directives::default(),
            in_directives: true,
            seen_directives: Vec::new(),
        }
    }

    fn esc(&self) -> char {
        self.directives.escape
    }

    /// Checks a (left-trimmed) line for a parser directive; true when it was one.
    fn directive(&mut self, line: &str, line_no: usize, indent: usize) -> Result<bool, Diagnostic> {
        if !self.in_directives {
            return Ok(false);
        }
        let Some(d) = lex::directive_line(line) else {
            self.in_directives = false;
            return Ok(false);
        };
        if !matches!(d.name.as_str(), "syntax" | "escape" | "check") {
            self.in_directives = false;
            return Ok(false);
        }
        let col = indent + column_of(line, d.value_offset);
        if self.seen_directives.contains(&d.name) {
            return Err(Diagnostic::new(format!(
                "only one {} parser directive can be used",
                d.name
            ))
            .at(self.source, line_no, col)
            .help("remove the repeated directive"));
        }
        self.seen_directives.push(d.name.clone());
        match d.name.as_str() {
            "escape" => match d.value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                v => {
                    return Err(Diagnostic::new(format!(
                        "invalid escape token '{v}' does not match ` or \\"
                    ))
                    .at(self.source, line_no, col)
                    .help("the escape character is \\ (the default) or a backtick"));
                }
            },
            "syntax" => self.directives.syntax = Some(d.value.to_string()),
            _ => self.directives.check = Some(d.value.to_string()),
        }
        Ok(true)
    }

    fn run(mut self) -> Result<Dockerfile, Diagnostic> {
        let mut nodes = Vec::new();
        // Comment lines since the last instruction (see `Node::comments`).
        let mut comments: Vec<String> = Vec::new();
        let mut idx = 0;
        while idx < self.lines.len() {
            let mut raw = self.lines[idx];
            if idx == 0 {
                raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
            }
            let line_no = idx + 1;
            let untrimmed = trim_newline(raw);
            let token = untrimmed.trim_start();
            let indent = untrimmed[..untrimmed.len() - token.len()].chars().count();
            let was_directive = self.directive(token, line_no, indent)?;
            idx += 1;
            if is_comment(token) && !was_directive {
                match token.trim_start_matches('#').trim() {
                    "" => comments.clear(),
                    text => comments.push(text.to_string()),
                }
            }
            let token = if is_comment(token) { "" } else { token };
            let (first, mut end_of_line) = trim_continuation(token, self.esc());
            if end_of_line && first.is_empty() {
                continue;
            }
            let start_line = line_no;
            let mut line = first.to_string();
            let mut empty_continuation = None;
            while !end_of_line && idx < self.lines.len() {
                let raw = self.lines[idx];
                idx += 1;
                if is_comment(raw) {
                    continue;
                }
                let part = trim_newline(raw);
                if part.trim_start().is_empty() {
                    empty_continuation = empty_continuation.or(Some(idx));
                    continue;
                }
                let (part, eol) = trim_continuation(part, self.esc());
                line.push_str(part);
                end_of_line = eol;
            }
            let mut node = self
                .node_from_line(&line)
                .map_err(|e| self.line_error(e, start_line, indent, first))?;
            node.span = Span {
                start_line,
                end_line: idx,
            };
            node.comments = std::mem::take(&mut comments);
            node.empty_continuation = empty_continuation;
            idx = self.read_heredocs(&mut node, &line, idx, start_line, indent)?;
            node.span.end_line = idx;
            if let Some(inner) = node.inner.as_mut() {
                inner.span = node.span;
            }
            nodes.push(node);
        }
        if nodes.is_empty() {
            let last = self.lines.len().max(1);
            return Err(Diagnostic::new("file with no instructions")
                .at(self.source, last, 1)
                .help("a Dockerfile needs at least one instruction, e.g. FROM <image>"));
        }
        Ok(Dockerfile {
            directives: self.directives,
            nodes,
        })
    }

    /// Places an error of the joined line on the instruction's first source
    /// line (`first` is that line's text as joined); offsets past it point
    /// at the keyword.
    fn line_error(&self, e: LineError, line_no: usize, indent: usize, first: &str) -> Diagnostic {
        let col = if e.offset <= first.len() {
            indent + column_of(first, e.offset)
        } else {
            indent + 1
        };
        let d = Diagnostic::new(e.message).at(self.source, line_no, col);
        match e.help {
            Some(h) => d.help(h),
            None => d,
        }
    }

    /// Reads the bodies of the heredocs `line` introduces; returns the index
    /// of the first line after them.
    fn read_heredocs(
        &self,
        node: &mut Node,
        line: &str,
        mut idx: usize,
        start_line: usize,
        indent: usize,
    ) -> Result<usize, Diagnostic> {
        let target = node.inner.as_deref().unwrap_or(node);
        let can_contain = matches!(target.keyword.as_str(), "add" | "copy" | "run") && !target.json;
        if !can_contain || !line.contains("<<") {
            return Ok(idx);
        }
        let markers = heredoc::markers_in_line(line).map_err(|e| {
            Diagnostic::new(format!("invalid heredoc: {}", e.0)).at(
                self.source,
                start_line,
                indent + 1,
            )
        })?;
        for m in markers {
            let mut content = String::new();
            let mut terminated = false;
            while idx < self.lines.len() {
                let raw = self.lines[idx];
                idx += 1;
                let mut candidate = trim_newline(raw);
                if m.chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == m.name {
                    terminated = true;
                    break;
                }
                content.push_str(raw);
            }
            if !terminated {
                let col = self
                    .lines
                    .get(start_line - 1)
                    .and_then(|l| l.find("<<").map(|o| column_of(l, o)))
                    .unwrap_or(indent + 1);
                return Err(
                    Diagnostic::new(format!("unterminated heredoc {}", go_quote(&m.name)))
                        .at(self.source, start_line, col)
                        .help(format!(
                            "end the heredoc with a line containing only {}{}",
                            m.name,
                            if m.chomp {
                                " (leading tabs allowed)"
                            } else {
                                ""
                            }
                        )),
                );
            }
            if m.chomp {
                content = heredoc::chomp_tabs(&content);
            }
            node.heredocs.push(Heredoc {
                name: m.name,
                content,
                expand: m.expand,
                chomp_tabs: m.chomp,
            });
        }
        Ok(idx)
    }

    /// One joined instruction line → node (BuildKit's `newNodeFromLine`).
    fn node_from_line(&self, line: &str) -> Result<Node, LineError> {
        let esc = self.esc();
        let (cmd, flags, args) = lex::split_command(line, esc);
        let keyword = cmd.to_lowercase();
        let cmd_offset = offset_in(line, cmd);
        let args_offset = offset_in(line, args);
        let mut node = Node {
            keyword: keyword.clone(),
            flags,
            args: Vec::new(),
            json: false,
            inner: None,
            heredocs: Vec::new(),
            span: Span::default(),
            original: line.to_string(),
            comments: Vec::new(),
            empty_continuation: None,
        };
        match keyword.as_str() {
            "add" | "copy" | "volume" => match json::parse_json_array(args) {
                JsonArgs::Strings(v) => {
                    node.args = v;
                    node.json = true;
                }
                JsonArgs::NotStrings => return Err(not_strings(args_offset)),
                JsonArgs::Invalid => node.args = split_blanks(args),
            },
            "cmd" | "entrypoint" | "run" | "shell" => {
                (node.args, node.json) = maybe_json(args, args_offset)?;
            }
            "arg" => node.args = lex::kv_words(args, esc),
            "env" | "label" => node.args = name_vals(&keyword, args, esc, args_offset)?,
            "expose" | "from" => node.args = split_blanks(args),
            "healthcheck" => {
                // BuildKit scans bytes here, so only ASCII whitespace separates.
                let sep = args.find(lex::is_go_ascii_space).unwrap_or(args.len());
                if sep > 0 {
                    let rest = args[sep..].trim_start_matches(lex::is_go_ascii_space);
                    let (cmd_args, json) = maybe_json(rest, args_offset + offset_in(args, rest))?;
                    node.args.push(args[..sep].to_string());
                    node.args.extend(cmd_args);
                    node.json = json;
                }
            }
            "maintainer" | "stopsignal" | "user" | "workdir" => {
                if !args.is_empty() {
                    node.args.push(args.to_string());
                }
            }
            "onbuild" => {
                if !args.is_empty() {
                    let inner = self.node_from_line(args).map_err(|mut e| {
                        e.offset += args_offset;
                        e
                    })?;
                    node.inner = Some(Box::new(inner));
                }
            }
            "" => {
                return Err(
                    LineError::new("line continuation without an instruction", 0)
                        .help("remove the escape character at the end of the previous line"),
                );
            }
            _ => {
                let help = match suggest(cmd, &INSTRUCTIONS) {
                    Some(s) => format!("did you mean {s}?"),
                    None => format!("instructions are {}", INSTRUCTIONS.join(", ")),
                };
                return Err(LineError::new(
                    format!("unknown instruction {}", go_quote(cmd)),
                    cmd_offset,
                )
                .help(help));
            }
        }
        Ok(node)
    }
}

fn not_strings(offset: usize) -> LineError {
    LineError::new(
        "when using JSON array syntax, arrays must be comprised of strings only",
        offset,
    )
    .help("quote every element, e.g. [\"echo\", \"hi\"], or use shell form")
}

/// Shell or exec form: a JSON array of strings, or the raw text.
fn maybe_json(args: &str, offset: usize) -> Result<(Vec<String>, bool), LineError> {
    if args.is_empty() {
        return Ok((Vec::new(), false));
    }
    match json::parse_json_array(args) {
        JsonArgs::Strings(v) => Ok((v, true)),
        JsonArgs::NotStrings => Err(not_strings(offset)),
        JsonArgs::Invalid => Ok((vec![args.to_string()], false)),
    }
}

/// Splits on runs of `[\t\v\f\r ]` (the text is already trimmed).
fn split_blanks(args: &str) -> Vec<String> {
    if args.is_empty() {
        return Vec::new();
    }
    args.split(lex::is_ascii_blank)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// ENV/LABEL arguments as `key value sep` triples; sep is `=` for the
/// `k=v` form and empty for the legacy `ENV k v` form.
fn name_vals(
    keyword: &str,
    args: &str,
    esc: char,
    offset: usize,
) -> Result<Vec<String>, LineError> {
    let upper = keyword.to_uppercase();
    let words = lex::kv_words(args, esc);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = args.find(lex::is_ascii_blank) else {
            return Err(
                LineError::new(format!("{upper} must have two arguments"), offset)
                    .help(format!("give a value: {upper} {args}=value")),
            );
        };
        let value = args[i..].trim_start_matches(lex::is_ascii_blank);
        return Ok(vec![
            args[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            let at = args.find(w.as_str()).map_or(offset, |o| offset + o);
            return Err(LineError::new(
                format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    go_quote(w)
                ),
                at,
            )
            .help("every word must be name=value; quote values that contain spaces"));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", true));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN", &INSTRUCTIONS), Some("RUN"));
        assert_eq!(suggest("cpy", &INSTRUCTIONS), Some("COPY"));
        assert_eq!(suggest("xyzzyq", &INSTRUCTIONS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn spans_cover_continuations_and_heredocs() {
        let df = parse("FROM a\nRUN x \\\n  y\nCOPY <<EOF /f\nhi\nEOF\n").unwrap();
        let spans: Vec<_> = df
            .nodes
            .iter()
            .map(|n| (n.span.start_line, n.span.end_line))
            .collect();
        assert_eq!(spans, vec![(1, 1), (2, 3), (4, 6)]);
        assert_eq!(df.nodes[2].heredocs[0].content, "hi\n");
    }

    fn dumped(src: &str) -> String {
        crate::dump::dump(&parse(src).unwrap())
    }

    #[test]
    fn heredoc_forms() {
        let df = parse("FROM a\nRUN <<EOF\necho hi\nEOF\nRUN <<-EOT\n\techo x\n\t\tEOT\n").unwrap();
        let h = &df.nodes[1].heredocs[0];
        assert_eq!(
            (h.name.as_str(), h.content.as_str(), h.expand, h.chomp_tabs),
            ("EOF", "echo hi\n", true, false)
        );
        let h = &df.nodes[2].heredocs[0];
        assert_eq!((h.content.as_str(), h.chomp_tabs), ("echo x\n", true));
        assert_eq!(
            df.nodes[2].span,
            Span {
                start_line: 5,
                end_line: 7
            }
        );

        let df = parse("COPY <<'EOF' <<\"E2\" /x\n$HOME\nEOF\nb\nE2\n").unwrap();
        let names: Vec<_> = df.nodes[0]
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand))
            .collect();
        assert_eq!(names, vec![("EOF", "$HOME\n", false), ("E2", "b\n", false)]);
        assert_eq!(
            dumped("COPY <<'EOF' <<\"E2\" /x\n$HOME\nEOF\nb\nE2\n"),
            "(copy \"<<'EOF'\" \"<<\\\"E2\\\"\" \"/x\")\n"
        );

        let df = parse("RUN <<EOF bash -e\nset -x\nEOF\n").unwrap();
        assert_eq!(df.nodes[0].args, vec!["<<EOF bash -e"]);
        assert_eq!(df.nodes[0].heredocs.len(), 1);

        // Exec form never has heredocs; CRLF bodies keep their bytes.
        assert!(
            parse("RUN [\"cat\", \"<<EOF\"]\n").unwrap().nodes[0]
                .heredocs
                .is_empty()
        );
        let df = parse("RUN <<EOF\r\na\r\nEOF\r\n").unwrap();
        assert_eq!(df.nodes[0].heredocs[0].content, "a\r\n");
        // ONBUILD triggers carry heredocs too.
        let df = parse("ONBUILD RUN <<EOF\nx\nEOF\n").unwrap();
        assert_eq!(df.nodes[0].heredocs[0].content, "x\n");
    }

    #[test]
    fn crlf_bom_and_escape_at_eof() {
        assert_eq!(
            dumped("FROM a\r\nRUN echo \\\r\n  hi\r\n"),
            "(from \"a\")\n(run \"echo   hi\")\n"
        );
        assert_eq!(dumped("\u{feff}FROM a\n"), "(from \"a\")\n");
        assert_eq!(dumped("FROM a\nRUN x \\"), "(from \"a\")\n(run \"x\")\n");
        assert_eq!(
            dumped("FROM a\nRUN x \\\n\n  # c\n  y\n"),
            "(from \"a\")\n(run \"x   y\")\n"
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let df = parse("\u{feff}# syntax=docker/dockerfile:1\n# check=skip=all\n#escape=`\nFROM a\nRUN x `\n y\n").unwrap();
        assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
        assert_eq!(df.directives.escape, '`');
        assert_eq!(df.nodes[1].args, vec!["x  y"]);
        assert_eq!(
            df.nodes[1].span,
            Span {
                start_line: 5,
                end_line: 6
            }
        );
        // After an instruction (or any other comment) it is just a comment.
        let df = parse("FROM a\n# escape=`\nRUN a `\n").unwrap();
        assert_eq!(df.directives.escape, '\\');
        assert_eq!(df.nodes[1].args, vec!["a `"]);
        let df = parse("# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(df.directives.escape, '\\');
        // Windows paths with the backtick escape.
        assert_eq!(
            dumped("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo\n"),
            "(from \"a\")\n(run \"dir c:\\\\   && echo\")\n"
        );
    }

    #[test]
    fn comments_above_and_empty_continuations() {
        let df = parse(
            "# syntax=x\n# check=skip=all\n# about a\n\n# a the arg\nARG a\n# dropped\n#\n# b kept\nFROM s AS b\nRUN x \\\n\n  # inside\n  y\n",
        )
        .unwrap();
        assert_eq!(df.nodes[0].comments, ["about a", "a the arg"]);
        assert_eq!(df.nodes[1].comments, ["b kept"]);
        assert!(df.nodes[2].comments.is_empty());
        assert_eq!(df.nodes[2].empty_continuation, Some(12));
        assert_eq!(df.nodes[1].empty_continuation, None);
        assert_eq!(df.nodes[1].keyword_as_written(), "FROM");
        let df = parse("  frOM a\n").unwrap();
        assert_eq!(df.nodes[0].keyword_as_written(), "frOM");
    }

    #[test]
    fn single_instruction_and_original_text() {
        let df = parse("RUN echo hi").unwrap();
        assert_eq!(df.nodes.len(), 1);
        assert_eq!(df.nodes[0].original, "RUN echo hi");
        let df = parse("run --mount=type=cache,target=/c \\\n  # note\n  make\n").unwrap();
        let n = &df.nodes[0];
        assert_eq!(
            (n.keyword.as_str(), n.flags.as_slice()),
            ("run", &["--mount=type=cache,target=/c".to_string()][..])
        );
        assert_eq!(n.original, "run --mount=type=cache,target=/c   make");
        assert_eq!(
            n.span,
            Span {
                start_line: 1,
                end_line: 3
            }
        );
        assert_eq!(
            dumped("onbuild copy --from=x a b\n"),
            "(onbuild (copy [\"--from=x\"] \"a\" \"b\"))\n"
        );
    }
}
