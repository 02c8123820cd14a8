//! The plan: everything the child needs, built by the parent before the fork, since
//! the child may not allocate. The policy is applied here; each concern module plans
//! its part, and the child only walks the result.

use super::capabilities;
use super::devices::{self, Device};
use super::mountpoints::Mountpoints;
use super::mounts::{self, MountStep};
use super::policy::Policy;
use super::process::ProcessPlan;
use super::rlimits::{self, Limit};
use super::rootfs::{Root, RootfsPlan};
use super::rundir::RunDir;
use super::seccomp::{self, SeccompPlan};
use super::secrets::SecretFiles;
use super::sources::{Source, SourcePlan};
use crate::cstr::cstring;
use crate::error::ExecError;
use crate::spec::RunSpec;
use crate::users::ResolvedUser;
use std::ffi::CString;

/// What the child does, in data.
pub(super) struct Plan {
    /// The run's `cgroup.procs` files, open: the child writes itself into each.
    pub cgroup_procs: Vec<i32>,
    /// A cgroup namespace of its own, made once it is in its cgroup.
    pub cgroup_namespace: bool,
    pub hostname: CString,
    /// A network namespace of its own, whose `lo` it brings up.
    pub private_network: bool,
    pub rootfs: RootfsPlan,
    /// Mount sources, opened in this order: host devices, host /sys, the /etc files,
    /// the caller's binds.
    pub sources: Vec<Source>,
    pub mountpoints: Mountpoints,
    /// Secret files, written on a private tmpfs before the sources are opened.
    pub secrets: SecretFiles,
    pub mounts: Vec<MountStep>,
    pub devices: Vec<Device>,
    /// The /dev/shm tmpfs's mount options (its size).
    pub shm_options: CString,
    pub readonly_paths: Vec<CString>,
    pub masked_paths: Vec<CString>,
    pub rlimits: Vec<Limit>,
    /// Capabilities kept: the policy's, cut to those this process holds.
    pub capabilities: u64,
    pub process: ProcessPlan,
    pub no_new_privs: bool,
    /// The seccomp programs, compiled for `capabilities`.
    pub seccomp: Option<SeccompPlan>,
}

/// What a plan is built from, besides the policy.
pub(super) struct Inputs<'a> {
    pub spec: &'a RunSpec,
    pub root: &'a Root<'a>,
    pub user: &'a ResolvedUser,
    pub hostname: &'a str,
    pub run_dir: &'a RunDir,
    /// The `cgroup.procs` descriptors of the run's cgroup (none without one).
    pub cgroup_procs: Vec<i32>,
}

impl Plan {
    /// Plans a run of `inputs` under `policy`.
    pub(super) fn build(inputs: &Inputs<'_>, policy: &Policy) -> Result<Plan, ExecError> {
        // Fixed fd numbers in the child: stdio, status, layers, sources, the two roots.
        let mut sources = SourcePlan::new();
        let mut rootfs = RootfsPlan::new(inputs.root, inputs.run_dir, &mut sources)?;
        let devices = devices::plan(policy.devices, &mut sources)?;
        let mut mountpoints = Mountpoints::default();
        let mut mounts = mounts::plan_system(&mut sources, &mut mountpoints, policy.writable_sys)?;
        let etc = inputs.run_dir.etc_files();
        mounts.extend(mounts::plan_etc_files(
            &etc,
            &mut sources,
            &mut mountpoints,
        )?);
        let mut secrets = SecretFiles::new(inputs.run_dir.secrets());
        mounts.extend(mounts::plan_user(
            &inputs.spec.mounts,
            &mut sources,
            &mut mountpoints,
            &mut secrets,
        )?);
        rootfs.place_root_fds(&mut sources);
        let sources = sources.into_list()?;
        let capabilities = policy.capabilities & capabilities::permitted();
        let seccomp = if policy.seccomp {
            Some(seccomp::plan(capabilities)?)
        } else {
            None
        };
        Ok(Plan {
            cgroup_procs: inputs.cgroup_procs.clone(),
            cgroup_namespace: policy.namespaces & libc::CLONE_NEWCGROUP != 0,
            hostname: cstring(inputs.hostname)?,
            private_network: policy.private_network(),
            rootfs,
            sources,
            mountpoints,
            secrets,
            mounts,
            devices,
            shm_options: devices::shm_options(inputs.spec.shm_size)?,
            readonly_paths: policy.readonly_paths.clone(),
            masked_paths: policy.masked_paths.clone(),
            rlimits: rlimits::plan(&inputs.spec.rlimits),
            capabilities,
            process: ProcessPlan::new(inputs.spec, inputs.user)?,
            no_new_privs: policy.no_new_privs,
            seccomp,
        })
    }
}
