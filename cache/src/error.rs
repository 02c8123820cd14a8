//! The one error type of the store. Every variant names what it was working on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("could not {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing layer {blob}: entry {entry:?} {reason}; nothing was stored (the layer is unsafe, get the image from a trusted source)"
    )]
    UnsafeEntry {
        blob: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("blob {digest} is not in the store (expected at {path}); pull or load the image again")]
    MissingBlob { digest: String, path: PathBuf },
    #[error(
        "{what}: expected {expected}, got {actual}; the data is corrupt, remove it and pull or load again"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("invalid digest {0:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
    InvalidDigest(String),
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// An image index has no image for the platform asked for.
    #[error("{name} has no image for {platform}; it has {available} (ask for one with --platform)")]
    NoPlatform {
        name: String,
        platform: String,
        available: String,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("invalid cache key {0:?}: use 1 to 128 characters from [0-9a-zA-Z_-]")]
    InvalidKey(String),
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag { tag: String, reason: String },
    #[error("{name:?} matches several images ({candidates}); give more digits of the digest")]
    Ambiguous { name: String, candidates: String },
}

pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError> {
        self.map_err(|source| CacheError::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
