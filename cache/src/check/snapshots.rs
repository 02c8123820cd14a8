//! Snapshots against their layers. A snapshot is checked by archiving it the way a
//! commit archives an upper dir and comparing the tar's digest with the layer's diff_id;
//! when they differ (a layer made by another tool archives differently), the verified
//! blob is extracted aside and archived the same way, and the two archives must match.
//! A snapshot that differs from its layer (a file lost or changed under it) would make
//! builds produce wrong results from a cache hit: it is a problem, replaced on repair
//! by a fresh extraction. A record's snapshot that is missing is only a note (snapshots
//! are extracted when first used); repair extracts it again.

use super::Checker;
use crate::Layer;
use crate::commit::write_upper_tar;
use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, HashWriter};
use std::collections::HashSet;
use std::io;
use std::path::Path;

impl Checker {
    pub(super) fn snapshots(&mut self) -> Result<(), CacheError> {
        let mut layers: Vec<(String, String, bool)> = self
            .used_layers
            .iter()
            .map(|(d, id)| (d.clone(), id.clone(), true))
            .chain(
                self.image_layers
                    .iter()
                    .filter(|l| !self.used_layers.contains(*l))
                    .map(|(d, id)| (d.clone(), id.clone(), false)),
            )
            .collect();
        layers.sort();
        let mut seen = HashSet::new();
        for (digest, diff_id, of_record) in layers {
            let Ok(path) = self.store.snapshot_path(&diff_id) else {
                continue;
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            let layer = Layer {
                digest: digest.clone(),
                diff_id: diff_id.clone(),
                size: 0,
                media_type: oci_spec::image::MediaType::ImageLayerGzip,
            };
            if !path.is_dir() {
                if of_record {
                    if self.repair {
                        self.store.snapshot(&layer)?;
                    }
                    self.note(
                        format!("snapshot of {diff_id}"),
                        "missing (a cache record's layer is extracted on first use)",
                        "extracted again from its blob",
                    );
                }
                continue;
            }
            self.report.snapshots += 1;
            if self.snapshot_matches(&path, &layer)? {
                continue;
            }
            if self.repair {
                let old = self.store.tmp_dir("check")?;
                let aside = old.path().join("s");
                std::fs::rename(&path, &aside).ctx("move aside", &path)?;
                fsutil::remove_dir_all_force(&aside).ctx("remove", &aside)?;
                self.store.snapshot(&layer)?;
            }
            self.problem(
                format!("snapshot of {diff_id}"),
                format!("its files differ from layer {digest}"),
                "extracted again from its blob",
            );
        }
        Ok(())
    }

    /// Whether the tree at `snap` is what `layer` extracts to.
    fn snapshot_matches(&self, snap: &Path, layer: &Layer) -> Result<bool, CacheError> {
        let mine = tar_digest(snap)?;
        if mine == layer.diff_id {
            return Ok(true);
        }
        let tmp = self.store.tmp_dir("check")?;
        let dest = tmp.path().join("s");
        crate::extract::extract_layer(&self.store.blob_path(&layer.digest), &dest)?;
        Ok(tar_digest(&dest)? == mine)
    }
}

/// The digest of the tar a commit would write for `dir` (nothing in `dir` changes).
fn tar_digest(dir: &Path) -> Result<String, CacheError> {
    let w = write_upper_tar(dir, HashWriter::new(io::sink()), None, true, None)?;
    Ok(w.finish().1)
}
