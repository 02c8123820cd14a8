//! RUN: its network and security modes, its command (exec form, shell form through
//! SHELL, heredoc scripts), its mounts (`mounts.rs`), its environment, and its history
//! entry as BuildKit writes it.

use super::Lowerer;
use super::env::{Env, env_get};
use super::metadata::with_shell;
use super::mounts::ExecInputs;
use super::state::{StageCx, StageState, Step};
use crate::Diagnostic;
use crate::ast::{CommandLine, Heredoc, Instruction, MountSpec, Span};
use rbuild_graph::{
    CopyAction, CopySource, ExecMount, ExecOp, FileAction, FileOp, MountKind, NetworkMode, Op,
    SecurityMode, VertexMeta,
};
use regex::Regex;
use std::sync::OnceLock;

/// The fields of `Command::Run`.
pub(super) struct RunInstruction<'a> {
    pub command: &'a CommandLine,
    pub heredocs: &'a [Heredoc],
    pub mounts: &'a [MountSpec],
    pub network: Option<&'a str>,
    pub security: Option<&'a str>,
}

impl Lowerer<'_> {
    pub(super) fn dispatch_run(
        &mut self,
        cx: &mut StageCx,
        st: &mut StageState,
        step: &Step,
        run: &RunInstruction,
    ) -> Result<(), Diagnostic> {
        let ins = step.ins;
        let span = ins.span;
        let network = self.run_network(run.network, span)?;
        let security = self.run_security(run.security, span)?;
        let mut exec = ExecInputs::new(st.root);
        let mut name = ins.original.clone();
        let args = self.run_args(cx, st, ins, run, &mut exec, &mut name)?;
        let cwd = st.cwd();
        self.run_mounts(cx, st, span, run.mounts, &cwd, &mut exec)?;

        let env = self.run_env(&st.env);
        let description = cx.describe(step, &name, &st.env);
        let v = self.graph.add(
            Op::Exec(ExecOp {
                args: args.clone(),
                env,
                cwd,
                user: st.config.config.user.clone(),
                network,
                mounts: exec.mounts,
                security,
                settings: self.opts.run_settings.clone(),
                platform: self.foreign(&st.platform),
            }),
            exec.inputs,
            self.meta(description, cx.index, span),
        );
        self.graph.mark_build_args(v, self.run_build_args(st));
        st.root = v;
        let msg = format!("RUN {} # buildkit", run_history(&args, &st.args, &st.env));
        st.commit(msg, Some(v));
        Ok(())
    }

    /// `--network`: `default` (and none given) is the build's `--network`.
    fn run_network(&self, network: Option<&str>, span: Span) -> Result<NetworkMode, Diagnostic> {
        match network.map(str::to_ascii_lowercase).as_deref() {
            None | Some("default") => Ok(self.opts.default_network),
            Some("host") => Ok(NetworkMode::Host),
            Some("none") => Ok(NetworkMode::None),
            Some(other) => Err(self
                .err(
                    span,
                    "--network",
                    format!("unsupported network mode {other:?}"),
                )
                .help("use --network=default, --network=none or --network=host")),
        }
    }

    /// `--security`: the sandbox (the default), or `insecure`. Whether the build may use
    /// the latter (`--allow security.insecure`) is the solver's to check, before anything
    /// runs.
    fn run_security(&self, security: Option<&str>, span: Span) -> Result<SecurityMode, Diagnostic> {
        match security {
            None | Some("sandbox") => Ok(SecurityMode::Sandbox),
            Some("insecure") => Ok(SecurityMode::Insecure),
            Some(other) => Err(self
                .err(
                    span,
                    "--security",
                    format!("unsupported security mode {other:?}"),
                )
                .help("use --security=sandbox or --security=insecure")),
        }
    }

    /// The exec's argv. A lone heredoc is the script (one starting with `#!` is mounted as
    /// a file and run); `cmd <<EOF` hands the shell the command and its heredocs verbatim.
    /// `name` (the progress name) gets the heredoc's first line.
    fn run_args(
        &mut self,
        cx: &StageCx,
        st: &StageState,
        ins: &Instruction,
        run: &RunInstruction,
        exec: &mut ExecInputs,
        name: &mut String,
    ) -> Result<Vec<String>, Diagnostic> {
        let span = ins.span;
        let heredocs = run.heredocs;
        let args: Vec<String> = match run.command {
            CommandLine::Exec(v) => {
                if !heredocs.is_empty() {
                    return Err(self
                        .err(span, "", "RUN in exec form cannot use heredocs")
                        .help("use the shell form: RUN <<EOF ... EOF"));
                }
                return Ok(v.clone());
            }
            CommandLine::Shell(text) if heredocs.is_empty() => vec![text.clone()],
            CommandLine::Shell(text) if is_single_heredoc(text) => {
                let doc = &heredocs[0];
                name.push_str(&format!(" ({})", summarize_heredoc(&doc.content)));
                if doc.content.starts_with("#!") {
                    // A script with its own interpreter: mount it as a file and run it.
                    let scratch = self.scratch_vertex();
                    let file = self.graph.add(
                        Op::File(FileOp {
                            actions: vec![FileAction::Copy(CopyAction {
                                source: CopySource::Inline {
                                    data: doc.content.clone(),
                                    mode: 0o755,
                                },
                                dest: format!("/{}", doc.name),
                                owner: None,
                                mode: None,
                                allow_wildcard: false,
                                unpack_archive: false,
                                chmod: None,
                                parents: None,
                                exclude: vec![],
                            })],
                        }),
                        vec![scratch],
                        VertexMeta {
                            description: "[internal] preparing inline document".into(),
                            stage: Some(self.stage_label(cx.index)),
                            lines: Some((span.start_line, span.end_line)),
                        },
                    );
                    let input = exec.push(file);
                    exec.mounts.push(ExecMount {
                        target: "/dev/pipes".into(),
                        kind: MountKind::Bind {
                            input,
                            source: "/".into(),
                            readonly: true,
                        },
                    });
                    vec![format!("/dev/pipes/{}", doc.name)]
                } else {
                    vec![doc.content.clone()]
                }
            }
            CommandLine::Shell(text) => {
                let mut script = text.clone();
                for h in heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                }
                vec![script]
            }
        };
        Ok(with_shell(&st.config, &CommandLine::Shell(args.join(" "))))
    }
}

