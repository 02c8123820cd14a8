//! Image import (`rbuild load`) and export as docker / OCI archives.

use crate::commit::{EntryHeader, write_entry};
use crate::error::{CacheError, IoContext};
use crate::extract::{self, Compression, safe_components};
use crate::layout::check_tag;
use crate::oci::{
    CONTAINERD_NAME, REF_NAME, annotation, config_diff_ids, descriptor, index_json, parse_index,
    parse_manifest, with_annotations,
};
use crate::{Layer, Store, StoredImage, digest_hex, fsutil};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use rbuild_registry::media_types::is_index;
use rbuild_registry::reference::split_tag;
use rbuild_registry::{declared_media_type, platform};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One image of a `docker save` manifest.json.
#[derive(Debug, Serialize, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl Store {
    /// `rbuild load -i FILE`: imports every image of a `docker save` tarball, an OCI
    /// archive (tar of a layout, gzip allowed) or an OCI layout dir, with its tags (an
    /// index of several platforms stays an index); each layer is extracted once. Returns
    /// the tags imported (or manifest digests of untagged images).
    pub fn load(&self, path: &Path) -> Result<Vec<String>, CacheError> {
        let meta = std::fs::metadata(path).ctx("open", path)?;
        if meta.is_dir() {
            return self.load_dir(path, false);
        }
        let tmp = self.tmp_dir("load")?;
        unpack_archive(extract::open_decompressed(path)?, path, tmp.path())?;
        self.load_dir(tmp.path(), true)
    }

    /// Like [`Store::load`], from a stream (`docker save x | rbuild load`): a docker save
    /// or OCI archive tar, gzip allowed.
    pub fn load_reader(&self, r: &mut (dyn Read + Send)) -> Result<Vec<String>, CacheError> {
        let tmp = self.tmp_dir("load")?;
        unpack_archive(
            extract::decompressed(Box::new(r), Path::new("<stdin>"))?,
            Path::new("<stdin>"),
            tmp.path(),
        )?;
        self.load_dir(tmp.path(), true)
    }

    /// `--build-context NAME=oci-layout://DIR…`: imports the image `digest` names in the
    /// OCI layout `dir`, untagged — the layout's names are the user's, not the store's.
    /// An index there is imported with each of its Linux images, as an index of the store
    /// (so a build for several platforms takes each platform's image from it). Returns the
    /// digest of the manifest or index imported.
    pub fn import_layout_image(&self, dir: &Path, digest: &str) -> Result<String, CacheError> {
        let (desc, _) = layout_entry(dir, None, Some(digest))?;
        let mut imp = Importer {
            store: self,
            dir,
            movable: false,
            done: HashMap::new(),
        };
        if let Some(images) = imp.index_images(&desc)? {
            return self.put_index_entries(images, &[], &[]);
        }
        let Some(m) = imp.oci_manifest(&desc, 0)? else {
            return Err(CacheError::Unsupported {
                path: dir.to_path_buf(),
                reason: format!("{digest} is an index without manifests"),
            });
        };
        let imported = m.digest().to_string();
        self.tag_manifest(m, &[])?;
        Ok(imported)
    }

    fn load_dir(&self, dir: &Path, movable: bool) -> Result<Vec<String>, CacheError> {
        let mut imp = Importer {
            store: self,
            dir,
            movable,
            done: HashMap::new(),
        };
        if dir.join("manifest.json").is_file() {
            imp.docker()
        } else if dir.join("index.json").is_file() {
            imp.oci()
        } else {
            Err(CacheError::Unsupported {
                path: dir.to_path_buf(),
                reason:
                    "neither a docker save archive (manifest.json) nor an OCI layout (index.json)"
                        .into(),
            })
        }
    }

    /// Writes `image` as a tar of an OCI layout whose index names it `tags`.
    pub fn write_oci_archive(
        &self,
        image: &StoredImage,
        tags: &[String],
        out: &mut dyn Write,
    ) -> Result<(), CacheError> {
        let tags: Vec<String> = tags
            .iter()
            .map(|t| check_tag(t))
            .collect::<Result<_, _>>()?;
        let mbytes = self.read_blob(&image.manifest_digest)?;
        let mtype = declared_media_type(&mbytes)
            .ok()
            .flatten()
            .unwrap_or(MediaType::ImageManifest);
        let base = descriptor(mtype, &image.manifest_digest, mbytes.len() as u64)?;
        let mut blobs = vec![image.manifest_digest.clone(), image.config_digest.clone()];
        blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
        self.write_layout_tar(base, blobs, &tags, out)
    }

    /// A tar of an OCI layout whose index.json points at `base` (named each of `tags`,
    /// already checked) and whose blobs are `blobs`.
    pub(crate) fn write_layout_tar(
        &self,
        base: oci_spec::image::Descriptor,
        blobs: Vec<String>,
        tags: &[String],
        out: &mut dyn Write,
    ) -> Result<(), CacheError> {
        let mut manifests = Vec::new();
        for t in tags {
            manifests.push(with_annotations(
                base.clone(),
                &[(REF_NAME, t), (CONTAINERD_NAME, t)],
            ));
        }
        if manifests.is_empty() {
            manifests.push(base);
        }
        let mut index = ImageIndex::default();
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(manifests);
        let index = index_json(&index);
        let mut w = TarOut::new(out);
        w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        w.file("index.json", &index)?;
        w.dir("blobs/")?;
        w.dir("blobs/sha256/")?;
        for d in dedup(blobs) {
            w.blob(self, &d, &format!("blobs/sha256/{}", digest_hex(&d)?))?;
        }
        w.finish()
    }

    /// Writes `image` in the `docker load` format (manifest.json, config, layer blobs as
    /// stored, repositories).
    pub fn write_docker_archive(
        &self,
        image: &StoredImage,
        tags: &[String],
        out: &mut dyn Write,
    ) -> Result<(), CacheError> {
        let tags: Vec<String> = tags
            .iter()
            .map(|t| check_tag(t))
            .collect::<Result<_, _>>()?;
        let config_hex = digest_hex(&image.config_digest)?.to_string();
        let blob_name = |d: &str| -> Result<String, CacheError> {
            Ok(format!("blobs/sha256/{}", digest_hex(d)?))
        };
        let entry = DockerEntry {
            config: blob_name(&image.config_digest)?,
            repo_tags: Some(tags.clone()),
            layers: image
                .layers
                .iter()
                .map(|l| blob_name(&l.digest))
                .collect::<Result<_, _>>()?,
        };
        let manifest = serde_json::to_vec(&[entry]).map_err(|e| encode_err(self, e))?;
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for t in &tags {
            if let Some((repo, tag)) = split_repo_tag(t) {
                repos
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), config_hex.clone());
            }
        }
        let repos = serde_json::to_vec(&repos).map_err(|e| encode_err(self, e))?;
        let mut w = TarOut::new(out);
        w.dir("blobs/")?;
        w.dir("blobs/sha256/")?;
        let mut blobs = vec![image.config_digest.clone()];
        blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
        for d in dedup(blobs) {
            w.blob(self, &d, &blob_name(&d)?)?;
        }
        w.file("manifest.json", &manifest)?;
        w.file("repositories", &repos)?;
        w.finish()
    }
}

