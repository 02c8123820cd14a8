//! Blob uploads: monolithic (one PUT) for small blobs, PATCH chunks otherwise,
//! resumed from the offset the registry reports after a failure; cross-repository
//! mounts; the content is hashed as it is sent and checked before the commit.

use std::path::Path;
use std::sync::{Arc, Mutex};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::repo_scope;
use crate::client::digest_of;
use crate::error::{Ctx, io_err};
use crate::http::header_str;
use crate::reference::Reference;
use crate::{RegistryClient, RegistryError};

/// Blobs up to this size are uploaded from memory in one PUT.
const MONOLITHIC_MAX: u64 = 4 << 20;

/// What a blob push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    /// The registry had the blob; nothing was sent.
    AlreadyExists,
    Uploaded,
    /// Mounted from another repository of the same registry.
    Mounted,
}

/// One blob being uploaded: what it is, where it is read from, and how it is cut.
struct Upload<'a> {
    ctx: &'a Ctx<'a>,
    reference: &'a Reference,
    digest: &'a str,
    size: u64,
    /// Blobs up to this size go in one PUT.
    mono: u64,
    /// Bytes per PATCH.
    chunk: u64,
    path: &'a Path,
    file: tokio::fs::File,
    /// The hash of what was sent so far, checked before the commit.
    sent: Arc<Mutex<SentHash>>,
}

/// End offset (exclusive) from an upload's `Range: 0-N` header.
pub(crate) fn parse_upload_range(v: &str) -> Option<u64> {
    let v = v.trim().trim_start_matches("bytes=");
    let (start, end) = v.split_once('-')?;
    let _: u64 = start.trim().parse().ok()?;
    end.trim().parse::<u64>().ok().map(|e| e + 1)
}

impl RegistryClient {
    pub(crate) fn push_scopes(r: &Reference) -> Vec<String> {
        vec![repo_scope(&r.repository, "pull,push")]
    }

    /// Upload `path` as blob `digest` unless the registry has it. Small blobs go
    /// in one PUT, larger ones in PATCH chunks that resume after a failure; an
    /// interrupted push run again starts a fresh session and completes.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<PushStatus, RegistryError> {
        let ctx = self.blob_ctx(reference, digest, "upload of blob")?;
        let (mono, chunk) = match self.opts().chunk_size {
            Some(c) => (c.max(1), c.max(1)),
            None => (MONOLITHIC_MAX, u64::MAX),
        };
        // A blob that goes in one PUT is checked first; a larger one is hashed as it is
        // sent and checked before the PUT that commits it (reading it twice would cost
        // as much as sending it), so a corrupt file never becomes a registry blob.
        if size <= mono {
            check_local_blob(path, digest, size).await?;
        } else {
            check_local_size(path, digest, size).await?;
        }
        if self.blob_exists_as(reference, digest, "pull,push").await? {
            return Ok(PushStatus::AlreadyExists);
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(io_err(format!("opening {}", path.display())))?;
        let mut upload = Upload {
            ctx: &ctx,
            reference,
            digest,
            size,
            mono,
            chunk,
            path,
            file,
            sent: Arc::new(Mutex::new(SentHash::default())),
        };
        let policy = self.opts().retry;
        let mut failures = 0;
        let mut session: Option<(Url, u64)> = None;
        loop {
            let before = session.clone();
            let step = match before.clone() {
                None => self
                    .start_upload(&ctx, reference, &Self::push_scopes(reference))
                    .await
                    .map(|loc| Some((loc, 0))),
                Some(current) => self.upload_step(&mut upload, current).await,
            };
            match step {
                Ok(None) => return Ok(PushStatus::Uploaded),
                Ok(Some(next)) => {
                    // Progress earns the failure budget back: a long upload
                    // may meet more than `attempts` unrelated hiccups.
                    if before.as_ref().is_some_and(|(_, off)| next.1 > *off) {
                        failures = 0;
                    }
                    session = Some(next);
                }
                Err(e) if e.is_retryable() && failures + 1 < policy.attempts => {
                    failures += 1;
                    tokio::time::sleep(policy.delay(failures)).await;
                    // Ask the registry how much of the session it kept.
                    session = match before {
                        Some((loc, _)) => self.upload_status(&ctx, reference, &loc).await,
                        None => None,
                    };
                }
                Err(mut e) => {
                    e.set_attempts(failures + 1);
                    return Err(e);
                }
            }
        }
    }

