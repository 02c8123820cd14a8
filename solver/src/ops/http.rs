//! `ADD http(s)://…`: what a URL contributes to its step's cache key, and its body on disk.
//!
//! BuildKit's rules (source/http): with `--checksum` the key is the checksum alone and
//! nothing is fetched until the step runs (then the body is checked before it is kept);
//! without, the key is the body's sha256 plus its `Last-Modified`, so the URL is asked
//! every build: with the ETag seen last time, a `HEAD` (then a conditional `GET`) that
//! answers that ETag reuses the body kept then, anything else downloads it again. A body
//! is kept under `<root>/http-cache/` by digest, beside one record per URL (its ETag,
//! digest and `Last-Modified`); a file `Last-Modified` dates gets that mtime.

use crate::error::StepFailure;
use crate::op::StepContext;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The store root's directory of downloaded bodies and per-URL records.
const CACHE_DIR: &str = "http-cache";

/// What a URL is, for the key: its body's digest and `Last-Modified` (as sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remote {
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// What was learnt about a URL the last time it was fetched.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(flatten)]
    remote: Remote,
}

/// A body on disk, ready to be copied into a layer.
pub(crate) struct Body {
    pub path: PathBuf,
    /// `Last-Modified` as seconds since the epoch, when the server sent one.
    pub mtime: Option<i64>,
}

/// The URL for messages: user and password left out (BuildKit redacts them too).
pub(crate) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("xxxxx");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn fail(url: &str, reason: impl std::fmt::Display) -> StepFailure {
    StepFailure::Http {
        url: redact(url),
        reason: reason.to_string(),
    }
}

fn client(url: &str) -> Result<&'static reqwest::Client, StepFailure> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    // With rustls' "no provider" build, a client cannot be made before one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(url, format!("cannot set up an HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| c))
}

struct Cache {
    dir: PathBuf,
}

impl Cache {
    fn of(step: &StepContext) -> Cache {
        Cache {
            dir: step.store().root().join(CACHE_DIR),
        }
    }

    fn body(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs").join(hex)
    }

    fn record_path(&self, url: &str) -> PathBuf {
        self.dir
            .join("urls")
            .join(blake3::hash(url.as_bytes()).to_hex().as_str())
    }

    fn record(&self, url: &str) -> Option<Record> {
        let bytes = std::fs::read(self.record_path(url)).ok()?;
        let r: Record = serde_json::from_slice(&bytes).ok()?;
        self.body(&r.remote.digest).is_file().then_some(r)
    }

    fn save_record(&self, url: &str, r: &Record) -> std::io::Result<()> {
        let p = self.record_path(url);
        let dir = p.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&p).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The key part of `url`: the checksum when one pins it (no request), else what the
/// server says now (a download unless the ETag kept last time still answers).
pub(crate) fn resolve(
    step: &StepContext,
    url: &str,
    checksum: Option<&str>,
) -> Result<Remote, StepFailure> {
    if let Some(c) = checksum {
        return Ok(Remote {
            digest: c.to_string(),
            last_modified: None,
        });
    }
    let cache = Cache::of(step);
    let known = cache.record(url);
    let handle = tokio::runtime::Handle::current();
    handle.block_on(ask(&cache, url, known, None))
}

/// The body of `url` for a step that runs: the one kept under `remote`'s digest when
/// there is one, else downloaded (and checked against `checksum`, before it is kept).
pub(crate) fn body(
    step: &StepContext,
    url: &str,
    checksum: Option<&str>,
    remote: Option<&Remote>,
) -> Result<Body, StepFailure> {
    let cache = Cache::of(step);
    let want = checksum.or(remote.map(|r| r.digest.as_str()));
    let known = cache.record(url);
    let remote = match want {
        Some(d) if cache.body(d).is_file() => {
            // A body kept from an earlier fetch: its Last-Modified is the URL record's.
            let lm = remote.and_then(|r| r.last_modified.clone()).or_else(|| {
                known
                    .as_ref()
                    .filter(|k| k.remote.digest == d)
                    .and_then(|k| k.remote.last_modified.clone())
            });
            Remote {
                digest: d.to_string(),
                last_modified: lm,
            }
        }
        _ => {
            let handle = tokio::runtime::Handle::current();
            let known = known.filter(|_| checksum.is_none());
            handle.block_on(ask(&cache, url, known, checksum))?
        }
    };
    if let Some(c) = checksum
        && remote.digest != c
    {
        return Err(StepFailure::ChecksumMismatch {
            url: redact(url),
            expected: c.to_string(),
            actual: remote.digest,
        });
    }
    Ok(Body {
        path: cache.body(&remote.digest),
        mtime: remote.last_modified.as_deref().and_then(http_date),
    })
}

/// Seconds since the epoch of an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
fn http_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.timestamp())
}

/// Asks the server: with `known`, first whether its ETag still holds (HEAD, then a
/// conditional GET); a new body is downloaded, checked against `checksum` and kept.
async fn ask(
    cache: &Cache,
    url: &str,
    known: Option<Record>,
    checksum: Option<&str>,
) -> Result<Remote, StepFailure> {
    let client = client(url)?;
    let known_etag = known.as_ref().and_then(|k| k.etag.clone());
    if let (Some(k), Some(etag)) = (&known, &known_etag) {
        let head = client
            .head(url)
            .header(IF_NONE_MATCH, etag.as_str())
            .send()
            .await;
        if let Ok(resp) = head
            && matches!(resp.status(), StatusCode::OK | StatusCode::NOT_MODIFIED)
        {
            let answered = header(&resp, ETAG)
                .or_else(|| (resp.status() == StatusCode::NOT_MODIFIED).then(|| etag.clone()));
            if answered.as_deref() == Some(etag.as_str()) {
                return Ok(k.remote.clone());
            }
        }
    }
    let mut req = client.get(url);
    if let Some(etag) = &known_etag {
        req = req.header(IF_NONE_MATCH, etag.as_str());
    }
    let mut resp = req.send().await.map_err(|e| fail(url, e))?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED
        && let Some(k) = known
    {
        return Ok(k.remote);
    }
    if !status.is_success() {
        return Err(fail(url, format!("the server answered {status}")));
    }
    let etag = header(&resp, ETAG);
    let last_modified = header(&resp, LAST_MODIFIED);

    let blobs = cache.dir.join("blobs");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| fail(url, format!("creating {}: {e}", blobs.display())))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&blobs)
        .map_err(|e| fail(url, format!("creating a file in {}: {e}", blobs.display())))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(url, e))? {
        hasher.update(&chunk);
        tmp.write_all(&chunk)
            .map_err(|e| fail(url, format!("writing the download: {e}")))?;
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(c) = checksum
        && c != digest
    {
        // The temp file goes with `tmp`: nothing of a body that fails its checksum is kept.
        return Err(StepFailure::ChecksumMismatch {
            url: redact(url),
            expected: c.to_string(),
            actual: digest,
        });
    }
    let keep = |e: std::io::Error| fail(url, format!("keeping the download: {e}"));
    tmp.as_file().sync_all().map_err(keep)?;
    tmp.persist(cache.body(&digest))
        .map_err(|e| keep(e.error))?;
    let remote = Remote {
        digest,
        last_modified,
    };
    let record = Record {
        etag,
        remote: remote.clone(),
    };
    // A record that cannot be written only costs a download next time.
    let _ = cache.save_record(url, &record);
    Ok(remote)
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
