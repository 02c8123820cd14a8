//! The transport under every exchange: which reqwest client a URL goes through (loopback
//! hosts bypass any proxy), and reading what comes back (bodies with a size limit, header
//! values). Below both `client` (the session) and `auth` (the token service).

use std::net::IpAddr;

use reqwest::header::HeaderMap;
use reqwest::{Response, Url};

use crate::RegistryError;
use crate::error::Ctx;

/// The two HTTP clients a session uses.
pub(crate) struct Http {
    /// Through the environment's proxy settings.
    pub(crate) proxied: reqwest::Client,
    /// Without proxies, for loopback hosts (as Go's ProxyFromEnvironment does).
    pub(crate) direct: reqwest::Client,
}

impl Http {
    /// The HTTP client for `url`: loopback hosts bypass any proxy.
    pub(crate) fn for_url(&self, url: &Url) -> &reqwest::Client {
        if url.host_str().is_some_and(is_loopback_host) {
            &self.direct
        } else {
            &self.proxied
        }
    }
}

/// `localhost`, 127.0.0.0/8 or ::1 (brackets allowed).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The body of `resp`, refused (as a protocol error of `ctx`) beyond `limit` bytes.
pub(crate) async fn read_limited(
    ctx: &Ctx<'_>,
    mut resp: Response,
    limit: usize,
) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|e| ctx.net(e))? {
        if body.len() + c.len() > limit {
            return Err(ctx.protocol(format!("response larger than {limit} bytes")));
        }
        body.extend_from_slice(&c);
    }
    Ok(body)
}

/// A header's value as text, if present and readable.
pub(crate) fn header_str(h: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
