//! COPY and ADD: sources expanded and checked, the destination resolved against the
//! working directory, `--chown`/`--chmod`/`--exclude`, heredoc files as inline data; one
//! file step that copies from the build context or from what `--from` names.

use super::Lowerer;
use super::env::{env_get, expand_raw};
use super::paths::{clean_abs, clean_rel, resolve_path};
use super::state::{StageCx, StageState, Step};
use super::values::parse_owner;
use crate::Diagnostic;
use crate::ast::CopySpec;
use rbuild_graph::chmod::{ChmodError, ChmodSpec};
use rbuild_graph::{CopyAction, CopySource, FileAction, FileOp, Op};

impl Lowerer<'_> {
    /// COPY, or ADD when `is_add` (archives from the context are unpacked).
    pub(super) fn dispatch_copy(
        &mut self,
        cx: &mut StageCx,
        st: &mut StageState,
        step: &Step,
        spec: &CopySpec,
        is_add: bool,
    ) -> Result<(), Diagnostic> {
        let ins = step.ins;
        let span = ins.span;
        let kw = if is_add { "ADD" } else { "COPY" };
        let mut sources = Vec::new();
        // `ADD http(s)://…` sources, in order, and the checksum that pins them.
        let mut urls = Vec::new();
        // `ADD <git URL>` sources, in order.
        let mut gits = Vec::new();
        for s in &spec.sources {
            // Heredoc markers are carried in `heredocs`, not copied as paths.
            if spec.heredocs.iter().any(|h| {
                s.trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(['"', '\''])
                    == h.name
                    && s.starts_with("<<")
            }) {
                continue;
            }
            let e = self.expand_checked(st, s, span)?;
            if is_url(&e) {
                if !is_add {
                    return Err(self
                        .err(span, s, "source can't be a URL for COPY")
                        .help("use ADD to download it, or add it to the build context"));
                }
                if is_git(&e) {
                    gits.push(e);
                } else {
                    urls.push(e);
                }
                continue;
            }
            if step.refs.is_empty() {
                self.lint.copy_ignored(self.source, span, is_add, &e);
            }
            sources.push(e);
        }
        let checksum = match &spec.checksum {
            None => None,
            Some(_) if !is_add => {
                return Err(self
                    .err(span, "--checksum", "--checksum can't be specified for COPY")
                    .help("remove --checksum"));
            }
            Some(_)
                if (urls.is_empty() && gits.is_empty())
                    || !sources.is_empty()
                    || (!urls.is_empty() && !gits.is_empty()) =>
            {
                return Err(self
                    .err(span, "--checksum", "--checksum requires HTTP(S) or Git sources")
                    .help("remove --checksum, or give only URLs (or only git repositories) to this ADD"));
            }
            Some(c) if !gits.is_empty() => {
                let c = self.expand_checked(st, c, span)?;
                if !is_commit_id(&c) {
                    return Err(self
                        .err(
                            span,
                            "--checksum",
                            format!("invalid --checksum {c:?} for a git source"),
                        )
                        .help("give the full commit id the reference must name (40 hex digits)"));
                }
                Some(c)
            }
            Some(c) => {
                let c = self.expand_checked(st, c, span)?;
                if !is_sha256_digest(&c) {
                    return Err(self
                        .err(span, "--checksum", format!("invalid --checksum {c:?}"))
                        .help("write it as sha256:<64 lower-case hex digits>, e.g. the output of sha256sum"));
                }
                Some(c)
            }
        };
        let dest_raw = self.expand_checked(st, &spec.dest, span)?;
        let dest = resolve_path(&st.cwd(), &dest_raw, true);
        let chown = match &spec.chown {
            Some(c) => Some(self.expand_checked(st, c, span)?),
            None => None,
        };
        let owner = chown.as_deref().and_then(parse_owner);
        let chmod = match &spec.chmod {
            Some(c) => Some(self.expand_checked(st, c, span)?),
            None => None,
        };
        let (mode, symbolic) = match &chmod {
            None => (None, None),
            Some(c) => match ChmodSpec::parse(c) {
                Ok(ChmodSpec::Octal(m)) => (Some(m), None),
                Ok(ChmodSpec::Symbolic(_)) => (None, Some(c.clone())),
                Err(e) => {
                    let help = match e {
                        ChmodError::Octal(_) => {
                            "write the mode in octal (--chmod=755) or symbolically (--chmod=u+x,go-w)"
                        }
                        ChmodError::Syntax { .. } => {
                            "write it as chmod(1) does: [ugoa]* then +, - or = then [rwxXst]*, clauses joined by ',' (e.g. --chmod=u+x,go-w)"
                        }
                    };
                    return Err(self.err(span, "--chmod", e.to_string()).help(help));
                }
            },
        };
        let mut exclude = Vec::new();
        for e in &spec.exclude {
            exclude.push(self.expand(e, &st.env, span)?);
        }

        let mut inputs = vec![st.root];
        let mut actions = Vec::new();
        if !sources.is_empty() {
            let src_vertex = match step.refs.first() {
                Some(r) => self.ref_vertex(r, cx.done, &st.platform, span)?,
                None => self.context_vertex(),
            };
            inputs.push(src_vertex);
            for s in &sources {
                // --parents: the part before a `/./` pivot is what matches; below it, the
                // pattern selects what is copied with its path kept (all of it: below `/`).
                let (path, parents) = match (spec.parents, s.split_once("/./")) {
                    (false, _) => (clean_abs(s), None),
                    (true, Some((base, pattern))) => (clean_abs(base), Some(clean_rel(pattern))),
                    (true, None) => ("/".to_string(), Some(clean_rel(s))),
                };
                actions.push(FileAction::Copy(CopyAction {
                    source: CopySource::Input { input: 1, path },
                    dest: dest.clone(),
                    owner: owner.clone(),
                    mode,
                    allow_wildcard: true,
                    unpack_archive: is_add,
                    chmod: symbolic.clone(),
                    parents,
                    exclude: exclude.clone(),
                }));
            }
        }
        for g in &gits {
            let (remote, reference, subdir) = split_git_url(g);
            actions.push(FileAction::Copy(CopyAction {
                source: CopySource::Git {
                    remote,
                    reference,
                    subdir,
                    keep_git_dir: spec.keep_git_dir,
                    checksum: checksum.clone(),
                },
                dest: dest.clone(),
                owner: owner.clone(),
                mode,
                allow_wildcard: false,
                unpack_archive: false,
                chmod: symbolic.clone(),
                parents: None,
                exclude: exclude.clone(),
            }));
        }
        for u in &urls {
            actions.push(FileAction::Copy(CopyAction {
                source: CopySource::Http {
                    url: u.clone(),
                    checksum: checksum.clone(),
                    filename: url_filename(u),
                },
                dest: dest.clone(),
                owner: owner.clone(),
                mode,
                allow_wildcard: false,
                unpack_archive: false,
                chmod: symbolic.clone(),
                parents: None,
                exclude: vec![],
            }));
        }
        for h in &spec.heredocs {
            let data = if h.expand {
                expand_raw(&h.content, &|k| env_get(&st.env, k), false)
            } else {
                h.content.clone()
            };
            let file_dest = if dest.ends_with('/') {
                format!("{dest}{}", h.name)
            } else {
                dest.clone()
            };
            actions.push(FileAction::Copy(CopyAction {
                source: CopySource::Inline { data, mode: 0o644 },
                dest: file_dest,
                owner: owner.clone(),
                mode,
                allow_wildcard: false,
                unpack_archive: false,
                chmod: symbolic.clone(),
                parents: None,
                exclude: vec![],
            }));
        }
        if actions.is_empty() {
            return Err(self
                .err(
                    span,
                    "",
                    format!("{kw} needs at least one source and a destination"),
                )
                .help(format!("write it as {kw} <src>... <dest>")));
        }

        let description = cx.describe(step, &ins.original, &st.env);
        // --link (not with --chmod, as BuildKit): the copy is made on scratch and its layer
        // placed over the stage as it is, the same layer whatever the stage holds.
        let v = if spec.link && chmod.is_none() {
            if let Some(name) = owner.as_ref().and_then(named_owner) {
                return Err(self
                    .err(
                        span,
                        "--chown",
                        format!("{kw} --link --chown={name}: a name is looked up in the stage's /etc/passwd and /etc/group, which a linked copy does not read"),
                    )
                    .help("give numeric ids (e.g. --chown=1000:1000), or drop --link"));
            }
            inputs[0] = self.scratch_vertex();
            let copy = self.graph.add(
                Op::File(FileOp { actions }),
                inputs,
                self.meta(description.clone(), cx.index, span),
            );
            self.graph.add(
                Op::Merge,
                vec![st.root, copy],
                self.meta(link_description(&description), cx.index, span),
            )
        } else {
            self.graph.add(
                Op::File(FileOp { actions }),
                inputs,
                self.meta(description, cx.index, span),
            )
        };
        st.root = v;

        let mut msg = String::from(kw);
        if spec.parents {
            msg.push_str(" --parents");
        }
        if let Some(c) = &chown {
            msg.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            msg.push_str(&format!(" --chmod={c}"));
        }
        for s in sources.iter().chain(&urls).chain(&gits) {
            msg.push(' ');
            msg.push_str(s);
        }
        for h in &spec.heredocs {
            msg.push_str(&format!(" <<{}", h.name));
        }
        msg.push_str(&format!(" {dest_raw} # buildkit"));
        st.commit(msg, Some(v));
        Ok(())
    }
}

