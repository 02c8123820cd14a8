//! Blob downloads: small blobs (configs) into memory, layers streamed into a temp
//! file beside their destination, sha256-checked, renamed into place only on a match,
//! and resumed with `Range` after a broken transfer; existence checks by HEAD.

use std::path::Path;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::auth::repo_scope;
use crate::client::{digest_of, sha256_digest};
use crate::error::{Ctx, error_chain, io_err};
use crate::http::{header_str, read_limited};
use crate::reference::{InvalidReference, Reference, validate_digest};
use crate::{RegistryClient, RegistryError};

const MAX_CONFIG: usize = 64 << 20;

struct Download<'a> {
    hasher: Sha256,
    written: u64,
    progress: &'a (dyn Fn(u64) + Send + Sync),
}

/// Start offset of a `Content-Range: bytes S-E/T` answer.
fn parse_content_range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes")?.trim();
    v.split('-').next()?.trim().parse().ok()
}

impl RegistryClient {
    /// Fetch a small blob (an image config) into memory, verified.
    pub async fn fetch_config(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "config blob")?;
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        let scopes = [repo_scope(&reference.repository, "pull")];
        let build = || self.http_for(&url).get(url.clone());
        let body = self
            .opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                if !resp.status().is_success() {
                    return Err(Self::fail(&ctx, resp).await);
                }
                read_limited(&ctx, resp, MAX_CONFIG).await
            })
            .await?;
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(ctx.mismatch(digest, &actual));
        }
        Ok(body)
    }

    pub(crate) fn blob_ctx<'a>(
        &self,
        r: &'a Reference,
        digest: &str,
        kind: &str,
    ) -> Result<Ctx<'a>, RegistryError> {
        validate_digest(digest).map_err(|reason| InvalidReference {
            input: digest.to_string(),
            reason: reason.into(),
        })?;
        Ok(Ctx {
            registry: &r.registry,
            repository: &r.repository,
            what: format!("{kind} {digest}"),
        })
    }

    /// Stream a blob into `dest`: written to a temp file beside it, sha256
    /// checked, renamed into place only on a match. Interrupted transfers are
    /// resumed with a Range request. Returns the size.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        self.fetch_blob_with_progress(reference, digest, dest, &|_| {})
            .await
    }

    /// [`fetch_blob`](Self::fetch_blob), calling `progress` with the bytes
    /// received so far (it can go back to 0 when a transfer restarts).
    pub async fn fetch_blob_with_progress(
        &self,
        reference: &Reference,
        digest: &str,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "blob")?;
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".rbuild-blob-")
            .tempfile_in(dir)
            .map_err(io_err(format!("creating a temp file in {}", dir.display())))?;
        let std_file = tmp
            .reopen()
            .map_err(io_err(format!("opening {}", tmp.path().display())))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut state = Download {
            hasher: Sha256::new(),
            written: 0,
            progress,
        };
        let policy = self.opts().retry;
        let mut attempt = 1;
        loop {
            match self
                .fetch_blob_attempt(&ctx, &url, reference, &mut file, &mut state, tmp.path())
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < policy.attempts => {
                    tokio::time::sleep(policy.delay(attempt)).await;
                    attempt += 1;
                }
                Err(mut e) => {
                    e.set_attempts(attempt);
                    return Err(e);
                }
            }
        }
        let ctx_io = |what: &str| io_err(format!("{what} {}", tmp.path().display()));
        file.flush().await.map_err(ctx_io("writing"))?;
        file.sync_all().await.map_err(ctx_io("syncing"))?;
        drop(file);
        let actual = digest_of(state.hasher);
        if actual != digest {
            // `tmp` is removed on drop: nothing is stored.
            return Err(ctx.mismatch(digest, &actual));
        }
        tmp.persist(dest).map_err(|e| RegistryError::Io {
            context: format!("renaming the blob into {}", dest.display()),
            source: e.error,
        })?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(state.written)
    }

    async fn fetch_blob_attempt(
        &self,
        ctx: &Ctx<'_>,
        url: &Url,
        r: &Reference,
        file: &mut tokio::fs::File,
        st: &mut Download<'_>,
        tmp_path: &Path,
    ) -> Result<(), RegistryError> {
        let scopes = [repo_scope(&r.repository, "pull")];
        let offset = st.written;
        let build = || {
            let rb = self.http_for(url).get(url.clone());
            if offset > 0 {
                rb.header(RANGE, format!("bytes={offset}-"))
            } else {
                rb
            }
        };
        let mut resp = self.send(ctx, &scopes, &build).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::fail(ctx, resp).await);
        }
        let io = |e: std::io::Error| RegistryError::Io {
            context: format!("writing {}", tmp_path.display()),
            source: e,
        };
        let resumed = status == StatusCode::PARTIAL_CONTENT
            && header_str(resp.headers(), CONTENT_RANGE)
                .and_then(|v| parse_content_range_start(&v))
                == Some(offset);
        if offset > 0 && !resumed {
            // The server sent the whole blob: start over.
            file.set_len(0).await.map_err(io)?;
            file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
            st.hasher = Sha256::new();
            st.written = 0;
            (st.progress)(0);
        }
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(ctx.body_io(format!(
                        "transfer broke after {} bytes: {}",
                        st.written,
                        error_chain(&e)
                    )));
                }
            };
            file.write_all(&chunk).await.map_err(io)?;
            st.hasher.update(&chunk);
            st.written += chunk.len() as u64;
            (st.progress)(st.written);
        }
        Ok(())
    }

    /// Does the repository have this blob? (HEAD)
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        self.blob_exists_as(reference, digest, "pull").await
    }

    pub(crate) async fn blob_exists_as(
        &self,
        reference: &Reference,
        digest: &str,
        actions: &str,
    ) -> Result<bool, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "blob")?;
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        let scopes = [repo_scope(&reference.repository, actions)];
        let build = || self.http_for(&url).head(url.clone());
        self.opts()
            .retry
            .run(|_| async {
                let resp = self.send(&ctx, &scopes, &build).await?;
                match resp.status() {
                    s if s.is_success() => Ok(true),
                    StatusCode::NOT_FOUND => Ok(false),
                    _ => Err(Self::fail(&ctx, resp).await),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("100-199"), None);
    }
}
