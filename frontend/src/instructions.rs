//! Typed instructions built from parser nodes: flag and arity validation
//! with BuildKit's rules and messages, plus a caret and a hint.

use crate::Diagnostic;
use crate::ast::{
    Command, CommandLine, CopySpec, Dockerfile, Healthcheck, Heredoc, Instruction, KeyValue,
    MountSpec, Node,
};
use crate::duration::go_duration_nanos;
use crate::parser::{INSTRUCTIONS, escape_of, go_quote, parse_marker, suggest};

/// Typed instruction of one node (validates flags and arity; flags the
/// instruction does not take are errors naming the flag and listing the allowed ones).
pub fn from_node(node: &Node, source: &str) -> Result<Instruction, Diagnostic> {
    let cx = Cx { node, source };
    let command = match node.keyword.as_str() {
        "from" => cx.from()?,
        "run" => cx.run()?,
        "cmd" => {
            cx.flags(&[])?;
            Command::Cmd(cx.command_line())
        }
        "entrypoint" => {
            cx.flags(&[])?;
            Command::Entrypoint(cx.command_line())
        }
        "label" => {
            cx.flags(&[])?;
            Command::Label(cx.key_values("LABEL")?)
        }
        "env" => {
            cx.flags(&[])?;
            Command::Env(cx.key_values("ENV")?)
        }
        "maintainer" => {
            cx.flags(&[])?;
            Command::Maintainer(cx.exactly_one("MAINTAINER")?)
        }
        "expose" => {
            cx.flags(&[])?;
            if node.args.is_empty() {
                return Err(cx.at_least_one("EXPOSE"));
            }
            // BuildKit sorts the (unexpanded) ports.
            let mut ports = node.args.clone();
            ports.sort();
            Command::Expose(ports)
        }
        "add" => Command::Add(cx.copy_spec("ADD")?),
        "copy" => Command::Copy(cx.copy_spec("COPY")?),
        "volume" => {
            cx.flags(&[])?;
            if node.args.is_empty() {
                return Err(cx.at_least_one("VOLUME"));
            }
            let mut vols = Vec::new();
            for v in &node.args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(cx
                        .err("VOLUME specified can not be an empty string")
                        .help("give a path, e.g. VOLUME /data"));
                }
                vols.push(v.to_string());
            }
            Command::Volume(vols)
        }
        "user" => {
            cx.flags(&[])?;
            Command::User(cx.exactly_one("USER")?)
        }
        "workdir" => {
            cx.flags(&[])?;
            Command::Workdir(cx.exactly_one("WORKDIR")?)
        }
        "arg" => {
            cx.flags(&[])?;
            Command::Arg(cx.args()?)
        }
        "onbuild" => cx.onbuild()?,
        "stopsignal" => {
            cx.flags(&[])?;
            Command::Stopsignal(cx.exactly_one("STOPSIGNAL")?)
        }
        "healthcheck" => cx.healthcheck()?,
        "shell" => {
            cx.flags(&[])?;
            if node.args.is_empty() {
                return Err(cx.at_least_one("SHELL"));
            }
            if !node.json {
                return Err(cx
                    .err("SHELL requires the arguments to be in JSON form")
                    .help("write it as a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]"));
            }
            Command::Shell(node.args.clone())
        }
        other => {
            let help = match suggest(other, &INSTRUCTIONS) {
                Some(s) => format!("did you mean {s}?"),
                None => format!("instructions are {}", INSTRUCTIONS.join(", ")),
            };
            return Err(cx
                .err(format!(
                    "unknown instruction {}",
                    go_quote(&other.to_uppercase())
                ))
                .help(help));
        }
    };
    Ok(Instruction {
        command,
        span: node.span,
        original: node.original.clone(),
    })
}

/// Typed instructions of every node, in order.
pub fn instructions(df: &Dockerfile, source: &str) -> Result<Vec<Instruction>, Diagnostic> {
    df.nodes.iter().map(|n| from_node(n, source)).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Str,
    /// May be repeated.
    Strings,
}

