//! Step 6 of a build: what it leaves beside the store — `-q`'s image IDs, each `--output`
//! (an OCI or docker archive, or the root filesystem as a tar or a directory) and
//! `--iidfile`.

use crate::flags::hiargs::Build;
use crate::flags::output_spec::{Dest, Kind};
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::{Store, StoredImage};
use rbuild_graph::VertexId;
use rbuild_solver::Outcome;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The image each of `exports` wrote, in target order.
pub fn built_images(
    store: &Store,
    exports: &[VertexId],
    outcomes: &HashMap<VertexId, Outcome>,
) -> Result<Vec<StoredImage>> {
    let mut built = Vec::new();
    for export in exports {
        let manifest = outcomes
            .get(export)
            .and_then(|o| o.image.clone())
            .ok_or_else(|| anyhow!("an export did not produce an image"))?;
        let image = store
            .image(&manifest)?
            .ok_or_else(|| anyhow!("the exported image {manifest} is missing from the store"))?;
        built.push(image);
    }
    Ok(built)
}

/// Prints every image ID with `-q`; writes the last target's `--output`s and `--iidfile`.
pub fn finish(store: &Store, build: &Build, mut built: Vec<StoredImage>) -> Result<()> {
    if build.quiet {
        for image in &built {
            println!("{}", image.config_digest);
        }
    }
    let image = built.pop().ok_or_else(|| anyhow!("no target was built"))?;
    let tags = build.target_tags.last().cloned().unwrap_or_default();
    // The terminal view ends with the result, as BuildKit's does.
    if build.progress == crate::shared::progress::Mode::Tty {
        // Cut to the terminal like the view's other lines, so they never wrap.
        let width = crate::shared::tty::size().map_or(usize::MAX, |(cols, _)| cols);
        let cut = |line: String| crate::shared::tty::cut(&line, width);
        eprintln!(
            "{}",
            cut(format!(" => writing image {}", image.config_digest))
        );
        for t in &tags {
            eprintln!("{}", cut(format!(" => naming to {t}")));
        }
    }
    for output in &build.outputs {
        write(store, &image, &tags, &output.kind)?;
    }
    if let Some(path) = &build.iidfile {
        std::fs::write(path, &image.config_digest)
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    Ok(())
}

/// Opens where an archive goes: a new file (synced when done), or stdout.
pub fn open(dest: &Dest) -> Result<Box<dyn Write>> {
    Ok(match dest {
        Dest::Stdout => Box::new(BufWriter::new(std::io::stdout().lock())),
        Dest::File(path) => Box::new(SyncedFile(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ))),
    })
}

/// A file written through a buffer and synced to disk on flush.
struct SyncedFile(BufWriter<File>);

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_all()
    }
}

/// Writes `image` (named `tags` in archives) where `kind` says.
pub fn write(store: &Store, image: &StoredImage, tags: &[String], kind: &Kind) -> Result<()> {
    match kind {
        Kind::Store => {}
        Kind::Oci(dest) | Kind::Docker(dest) => {
            let mut w = open(dest)?;
            if matches!(kind, Kind::Oci(_)) {
                store.write_oci_archive(image, tags, &mut w)?;
            } else {
                store.write_docker_archive(image, tags, &mut w)?;
            }
            w.flush()?;
        }
        Kind::Tar(_) | Kind::Local(_) => {
            let merged = store.tmp_dir("export")?;
            let (upper, work, mnt) = (
                merged.path().join("u"),
                merged.path().join("w"),
                merged.path().join("m"),
            );
            for d in [&upper, &work, &mnt] {
                std::fs::create_dir(d)?;
            }
            // A chain too long for one mount gets a flattened prefix from the store.
            let mut lowers =
                store.mount_lowers(&image.layers, rbuild_executor::max_lower_layers())?;
            if lowers.is_empty() {
                lowers.push(merged.path().join("empty"));
                std::fs::create_dir(&lowers[0])?;
            }
            let mount = rbuild_executor::OverlayMount::mount(&lowers, &upper, &work, &mnt)?;
            match kind {
                Kind::Tar(dest) => write_rootfs_tar(mount.path(), open(dest)?)?,
                Kind::Local(dest) => copy_tree(mount.path(), dest)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn write_rootfs_tar(rootfs: &Path, out: Box<dyn Write>) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs)?;
    b.into_inner()?.flush()?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("copying the image filesystem to {} failed", to.display());
    }
    Ok(())
}