fn encode_err(store: &Store, e: serde_json::Error) -> CacheError {
    CacheError::Corrupt {
        path: store.root().to_path_buf(),
        reason: format!("cannot encode archive metadata: {e}"),
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in v {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// `repo:tag` → (repo, tag); None for digest references.
fn split_repo_tag(t: &str) -> Option<(&str, &str)> {
    if t.contains('@') {
        return None;
    }
    match split_tag(t) {
        (repo, Some(tag)) => Some((repo, tag)),
        (_, None) => None,
    }
}

/// A minimal tar writer over our entry encoder (deterministic headers).
struct TarOut<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
}

impl<'a> TarOut<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        TarOut {
            out,
            buf: vec![0u8; 1 << 20],
        }
    }
    fn err(e: io::Error) -> CacheError {
        CacheError::Io {
            op: "write archive",
            path: PathBuf::from("<output>"),
            source: e,
        }
    }
    fn file(&mut self, name: &str, data: &[u8]) -> Result<(), CacheError> {
        let h = EntryHeader::plain_file(name, data.len() as u64);
        write_entry(&mut self.out, &h, Some(&mut &data[..]), &mut self.buf).map_err(Self::err)
    }
    fn dir(&mut self, name: &str) -> Result<(), CacheError> {
        let mut h = EntryHeader::plain_file(name, 0);
        h.kind = tar::EntryType::Directory;
        h.mode = 0o755;
        write_entry(&mut self.out, &h, None::<&mut io::Empty>, &mut self.buf).map_err(Self::err)
    }
    fn blob(&mut self, store: &Store, digest: &str, name: &str) -> Result<(), CacheError> {
        let p = store.blob_path(digest);
        let mut f = std::fs::File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CacheError::MissingBlob {
                    digest: digest.to_string(),
                    path: p.clone(),
                }
            } else {
                CacheError::Io {
                    op: "open blob",
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        let size = f.metadata().ctx("stat", &p)?.len();
        let h = EntryHeader::plain_file(name, size);
        write_entry(&mut self.out, &h, Some(&mut f), &mut self.buf).map_err(Self::err)
    }
    fn finish(self) -> Result<(), CacheError> {
        self.out.write_all(&[0u8; 1024]).map_err(Self::err)?;
        self.out.flush().map_err(Self::err)
    }
}

