//! What steps share across a solver's lifetime: the store, the context hasher, the
//! snapshotter choice, and memos that keep a rebuild of many steps cheap (blobs seen
//! present, `.dockerignore` lists already parsed).

use crate::context::ContextHasher;
use crate::error::LayerFetchError;
use crate::options::SolveOptions;
use rbuild_cache::{CacheError, ChainMemo, Layer, SharedRecord, Store};
use rbuild_graph::dockerignore::{PatternError, Patterns};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The store and helpers every step uses (BuildKit's worker, in small).
pub struct Services {
    pub store: Store,
    pub hasher: ContextHasher,
    /// Copy rootfs trees instead of mounting overlays (overlayfs unusable here).
    pub copying: bool,
    /// Blobs seen in the store: every cached step checks its whole layer chain, so without
    /// this a rebuild of N steps would stat O(N²) blobs.
    blobs_present: Mutex<HashSet<String>>,
    /// Layer chains read from records: every record lists its step's whole chain, so a
    /// rebuild of N steps would otherwise parse and keep N copies of the chains.
    chains: ChainMemo,
    /// `.dockerignore` lists parsed so far: every COPY from the context needs them for its
    /// key and again to copy, and they are the same list each time.
    ignore: Mutex<HashMap<Vec<String>, Arc<Patterns>>>,
    /// Warnings already sent (a missing cgroup is the same for every RUN): each once.
    warned: Mutex<HashSet<String>>,
}

impl Services {
    pub(crate) fn new(store: Store, copying: bool) -> Self {
        let hasher = ContextHasher::new(store.root());
        Services {
            store,
            hasher,
            copying,
            blobs_present: Default::default(),
            chains: Default::default(),
            ignore: Default::default(),
            warned: Default::default(),
        }
    }

    /// Sends `message` as a warning of `vertex` unless this solver already has.
    pub fn warn_once(
        &self,
        vertex: rbuild_graph::VertexId,
        message: String,
        events: &tokio::sync::mpsc::UnboundedSender<crate::progress::Event>,
    ) {
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert(message.clone()))
            .unwrap_or(false);
        if first {
            let _ = events.send(crate::progress::Event::Warning { vertex, message });
        }
    }

    /// Whether the store has the blob `digest`. It is leased first (a prune running
    /// beside this build leaves it), so a yes is remembered.
    pub fn has_blob(&self, digest: &str) -> bool {
        let mut known = self.blobs_present.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(digest) {
            return true;
        }
        let present = self.store.lease_blob(digest).is_ok() && self.store.has_blob(digest);
        if present {
            known.insert(digest.to_string());
        }
        present
    }

    /// Whether every blob of `layers` is in the store.
    pub fn has_layers(&self, layers: &[Layer]) -> bool {
        layers.iter().all(|l| self.has_blob(&l.digest))
    }

    /// The local record under `key`, unless its blobs were pruned away (then it is a miss:
    /// the step runs again). Its chain is shared with the records read before that list
    /// the same one, and its blobs are checked through the memo.
    pub fn usable_record(&self, key: &str) -> Result<Option<SharedRecord>, CacheError> {
        self.store
            .record_get_shared(key, &|digest| self.has_blob(digest), &self.chains)
    }

    /// The parsed form of a `.dockerignore` list, parsed once per solver.
    pub fn ignore_patterns(&self, list: &[String]) -> Result<Arc<Patterns>, PatternError> {
        let mut known = self.ignore.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = known.get(list) {
            return Ok(p.clone());
        }
        let parsed = Arc::new(Patterns::from_list(list)?);
        known.insert(list.to_vec(), parsed.clone());
        Ok(parsed)
    }

    /// Makes the blobs of `layers` present in the store, fetching the ones imported with
    /// `--cache-from` that are still remote.
    pub async fn ensure_layers(
        &self,
        layers: &[Layer],
        opts: &SolveOptions,
    ) -> Result<(), LayerFetchError> {
        let missing: Vec<Layer> = layers
            .iter()
            .filter(|l| !self.has_blob(&l.digest))
            .cloned()
            .collect();
        let Some(first) = missing.first() else {
            return Ok(());
        };
        match &opts.imported {
            Some(imp) => imp
                .ensure_blobs(&self.store, &missing)
                .await
                .map_err(LayerFetchError::Import),
            None => Err(LayerFetchError::Missing(CacheError::MissingBlob {
                digest: first.digest.clone(),
                path: self.store.blob_path(&first.digest),
            })),
        }
    }
}

/// Whether overlayfs cannot be used under `root`. Probing mounts an overlay, so
/// the answer is remembered in the root (`snapshotter`): a no-op rebuild should
/// not pay a mount and an unmount.
pub(crate) fn copying_snapshotter_needed(root: &Path) -> bool {
    // Chroot isolation runs steps on plain copies; the memo is about overlayfs only.
    if rbuild_executor::chroot_isolation() {
        return true;
    }
    let memo = root.join("snapshotter");
    match std::fs::read_to_string(&memo).as_deref() {
        Ok("overlay\n") => return false,
        Ok("copying\n") => return true,
        _ => {}
    }
    let tmp = root.join("tmp");
    let _ = std::fs::create_dir_all(&tmp);
    let copying = !rbuild_executor::overlay_supported(&tmp);
    let staged = root.join(format!(".snapshotter.{}", std::process::id()));
    let answer = if copying { "copying\n" } else { "overlay\n" };
    if std::fs::write(&staged, answer).is_ok() {
        let _ = std::fs::rename(&staged, &memo);
    }
    copying
}
