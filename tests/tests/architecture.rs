//! The architecture, checked on the source tree so it holds in CI (ARCHITECTURE.md draws it).
//! No build, no root, no network: `cargo metadata` and the `.rs` files are all it reads.
//!
//! - **Crates follow the data flow** (normal dependencies, transitively, from `cargo
//!   metadata`): the frontend builds without tokio, reqwest, rustls or nix; the graph
//!   definition and the reference parser use no I/O crate; the registry client knows no
//!   store; the store knows no executor and no solver; the executor uses no rbuild crate but
//!   rbuild-fsutil, which uses none. Cargo itself refuses a cycle of normal dependencies;
//!   dev-dependencies (test code) may not close one between two crates either.
//! - **Modules are layered** — no module uses another that uses it back. Every lib and bin
//!   target is read from its root file along its `mod` declarations (`#[cfg(test)]` modules
//!   and items are test code and left out). A module *uses* another when a `use` or a path in
//!   its code (`crate::…`, `super::…`, `self::…`, a child module's name, or a name one of its
//!   `use`s binds) names an item there; re-exports (`pub use`, globs) are followed to where
//!   the item is defined, so going through `crate::Name` hides nothing. What counts:
//!   - A module and its descendants are one unit seen from outside. A parent declaring,
//!     re-exporting or calling its children, and a child using what its ancestors define
//!     (`super::Shared`), is the usual Rust shape of one concern split into files, and does
//!     not count.
//!   - Any other use is between two *sibling subtrees*: for `a::b::x` using `a::c::y` it is
//!     `a::b` using `a::c`. Two siblings must not use each other, whichever of their files
//!     do it: one is below the other (for `solver`, `scheduler` may use `ops`, or `ops` the
//!     scheduler, never both; CLI commands use `shared/` and `flags/`, never each other).
//! - **No non-test source file over 800 lines** in any crate's `src/` (`tests.rs` files and
//!   `tests/` directories hold tests).
//! - **No `Result<_, String>` in library crates** (every lib target's `src/`): errors are
//!   typed. The CLI (a bin) may use strings for clap's value parsers.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use syn::visit::Visit;

/// Crates that do I/O (files, processes, sockets, TLS, archives): none of them may be
/// below the graph definition or the reference parser.
const IO_CRATES: &[&str] = &[
    "tokio", "mio", "reqwest", "hyper", "rustls", "socket2", "nix", "walkdir", "tempfile", "tar",
    "flate2", "rayon",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// `cargo metadata` for this host (so that other platforms' dependencies do not count).
fn metadata() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--filter-platform"])
            .arg(&platform)
            .current_dir(workspace_root())
            .output()
            .expect("running cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
    })
}

/// One workspace package, as `cargo metadata` lists it.
struct Package {
    name: String,
    /// The directory of its Cargo.toml.
    dir: PathBuf,
    /// Its targets: (kinds such as "lib", "bin", "test"; root file).
    targets: Vec<(Vec<String>, PathBuf)>,
}

/// The workspace's packages.
fn workspace_packages() -> Vec<Package> {
    let meta = metadata();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for p in meta["packages"].as_array().expect("packages") {
        if !members.contains(p["id"].as_str().unwrap_or("")) {
            continue;
        }
        let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
        let targets = p["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                let kinds = t["kind"]
                    .as_array()
                    .expect("kind")
                    .iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect();
                (
                    kinds,
                    PathBuf::from(t["src_path"].as_str().expect("src_path")),
                )
            })
            .collect();
        let dir = manifest.parent().expect("manifest dir").to_path_buf();
        out.push(Package {
            name: p["name"].as_str().expect("name").to_string(),
            dir,
            targets,
        });
    }
    assert!(
        out.len() >= 9,
        "the workspace has its crates: {:?}",
        out.iter().map(|p| &p.name).collect::<Vec<_>>()
    );
    out
}