/// Unpacks an image archive (regular files, dirs, relative in-archive symlinks) into
/// `dest`, refusing paths that leave it.
fn unpack_archive(input: impl Read, path: &Path, dest: &Path) -> Result<(), CacheError> {
    let mut ar = tar::Archive::new(input);
    let mut buf = vec![0u8; 1 << 20];
    for e in ar.entries().ctx("read archive", path)? {
        let mut e = e.ctx("read archive", path)?;
        let raw = e.path_bytes().into_owned();
        let refuse = |reason: String| CacheError::UnsafeEntry {
            blob: path.to_path_buf(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason,
        };
        let comps = safe_components(&raw).map_err(|r| refuse(r.to_string()))?;
        if comps.is_empty() {
            continue;
        }
        let mut target = dest.to_path_buf();
        for c in &comps {
            target.push(OsStr::from_bytes(c));
        }
        let parent = target.parent().unwrap_or(dest).to_path_buf();
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).ctx("create directory", &target)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                std::fs::create_dir_all(&parent).ctx("create directory", &parent)?;
                let mut f = std::fs::File::create(&target).ctx("create", &target)?;
                loop {
                    let n = e.read(&mut buf).ctx("read archive", path)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).ctx("write", &target)?;
                }
            }
            tar::EntryType::Symlink => {
                // Old docker save format links duplicate layers; keep links that stay inside.
                let link = e.link_name_bytes().unwrap_or_default().into_owned();
                let mut depth = comps.len() as i64 - 1;
                let mut ok = !link.starts_with(b"/");
                for c in link.split(|&b| b == b'/') {
                    match c {
                        b"" | b"." => {}
                        b".." => depth -= 1,
                        _ => depth += 1,
                    }
                    ok &= depth >= 0;
                }
                if ok {
                    std::fs::create_dir_all(&parent).ctx("create directory", &parent)?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                        .ctx("create symlink", &target)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

struct Importer<'a> {
    store: &'a Store,
    dir: &'a Path,
    movable: bool,
    /// Files already imported (a layer file shared by two images of one archive), by
    /// canonical path: (digest, size, compression).
    done: HashMap<PathBuf, (String, u64, Compression)>,
}

impl Importer<'_> {
    /// A path named inside the archive, refused if it would leave it.
    fn inner_path(&self, rel: &str) -> Result<PathBuf, CacheError> {
        let comps = safe_components(rel.as_bytes()).map_err(|r| CacheError::UnsafeEntry {
            blob: self.dir.to_path_buf(),
            entry: rel.to_string(),
            reason: r.to_string(),
        })?;
        let mut p = self.dir.to_path_buf();
        for c in comps {
            p.push(OsStr::from_bytes(c));
        }
        // Old docker save archives link duplicate layers to one file: name it once.
        if let Ok(canon) = std::fs::canonicalize(&p) {
            let root = std::fs::canonicalize(self.dir).ctx("resolve", self.dir)?;
            if !canon.starts_with(&root) {
                return Err(CacheError::UnsafeEntry {
                    blob: self.dir.to_path_buf(),
                    entry: rel.to_string(),
                    reason: "resolves outside the archive".into(),
                });
            }
            return Ok(canon);
        }
        Ok(p)
    }

    fn oci_blob_path(&self, digest: &str) -> Result<PathBuf, CacheError> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Puts the file at `p` in the store (renamed when it may be moved, copied otherwise),
    /// checking `expect` if given. Returns (digest, size).
    fn import_file(
        &mut self,
        p: &Path,
        expect: Option<&str>,
    ) -> Result<(String, u64, Compression), CacheError> {
        if let Some(d) = self.done.get(p) {
            return Ok(d.clone());
        }
        let kind = sniff(p)?;
        let mut f = std::fs::File::open(p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CacheError::Corrupt {
                    path: p.to_path_buf(),
                    reason: "listed by the archive but missing from it".into(),
                }
            } else {
                CacheError::Io {
                    op: "open",
                    path: p.to_path_buf(),
                    source: e,
                }
            }
        })?;
        let res = if self.movable {
            let mut h = fsutil::HashWriter::new(io::sink());
            io::copy(&mut f, &mut h).ctx("read", p)?;
            let (_, digest, size) = h.finish();
            if let Some(exp) = expect
                && exp != digest
            {
                return Err(CacheError::DigestMismatch {
                    what: format!("blob {}", p.display()),
                    expected: exp.to_string(),
                    actual: digest,
                });
            }
            let target = self.store.blob_path(&digest);
            self.store.lease_blob(&digest)?;
            if !target.is_file() {
                f.sync_all().ctx("sync", p)?;
                std::fs::rename(p, &target).ctx("move blob into place at", &target)?;
                fsutil::fsync_dir(&self.store.blobs_dir())?;
            }
            (digest, size)
        } else {
            let mut w = self.store.blob_writer()?;
            io::copy(&mut f, &mut w).ctx("copy blob from", p)?;
            w.commit(expect).map_err(|e| match e {
                CacheError::DigestMismatch {
                    expected, actual, ..
                } => CacheError::DigestMismatch {
                    what: format!("blob {}", p.display()),
                    expected,
                    actual,
                },
                e => e,
            })?
        };
        let res = (res.0, res.1, kind);
        self.done.insert(p.to_path_buf(), res.clone());
        Ok(res)
    }

    fn docker(&mut self) -> Result<Vec<String>, CacheError> {
        let mp = self.dir.join("manifest.json");
        let bytes = std::fs::read(&mp).ctx("read", &mp)?;
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt {
                path: mp.clone(),
                reason: format!("invalid docker save manifest: {e}"),
            })?;
        // Resolve every path before any file is moved into the store.
        let mut plan = Vec::new();
        for ent in entries {
            let cp = self.inner_path(&ent.config)?;
            let lps = ent
                .layers
                .iter()
                .map(|l| self.inner_path(l))
                .collect::<Result<Vec<_>, _>>()?;
            plan.push((ent, cp, lps));
        }
        let mut out = Vec::new();
        for (ent, cp, lps) in plan {
            let config = std::fs::read(&cp).ctx("read image config", &cp)?;
            let diff_ids = config_diff_ids(&config)
                .map_err(|e| CacheError::Corrupt {
                    path: cp.clone(),
                    reason: e.to_string(),
                })?
                .unwrap_or_default();
            if diff_ids.len() != ent.layers.len() {
                return Err(CacheError::Corrupt {
                    path: mp.clone(),
                    reason: format!(
                        "image {} lists {} layers but its config has {} diff_ids",
                        ent.config,
                        ent.layers.len(),
                        diff_ids.len()
                    ),
                });
            }
            let mut layers = Vec::new();
            for (p, diff_id) in lps.iter().zip(diff_ids) {
                let (digest, size, kind) = self.import_file(p, None)?;
                // docker save names no media types: the content says what a layer is.
                let media_type = match kind {
                    Compression::Gzip => MediaType::ImageLayerGzip,
                    Compression::Zstd => MediaType::ImageLayerZstd,
                    _ => MediaType::ImageLayer,
                };
                let layer = Layer {
                    digest,
                    diff_id,
                    size,
                    media_type,
                };
                self.store.snapshot(&layer)?;
                layers.push(layer);
            }
            let tags: Vec<String> = ent
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| crate::layout::familiar_name(t).to_string())
                .collect();
            let digest = self.store.put_image(&config, &layers, &tags)?;
            if tags.is_empty() {
                out.push(digest);
            } else {
                out.extend(tags.iter().map(|t| crate::normalize_tag(t)));
            }
        }
        Ok(out)
    }

    fn oci(&mut self) -> Result<Vec<String>, CacheError> {
        let ip = self.dir.join("index.json");
        let bytes = std::fs::read(&ip).ctx("read", &ip)?;
        let index = parse_index(&bytes).map_err(|e| CacheError::Corrupt {
            path: ip.clone(),
            reason: format!("invalid OCI index: {e}"),
        })?;
        let mut out = Vec::new();
        for desc in index.manifests() {
            let name = annotation(desc, CONTAINERD_NAME)
                .or_else(|| annotation(desc, REF_NAME))
                .map(str::to_string);
            let tags: Vec<String> = name
                .iter()
                .map(|t| crate::layout::familiar_name(t).to_string())
                .collect();
            // An index of several platforms stays one: its tags name the store's index.
            let digest = match self.index_images(desc)? {
                Some(images) => self.store.put_index_entries(images, &[], &tags)?,
                None => {
                    let Some(mdesc) = self.oci_manifest(desc, 0)? else {
                        continue;
                    };
                    let digest = mdesc.digest().to_string();
                    self.store.tag_manifest(mdesc, &tags)?;
                    digest
                }
            };
            if tags.is_empty() {
                out.push(digest);
            } else {
                out.extend(tags.iter().map(|t| crate::normalize_tag(t)));
            }
        }
        Ok(out)
    }

    /// When `desc` is an index of more than one Linux image: imports each (attestation
    /// manifests and nested indexes left out) and returns their entries (with the
    /// platforms the index gives them), for the caller to make the store's index of them.
    /// Otherwise imports nothing.
    fn index_images(&mut self, desc: &Descriptor) -> Result<Option<Vec<Descriptor>>, CacheError> {
        if !is_index(desc.media_type()) {
            return Ok(None);
        }
        let (_, index) = self.verified_index(desc)?;
        let entries: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| is_linux_image(d))
            .collect();
        if entries.len() < 2 {
            return Ok(None);
        }
        let mut images = Vec::new();
        for entry in entries {
            if let Some(m) = self.oci_manifest(entry, 1)? {
                images.push(m);
            }
        }
        Ok(Some(images))
    }

    /// The manifest or index blob `digest` of the layout, checked against its digest.
    fn verified_manifest(&self, digest: &str) -> Result<(PathBuf, Vec<u8>), CacheError> {
        let p = self.oci_blob_path(digest)?;
        let bytes = std::fs::read(&p).ctx("read manifest", &p)?;
        let actual = format!("sha256:{}", fsutil::sha256_hex(&bytes));
        if actual != digest {
            return Err(CacheError::DigestMismatch {
                what: format!("manifest {}", p.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok((p, bytes))
    }

    /// The image index `desc` names, read and checked.
    fn verified_index(&self, desc: &Descriptor) -> Result<(PathBuf, ImageIndex), CacheError> {
        let (p, bytes) = self.verified_manifest(desc.digest().as_ref())?;
        let idx = parse_index(&bytes).map_err(|e| CacheError::Corrupt {
            path: p.clone(),
            reason: format!("invalid image index: {e}"),
        })?;
        Ok((p, idx))
    }

    /// Imports the manifest `desc` (choosing the host platform from an index) with its
    /// config and layers; returns the descriptor of the manifest imported.
    fn oci_manifest(
        &mut self,
        desc: &Descriptor,
        depth: usize,
    ) -> Result<Option<Descriptor>, CacheError> {
        let expected = desc.digest().as_ref();
        if is_index(desc.media_type()) {
            let (p, idx) = self.verified_index(desc)?;
            if depth > 4 {
                return Err(CacheError::Corrupt {
                    path: p,
                    reason: "image indexes nested too deeply".into(),
                });
            }
            let host = platform::host();
            let is_host = |d: &&Descriptor| {
                d.platform().as_ref().is_some_and(|pl| {
                    pl.os().to_string() == "linux" && pl.architecture() == host.architecture()
                })
            };
            let chosen = idx
                .manifests()
                .iter()
                .find(is_host)
                .or(idx.manifests().first())
                .cloned();
            return match chosen {
                Some(c) => self.oci_manifest(&c, depth + 1),
                None => Ok(None),
            };
        }
        let (p, bytes) = self.verified_manifest(expected)?;
        let m = parse_manifest(&bytes).map_err(|e| CacheError::Corrupt {
            path: p.clone(),
            reason: format!("invalid image manifest: {e}"),
        })?;
        let config_digest = m.config().digest().as_ref();
        let cp = self.oci_blob_path(config_digest)?;
        let config = std::fs::read(&cp).ctx("read image config", &cp)?;
        let diff_ids = config_diff_ids(&config)
            .map_err(|e| CacheError::Corrupt {
                path: cp.clone(),
                reason: e.to_string(),
            })?
            .unwrap_or_default();
        if diff_ids.len() != m.layers().len() {
            return Err(CacheError::Corrupt {
                path: p,
                reason: format!(
                    "manifest lists {} layers but its config has {} diff_ids",
                    m.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        self.import_file(&cp, Some(config_digest))?;
        for (l, diff_id) in m.layers().iter().zip(diff_ids) {
            let lp = self.oci_blob_path(l.digest().as_ref())?;
            let (digest, size, _) = self.import_file(&lp, Some(l.digest().as_ref()))?;
            self.store.snapshot(&Layer {
                digest,
                diff_id,
                size,
                media_type: l.media_type().clone(),
            })?;
        }
        self.store.put_blob(&bytes)?;
        // The entry as the layout names it, without its annotations (tags are set apart).
        let media_type = m
            .media_type()
            .clone()
            .unwrap_or_else(|| desc.media_type().clone());
        let mut entry = descriptor(media_type, expected, bytes.len() as u64)?;
        entry.set_platform(desc.platform().clone());
        Ok(Some(entry))
    }
}

/// The entry of the OCI layout `dir`'s index.json a tag or digest names: the digest's
/// entry, else the one whose `org.opencontainers.image.ref.name` (or containerd's name)
/// is `tag` or ends in `:tag`. Returns it and the entry's digest.
pub fn layout_entry(
    dir: &Path,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<(Descriptor, String), CacheError> {
    let ip = dir.join("index.json");
    let bytes = std::fs::read(&ip).map_err(|e| CacheError::Unsupported {
        path: dir.to_path_buf(),
        reason: format!("not an OCI layout: cannot read its index.json ({e})"),
    })?;
    let index = parse_index(&bytes).map_err(|e| CacheError::Corrupt {
        path: ip.clone(),
        reason: format!("invalid OCI index: {e}"),
    })?;
    let names_tag = |d: &&Descriptor, tag: &str| {
        [REF_NAME, CONTAINERD_NAME]
            .iter()
            .any(|k| annotation(d, k).is_some_and(|n| n == tag || split_tag(n).1 == Some(tag)))
    };
    let found = match (digest, tag) {
        (Some(dg), _) => index.manifests().iter().find(|d| d.digest().as_ref() == dg),
        (None, Some(t)) => index.manifests().iter().find(|d| names_tag(d, t)),
        (None, None) => None,
    };
    match found {
        Some(d) => Ok((d.clone(), d.digest().to_string())),
        None => Err(CacheError::Unsupported {
            path: dir.to_path_buf(),
            reason: match (digest, tag) {
                (Some(dg), _) => format!("its index.json lists no manifest {dg}"),
                (None, t) => format!(
                    "its index.json has no image tagged {:?} (org.opencontainers.image.ref.name)",
                    t.unwrap_or("latest")
                ),
            },
        }),
    }
}

fn sniff(p: &Path) -> Result<Compression, CacheError> {
    let mut f = std::fs::File::open(p).ctx("open", p)?;
    let mut head = [0u8; 8];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).ctx("read", p)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(extract::detect(&head[..n]))
}

/// Whether an index entry is a Linux image (not a nested index, nor an attestation
/// manifest, whose platform is `unknown/unknown`).
fn is_linux_image(d: &Descriptor) -> bool {
    !is_index(d.media_type())
        && d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == "linux")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_tag_split() {
        assert_eq!(split_repo_tag("a:b"), Some(("a", "b")));
        assert_eq!(
            split_repo_tag("localhost:5000/x/y:1"),
            Some(("localhost:5000/x/y", "1"))
        );
        assert_eq!(split_repo_tag("localhost:5000/x"), None);
    }
}
