//! What several commands use: the store, the registry client, the image resolver lowering
//! asks, progress printing, the async runtime and signals, exit codes, `--format` templates, docker's time words, and the
//! two-vertex graphs of `pull`, `push` and `run`. Nothing here knows about flags or
//! commands.

pub mod exit;
pub mod oneshot;
pub mod progress;
pub mod rawjson;
pub mod registry;
pub mod resolver;
pub mod rootless;
pub mod runtime;
pub mod store;
pub mod suggest;
pub mod template;
pub mod tty;
pub mod when;