    /// One step of an upload from the session at `loc`, `offset` bytes in: the whole
    /// blob in one PUT, the next PATCH chunk, or the commit. `Ok(None)` when the blob
    /// is complete, else where the session stands now.
    async fn upload_step(
        &self,
        up: &mut Upload<'_>,
        (loc, offset): (Url, u64),
    ) -> Result<Option<(Url, u64)>, RegistryError> {
        let (ctx, digest, size, path) = (up.ctx, up.digest, up.size, up.path);
        let scopes = Self::push_scopes(up.reference);
        let mut put_url = loc.clone();
        put_url.query_pairs_mut().append_pair("digest", digest);
        if offset == 0 && size <= up.mono {
            let body = read_at(&mut up.file, path, 0, size).await?;
            let build = || {
                self.http_for(&put_url)
                    .put(put_url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(body.clone())
            };
            let resp = self.send(ctx, &scopes, &build).await?;
            if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
                return Err(Self::fail(ctx, resp).await);
            }
            return Ok(None);
        }
        if offset < size {
            let n = up.chunk.min(size - offset);
            let sent = &up.sent;
            let build = || {
                self.http_for(&loc)
                    .patch(loc.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{}-{}", offset, offset + n - 1))
                    .header(CONTENT_LENGTH, n)
                    .body(file_body(path, offset, n, sent))
            };
            let resp = self.send(ctx, &scopes, &build).await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(Self::fail(ctx, resp).await);
            }
            let next = next_location(ctx, &resp, &loc)?;
            let end = header_str(resp.headers(), RANGE)
                .and_then(|v| parse_upload_range(&v))
                .unwrap_or(offset + n);
            return Ok(Some((next, end)));
        }
        // Everything is sent: commit only what hashes to the digest. When the bytes were
        // not all hashed in order (a resumed or retried chunk), hash the file now.
        let streamed = up.sent.lock().ok().and_then(|h| h.finished(size));
        match streamed {
            Some(actual) if actual == digest => {}
            Some(actual) => {
                return Err(RegistryError::Io {
                    context: format!("refusing to push {}", path.display()),
                    source: std::io::Error::other(format!(
                        "the file sent has digest {actual}, but {digest} was expected"
                    )),
                });
            }
            None => check_local_blob(path, digest, size).await?,
        }
        let build = || {
            self.http_for(&put_url)
                .put(put_url.clone())
                .header(CONTENT_LENGTH, 0)
        };
        let resp = self.send(ctx, &scopes, &build).await?;
        if !resp.status().is_success() {
            return Err(Self::fail(ctx, resp).await);
        }
        Ok(None)
    }

    async fn start_upload(
        &self,
        ctx: &Ctx<'_>,
        r: &Reference,
        scopes: &[String],
    ) -> Result<Url, RegistryError> {
        let url = self.url(r, "blobs/uploads/")?;
        let build = || {
            self.http_for(&url)
                .post(url.clone())
                .header(CONTENT_LENGTH, 0)
        };
        let resp = self.send(ctx, scopes, &build).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::fail(ctx, resp).await);
        }
        next_location(ctx, &resp, &url)
    }

    /// Where an upload session stands; `None` if it is gone.
    async fn upload_status(&self, ctx: &Ctx<'_>, r: &Reference, loc: &Url) -> Option<(Url, u64)> {
        let scopes = Self::push_scopes(r);
        let build = || self.http_for(loc).get(loc.clone());
        let resp = self.send(ctx, &scopes, &build).await.ok()?;
        if resp.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let next = next_location(ctx, &resp, loc).ok()?;
        let range = header_str(resp.headers(), RANGE)?;
        // Distribution answers "0-0" both for an empty upload and for one
        // byte; it does not check where a PATCH starts, so guessing wrong
        // corrupts the blob. Start a new session instead.
        if range.trim().trim_start_matches("bytes=") == "0-0" {
            return None;
        }
        let end = parse_upload_range(&range)?;
        Some((next, end))
    }

    /// Cross-repository mount of `digest` from `from_repo` on the same
    /// registry. `Ok(false)` when the registry declines (202): upload instead.
    pub async fn mount_blob(
        &self,
        reference: &Reference,
        from_repo: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let ctx = self.blob_ctx(
            reference,
            digest,
            &format!("mount from {from_repo} of blob"),
        )?;
        let mut url = self.url(reference, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from_repo);
        // One token must cover both repositories.
        let scopes = [
            repo_scope(&reference.repository, "pull,push"),
            repo_scope(from_repo, "pull"),
        ];
        let build = || {
            self.http_for(&url)
                .post(url.clone())
                .header(CONTENT_LENGTH, 0)
        };
        let resp = self
            .opts()
            .retry
            .run(|_| async { self.send(&ctx, &scopes, &build).await })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // Declined: the registry opened an upload session; close it.
                if let Ok(loc) = next_location(&ctx, &resp, &url) {
                    let del = || self.http_for(&loc).delete(loc.clone());
                    let _ = self.send(&ctx, &scopes, &del).await;
                }
                Ok(false)
            }
            _ => Err(Self::fail(&ctx, resp).await),
        }
    }

    /// Make `digest` present in `reference`'s repository: nothing if it is
    /// there, a mount from `from_repo` if given and accepted, else an upload.
    pub async fn mount_or_push_blob(
        &self,
        reference: &Reference,
        from_repo: Option<&str>,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<PushStatus, RegistryError> {
        if self.blob_exists_as(reference, digest, "pull,push").await? {
            return Ok(PushStatus::AlreadyExists);
        }
        if let Some(from) = from_repo.filter(|f| *f != reference.repository)
            && self.mount_blob(reference, from, digest).await?
        {
            return Ok(PushStatus::Mounted);
        }
        self.push_blob(reference, digest, size, path).await
    }
}

