//! Image import (`rbuild load`) and export as docker / OCI archives.

use crate::error::CacheError;
use crate::{Store, StoredImage};
use std::path::Path;

impl Store {
    /// Imports every image of a `docker save` tarball, an OCI archive or an OCI layout dir.
    pub fn load(&self, path: &Path) -> Result<Vec<String>, CacheError> {
        Err(CacheError::Unsupported {
            path: path.to_path_buf(),
            reason: "not implemented yet".into(),
        })
    }

    /// Writes `image` as a tar of an OCI layout.
    pub fn write_oci_archive(
        &self,
        image: &StoredImage,
        tags: &[String],
        out: &mut dyn std::io::Write,
    ) -> Result<(), CacheError> {
        let _ = (image, tags, out);
        Err(CacheError::Unsupported {
            path: self.root().to_path_buf(),
            reason: "not implemented yet".into(),
        })
    }

    /// Writes `image` in the `docker load` format.
    pub fn write_docker_archive(
        &self,
        image: &StoredImage,
        tags: &[String],
        out: &mut dyn std::io::Write,
    ) -> Result<(), CacheError> {
        let _ = (image, tags, out);
        Err(CacheError::Unsupported {
            path: self.root().to_path_buf(),
            reason: "not implemented yet".into(),
        })
    }
}
