//! RUN: the executor over input 0's layer chain; the upper dir becomes the new layer. Its
//! runtime key adds what each bind of the context shows; its mounts are in
//! [`super::mounts`].

use super::mounts;
use super::rootfs::{commit_step, copy_rootfs, epoch_key, mount_lowers, step_dirs};
use super::source::local_context;
use crate::context::Filter;
use crate::error::{SolveError, StepFailure};
use crate::explain::mount_part;
use crate::op::{RuntimeKey, SolveOp, StepContext, Work};
use crate::options::SolveOptions;
use crate::outcome::Outcome;
use crate::progress::{Event, LastLines};
use rbuild_executor::{
    CgroupOptions, ExecError, Mount, Network, Resource, Rlimit, RunSpec, Security,
};
use rbuild_graph::dockerignore::Patterns;
use rbuild_graph::{ExecOp, MountKind, NetworkMode, SecurityMode};
use std::path::PathBuf;
use std::sync::Arc;

/// Lines of output kept for the error of a failed RUN.
const TAIL_LINES: usize = 10;

/// The container's hostname, as BuildKit's sandbox has a fixed one.
const HOSTNAME: &str = "rbuild";

/// A RUN step.
pub struct ExecStep {
    op: ExecOp,
}

impl ExecStep {
    pub(crate) fn new(op: &ExecOp) -> Self {
        ExecStep { op: op.clone() }
    }

    /// A step for another platform: the emulator that runs it, said in its output
    /// (`emulated linux/arm64/v8: qemu-aarch64`); a missing one fails the step here.
    fn say_emulator(&self, step: &StepContext) -> Result<(), SolveError> {
        let Some(p) = &self.op.platform else {
            return Ok(());
        };
        let emulator = rbuild_executor::emulator_for(&p.to_string())
            .map_err(|e| step.fail(StepFailure::Exec(e.into())))?;
        if let Some(e) = emulator {
            let _ = step.events.send(Event::Log {
                vertex: step.vertex,
                stream: rbuild_executor::Stream::Stderr,
                data: format!("emulated {p}: {} ({})\n", e.name, e.interpreter).into_bytes(),
            });
        }
        Ok(())
    }

    /// Runs the command (blocking) and commits what it changed.
    fn run_command(&self, step: &StepContext) -> Result<Outcome, SolveError> {
        let base = step.input(0);
        let (tmp, upper, work) = step_dirs(step, "exec-")?;
        // Copying snapshotter: the step runs on a copy of the rootfs, diffed afterwards.
        let (copy_base, copy_root) = (tmp.path().join("base"), tmp.path().join("rootfs"));
        let lowerdirs = if step.services.copying {
            copy_rootfs(step, &base.layers, &copy_base, &copy_root)?;
            Vec::new()
        } else {
            mount_lowers(step, &base.layers)?
        };
        let prepared = mounts::prepare(step, &self.op.mounts, tmp.path())?;
        let guards = prepared.guards;
        let mut spec = run_spec(&self.op, lowerdirs, upper.clone(), work, prepared.mounts)
            .map_err(|e| step.fail(e))?;
        spec.secret_env = prepared.secret_env;
        self.say_emulator(step)?;
        let mut tail = LastLines::new(TAIL_LINES);
        let mut output = |stream, data: &[u8]| {
            tail.push(data);
            let _ = step.events.send(Event::Log {
                vertex: step.vertex,
                stream,
                data: data.to_vec(),
            });
        };
        let result = if step.services.copying {
            rbuild_executor::run_in_dir(&copy_root, &spec, &step.cancel, &mut output)
        } else {
            rbuild_executor::run(&spec, &step.cancel, &mut output)
        };
        drop(guards);
        let exit = match result {
            Ok(exit) => exit,
            Err(ExecError::Cancelled) => return Err(SolveError::Cancelled),
            Err(e) => return Err(step.fail(StepFailure::Exec(e))),
        };
        if let Some(message) = exit.warning.clone() {
            step.services.warn_once(step.vertex, message, &step.events);
        }
        if step.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        if exit.code != 0 {
            return Err(SolveError::RunFailed {
                vertex: step.vertex,
                description: step.describe(),
                lines: step.graph.vertex(step.vertex).meta.lines,
                exit_code: exit.code,
                last_output: tail.finish(),
                note: exit.limit_note(),
            });
        }
        let mut outcome = commit_step(step, base.layers, (&copy_base, &copy_root), &upper)?;
        outcome.peak_memory = exit.peak_memory;
        Ok(outcome)
    }
}