/// BuildKit's RUN history text: `|N K=V ... args` with the stage's ARGs.
fn run_history(args: &[String], declared: &[(String, Option<String>)], env: &Env) -> String {
    let mut parts: Vec<String> = declared
        .iter()
        .map(|(k, v)| {
            let v = env_get(env, k).or_else(|| v.clone()).unwrap_or_default();
            format!("{k}={v}")
        })
        .collect();
    if !parts.is_empty() {
        parts.insert(0, format!("|{}", parts.len()));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

/// First line of a heredoc, with `...` when it has more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string();
    if lines.next().is_some() {
        first + "..."
    } else {
        first
    }
}

/// `RUN <<EOF` alone (the command is one heredoc word, optionally quoted or `<<-`).
fn is_single_heredoc(cmd: &str) -> bool {
    static HEREDOC: OnceLock<Regex> = OnceLock::new();
    HEREDOC
        .get_or_init(|| {
            Regex::new(r#"^\s*[0-9]*<<-?\s*['"]?[A-Za-z_][A-Za-z0-9_]*['"]?\s*$"#)
                .expect("static regex")
        })
        .is_match(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_history_lists_args_first() {
        let env: Env = [("A", "1")].into_iter().collect();
        let declared = vec![("A".to_string(), None), ("B".to_string(), None)];
        assert_eq!(
            run_history(
                &["/bin/sh".into(), "-c".into(), "make".into()],
                &declared,
                &env
            ),
            "|2 A=1 B= /bin/sh -c make"
        );
        assert_eq!(run_history(&["true".into()], &[], &env), "true");
    }

    #[test]
    fn heredoc_detection_and_summary() {
        assert!(is_single_heredoc("<<EOF"));
        assert!(is_single_heredoc("<<-'EOT'"));
        assert!(!is_single_heredoc("<<EOF cat"));
        assert!(!is_single_heredoc("cat <<EOF"));
        assert_eq!(summarize_heredoc("echo a\necho b\n"), "echo a...");
        assert_eq!(summarize_heredoc("echo a\n"), "echo a");
    }
}
