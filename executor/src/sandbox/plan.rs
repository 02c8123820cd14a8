//! The plan: everything the child needs, built by the parent before the fork, since
//! the child may not allocate. The policy is applied here; each concern module plans
//! its part, and the child only walks the result.

use super::capabilities;
use super::devices::{self, Device};
use super::mountpoints::Mountpoints;
use super::mounts::{self, MountStep};
use super::policy::Policy;
use super::process::ProcessPlan;
use super::rootfs::{Root, RootfsPlan};
use super::rundir::RunDir;
use super::sources::{Source, SourcePlan};
use crate::cstr::cstring;
use crate::error::ExecError;
use crate::spec::RunSpec;
use crate::users::ResolvedUser;
use std::ffi::{CStr, CString};

/// What the child does, in data.
pub(super) struct Plan {
    pub hostname: CString,
    /// A network namespace of its own, whose `lo` it brings up.
    pub private_network: bool,
    pub rootfs: RootfsPlan,
    /// Mount sources, opened in this order: host devices, host /sys, the /etc files,
    /// the caller's binds.
    pub sources: Vec<Source>,
    pub mountpoints: Mountpoints,
    pub mounts: Vec<MountStep>,
    pub devices: Vec<Device>,
    pub readonly_paths: &'static [&'static CStr],
    pub masked_paths: &'static [&'static CStr],
    /// Capabilities kept: the policy's, cut to those this process holds.
    pub capabilities: u64,
    pub process: ProcessPlan,
}

/// What a plan is built from, besides the policy.
pub(super) struct Inputs<'a> {
    pub spec: &'a RunSpec,
    pub root: &'a Root<'a>,
    pub user: &'a ResolvedUser,
    pub hostname: &'a str,
    pub run_dir: &'a RunDir,
}

impl Plan {
    /// Plans a run of `inputs` under `policy`.
    pub(super) fn build(inputs: &Inputs<'_>, policy: &Policy) -> Result<Plan, ExecError> {
        // Fixed fd numbers in the child: stdio, status, layers, sources, the two roots.
        let mut sources = SourcePlan::new();
        let mut rootfs = RootfsPlan::new(inputs.root, inputs.run_dir, &mut sources)?;
        let devices = devices::plan(policy.devices, &mut sources)?;
        let mut mountpoints = Mountpoints::default();
        let mut mounts = mounts::plan_system(&mut sources, &mut mountpoints)?;
        let etc = inputs.run_dir.etc_files();
        mounts.extend(mounts::plan_etc_files(
            &etc,
            &mut sources,
            &mut mountpoints,
        )?);
        mounts.extend(mounts::plan_user(
            &inputs.spec.mounts,
            &mut sources,
            &mut mountpoints,
        )?);
        rootfs.place_root_fds(&mut sources);
        let sources = sources.into_list()?;
        Ok(Plan {
            hostname: cstring(inputs.hostname)?,
            private_network: policy.private_network(),
            rootfs,
            sources,
            mountpoints,
            mounts,
            devices,
            readonly_paths: policy.readonly_paths,
            masked_paths: policy.masked_paths,
            capabilities: policy.capabilities & capabilities::permitted(),
            process: ProcessPlan::new(inputs.spec, inputs.user)?,
        })
    }
}
