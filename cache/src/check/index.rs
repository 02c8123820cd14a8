//! `index.json` and the images it names. An index that does not parse (a half-written
//! file, from a crash on a filesystem that does not order a rename after the data, or
//! a hand edit) is rebuilt on repair: every complete entry still readable in it is kept
//! (tags included), and every image manifest in the store that no kept entry names gets
//! an untagged entry, so no image is lost (`rbuild images` lists it; `rbuild rmi` or
//! `prune` frees it). An entry whose manifest, config or layers are missing or corrupt
//! is dropped on repair: its image can no longer be exported or pushed.

use super::Checker;
use super::blobs::Status;
use crate::error::CacheError;
use crate::oci::{config_diff_ids, index_json, parse_index, parse_manifest, ref_name};
use crate::{Layer, fsutil};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use rbuild_registry::media_types::is_index;

impl Checker {
    pub(super) fn index(&mut self) -> Result<(), CacheError> {
        // Repair rewrites the index from what it read: no tag may change in between.
        let _g = if self.repair {
            Some(self.store.lock_index()?)
        } else {
            None
        };
        let path = self.store.oci_dir().join("index.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(CacheError::Io {
                    op: "read",
                    path,
                    source: e,
                });
            }
        };
        let parsed = bytes.as_deref().map(parse_index);
        let (mut idx, rebuilt) = match parsed {
            Some(Ok(idx)) => (idx, false),
            None => (empty_index()?, true),
            Some(Err(e)) => {
                let text = String::from_utf8_lossy(bytes.as_deref().unwrap_or_default());
                let mut entries = salvage_entries(&text);
                let kept = entries.len();
                let added = self.orphan_manifests(&entries)?;
                entries.extend(added.iter().cloned());
                self.problem(
                    "index.json",
                    format!("does not parse: {e}"),
                    &format!(
                        "rebuilt: {kept} complete entries kept, {} untagged images added back from the stored manifests",
                        added.len()
                    ),
                );
                let mut idx = empty_index()?;
                idx.set_manifests(entries);
                (idx, true)
            }
        };
        let mut kept = Vec::new();
        for d in idx.manifests().clone() {
            let subject = match ref_name(&d) {
                Some(n) => format!("image {n}"),
                None => format!("image {}", d.digest()),
            };
            match self.entry_fault(&d) {
                None => {
                    self.report.images += 1;
                    kept.push(d);
                }
                Some(what) => self.problem(
                    subject,
                    what,
                    "index entry removed (pull or build it again)",
                ),
            }
        }
        let changed = kept.len() != idx.manifests().len();
        if self.repair && (changed || rebuilt) {
            idx.set_manifests(kept);
            fsutil::atomic_write(&path, &index_json(&idx))?;
        }
        Ok(())
    }

    /// Why the image `d` names is unusable, if it is.
    fn entry_fault(&mut self, d: &Descriptor) -> Option<String> {
        let digest = d.digest().to_string();
        match self.blobs.status(&self.store, &digest) {
            Status::Missing => return Some(format!("its manifest {digest} is missing")),
            Status::Corrupt => return Some(format!("its manifest {digest} is corrupt")),
            Status::Good { .. } => {}
        }
        if is_index(d.media_type()) {
            return None;
        }
        let bytes = self.store.read_blob(&digest).ok()?;
        let m = match parse_manifest(&bytes) {
            Ok(m) => m,
            Err(e) => return Some(format!("its manifest {digest} does not parse: {e}")),
        };
        let config = m.config().digest().to_string();
        match self.blobs.status(&self.store, &config) {
            Status::Missing => return Some(format!("its config {config} is missing")),
            Status::Corrupt => return Some(format!("its config {config} is corrupt")),
            Status::Good { .. } => {}
        }
        let ids = self
            .store
            .read_blob(&config)
            .ok()
            .and_then(|c| config_diff_ids(&c).ok().flatten())
            .unwrap_or_default();
        if ids.len() != m.layers().len() {
            return Some(format!(
                "its manifest has {} layers but its config {} diff_ids",
                m.layers().len(),
                ids.len()
            ));
        }
        for (l, id) in m.layers().iter().zip(ids) {
            let layer = Layer {
                digest: l.digest().to_string(),
                diff_id: id,
                size: l.size(),
                media_type: l.media_type().clone(),
            };
            if let Some(f) = self.layer_fault(&layer) {
                return Some(f);
            }
            self.image_layers.insert((layer.digest, layer.diff_id));
        }
        None
    }

    /// Untagged entries for the image manifests in the store that `entries` do not name
    /// (manifests whose config lists as many diff_ids as they have layers).
    fn orphan_manifests(&mut self, entries: &[Descriptor]) -> Result<Vec<Descriptor>, CacheError> {
        let mut out = Vec::new();
        let mut digests = self.store.blob_digests()?;
        digests.sort();
        for digest in digests {
            if entries
                .iter()
                .any(|e| e.digest().as_ref() == digest.as_str())
            {
                continue;
            }
            let path = self.store.blob_path(&digest);
            // Manifests are small; layers are not read here.
            if std::fs::metadata(&path).map_or(true, |m| m.len() > 1 << 20) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(m) = parse_manifest(&bytes) else {
                continue;
            };
            let image_config = matches!(m.config().media_type(), MediaType::ImageConfig)
                || m.config().media_type().to_string()
                    == "application/vnd.docker.container.image.v1+json";
            if !image_config {
                continue;
            }
            let ids = self
                .store
                .read_blob(m.config().digest().as_ref())
                .ok()
                .and_then(|c| config_diff_ids(&c).ok().flatten());
            if ids.is_none_or(|ids| ids.len() != m.layers().len()) {
                continue;
            }
            let media_type = m.media_type().clone().unwrap_or(MediaType::ImageManifest);
            out.push(crate::oci::descriptor(
                media_type,
                &digest,
                bytes.len() as u64,
            )?);
        }
        Ok(out)
    }
}

