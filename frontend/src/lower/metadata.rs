//! The instructions that only change the image config (and add an empty-layer history
//! entry): ENV, LABEL, MAINTAINER, EXPOSE, VOLUME, USER, STOPSIGNAL, HEALTHCHECK, SHELL,
//! CMD and ENTRYPOINT. None of them makes a vertex.

use super::Lowerer;
use super::env::env_set;
use super::state::StageState;
use super::text::{go_list, go_quoted_list};
use super::values::{parse_port_spec, valid_signal};
use crate::Diagnostic;
use crate::ast::{CommandLine, Healthcheck, Instruction, KeyValue, Span};
use crate::duration::{format_duration_ns, parse_duration_ns};
use rbuild_graph::image::{Empty, HealthConfig, ImageConfig};

/// Exec form as written; shell form run through the stage's SHELL (`/bin/sh -c` by default).
pub(super) fn with_shell(config: &ImageConfig, cmd: &CommandLine) -> Vec<String> {
    match cmd {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(text) => {
            let mut args = if config.config.shell.is_empty() {
                vec!["/bin/sh".to_string(), "-c".to_string()]
            } else {
                config.config.shell.clone()
            };
            args.push(text.clone());
            args
        }
    }
}

impl Lowerer<'_> {
    /// Keys and values of ENV/LABEL, all expanded with the variables from before the instruction.
    fn expand_pairs(
        &self,
        st: &StageState,
        ins: &Instruction,
        kvs: &[KeyValue],
    ) -> Result<Vec<(String, String)>, Diagnostic> {
        let mut pairs = Vec::new();
        for kv in kvs {
            pairs.push((
                self.expand_checked(st, &kv.key, ins.span)?,
                self.expand_checked(st, &kv.value, ins.span)?,
            ));
        }
        Ok(pairs)
    }

    pub(super) fn dispatch_env(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        kvs: &[KeyValue],
    ) -> Result<(), Diagnostic> {
        self.lint.legacy_key_value("ENV", ins.span);
        let pairs = self.expand_pairs(st, ins, kvs)?;
        let mut msg = String::from("ENV");
        for (k, v) in pairs {
            self.lint.secret_key(self.source, "ENV", ins.span, &k);
            env_set(&mut st.env, &k, &v);
            st.set_config_env(&k, &v);
            msg.push_str(&format!(" {k}={v}"));
        }
        st.commit(msg, None);
        Ok(())
    }

    pub(super) fn dispatch_label(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        kvs: &[KeyValue],
    ) -> Result<(), Diagnostic> {
        self.lint.legacy_key_value("LABEL", ins.span);
        let pairs = self.expand_pairs(st, ins, kvs)?;
        let mut msg = String::from("LABEL");
        for (k, v) in pairs {
            msg.push_str(&format!(" {k}={v}"));
            st.config.config.labels.insert(k, v);
        }
        st.commit(msg, None);
        Ok(())
    }

    pub(super) fn dispatch_maintainer(
        &self,
        st: &mut StageState,
        m: &str,
    ) -> Result<(), Diagnostic> {
        st.config.author = Some(m.to_string());
        st.commit(format!("MAINTAINER {m}"), None);
        Ok(())
    }

    pub(super) fn dispatch_expose(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        ports: &[String],
    ) -> Result<(), Diagnostic> {
        let span = ins.span;
        let mut all = Vec::new();
        for p in ports {
            for word in self.expand_words(p, &st.env, span)? {
                self.lint.expose(self.source, span, &word);
                let specs = parse_port_spec(&word).map_err(|e| {
                    self.err(span, p, format!("invalid EXPOSE port {word:?}: {e}"))
                        .help("write ports as PORT[/PROTO] or START-END[/PROTO], PROTO being tcp, udp or sctp")
                })?;
                all.extend(specs);
            }
        }
        for p in &all {
            st.config.config.exposed_ports.insert(p.clone(), Empty {});
        }
        st.commit(format!("EXPOSE {}", go_list(&all)), None);
        Ok(())
    }

    pub(super) fn dispatch_volume(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        vols: &[String],
    ) -> Result<(), Diagnostic> {
        let mut out = Vec::new();
        for v in vols {
            let e = self.expand_checked(st, v, ins.span)?;
            if e.is_empty() {
                return Err(self
                    .err(ins.span, "", "VOLUME specified can not be an empty string")
                    .help("give the volume's path inside the container, e.g. VOLUME /data"));
            }
            out.push(e);
        }
        for v in &out {
            st.config.config.volumes.insert(v.clone(), Empty {});
        }
        st.commit(format!("VOLUME {}", go_list(&out)), None);
        Ok(())
    }

    pub(super) fn dispatch_user(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        u: &str,
    ) -> Result<(), Diagnostic> {
        let u = self.expand_checked(st, u, ins.span)?;
        st.config.config.user = u.clone();
        st.commit(format!("USER {u}"), None);
        Ok(())
    }

    pub(super) fn dispatch_stopsignal(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        s: &str,
    ) -> Result<(), Diagnostic> {
        let s = self.expand_checked(st, s, ins.span)?;
        if !valid_signal(&s) {
            return Err(self
                .err(ins.span, "", format!("invalid signal: {s}"))
                .help("use a signal name such as SIGTERM or SIGQUIT, or its number"));
        }
        st.config.config.stop_signal = s.clone();
        st.commit(format!("STOPSIGNAL {s}"), None);
        Ok(())
    }

    pub(super) fn dispatch_healthcheck(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        h: &Healthcheck,
    ) -> Result<(), Diagnostic> {
        self.lint.used_once(&mut st.checks, "HEALTHCHECK", ins.span);
        let hc = self.healthcheck(h, ins.span)?;
        let msg = format!(
            "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            go_list(&hc.test),
            format_duration_ns(hc.interval),
            format_duration_ns(hc.timeout),
            format_duration_ns(hc.start_period),
            format_duration_ns(hc.start_interval),
            hc.retries
        );
        st.config.config.healthcheck = Some(hc);
        st.commit(msg, None);
        Ok(())
    }

    /// HEALTHCHECK flags as the config stores them (durations in nanoseconds).
    fn healthcheck(&self, h: &Healthcheck, span: Span) -> Result<HealthConfig, Diagnostic> {
        let dur = |flag: &str, v: &Option<String>| -> Result<i64, Diagnostic> {
            let Some(v) = v else { return Ok(0) };
            let ns = parse_duration_ns(v).ok_or_else(|| {
                self.err(span, flag, format!("invalid duration for --{flag}: {v:?}"))
                    .help("durations are written like 30s, 1m30s or 500ms")
            })?;
            if ns != 0 && ns < 1_000_000 {
                return Err(self
                    .err(span, flag, format!("--{flag} cannot be less than 1ms"))
                    .help("use 0s for the default, or at least 1ms"));
            }
            Ok(ns)
        };
        let retries = match &h.retries {
            None => 0,
            Some(r) => r.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                self.err(
                    span,
                    "retries",
                    format!("invalid value for --retries: {r:?}"),
                )
                .help("--retries takes a non-negative whole number")
            })?,
        };
        Ok(HealthConfig {
            test: h.test.clone(),
            interval: dur("interval", &h.interval)?,
            timeout: dur("timeout", &h.timeout)?,
            start_period: dur("start-period", &h.start_period)?,
            start_interval: dur("start-interval", &h.start_interval)?,
            retries,
        })
    }

    pub(super) fn dispatch_shell(
        &self,
        st: &mut StageState,
        sh: &[String],
    ) -> Result<(), Diagnostic> {
        st.config.config.shell = sh.to_vec();
        st.commit(format!("SHELL {}", go_list(sh)), None);
        Ok(())
    }

    pub(super) fn dispatch_cmd(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        cl: &CommandLine,
    ) -> Result<(), Diagnostic> {
        self.command_checks(st, "CMD", ins, cl);
        let args = with_shell(&st.config, cl);
        st.config.config.cmd = Some(args.clone());
        st.config.config.args_escaped = true;
        st.cmd_set = true;
        st.commit(format!("CMD {}", go_quoted_list(&args)), None);
        Ok(())
    }

    pub(super) fn dispatch_entrypoint(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        cl: &CommandLine,
    ) -> Result<(), Diagnostic> {
        self.command_checks(st, "ENTRYPOINT", ins, cl);
        let args = with_shell(&st.config, cl);
        st.config.config.entrypoint = Some(args.clone());
        // An inherited CMD was written for the old ENTRYPOINT; one set in this stage stays.
        if !st.cmd_set {
            st.config.config.cmd = None;
        }
        st.commit(format!("ENTRYPOINT {}", go_quoted_list(&args)), None);
        Ok(())
    }

    /// The checks CMD and ENTRYPOINT share: one per stage, JSON form.
    fn command_checks(
        &self,
        st: &mut StageState,
        keyword: &str,
        ins: &Instruction,
        cl: &CommandLine,
    ) {
        self.lint.used_once(&mut st.checks, keyword, ins.span);
        let shell_form = matches!(cl, CommandLine::Shell(_));
        let shell_set = !st.config.config.shell.is_empty();
        self.lint
            .json_args(keyword, ins.span, shell_form, shell_set);
    }
}
