//! Runs RUN steps in Linux namespaces over an overlay rootfs.
//!
//! - [`spec`]: what a caller asks for ([`RunSpec`], [`Mount`], [`Network`],
//!   [`Security`], [`Rlimit`], [`CgroupOptions`]), what it gets back ([`RunExit`]) and
//!   how to stop it ([`CancelToken`]); [`error`]: [`ExecError`], [`SpecError`],
//!   [`SeccompError`].
//! - `sandbox/`: the container itself, one module per kernel concern (namespaces,
//!   cgroup, rootfs, mounts, devices, kernel paths, rlimits, capabilities, seccomp, the
//!   process), the plan the parent builds, the child that applies it, the status
//!   protocol between them; the order of a [`run`] is described there. The seccomp
//!   profile is data: `executor/seccomp/default.toml`.
//! - `overlay`: which interface takes an overlay's layers ([`MountApi`]) and how many
//!   ([`max_lower_layers`]), the options, and host-side overlay mounts ([`OverlayMount`]);
//!   `rootpath`: paths inside a root or a stack of layers, never leaving it
//!   ([`resolve_in_root`]); [`users`]: USER against the image's /etc/passwd and /etc/group.
//! - `cstr`: the C strings the child is handed, built before the fork.
//!
//! Overlay whiteouts and opaque dirs are read with `rbuild_fsutil::whiteout`, the rules
//! the store writes them by.

mod cstr;
pub mod error;
mod overlay;
mod rootpath;
mod sandbox;
pub mod spec;
pub mod users;

pub use error::{ExecError, ProfileError, SeccompError, SpecError};
pub use overlay::{MountApi, OVL_MAX_STACK, OverlayMount, max_lower_layers, overlay_supported};
pub use rootpath::resolve_in_root;
pub use sandbox::emulation::{EmulationError, Emulator, emulator_for};
pub use sandbox::{chroot_isolation, run, run_in_dir, use_chroot_isolation};
pub use spec::{
    CancelToken, CgroupOptions, DEFAULT_RLIMITS, Mount, MountSource, Network, Resource, Rlimit,
    RunExit, RunSpec, SecretValue, Security, Stream,
};