fn empty_index() -> Result<ImageIndex, CacheError> {
    parse_index(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    )
    .map_err(|e| CacheError::Corrupt {
        path: std::path::PathBuf::from("index.json"),
        reason: e.to_string(),
    })
}

/// The complete entries of a truncated or damaged index: rbuild writes each entry as
/// an object starting `{"mediaType"`, so the text is cut there and each piece that
/// parses as a descriptor (with its trailing `,` or `]}` removed) is kept.
fn salvage_entries(text: &str) -> Vec<Descriptor> {
    let Some(start) = text.find("\"manifests\"") else {
        return Vec::new();
    };
    let body = &text[start..];
    let marks: Vec<usize> = body
        .match_indices("{\"mediaType\"")
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    for (n, &i) in marks.iter().enumerate() {
        let end = marks.get(n + 1).copied().unwrap_or(body.len());
        let piece = body[i..end].trim_end();
        let piece =
            piece.trim_end_matches(|c: char| c == ',' || c == ']' || c == '}' || c.is_whitespace());
        // Put back the braces the trim took: try closing one to three levels.
        for closing in ["}", "}}", "}}}"] {
            if let Ok(d) = serde_json::from_str::<Descriptor>(&format!("{piece}{closing}")) {
                out.push(d);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_entries_are_salvaged_from_a_cut_index() {
        let d = |hex: char, tag: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":10,"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}},"platform":{{"architecture":"amd64","os":"linux"}}}}"#,
                hex.to_string().repeat(64)
            )
        };
        let full = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{}]}}"#,
            d('a', "a:1"),
            d('b', "b:1"),
            d('c', "c:1")
        );
        let all = salvage_entries(&full);
        assert_eq!(all.len(), 3);
        let cut = &full[..full.len() - 40];
        let some = salvage_entries(cut);
        assert_eq!(some.len(), 2);
        assert_eq!(ref_name(&some[1]), Some("b:1"));
        assert!(salvage_entries("{\"schemaVer").is_empty());
    }
}
