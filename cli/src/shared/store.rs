//! Opening the store under `--root`, with the one message every command gives when it
//! cannot.

use anyhow::{Context, Result};
use rbuild_cache::Store;
use std::path::Path;

/// The store at `root`, created when missing.
pub fn open(root: &Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("cannot open the store at {}", root.display()))
}
