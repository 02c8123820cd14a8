//! `--call outline` and `--call targets`: what a build of a target reads (its build args
//! with their values and descriptions, its secrets and SSH sockets) and which stages a
//! Dockerfile has, in BuildKit's shapes (`frontend.outline`, `frontend.targets`) so that
//! JSON consumers of buildx's output read rbuild's.
//!
//! A description is the comment right above an ARG or FROM that starts with the ARG's or
//! stage's name (`# VERSION is the release to package`). Which build args a target uses is
//! lowering's knowledge: it records them in a [`Capture`] as it lowers the target (the
//! global ARGs its FROMs and those ARGs' defaults use, the ARGs of every stage it builds).
//! `targets.rs` lists the stages; `table.rs` prints both as buildx does.

mod table;
mod targets;

pub use targets::{Target, Targets, targets};

use crate::ast::{Dockerfile, Node};
use crate::lint::{JsonLocation, base64_of};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// A build arg a target uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    pub name: String,
    /// Its value for this build (a build arg, else its default; empty when it has none).
    pub value: String,
    pub description: String,
    /// The line of the ARG that defines it.
    pub line: usize,
}

/// A secret or SSH socket a target's RUN steps mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineMount {
    /// The secret's id, or the SSH id (`default` when none is given).
    pub name: String,
    pub required: bool,
    pub line: usize,
}

/// What building one target reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outline {
    /// The target stage's name (empty for an unnamed last stage).
    pub name: String,
    pub description: String,
    /// Ordered by line.
    pub args: Vec<OutlineArg>,
    pub secrets: Vec<OutlineMount>,
    pub ssh: Vec<OutlineMount>,
}

impl Outline {
    /// buildx's text: the target and its description, then a table of build args, one of
    /// secrets and one of SSH sockets (each left out when empty).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.name.is_empty() || !self.description.is_empty() {
            let name = if self.name.is_empty() {
                "(default)"
            } else {
                self.name.as_str()
            };
            let mut rows = vec![vec!["TARGET:".to_string(), name.to_string()]];
            if !self.description.is_empty() {
                rows.push(vec!["DESCRIPTION:".into(), self.description.clone()]);
            }
            out.push_str(&table::render(&rows, 1));
            out.push('\n');
        }
        if !self.args.is_empty() {
            let mut rows = vec![vec![
                "BUILD ARG".into(),
                "VALUE".into(),
                "DESCRIPTION".into(),
            ]];
            rows.extend(
                self.args
                    .iter()
                    .map(|a| vec![a.name.clone(), a.value.clone(), a.description.clone()]),
            );
            out.push_str(&table::render(&rows, 3));
            out.push('\n');
        }
        for (title, mounts) in [("SECRET", &self.secrets), ("SSH", &self.ssh)] {
            if mounts.is_empty() {
                continue;
            }
            let mut rows = vec![vec![title.to_string(), "REQUIRED".into()]];
            rows.extend(mounts.iter().map(|m| {
                let req = if m.required { "true" } else { "" };
                vec![m.name.clone(), req.to_string()]
            }));
            out.push_str(&table::render(&rows, 3));
            out.push('\n');
        }
        out
    }

    /// BuildKit's `outline.Outline` JSON, fields in its order, empty ones left out as Go's
    /// omitempty does; `sources` holds the Dockerfile. Serialize it with serde_json.
    pub fn json<'a>(&'a self, source: &str) -> impl Serialize + 'a {
        let mounts = |list: &'a [OutlineMount]| -> Vec<JsonMount<'a>> {
            list.iter()
                .map(|m| JsonMount {
                    name: &m.name,
                    required: m.required,
                    location: JsonLocation::lines(m.line, m.line),
                })
                .collect()
        };
        JsonOutline {
            name: &self.name,
            description: &self.description,
            args: self
                .args
                .iter()
                .map(|a| JsonArg {
                    name: &a.name,
                    description: &a.description,
                    value: &a.value,
                    location: JsonLocation::lines(a.line, a.line),
                })
                .collect(),
            secrets: mounts(&self.secrets),
            ssh: mounts(&self.ssh),
            sources: vec![base64_of(source)],
        }
    }
}

#[derive(Serialize)]
struct JsonOutline<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<JsonArg<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<JsonMount<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh: Vec<JsonMount<'a>>,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct JsonArg<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    value: &'a str,
    location: JsonLocation,
}

#[derive(Serialize)]
struct JsonMount<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    required: bool,
    location: JsonLocation,
}

