//! The tags of a repository (`GET /v2/<name>/tags/list`, paginated by the `Link` header).
//! The registry cache uses it to find the per-build manifests of a shared cache ref.

use reqwest::StatusCode;
use reqwest::header::LINK;
use serde::Deserialize;

use crate::auth::repo_scope;
use crate::error::Ctx;
use crate::http::{header_str, read_limited};
use crate::reference::Reference;
use crate::{RegistryClient, RegistryError};

/// One page of the answer is at most this large.
const MAX_PAGE: usize = 4 << 20;
/// Pages followed at most (each up to `PAGE_SIZE` tags).
const MAX_PAGES: usize = 1000;
const PAGE_SIZE: usize = 1000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The `next` target of a `Link: <…>; rel="next"` header.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

impl RegistryClient {
    /// Every tag of `reference`'s repository; empty when the repository does not exist.
    pub async fn list_tags(&self, reference: &Reference) -> Result<Vec<String>, RegistryError> {
        let ctx = Ctx {
            registry: &reference.registry,
            repository: &reference.repository,
            what: "tag list".to_string(),
        };
        let scopes = [repo_scope(&reference.repository, "pull")];
        let mut url = self.url(reference, &format!("tags/list?n={PAGE_SIZE}"))?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let build = || self.http_for(&url).get(url.clone());
            let (body, link) = self
                .opts()
                .retry
                .run(|_| async {
                    let resp = self.send(&ctx, &scopes, &build).await?;
                    if resp.status() == StatusCode::NOT_FOUND {
                        return Ok((None, None));
                    }
                    if !resp.status().is_success() {
                        return Err(Self::fail(&ctx, resp).await);
                    }
                    let link = header_str(resp.headers(), LINK);
                    let body = read_limited(&ctx, resp, MAX_PAGE).await?;
                    Ok((Some(body), link))
                })
                .await?;
            let Some(body) = body else {
                return Ok(out);
            };
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| ctx.protocol(format!("invalid tag list: {e}")))?;
            out.extend(page.tags.unwrap_or_default());
            match link.as_deref().and_then(next_link) {
                Some(next) => {
                    url = url
                        .join(next)
                        .map_err(|e| ctx.protocol(format!("invalid Link {next:?}: {e}")))?;
                }
                None => return Ok(out),
            }
        }
        Err(ctx.protocol(format!("more than {} tags", MAX_PAGES * PAGE_SIZE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }
}