/// The sha256 of the bytes of an upload sent so far, in order from offset 0.
#[derive(Default)]
pub(crate) struct SentHash {
    hasher: Sha256,
    /// Bytes hashed: the next chunk must start here to be hashed.
    upto: u64,
    /// False once a chunk did not continue where the hash stands (a resend after a
    /// fault): the file is then hashed again before the commit.
    broken: bool,
}

impl SentHash {
    /// Starts hashing a chunk at `offset`; false (and broken from now on) if it does not
    /// continue the hash.
    fn begin(&mut self, offset: u64) -> bool {
        if offset != self.upto {
            self.broken = true;
        }
        !self.broken
    }

    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.upto += data.len() as u64;
    }

    /// The digest of all `size` bytes if they were hashed in order; None otherwise.
    fn finished(&self, size: u64) -> Option<String> {
        (!self.broken && self.upto == size).then(|| digest_of(self.hasher.clone()))
    }
}

/// `n` bytes of `path` from `offset`, streamed. Each call opens the file
/// afresh so a request can be rebuilt (after a 401) with its whole body.
fn file_body(path: &Path, offset: u64, n: u64, sent: &Arc<Mutex<SentHash>>) -> reqwest::Body {
    use futures_util::TryStreamExt;
    use std::io::Seek;
    let opened = std::fs::File::open(path).and_then(|mut f| {
        f.seek(std::io::SeekFrom::Start(offset))?;
        Ok(f)
    });
    match opened {
        Ok(f) => {
            let reader = tokio::fs::File::from_std(f).take(n);
            let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
            let hashing = sent.lock().map(|mut h| h.begin(offset)).unwrap_or(false);
            let sent = sent.clone();
            reqwest::Body::wrap_stream(stream.inspect_ok(move |chunk| {
                if hashing && let Ok(mut h) = sent.lock() {
                    h.update(chunk);
                }
            }))
        }
        // The file vanished after it was hashed: send nothing, so the length
        // check fails the request and the error surfaces.
        Err(_) => reqwest::Body::from(Vec::new()),
    }
}

async fn read_at(
    file: &mut tokio::fs::File,
    path: &Path,
    off: u64,
    n: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut buf = vec![0u8; n as usize];
    file.seek(std::io::SeekFrom::Start(off))
        .await
        .map_err(io_err(format!("reading {}", path.display())))?;
    file.read_exact(&mut buf)
        .await
        .map_err(io_err(format!("reading {}", path.display())))?;
    Ok(buf)
}

fn next_location(ctx: &Ctx<'_>, resp: &Response, base: &Url) -> Result<Url, RegistryError> {
    let loc = header_str(resp.headers(), LOCATION)
        .ok_or_else(|| ctx.protocol("upload answer has no Location header".into()))?;
    base.join(&loc)
        .map_err(|e| ctx.protocol(format!("upload Location {loc:?} is not a URL: {e}")))
}

/// Refuse to upload a file whose size or digest is not what the caller said.
/// The file at `path` is `size` bytes (its content is checked as it is sent).
async fn check_local_size(path: &Path, digest: &str, size: u64) -> Result<(), RegistryError> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(io_err(format!("reading {}", path.display())))?
        .len();
    if len != size {
        return Err(RegistryError::Io {
            context: format!("refusing to push {}", path.display()),
            source: std::io::Error::other(format!(
                "the file is {len} bytes, but {size} bytes with {digest} were expected"
            )),
        });
    }
    Ok(())
}

async fn check_local_blob(path: &Path, digest: &str, size: u64) -> Result<(), RegistryError> {
    let p = path.to_path_buf();
    let (len, actual) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            len += n as u64;
        }
        Ok::<_, std::io::Error>((len, digest_of(h)))
    })
    .await
    .map_err(|e| RegistryError::Io {
        context: format!("hashing {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(io_err(format!("reading {}", path.display())))?;
    if len != size || actual != digest {
        return Err(RegistryError::Io {
            context: format!("refusing to push {}", path.display()),
            source: std::io::Error::other(format!(
                "the file is {len} bytes with digest {actual}, but {size} bytes with {digest} were expected"
            )),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-99"), Some(100));
        assert_eq!(parse_upload_range("bytes=0-0"), Some(1));
        assert_eq!(parse_upload_range("garbage"), None);
    }
}