/// The description of `name` in the comments above its instruction: the rest of the first
/// comment line that starts with the name and a blank (BuildKit's rule).
pub(crate) fn doc_comment(node: Option<&Node>, name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let prefix = format!("{name} ");
    node.into_iter()
        .flat_map(|n| &n.comments)
        .find_map(|c| c.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_string()
}

/// What lowering records for an outline (filled through `&self`, like the linter).
#[derive(Default)]
pub(crate) struct Capture {
    inner: RefCell<Captured>,
}

#[derive(Default)]
pub(crate) struct Captured {
    target: usize,
    /// Global ARG definitions, in order.
    globals: Vec<ArgDef>,
    stages: BTreeMap<usize, StageUse>,
}

/// One ARG as defined.
#[derive(Debug, Clone)]
struct ArgDef {
    key: String,
    value: Option<String>,
    line: usize,
    /// Global ARGs its default used (a global's only).
    deps: BTreeSet<String>,
    /// A stage ARG that only takes in the global ARG of its name.
    from_global: bool,
}

#[derive(Default)]
struct StageUse {
    name: Option<String>,
    base: Option<usize>,
    deps: Vec<usize>,
    /// Global ARGs its FROM (image and `--platform`) used.
    from_used: BTreeSet<String>,
    args: Vec<ArgDef>,
    secrets: Vec<OutlineMount>,
    ssh: Vec<OutlineMount>,
}

impl Capture {
    pub(crate) fn into_inner(self) -> Captured {
        self.inner.into_inner()
    }

    pub(crate) fn target(&self, i: usize) {
        self.inner.borrow_mut().target = i;
    }

    pub(crate) fn stage(
        &self,
        i: usize,
        name: Option<String>,
        base: Option<usize>,
        deps: Vec<usize>,
    ) {
        let mut c = self.inner.borrow_mut();
        let s = c.stages.entry(i).or_default();
        (s.name, s.base, s.deps) = (name, base, deps);
    }

    pub(crate) fn global_arg(
        &self,
        key: &str,
        value: Option<String>,
        line: usize,
        deps: BTreeSet<String>,
    ) {
        let mut c = self.inner.borrow_mut();
        let mut deps = deps;
        // `ARG A=${A}x` depends on what the earlier A depended on, not on itself.
        if deps.remove(key)
            && let Some(old) = c.globals.iter().rev().find(|a| a.key == key)
        {
            deps.extend(old.deps.iter().cloned());
        }
        c.globals.push(ArgDef {
            key: key.to_string(),
            value,
            line,
            deps,
            from_global: false,
        });
    }

    pub(crate) fn used_by_from(&self, stage: usize, names: &BTreeSet<String>) {
        let mut c = self.inner.borrow_mut();
        c.stages
            .entry(stage)
            .or_default()
            .from_used
            .extend(names.iter().cloned());
    }

    pub(crate) fn stage_arg(
        &self,
        stage: usize,
        key: &str,
        value: Option<String>,
        line: usize,
        from_global: bool,
    ) {
        let mut c = self.inner.borrow_mut();
        c.stages.entry(stage).or_default().args.push(ArgDef {
            key: key.to_string(),
            value,
            line,
            deps: BTreeSet::new(),
            from_global,
        });
    }

    pub(crate) fn mount(&self, stage: usize, secret: bool, id: &str, required: bool, line: usize) {
        let mut c = self.inner.borrow_mut();
        let s = c.stages.entry(stage).or_default();
        let list = if secret { &mut s.secrets } else { &mut s.ssh };
        if !list.iter().any(|m| m.name == id) {
            list.push(OutlineMount {
                name: id.to_string(),
                required,
                line,
            });
        }
    }
}

impl Captured {
    /// The outline of the captured target. Each build arg is listed once, with the
    /// definition closest to the target: the target's own ARG, then those of the stages
    /// it is built on, then of the stages it copies from, then the global one.
    pub(crate) fn outline(&self, df: &Dockerfile) -> Outline {
        let node_at = |line: usize| df.nodes.iter().find(|n| n.span.start_line == line);
        // The global definitions in force (a later ARG of the same name wins).
        let mut globals: BTreeMap<&str, &ArgDef> = BTreeMap::new();
        for a in &self.globals {
            globals.insert(&a.key, a);
        }
        let mut order = Vec::new();
        self.visit(self.target, &mut order);

        let mut seen = BTreeSet::new();
        let mut args = Vec::new();
        let mut secrets = Vec::new();
        let mut ssh = Vec::new();
        let mut seen_secrets = BTreeSet::new();
        let mut seen_ssh = BTreeSet::new();
        for i in order {
            let Some(s) = self.stages.get(&i) else {
                continue;
            };
            // Used: the stage's own ARGs, the globals its FROM reads, and what their
            // defaults read in turn.
            let mut used: Vec<String> = s.args.iter().map(|a| a.key.clone()).collect();
            used.extend(s.from_used.iter().cloned());
            let mut k = 0;
            while k < used.len() {
                if let Some(g) = globals.get(used[k].as_str()) {
                    for d in &g.deps {
                        if !used.contains(d) {
                            used.push(d.clone());
                        }
                    }
                }
                k += 1;
            }
            for key in used {
                if seen.contains(&key) {
                    continue;
                }
                let own = s.args.iter().rev().find(|a| a.key == key && !a.from_global);
                let Some(def) = own.or_else(|| globals.get(key.as_str()).copied()) else {
                    continue;
                };
                seen.insert(key.clone());
                args.push(OutlineArg {
                    description: doc_comment(node_at(def.line), &def.key),
                    name: def.key.clone(),
                    value: def.value.clone().unwrap_or_default(),
                    line: def.line,
                });
            }
            for m in &s.secrets {
                if seen_secrets.insert(m.name.clone()) {
                    secrets.push(m.clone());
                }
            }
            for m in &s.ssh {
                if seen_ssh.insert(m.name.clone()) {
                    ssh.push(m.clone());
                }
            }
        }
        args.sort_by_key(|a| a.line);
        secrets.sort_by_key(|m| m.line);
        ssh.sort_by_key(|m| m.line);
        let target = self.stages.get(&self.target);
        let name = target.and_then(|s| s.name.clone()).unwrap_or_default();
        let from_line = df
            .nodes
            .iter()
            .filter(|n| n.keyword == "from")
            .nth(self.target)
            .map(|n| n.span.start_line);
        Outline {
            description: doc_comment(from_line.and_then(node_at), &name),
            name,
            args,
            secrets,
            ssh,
        }
    }

    /// Stage `i`, then the stages it is built on, then those it reads: each once.
    fn visit(&self, i: usize, order: &mut Vec<usize>) {
        if order.contains(&i) {
            return;
        }
        order.push(i);
        if let Some(s) = self.stages.get(&i) {
            if let Some(b) = s.base {
                self.visit(b, order);
            }
            for &d in &s.deps {
                self.visit(d, order);
            }
        }
    }
}