/// Package names `name` depends on through dependencies of the kinds `kinds` (`None` is a
/// normal dependency, `Some("dev")`, `Some("build")`): directly (`direct`) or transitively.
fn dependencies(name: &str, kinds: &[Option<&str>], direct: bool) -> BTreeSet<String> {
    let meta = metadata();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| (n["id"].as_str().unwrap_or(""), n))
        .collect();
    let start = *names
        .iter()
        .find(|(_, n)| **n == name)
        .unwrap_or_else(|| panic!("no package {name}"))
        .0;
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        for d in nodes[id]["deps"].as_array().expect("deps") {
            let wanted = d["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| kinds.contains(&k["kind"].as_str()));
            let pkg = d["pkg"].as_str().expect("pkg");
            if wanted && seen.insert(pkg) && !direct {
                todo.push(pkg);
            }
        }
    }
    seen.into_iter().map(|id| names[id].to_string()).collect()
}

fn normal_dependencies(name: &str) -> BTreeSet<String> {
    dependencies(name, &[None], false)
}

#[test]
fn crates_follow_the_data_flow() {
    let mut failures = Vec::new();
    let mut forbid = |krate: &str, banned: &[&str], why: &str| {
        let deps = normal_dependencies(krate);
        let found: Vec<&&str> = banned.iter().filter(|b| deps.contains(**b)).collect();
        if !found.is_empty() {
            failures.push(format!("{krate} depends on {found:?}: {why}"));
        }
    };
    forbid(
        "rbuild-frontend",
        &["tokio", "reqwest", "rustls", "nix", "rbuild-solver"],
        "the frontend parses and lowers; it must build (and fuzz) without the I/O stack and \
         the scheduler (the graph it lowers to is rbuild-graph)",
    );
    forbid(
        "rbuild-graph",
        IO_CRATES,
        "the graph definition does no I/O",
    );
    forbid(
        "rbuild-reference",
        IO_CRATES,
        "the reference parser is pure (the frontend uses it)",
    );
    forbid(
        "rbuild-registry",
        &["rbuild-cache", "rbuild-solver", "rbuild-executor"],
        "the registry client knows no store (the store depends on it)",
    );
    forbid(
        "rbuild-cache",
        &["rbuild-executor", "rbuild-solver"],
        "the store knows nothing of running steps or scheduling them",
    );
    forbid(
        "rbuild-graph",
        &[
            "rbuild-solver",
            "rbuild-cache",
            "rbuild-executor",
            "rbuild-registry",
        ],
        "the graph definition is below everything that executes it",
    );
    for (krate, allowed) in [
        ("rbuild-executor", &["rbuild-fsutil"][..]),
        ("rbuild-fsutil", &[]),
        ("rbuild-reference", &[]),
    ] {
        let ours: Vec<String> = normal_dependencies(krate)
            .into_iter()
            .filter(|d| d.starts_with("rbuild") && !allowed.contains(&d.as_str()))
            .collect();
        if !ours.is_empty() {
            failures.push(format!(
                "{krate} depends on {ours:?}; it may use only {allowed:?} of rbuild's crates"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_two_crates_depend_on_each_other_even_in_tests() {
    let crates: Vec<String> = workspace_packages().into_iter().map(|p| p.name).collect();
    let kinds = [None, Some("dev"), Some("build")];
    let deps: BTreeMap<&str, BTreeSet<String>> = crates
        .iter()
        .map(|c| (c.as_str(), dependencies(c, &kinds, true)))
        .collect();
    let mut failures = Vec::new();
    for (a, da) in &deps {
        for b in da {
            if a < &b.as_str() && deps.get(b.as_str()).is_some_and(|db| db.contains(*a)) {
                failures.push(format!("{a} and {b} depend on each other"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn shown(p: &Path) -> String {
    p.strip_prefix(workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

#[test]
fn no_source_file_over_800_lines() {
    let mut failures = Vec::new();
    for Package { dir, .. } in workspace_packages() {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        for f in rust_files(&src) {
            let rel = f.strip_prefix(&src).expect("below src");
            let test_file =
                f.file_name() == Some("tests.rs".as_ref()) || rel.iter().any(|c| c == "tests");
            let lines = std::fs::read_to_string(&f).expect("read").lines().count();
            if !test_file && lines > 800 {
                failures.push(format!(
                    "{} has {lines} lines; split it by concern (or move its tests to a tests.rs beside it)",
                    shown(&f)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn library_crates_return_typed_errors() {
    let stringly = regex::Regex::new(r"Result<[^>]*, String>").expect("regex");
    let mut failures = Vec::new();
    for Package { name, dir, targets } in workspace_packages() {
        if !targets.iter().any(|(k, _)| k.iter().any(|k| k == "lib")) {
            continue;
        }
        for f in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&f).expect("read");
            for (i, line) in text.lines().enumerate() {
                if stringly.is_match(line) {
                    failures.push(format!(
                        "{}:{}: {} (library crate {name}: use a thiserror type that says what and where)",
                        shown(&f),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for Package { name, targets, .. } in workspace_packages() {
        for (kinds, root) in targets {
            if kinds.iter().any(|k| k == "lib" || k == "bin") {
                let krate = ModuleTree::load(&root);
                checked += krate.modules.len();
                failures.extend(
                    krate
                        .mutual_uses()
                        .into_iter()
                        .map(|f| format!("{name} ({}): {f}", shown(&root))),
                );
            }
        }
    }
    assert!(checked > 100, "only {checked} modules read");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The CLI's commands are leaves: each uses `shared/` and `flags/`, never another command
/// (not even one way), so a command can be read, changed or removed on its own.
#[test]
fn cli_commands_do_not_use_each_other() {
    let root = workspace_root().join("cli/src/main.rs");
    let tree = ModuleTree::load(&root);
    let commands: ModPath = vec!["commands".into()];
    let found: Vec<String> = tree
        .sibling_uses()
        .into_iter()
        // Two commands (`commands::x`, `commands::y`), not two files of one command.
        .filter(|((a, b), _)| a.len() == 2 && a.starts_with(&commands) && b.starts_with(&commands))
        .map(|((a, b), there)| format!("`{}` uses `{}`: {there}", a.join("::"), b.join("::")))
        .collect();
    assert!(
        tree.modules
            .keys()
            .filter(|m| m.starts_with(&commands))
            .count()
            > 5,
        "cli's commands/ modules were read"
    );
    assert!(
        found.is_empty(),
        "CLI commands use each other (move what they share to cli/src/shared/):\n{}",
        found.join("\n")
    );
}

/// The checker itself, on a crate made for it: a cycle through a re-export and a glob is
/// found, a parent/child pair is not one, and layered siblings pass.
#[test]
fn the_module_check_finds_what_it_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\nmod d;\npub use a::Thing;\npub use b::B;\n#[cfg(test)]\nmod tests { use crate::d::*; }\n",
    );
    // a (mod.rs + child) uses b through the root's re-export of b's item.
    write(
        "a/mod.rs",
        "mod inner;\npub struct Thing;\npub fn f() { inner::g(); }\n",
    );
    write(
        "a/inner.rs",
        "use super::Thing;\npub fn g() { let _ = crate::B; }\n",
    );
    write(
        "b.rs",
        "pub const B: u8 = 0;\nuse crate::*;\nfn h() -> Thing { Thing }\n",
    );
    // c uses a, a does not use c: layered.
    write("c.rs", "fn k() { crate::a::f(); }\n");
    // d is used only by test code, and uses c.
    write("d.rs", "pub fn m() { super::c::k(); }\n");
    let tree = ModuleTree::load(&src.join("lib.rs"));
    let found = tree.mutual_uses();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("`a` and `b` use each other"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("a/inner.rs:2 `crate::B`"), "{}", found[0]);
    assert!(found[0].contains("b.rs:3 `Thing`"), "{}", found[0]);
}

type ModPath = Vec<String>;

/// What one module holds and names.
#[derive(Default, Debug)]
struct Module {
    file: PathBuf,
    children: BTreeSet<String>,
    /// Items defined here (functions, types, traits, consts, statics, macros).
    items: BTreeSet<String>,
    /// Names `use` binds here, to the path they stand for.
    bindings: BTreeMap<String, Vec<String>>,
    /// Paths of `use …::*`.
    globs: Vec<Vec<String>>,
    /// Every path named here that may lead into the crate, with its line.
    refs: Vec<(Vec<String>, usize)>,
}

/// One crate's modules, read from its root file along its `mod` declarations.
struct ModuleTree {
    modules: BTreeMap<ModPath, Module>,
}

impl ModuleTree {
    fn load(root: &Path) -> ModuleTree {
        let mut tree = ModuleTree {
            modules: BTreeMap::new(),
        };
        let dir = root.parent().expect("root file's dir").to_path_buf();
        tree.load_file(Vec::new(), root, &dir);
        tree
    }

    fn load_file(&mut self, path: ModPath, file: &Path, child_dir: &Path) {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        self.load_items(path, file, child_dir, &ast.items);
    }

    fn load_items(&mut self, path: ModPath, file: &Path, child_dir: &Path, items: &[syn::Item]) {
        self.modules.entry(path.clone()).or_default().file = file.to_path_buf();
        for item in items {
            if test_only(item_attrs(item)) {
                continue;
            }
            let module = self.modules.get_mut(&path).expect("module just added");
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    module.children.insert(name.clone());
                    let mut sub = path.clone();
                    sub.push(name.clone());
                    let sub_dir = child_dir.join(&name);
                    match &m.content {
                        Some((_, inner)) => self.load_items(sub, file, &sub_dir, inner),
                        None => {
                            let flat = child_dir.join(format!("{name}.rs"));
                            let nested = sub_dir.join("mod.rs");
                            let f = if flat.exists() { flat } else { nested };
                            self.load_file(sub, &f, &sub_dir);
                        }
                    }
                }
                syn::Item::Use(u) => {
                    let mut leaves = Vec::new();
                    use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                    for leaf in leaves {
                        match leaf.binding {
                            Some(b) => {
                                module.bindings.insert(b, leaf.path.clone());
                            }
                            None => module.globs.push(leaf.path.clone()),
                        }
                        module.refs.push((leaf.path, leaf.line));
                    }
                }
                other => {
                    if let Some(name) = item_name(other) {
                        module.items.insert(name);
                    }
                    Paths {
                        out: &mut module.refs,
                    }
                    .visit_item(other);
                }
            }
        }
    }

    /// The module that `segs`, named in `from`, leads to; `None` when it leaves the crate
    /// (another crate, a local variable).
    fn resolve(&self, from: &ModPath, segs: &[String], depth: usize) -> Option<ModPath> {
        if depth > 12 || segs.is_empty() {
            return None;
        }
        let (mut cur, rest) = match segs[0].as_str() {
            "crate" => (Vec::new(), &segs[1..]),
            "self" => (from.clone(), &segs[1..]),
            "super" => {
                let mut cur = from.clone();
                let n = segs.iter().take_while(|s| *s == "super").count();
                for _ in 0..n {
                    cur.pop()?;
                }
                (cur, &segs[n..])
            }
            _ => (from.clone(), segs),
        };
        let relative = !matches!(segs[0].as_str(), "crate" | "self" | "super");
        for (i, seg) in rest.iter().enumerate() {
            if seg == "self" {
                break;
            }
            let m = self.modules.get(&cur)?;
            if m.children.contains(seg) {
                cur.push(seg.clone());
                continue;
            }
            if m.items.contains(seg) {
                return Some(cur);
            }
            let tail = &rest[i + 1..];
            if let Some(target) = m.bindings.get(seg) {
                let p: Vec<String> = target.iter().chain(tail).cloned().collect();
                return self.resolve(&cur, &p, depth + 1);
            }
            for g in &m.globs {
                if let Some(gm) = self.resolve(&cur, g, depth + 1)
                    && gm != cur
                    && self.has_name(&gm, seg, depth + 1)
                {
                    let p: Vec<String> = g.iter().chain([seg]).chain(tail).cloned().collect();
                    return self.resolve(&cur, &p, depth + 1);
                }
            }
            // Not a name of this crate's (a local, a variant, a std item in a relative
            // path): a relative path leaves, an anchored one stays where it got.
            return if relative && i == 0 { None } else { Some(cur) };
        }
        Some(cur)
    }

    /// Whether module `m` has `name` (as a child, an item, a binding or through a glob).
    fn has_name(&self, m: &ModPath, name: &str, depth: usize) -> bool {
        let Some(module) = self.modules.get(m) else {
            return false;
        };
        if module.children.contains(name)
            || module.items.contains(name)
            || module.bindings.contains_key(name)
        {
            return true;
        }
        depth < 12
            && module.globs.iter().any(|g| {
                self.resolve(m, g, depth + 1)
                    .is_some_and(|gm| gm != *m && self.has_name(&gm, name, depth + 1))
            })
    }

    /// Pairs of sibling subtrees that use each other, each with one use in each direction.
    fn mutual_uses(&self) -> Vec<String> {
        let uses = self.sibling_uses();
        let mut out = Vec::new();
        for ((a, b), there) in &uses {
            if a < b
                && let Some(back) = uses.get(&(b.clone(), a.clone()))
            {
                out.push(format!(
                    "`{}` and `{}` use each other: {there}; and back: {back}",
                    a.join("::"),
                    b.join("::")
                ));
            }
        }
        out
    }

    /// Which sibling subtree uses which: (user, used) → one example, "file:line `path`".
    fn sibling_uses(&self) -> BTreeMap<(ModPath, ModPath), String> {
        let mut uses: BTreeMap<(ModPath, ModPath), String> = BTreeMap::new();
        for (from, module) in &self.modules {
            for (segs, line) in &module.refs {
                let Some(to) = self.resolve(from, segs, 0) else {
                    continue;
                };
                if to.starts_with(from) || from.starts_with(&to) {
                    continue; // the same module, or a parent and its descendant
                }
                let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                let key = (from[..=common].to_vec(), to[..=common].to_vec());
                uses.entry(key).or_insert_with(|| {
                    format!("{}:{line} `{}`", shown(&module.file), segs.join("::"))
                });
            }
        }
        uses
    }
}

/// One name a `use` brings in: its full path and the name it binds (`None` for a glob).
struct UseLeaf {
    path: Vec<String>,
    binding: Option<String>,
    line: usize,
}

fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix.clone();
            path.push(name.clone());
            // `use a::b::{self}` binds `b`.
            let binding = if name == "self" {
                prefix.last().cloned()
            } else {
                Some(name)
            };
            out.push(UseLeaf {
                path,
                binding,
                line: n.ident.span().start().line,
            });
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push(UseLeaf {
                path,
                binding: Some(r.rename.to_string()),
                line: r.ident.span().start().line,
            });
        }
        syn::UseTree::Glob(g) => out.push(UseLeaf {
            path: prefix.clone(),
            binding: None,
            line: g.star_token.span.start().line,
        }),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix, out);
            }
        }
    }
}

/// Collects the paths named in code, including those in macro arguments that parse as
/// expressions (`assert!(matches!(…))`, `format!(…, crate::X)`).
struct Paths<'a> {
    out: &'a mut Vec<(Vec<String>, usize)>,
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none()
            && let Some(first) = p.segments.first()
        {
            let segs = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.out.push((segs, first.ident.span().start().line));
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        self.out
            .extend(leaves.into_iter().map(|l| (l.path, l.line)));
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        let args = m.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        );
        if let Ok(args) = args {
            for e in &args {
                self.visit_expr(e);
            }
        }
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// `#[cfg(test)]`: test code, not part of the module structure.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::TraitAlias(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}