/// The part of an owner that is a name (not a number or `root`): what a linked copy cannot
/// resolve.
fn named_owner(o: &rbuild_graph::Owner) -> Option<String> {
    let is_name = |s: &str| !s.is_empty() && s != "root" && !s.bytes().all(|b| b.is_ascii_digit());
    (is_name(&o.user) || o.group.as_deref().is_some_and(is_name)).then(|| match &o.group {
        Some(g) => format!("{}:{g}", o.user),
        None => o.user.clone(),
    })
}

/// The progress name of the step that places a linked copy: `[2/3] LINK COPY …`.
fn link_description(copy: &str) -> String {
    match copy.split_once("] ") {
        Some((step, rest)) if copy.starts_with('[') => format!("{step}] LINK {rest}"),
        _ => format!("LINK {copy}"),
    }
}

/// Whether a source is a URL (ADD from HTTP/git).
fn is_url(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    ["http://", "https://", "git://", "ssh://", "git@"]
        .iter()
        .any(|p| l.starts_with(p))
}

/// Whether a URL names a git repository rather than a file: `git@…`, `git://`, `ssh://`,
/// or an http(s) URL whose path ends in `.git` (BuildKit's rule).
fn is_git(url: &str) -> bool {
    let l = url.to_ascii_lowercase();
    if !(l.starts_with("http://") || l.starts_with("https://")) {
        return true;
    }
    let path = l.split(['#', '?']).next().unwrap_or("");
    path.ends_with(".git") || path.ends_with(".git/")
}