impl SolveOp for ExecStep {
    /// A bind mount may show the context, whose files are then hashed.
    fn key_blocks(&self) -> bool {
        self.op
            .mounts
            .iter()
            .any(|m| matches!(m.kind, MountKind::Bind { .. }))
    }

    /// A bind of the context: what it shows is part of the step's inputs.
    fn cache_key(&self, step: &StepContext, key: &mut RuntimeKey) -> Result<(), SolveError> {
        let inputs = step.graph.vertex(step.vertex).inputs.len();
        let targets: Vec<&str> = self.op.mounts.iter().map(|m| m.target.as_str()).collect();
        for (i, m) in self.op.mounts.iter().enumerate() {
            let MountKind::Bind { input, source, .. } = &m.kind else {
                continue;
            };
            // A missing input fails when the step runs.
            if *input >= inputs {
                continue;
            }
            let Some(ctx) = local_context(step, *input, "mount")? else {
                continue;
            };
            let none = Patterns::default();
            let filter = Filter {
                ignore: &ctx.ignore,
                copy_exclude: &none,
            };
            let mut entries = key.wants_entries().then(Vec::new);
            let d = step
                .services
                .hasher
                .digest_listed(&ctx.dir, source, false, &filter, entries.as_mut())
                .map_err(|e| step.context_error(e))?;
            key.add(b"bind\0")
                .add(&(i as u64).to_le_bytes())
                .add_selection(&mount_part(&targets, i, "content"), &d, entries);
        }
        epoch_key(step, key);
        Ok(())
    }

    fn refused(&self, opts: &SolveOptions) -> Option<StepFailure> {
        (self.op.security == SecurityMode::Insecure && !opts.allow_insecure).then_some(
            StepFailure::NotAllowed {
                what: "RUN --security=insecure",
                flag: "--allow security.insecure",
            },
        )
    }

    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        Work::blocking(move || self.run_command(&step))
    }
}

/// The executor's spec for an Exec op.
fn run_spec(
    op: &ExecOp,
    lowerdirs: Vec<PathBuf>,
    upperdir: PathBuf,
    workdir: PathBuf,
    mounts: Vec<Mount>,
) -> Result<RunSpec, StepFailure> {
    // Allowed or not was settled before the solve started (`--allow security.insecure`).
    let security = match op.security {
        SecurityMode::Sandbox => Security::Sandbox,
        SecurityMode::Insecure => Security::Insecure,
    };
    let mut env: Vec<String> = op.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The first SSH mount is the step's agent unless its environment names one, as
    // BuildKit's LLB sets it (there, in the op; here at run time, so keys stay as they
    // were).
    let first_ssh = op
        .mounts
        .iter()
        .find(|m| matches!(m.kind, MountKind::Ssh { .. }));
    if let Some(m) = first_ssh
        && !op.env.contains_key("SSH_AUTH_SOCK")
    {
        env.push(format!("SSH_AUTH_SOCK={}", m.target));
    }
    let settings = &op.settings;
    let rlimits = settings
        .ulimits
        .iter()
        .map(|u| {
            let resource =
                Resource::from_name(&u.name).ok_or_else(|| StepFailure::UnknownUlimit {
                    name: u.name.clone(),
                })?;
            Ok(Rlimit {
                resource,
                soft: u.soft,
                hard: u.hard,
            })
        })
        .collect::<Result<Vec<_>, StepFailure>>()?;
    let mut cgroup = CgroupOptions::default();
    if let Some(parent) = &settings.cgroup_parent {
        cgroup.parent = parent.clone();
    }
    Ok(RunSpec {
        lowerdirs,
        upperdir,
        workdir,
        args: op.args.clone(),
        env,
        cwd: if op.cwd.is_empty() {
            "/".into()
        } else {
            op.cwd.clone()
        },
        user: op.user.clone(),
        network: match op.network {
            NetworkMode::Host => Network::Host,
            NetworkMode::None => Network::None,
        },
        hostname: HOSTNAME.into(),
        mounts,
        secret_env: Vec::new(),
        stdin: false,
        security,
        rlimits,
        cgroup,
        extra_hosts: settings
            .extra_hosts
            .iter()
            .map(|h| (h.host.clone(), h.ip.clone()))
            .collect(),
        shm_size: settings.shm_size,
        platform: op.platform.as_ref().map(|p| p.to_string()),
    })
}