/// Parsed flags: name → values (one per occurrence; `"true"`/`"false"` for booleans).
struct Flags(Vec<(&'static str, Vec<String>)>);

impl Flags {
    fn one(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.last().cloned())
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    fn is_true(&self, name: &str) -> bool {
        self.one(name).as_deref() == Some("true")
    }
}

struct Cx<'a> {
    node: &'a Node,
    source: &'a str,
}

impl Cx<'_> {
    fn upper(&self) -> String {
        self.node.keyword.to_uppercase()
    }

    /// The instruction's first source line, if the span is known.
    fn first_line(&self) -> Option<&str> {
        let line = self.node.span.start_line;
        if line == 0 {
            return None;
        }
        self.source
            .lines()
            .nth(line - 1)
            .map(|l| l.trim_start_matches('\u{feff}'))
    }

    /// An error pointing at `needle` in the instruction's first line (or at its keyword).
    fn err_at(&self, msg: impl Into<String>, needle: &str) -> Diagnostic {
        let line = self.node.span.start_line;
        let col = self.first_line().map_or(0, |l| {
            let off = (!needle.is_empty())
                .then(|| l.find(needle))
                .flatten()
                .unwrap_or_else(|| l.len() - l.trim_start().len());
            l[..off].chars().count() + 1
        });
        if line == 0 {
            return Diagnostic::new(msg);
        }
        Diagnostic::new(msg).at(self.source, line, col)
    }

    fn err(&self, msg: impl Into<String>) -> Diagnostic {
        self.err_at(msg, "")
    }

    fn at_least_one(&self, cmd: &str) -> Diagnostic {
        self.err(format!("{cmd} requires at least one argument"))
            .help(usage(cmd))
    }

    fn exactly_one(&self, cmd: &str) -> Result<String, Diagnostic> {
        match self.node.args.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(self
                .err(format!("{cmd} requires exactly one argument"))
                .help(usage(cmd))),
        }
    }

    /// Validates the node's flags against `spec` (BuildKit's BFlags rules).
    fn flags(&self, spec: &[(&'static str, Kind)]) -> Result<Flags, Diagnostic> {
        let mut parsed: Vec<(&'static str, Vec<String>)> = Vec::new();
        for raw in &self.node.flags {
            let (name, value) = match raw.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (raw.as_str(), None),
            };
            let bare = name.strip_prefix("--").unwrap_or(name);
            let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == bare) else {
                let names: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let help = match (suggest(name, &refs), names.is_empty()) {
                    (_, true) => format!("{} takes no flags", self.upper()),
                    (Some(s), _) => format!(
                        "did you mean {s}? {} takes {}",
                        self.upper(),
                        names.join(", ")
                    ),
                    (None, _) => format!("{} takes {}", self.upper(), names.join(", ")),
                };
                return Err(self.err_at(format!("unknown flag: {name}"), raw).help(help));
            };
            let entry = match parsed.iter().position(|(n, _)| *n == key) {
                Some(_) if kind != Kind::Strings => {
                    return Err(self
                        .err_at(format!("duplicate flag specified: {name}"), raw)
                        .help(format!("give {name} only once")));
                }
                Some(i) => i,
                None => {
                    parsed.push((key, Vec::new()));
                    parsed.len() - 1
                }
            };
            let missing = || {
                self.err_at(format!("missing a value on flag: {name}"), raw)
                    .help(format!("write it as {name}=<value>"))
            };
            let v = match kind {
                Kind::Bool => match value {
                    Some("") => return Err(missing()),
                    None => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("true") => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("false") => "false".to_string(),
                    Some(v) => {
                        return Err(self
                            .err_at(
                                format!("expecting boolean value for flag {name}, not: {v}"),
                                raw,
                            )
                            .help(format!("use {name}, {name}=true or {name}=false")));
                    }
                },
                Kind::Str | Kind::Strings => match value {
                    Some(v) => v.to_string(),
                    None => return Err(missing()),
                },
            };
            parsed[entry].1.push(v);
        }
        Ok(Flags(parsed))
    }

    /// Shell or exec form of CMD/ENTRYPOINT/RUN (BuildKit's `handleJSONArgs`).
    fn command_line(&self) -> CommandLine {
        if self.node.json {
            CommandLine::Exec(self.node.args.clone())
        } else {
            CommandLine::Shell(self.node.args.join(" "))
        }
    }

    fn from(&self) -> Result<Command, Diagnostic> {
        let args = &self.node.args;
        let stage_name = match args.as_slice() {
            [_] => None,
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(self
                        .err_at(
                            format!(
                                "invalid name for build stage: {}, name can't start with a number or contain symbols",
                                go_quote(name)
                            ),
                            name,
                        )
                        .help("stage names match [a-z][a-z0-9-_.]*"));
                }
                Some(lower)
            }
            _ => {
                return Err(self
                    .err("FROM requires either one or three arguments")
                    .help("FROM <image> [AS <name>]"));
            }
        };
        let flags = self.flags(&[("platform", Kind::Str)])?;
        Ok(Command::From {
            image: args[0].clone(),
            stage_name,
            platform: flags.one("platform"),
        })
    }

    fn run(&self) -> Result<Command, Diagnostic> {
        let flags = self.flags(&[
            ("mount", Kind::Strings),
            ("network", Kind::Str),
            ("security", Kind::Str),
        ])?;
        if self.node.args.is_empty() {
            return Err(self.at_least_one("RUN"));
        }
        let mounts = flags
            .all("mount")
            .iter()
            .map(|m| MountSpec {
                fields: csv_fields(m)
                    .into_iter()
                    .map(|f| match f.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (f, String::new()),
                    })
                    .collect(),
            })
            .collect();
        Ok(Command::Run {
            command: self.command_line(),
            heredocs: self.node.heredocs.clone(),
            mounts,
            network: flags.one("network"),
            security: flags.one("security"),
        })
    }

    fn key_values(&self, cmd: &str) -> Result<Vec<KeyValue>, Diagnostic> {
        let args = &self.node.args;
        if args.is_empty() {
            return Err(self.at_least_one(cmd));
        }
        if !args.len().is_multiple_of(3) {
            return Err(self
                .err(format!("Bad input to {cmd}, too many arguments"))
                .help(usage(cmd)));
        }
        let mut out = Vec::new();
        for t in args.chunks(3) {
            if t[0].is_empty() {
                return Err(self
                    .err(format!("{cmd} names can not be blank"))
                    .help(usage(cmd)));
            }
            self.check_quotes(cmd, &t[0])?;
            self.check_quotes(cmd, &t[1])?;
            out.push(KeyValue {
                key: t[0].clone(),
                value: t[1].clone(),
            });
        }
        Ok(out)
    }

    /// An unterminated quote fails word expansion in BuildKit; report it here
    /// with its place rather than at expansion time.
    fn check_quotes(&self, cmd: &str, text: &str) -> Result<(), Diagnostic> {
        if let Some((q, off)) = unterminated_quote(text, escape_of(self.source)) {
            let kind = if q == '"' {
                "double-quote"
            } else {
                "single-quote"
            };
            let needle = &text[off..];
            return Err(self
                .err_at(
                    format!(
                        "unexpected end of statement while looking for matching {kind} in {}",
                        go_quote(text)
                    ),
                    needle,
                )
                .help(format!(
                    "close the quote or escape it; {cmd} values are expanded like shell words"
                )));
        }
        Ok(())
    }

    fn args(&self) -> Result<Vec<(String, Option<String>)>, Diagnostic> {
        if self.node.args.is_empty() {
            return Err(self.at_least_one("ARG"));
        }
        let mut out = Vec::new();
        for a in &self.node.args {
            match a.split_once('=') {
                Some(("", _)) => {
                    return Err(self
                        .err_at("ARG names can not be blank", a)
                        .help(usage("ARG")));
                }
                Some((k, v)) => {
                    self.check_quotes("ARG", v)?;
                    out.push((k.to_string(), Some(v.to_string())));
                }
                None => out.push((a.clone(), None)),
            }
        }
        Ok(out)
    }

    fn copy_spec(&self, cmd: &str) -> Result<CopySpec, Diagnostic> {
        let args = &self.node.args;
        if args.len() < 2 {
            return Err(self
                .err(format!(
                    "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
                ))
                .help(usage(cmd)));
        }
        let flags = if cmd == "ADD" {
            self.flags(&[
                ("chown", Kind::Str),
                ("chmod", Kind::Str),
                ("link", Kind::Bool),
                ("keep-git-dir", Kind::Bool),
                ("checksum", Kind::Str),
                ("unpack", Kind::Bool),
                ("exclude", Kind::Strings),
            ])?
        } else {
            self.flags(&[
                ("chown", Kind::Str),
                ("from", Kind::Str),
                ("chmod", Kind::Str),
                ("link", Kind::Bool),
                ("exclude", Kind::Strings),
                ("parents", Kind::Bool),
            ])?
        };
        let (srcs, dest) = args.split_at(args.len() - 1);
        let dest = &dest[0];
        if matches!(parse_marker(dest), Ok(Some(_))) {
            return Err(self
                .err_at(
                    format!("{cmd} cannot accept a heredoc as a destination"),
                    dest,
                )
                .help("the last argument is the destination path"));
        }
        let mut spec = CopySpec {
            dest: dest.clone(),
            from: flags.one("from"),
            chown: flags.one("chown"),
            chmod: flags.one("chmod"),
            link: flags.is_true("link"),
            parents: flags.is_true("parents"),
            exclude: flags.all("exclude"),
            checksum: flags.one("checksum"),
            keep_git_dir: flags.is_true("keep-git-dir"),
            ..CopySpec::default()
        };
        for src in srcs {
            match parse_marker(src) {
                Ok(Some(m)) => {
                    // Like BuildKit, a marker without a body (JSON form) is an empty file.
                    let content = self
                        .node
                        .heredocs
                        .iter()
                        .find(|h| h.name == m.name)
                        .map(|h| h.content.clone())
                        .unwrap_or_default();
                    spec.heredocs.push(Heredoc {
                        name: m.name,
                        content,
                        expand: m.expand,
                        chomp_tabs: m.chomp,
                    });
                }
                _ => spec.sources.push(src.clone()),
            }
        }
        Ok(spec)
    }

    fn onbuild(&self) -> Result<Command, Diagnostic> {
        self.flags(&[])?;
        let Some(inner) = self.node.inner.as_deref() else {
            return Err(self.at_least_one("ONBUILD"));
        };
        match inner.keyword.as_str() {
            "onbuild" => {
                return Err(self
                    .err_at(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                        &inner.original,
                    )
                    .help("give a single trigger instruction, e.g. ONBUILD RUN make"));
            }
            "maintainer" | "from" => {
                return Err(self
                    .err_at(
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            inner.keyword.to_uppercase()
                        ),
                        &inner.original,
                    )
                    .help("triggers run inside the child stage; use RUN, COPY, ENV, ..."));
            }
            _ => {}
        }
        let mut text = strip_onbuild(&self.node.original).to_string();
        for h in &self.node.heredocs {
            text.push('\n');
            text.push_str(&h.content);
            text.push_str(&h.name);
        }
        Ok(Command::Onbuild(text))
    }

    fn healthcheck(&self) -> Result<Command, Diagnostic> {
        let args = &self.node.args;
        let Some(typ) = args.first() else {
            return Err(self.at_least_one("HEALTHCHECK"));
        };
        let typ = typ.to_uppercase();
        let flags = self.flags(&[
            ("interval", Kind::Str),
            ("timeout", Kind::Str),
            ("start-period", Kind::Str),
            ("start-interval", Kind::Str),
            ("retries", Kind::Str),
        ])?;
        if typ == "NONE" {
            if args.len() != 1 {
                return Err(self
                    .err("HEALTHCHECK NONE takes no arguments")
                    .help("HEALTHCHECK NONE disables the inherited health check"));
            }
            return Ok(Command::Healthcheck(Healthcheck {
                test: vec![typ],
                ..Healthcheck::default()
            }));
        }
        if typ != "CMD" {
            return Err(self
                .err_at(
                    format!("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(&typ)),
                    &args[0],
                )
                .help("HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE"));
        }
        let rest = &args[1..];
        if rest.is_empty() {
            return Err(self
                .err("Missing command after HEALTHCHECK CMD")
                .help("HEALTHCHECK CMD curl -f http://localhost/ || exit 1"));
        }
        let test = if self.node.json {
            std::iter::once("CMD".to_string())
                .chain(rest.iter().cloned())
                .collect()
        } else {
            vec!["CMD-SHELL".to_string(), rest.join(" ")]
        };
        for name in ["interval", "timeout", "start-period", "start-interval"] {
            if let Some(v) = flags.one(name) {
                match go_duration_nanos(&v) {
                    Err(e) => {
                        return Err(self
                            .err_at(e.to_string(), &format!("--{name}"))
                            .help("durations look like 30s, 1m30s or 500ms"));
                    }
                    Ok(ns) if ns != 0.0 && ns < 1e6 => {
                        return Err(self
                            .err_at(
                                format!("Interval \"{name}\" cannot be less than 1ms"),
                                &format!("--{name}"),
                            )
                            .help("use 0 for the default or at least 1ms"));
                    }
                    Ok(_) => {}
                }
            }
        }
        if let Some(r) = flags.one("retries") {
            match r.parse::<i32>() {
                Ok(n) if n < 0 => {
                    return Err(self
                        .err_at(format!("--retries cannot be negative ({n})"), "--retries")
                        .help("give a count of 0 or more"));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(self
                        .err_at(
                            format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(&r)),
                            "--retries",
                        )
                        .help("--retries takes a whole number"));
                }
            }
        }
        Ok(Command::Healthcheck(Healthcheck {
            test,
            interval: flags.one("interval"),
            timeout: flags.one("timeout"),
            start_period: flags.one("start-period"),
            start_interval: flags.one("start-interval"),
            retries: flags.one("retries"),
        }))
    }
}