/// The name an `ADD http(s)://` body gets in a destination directory: the URL path's last
/// segment, or `__unnamed__` when it has none (BuildKit's).
fn url_filename(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, p)| p);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// A git URL's parts: the remote, and from the fragment `#ref[:subdir]` the reference
/// and the subdirectory (empty ones are none).
fn split_git_url(url: &str) -> (String, Option<String>, Option<String>) {
    let (remote, frag) = url.split_once('#').unwrap_or((url, ""));
    let (reference, subdir) = frag.split_once(':').unwrap_or((frag, ""));
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    (remote.to_string(), some(reference), some(subdir))
}

/// A full git commit id (sha1 or sha256).
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `sha256:` and 64 lower-case hex digits.
fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert_eq!(url_filename("https://h/a/b.tar.gz?x=1#f"), "b.tar.gz");
        assert_eq!(url_filename("http://h:8/"), "__unnamed__");
        assert_eq!(url_filename("http://h"), "__unnamed__");
        assert_eq!(url_filename("http://h/dir/"), "dir");
        assert!(is_git("https://github.com/a/b.git#main:sub"));
        assert!(is_git("git@github.com:a/b.git"));
        assert!(!is_git("https://h/file.txt"));
        assert_eq!(
            split_git_url("https://h/r.git#v1:docs/x"),
            (
                "https://h/r.git".into(),
                Some("v1".into()),
                Some("docs/x".into())
            )
        );
        assert_eq!(
            split_git_url("git@h:o/r.git"),
            ("git@h:o/r.git".into(), None, None)
        );
        assert_eq!(
            split_git_url("git://h/r#:sub"),
            ("git://h/r".into(), None, Some("sub".into()))
        );
        assert!(is_sha256_digest(&format!("sha256:{}", "0".repeat(64))));
        assert!(!is_sha256_digest("sha256:00"));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0".repeat(64))));
    }
}
