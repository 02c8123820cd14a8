//! The two layers of a parsed Dockerfile.
//!
//! [`Node`] is the generic, line-level result of the parser: a keyword, its
//! flags and its argument strings, exactly what `rbuild debug parse` dumps.
//! [`Instruction`] is the typed form that lowering consumes, produced from
//! nodes by `instructions::from_node` (which validates flags and arity).

/// 1-based, inclusive line range of an instruction in its Dockerfile,
/// continuation lines and heredoc bodies included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`) found at the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    /// `\` (default) or `` ` ``.
    pub escape: char,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A heredoc attached to an instruction (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word without quotes or `-`.
    pub name: String,
    /// The body, including the final newline; leading tabs already removed for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted: the body is not expanded.
    pub expand: bool,
    /// True for `<<-`.
    pub chomp_tabs: bool,
}

/// One instruction as the parser sees it (BuildKit's generic node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Lower-cased keyword, e.g. `run`.
    pub keyword: String,
    /// Flags as written, e.g. `--from=build`; a bare `--` is not kept.
    pub flags: Vec<String>,
    /// Argument strings as the dump prints them: one string for shell form,
    /// one per element for JSON form, `key value "="|""` triples for ENV/LABEL.
    pub args: Vec<String>,
    /// True when the arguments came from a JSON array.
    pub json: bool,
    /// The wrapped instruction of an `ONBUILD`.
    pub inner: Option<Box<Node>>,
    pub heredocs: Vec<Heredoc>,
    pub span: Span,
    /// The instruction's text as written (continuations joined, without heredoc bodies).
    pub original: String,
    /// The comment lines between the previous instruction and this one, without `#` and
    /// trimmed (BuildKit's `PrevComment`): blank lines do not end the run, a bare `#` does,
    /// parser directives are not part of it. Descriptions (`# NAME text` above an ARG or a
    /// FROM) and per-instruction `# check=` settings are read from here.
    pub comments: Vec<String>,
    /// The first empty line inside this instruction's continuation lines, if any (deprecated
    /// syntax that build checks report).
    pub empty_continuation: Option<usize>,
}

impl Node {
    /// The keyword with the case it was written in (`From`, `copy`), for casing checks.
    pub fn keyword_as_written(&self) -> &str {
        let t = self.original.trim_start();
        t.split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or(t)
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub nodes: Vec<Node>,
}

/// Shell form (run through SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

/// A `key=value` pair from ENV, LABEL or ARG, before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `COPY`/`ADD` sources and destination (before expansion) or heredoc files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub dest: String,
    /// Heredocs used as inline source files (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub checksum: Option<String>,
    /// ADD only; `--keep-git-dir`.
    pub keep_git_dir: bool,
}

/// One `--mount=` of a RUN, as written (key=value list, unexpanded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountSpec {
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]` as Docker stores it.
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

/// The typed instructions lowering works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From {
        image: String,
        stage_name: Option<String>,
        platform: Option<String>,
    },
    Run {
        command: CommandLine,
        heredocs: Vec<Heredoc>,
        mounts: Vec<MountSpec>,
        network: Option<String>,
        security: Option<String>,
    },
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<String>),
    Env(Vec<KeyValue>),
    Add(CopySpec),
    Copy(CopySpec),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    /// ARG name with optional default; several per line are allowed.
    Arg(Vec<(String, Option<String>)>),
    /// The trigger text after `ONBUILD`, kept verbatim and parsed when it fires.
    Onbuild(String),
    Stopsignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
}

/// A typed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub command: Command,
    pub span: Span,
    pub original: String,
}