fn usage(cmd: &str) -> String {
    let u = match cmd {
        "ADD" => "ADD [--chown=..] [--chmod=..] <src>... <dest>",
        "COPY" => "COPY [--from=..] [--chown=..] [--chmod=..] <src>... <dest>",
        "ENV" => "ENV <key>=<value> ...",
        "LABEL" => "LABEL <key>=<value> ...",
        "ARG" => "ARG <name>[=<default>] ...",
        "EXPOSE" => "EXPOSE <port>[/<protocol>] ...",
        "VOLUME" => "VOLUME <path> ... or VOLUME [\"<path>\", ...]",
        "USER" => "USER <user>[:<group>]",
        "WORKDIR" => "WORKDIR <path>",
        "STOPSIGNAL" => "STOPSIGNAL <signal>",
        "MAINTAINER" => "MAINTAINER <name> (deprecated: use LABEL maintainer=...)",
        "ONBUILD" => "ONBUILD <instruction>",
        "HEALTHCHECK" => "HEALTHCHECK [OPTIONS] CMD <command>, or HEALTHCHECK NONE",
        "SHELL" => "SHELL [\"<executable>\", \"<param>\", ...]",
        "RUN" => "RUN <command>, or RUN [\"<executable>\", \"<param>\", ...]",
        _ => return format!("see the {cmd} reference"),
    };
    format!("usage: {u}")
}

fn valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The text after a leading `ONBUILD` keyword (case-insensitive, spaces trimmed).
fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => original,
    }
}

/// Comma-separated fields of a `--mount` value; `"..."` quotes a field
/// (with `""` for a literal quote), as Go's encoding/csv reads it.
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                while let Some(q) = chars.next() {
                    if q == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            cur.push('"');
                        } else {
                            break;
                        }
                    } else {
                        cur.push(q);
                    }
                }
                at_start = false;
            }
            ',' => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            c => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    out.push(cur);
    out
}

/// The first quote that is never closed, by shell-word rules
/// (`'...'` literal, `"..."` with escapes), with its byte offset.
fn unterminated_quote(s: &str, esc: char) -> Option<(char, usize)> {
    let mut open: Option<(char, usize)> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match open {
            None if c == esc => {
                chars.next();
            }
            None if c == '\'' || c == '"' => open = Some((c, i)),
            None => {}
            Some(('"', _)) if c == esc => {
                chars.next();
            }
            Some((q, _)) if c == q => open = None,
            Some(_) => {}
        }
    }
    open
}

#[cfg(test)]
mod tests;
