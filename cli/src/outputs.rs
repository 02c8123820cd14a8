//! `--output type=oci|docker|tar|local,dest=…`: the image written outside the store.

use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::{Store, StoredImage};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// `type=oci,dest=out.tar` → {"type": "oci", "dest": "out.tar"}; a bare path means `type=local,dest=PATH`.
pub fn parse_output(spec: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if !spec.contains('=') {
        out.insert("type".to_string(), "local".to_string());
        out.insert("dest".to_string(), spec.to_string());
        return Ok(out);
    }
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| anyhow!("--output {spec:?}: {field:?} is not key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub fn write(store: &Store, image: &StoredImage, tags: &[String], spec: &str) -> Result<()> {
    let fields = parse_output(spec)?;
    let kind = fields.get("type").map(String::as_str).unwrap_or("local");
    let dest = fields
        .get("dest")
        .ok_or_else(|| anyhow!("--output {spec:?} needs dest=PATH"))?;
    match kind {
        "oci" | "docker" => {
            let file = File::create(dest).with_context(|| format!("cannot create {dest}"))?;
            let mut w = BufWriter::new(file);
            if kind == "oci" {
                store.write_oci_archive(image, tags, &mut w)?;
            } else {
                store.write_docker_archive(image, tags, &mut w)?;
            }
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        "tar" | "local" => {
            let merged = store.tmp_dir("export")?;
            let (upper, work, mnt) = (
                merged.path().join("u"),
                merged.path().join("w"),
                merged.path().join("m"),
            );
            for d in [&upper, &work, &mnt] {
                std::fs::create_dir(d)?;
            }
            let mut lowers = Vec::new();
            for l in &image.layers {
                lowers.push(store.snapshot(l)?);
            }
            if lowers.is_empty() {
                lowers.push(merged.path().join("empty"));
                std::fs::create_dir(&lowers[0])?;
            }
            let mount = rbuild_executor::OverlayMount::mount(&lowers, &upper, &work, &mnt)?;
            if kind == "tar" {
                write_rootfs_tar(mount.path(), Path::new(dest))?;
            } else {
                copy_tree(mount.path(), Path::new(dest))?;
            }
        }
        other => bail!("--output type={other} is not supported; use oci, docker, tar or local"),
    }
    Ok(())
}

fn write_rootfs_tar(rootfs: &Path, dest: &Path) -> Result<()> {
    let file = File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs)?;
    b.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        let o = parse_output("type=oci,dest=/tmp/x.tar").unwrap();
        assert_eq!(o["type"], "oci");
        assert_eq!(o["dest"], "/tmp/x.tar");
        assert_eq!(parse_output("out").unwrap()["type"], "local");
        assert!(parse_output("type=oci,bogus").is_err());
    }
}
