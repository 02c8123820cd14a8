//! Registry auth: `WWW-Authenticate` challenges and scopes (parsed), the credential
//! for a registry (looked up once), and bearer tokens fetched from the token service
//! (password or refresh-token grant) and cached per merged scope set until shortly
//! before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};

use crate::RegistryError;
use crate::credentials::{Credential, CredentialSource};
use crate::error::{Ctx, error_message};
use crate::http::{Http, read_limited};
use crate::retry::RetryPolicy;

/// Largest token-service answer read.
const MAX_SMALL_BODY: usize = 1 << 20;

/// What the registry asked for in its 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// Scopes named by the challenge (space-separated in the header).
        scopes: Vec<String>,
    },
}

/// Parse one or more challenges; Bearer wins over Basic as docker does.
pub fn parse_challenges(headers: &[&str]) -> Option<Challenge> {
    let mut basic = false;
    for h in headers {
        for (scheme, params) in split_challenges(h) {
            if scheme.eq_ignore_ascii_case("bearer") {
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.clone())
                };
                let Some(realm) = get("realm").filter(|r| !r.is_empty()) else {
                    continue;
                };
                return Some(Challenge::Bearer {
                    realm,
                    service: get("service"),
                    scopes: get("scope")
                        .map(|s| s.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default(),
                });
            }
            if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

type Params = Vec<(String, String)>;

/// Split a header into (scheme, params) pairs; handles quoted values with
/// escapes and commas inside quotes.
fn split_challenges(h: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let b = h.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        // token: scheme or param name
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        let tok = h[start..i].to_string();
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // a parameter of the current challenge
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let mut val = String::new();
            if i < b.len() && b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch_len = utf8_len(b[i]);
                    val.push_str(&h[i..(i + ch_len).min(b.len())]);
                    i += ch_len;
                }
                i += 1; // closing quote
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' {
                    i += 1;
                }
                val.push_str(&h[s..i]);
            }
            if let Some(last) = out.last_mut() {
                last.1.push((tok, val));
            }
        } else if !tok.is_empty() {
            out.push((tok, Vec::new()));
        } else {
            i += 1;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// `repository:<repo>:<actions>`.
pub fn repo_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// Merge scope lists, combining the actions of equal resources, sorted so the
/// result can key a token cache.
pub fn merge_scopes<'a>(scopes: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for s in scopes {
        let (resource, actions) = match s.rsplit_once(':') {
            Some((r, a)) if r.contains(':') => (r.to_string(), a),
            _ => (s.clone(), ""),
        };
        let entry = match merged.iter_mut().find(|(r, _)| *r == resource) {
            Some(e) => e,
            None => {
                merged.push((resource, Vec::new()));
                merged.last_mut().expect("just pushed")
            }
        };
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            if !entry.1.iter().any(|x| x == a) {
                entry.1.push(a.to_string());
            }
        }
    }
    let mut out: Vec<String> = merged
        .into_iter()
        .map(|(r, mut a)| {
            a.sort();
            if a.is_empty() {
                r
            } else {
                format!("{r}:{}", a.join(","))
            }
        })
        .collect();
    out.sort();
    out
}

/// A token from the token service and how long to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub lifetime: Duration,
    /// OAuth2 refresh token, when the service issued one.
    pub refresh_token: Option<String>,
}

/// A token-service answer that holds no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token response is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("token response has no token")]
    NoToken,
}

/// Parse `{"token"|"access_token", "expires_in"}`; tokens default to 60 s.
pub fn parse_token_response(body: &[u8]) -> Result<Token, TokenError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(TokenError::NotJson)?;
    let token = v
        .get("token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .or_else(|| v.get("access_token").and_then(|t| t.as_str()))
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::NoToken)?;
    let secs = v
        .get("expires_in")
        .and_then(|e| e.as_u64())
        .filter(|&s| s > 0)
        .unwrap_or(60);
    Ok(Token {
        token: token.to_string(),
        lifetime: Duration::from_secs(secs),
        refresh_token: v
            .get("refresh_token")
            .and_then(|t| t.as_str())
            .map(str::to_string),
    })
}

/// A session's auth state: what each registry asked for and granted, by registry name,
/// and where credentials come from.
pub(crate) struct Auth {
    caches: Mutex<HashMap<String, AuthCache>>,
    credentials: CredentialSource,
    retry: RetryPolicy,
}

/// What a client learned about one registry: its challenge, the tokens it issued (by
/// merged scope list, with their expiry) and the credential looked up for it.
#[derive(Default)]
struct AuthCache {
    challenge: Option<Challenge>,
    /// merged scope list → (token, expiry)
    tokens: HashMap<String, (String, Instant)>,
    credential: Option<Option<Credential>>,
}

pub(crate) fn basic_header(username: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{username}:{password}")))
}

/// The challenge of a 401 answer, from all its `WWW-Authenticate` headers.
pub(crate) fn challenge_of(resp: &Response) -> Option<Challenge> {
    let headers: Vec<&str> = resp
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    parse_challenges(&headers)
}

impl Auth {
    pub(crate) fn new(credentials: CredentialSource, retry: RetryPolicy) -> Auth {
        Auth {
            caches: Mutex::new(HashMap::new()),
            credentials,
            retry,
        }
    }

    /// Remembers what a 401 asked for; the token cached for `scopes`, if any, was just
    /// refused, so it is dropped.
    pub(crate) fn learn_challenge(&self, registry: &str, challenge: Challenge, scopes: &[String]) {
        let key = merge_scopes(scopes).join(" ");
        self.with_cache(registry, |c| {
            c.challenge = Some(challenge);
            c.tokens.remove(&key);
        });
    }

    /// Drops everything learned about `registry` (after its credentials changed).
    pub(crate) fn forget(&self, registry: &str) {
        let mut map = self
            .caches
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        map.remove(registry);
    }

    fn with_cache<T>(&self, registry: &str, f: impl FnOnce(&mut AuthCache) -> T) -> T {
        let mut map = self
            .caches
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        f(map.entry(registry.to_string()).or_default())
    }

    pub(crate) async fn credential(
        &self,
        registry: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = self.with_cache(registry, |c| c.credential.clone()) {
            return Ok(c);
        }
        let source = self.credentials.clone();
        let reg = registry.to_string();
        // Credential helpers are external programs: keep them off the runtime.
        let cred = tokio::task::spawn_blocking(move || source.lookup(&reg))
            .await
            .map_err(|e| RegistryError::Credentials(format!("credential lookup failed: {e}")))??;
        self.with_cache(registry, |c| c.credential = Some(cred.clone()));
        Ok(cred)
    }

    /// The Authorization header for `scopes`, from what the registry asked before.
    pub(crate) async fn auth_header(
        &self,
        http: &Http,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let cred = self.credential(registry).await?;
        if let Some(Credential::RegistryToken(t)) = &cred {
            return Ok(Some(format!("Bearer {t}")));
        }
        match self.with_cache(registry, |c| c.challenge.clone()) {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match &cred {
                Some(Credential::Basic { username, password }) => {
                    Some(basic_header(username, password))
                }
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let merged = merge_scopes(scopes);
                let key = merged.join(" ");
                let now = Instant::now();
                let cached = self.with_cache(registry, |c| {
                    c.tokens
                        .get(&key)
                        .filter(|(_, exp)| *exp > now)
                        .map(|(t, _)| t.clone())
                });
                if let Some(t) = cached {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, lifetime) = self
                    .fetch_token(
                        http,
                        registry,
                        &realm,
                        service.as_deref(),
                        &merged,
                        cred.as_ref(),
                    )
                    .await?;
                // Renew a little early so a request never carries an expiring token.
                let expiry = now
                    + lifetime
                        .saturating_sub(Duration::from_secs(10))
                        .max(Duration::from_secs(1));
                self.with_cache(registry, |c| {
                    c.tokens.insert(key, (token.clone(), expiry));
                });
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Ask the token service for a token covering `scopes`.
    pub(crate) async fn fetch_token(
        &self,
        http: &Http,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        cred: Option<&Credential>,
    ) -> Result<(String, Duration), RegistryError> {
        let ctx = Ctx {
            registry,
            repository: "",
            what: format!("token request to {realm}"),
        };
        let url = Url::parse(realm).map_err(|e| {
            ctx.protocol(format!(
                "the registry's token realm {realm:?} is not a URL: {e}"
            ))
        })?;
        let scope_joined = scopes.join(" ");
        self.retry
            .run(|_| {
                let ctx = &ctx;
                let url = &url;
                let scope_joined = &scope_joined;
                async move {
                    let rb = match cred {
                        Some(Credential::IdentityToken(refresh)) => {
                            // OAuth2 refresh-token grant, as docker does for identity tokens.
                            let mut form = Url::parse("http://form/").expect("static URL");
                            {
                                let mut q = form.query_pairs_mut();
                                q.append_pair("grant_type", "refresh_token");
                                q.append_pair("refresh_token", refresh);
                                q.append_pair("client_id", "rbuild");
                                if let Some(s) = service {
                                    q.append_pair("service", s);
                                }
                                if !scope_joined.is_empty() {
                                    q.append_pair("scope", scope_joined);
                                }
                            }
                            http.for_url(url).post(url.clone())
                                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                                .body(form.query().unwrap_or("").to_string())
                        }
                        _ => {
                            let mut u = url.clone();
                            {
                                let mut q = u.query_pairs_mut();
                                if let Some(s) = service {
                                    q.append_pair("service", s);
                                }
                                for s in scopes {
                                    q.append_pair("scope", s);
                                }
                                if let Some(Credential::Basic { username, .. }) = cred {
                                    q.append_pair("account", username);
                                }
                            }
                            let mut rb = http.for_url(&u).get(u);
                            if let Some(Credential::Basic { username, password }) = cred {
                                rb = rb.basic_auth(username, Some(password));
                            }
                            rb
                        }
                    };
                    let resp = rb.send().await.map_err(|e| ctx.net(e))?;
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        let msg = error_message(resp).await;
                        return Err(RegistryError::Unauthorized {
                            registry: registry.to_string(),
                            scope: scope_joined.clone(),
                            message: match cred {
                                Some(_) => format!(
                                    "the token service {realm} rejected the stored credentials ({msg}); run `rbuild login {registry}` again"
                                ),
                                None => format!(
                                    "the token service {realm} requires credentials ({msg}); run `rbuild login {registry}`"
                                ),
                            },
                        });
                    }
                    if !status.is_success() {
                        let msg = error_message(resp).await;
                        return Err(ctx.status(status, msg));
                    }
                    let body = read_limited(ctx, resp, MAX_SMALL_BODY).await?;
                    let tok = parse_token_response(&body)
                        .map_err(|m| ctx.protocol(m.to_string()))?;
                    Ok((tok.token, tok.lifetime))
                }
            })
            .await
    }

    pub(crate) async fn unauthorized(
        &self,
        ctx: &Ctx<'_>,
        scopes: &[String],
        msg: String,
    ) -> RegistryError {
        let cred = self.credential(ctx.registry).await.ok().flatten();
        let bearer = self.with_cache(ctx.registry, |c| {
            matches!(c.challenge, Some(Challenge::Bearer { .. }))
        });
        let hint = match cred {
            None => format!(
                "no credentials for {reg}; run `rbuild login {reg}`",
                reg = ctx.registry
            ),
            // The token service accepted the credentials but the token it
            // issued does not cover this request: a permission problem.
            Some(Credential::Basic { username, .. }) if bearer => format!(
                "the token issued to user {username:?} does not grant {}; check the account's permissions on {}",
                merge_scopes(scopes).join(" "),
                ctx.repository
            ),
            Some(Credential::Basic { username, .. }) => format!(
                "the registry rejected the credentials of user {username:?}; check them or run `rbuild login {}` again",
                ctx.registry
            ),
            Some(_) => format!(
                "the registry rejected the stored token; run `rbuild login {}` again",
                ctx.registry
            ),
        };
        RegistryError::Unauthorized {
            registry: ctx.registry.to_string(),
            scope: format!("{} {}", ctx.what, merge_scopes(scopes).join(" ")),
            message: if msg.is_empty() {
                hint
            } else {
                format!("{msg}; {hint}")
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_challenges(&[
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scopes: vec!["repository:library/busybox:pull".into()],
            })
        );
    }

    #[test]
    fn quoted_commas_escapes_and_multiple_scopes() {
        let c = parse_challenges(&[
            r#"Bearer realm="http://127.0.0.1:1/t?a=1,b=2", service = "my \"svc\"", scope="repository:a:pull repository:b:pull,push", error="insufficient_scope""#,
        ]);
        let Some(Challenge::Bearer {
            realm,
            service,
            scopes,
        }) = c
        else {
            panic!("{c:?}")
        };
        assert_eq!(realm, "http://127.0.0.1:1/t?a=1,b=2");
        assert_eq!(service.as_deref(), Some("my \"svc\""));
        assert_eq!(scopes, ["repository:a:pull", "repository:b:pull,push"]);
    }

    #[test]
    fn basic_and_preference() {
        assert_eq!(
            parse_challenges(&[r#"Basic realm="Registry Realm""#]),
            Some(Challenge::Basic)
        );
        let c = parse_challenges(&[r#"Basic realm="x""#, r#"Bearer realm="https://t""#]);
        assert!(matches!(c, Some(Challenge::Bearer { .. })));
        assert_eq!(parse_challenges(&["Negotiate"]), None);
        assert_eq!(parse_challenges(&[r#"Bearer service="x""#]), None);
        assert_eq!(parse_challenges(&[]), None);
    }

    #[test]
    fn scopes_merge_actions() {
        let s = [
            repo_scope("b", "push"),
            repo_scope("a", "pull"),
            repo_scope("b", "pull"),
            "registry:catalog:*".to_string(),
            repo_scope("b", "pull"),
        ];
        assert_eq!(
            merge_scopes(&s),
            [
                "registry:catalog:*",
                "repository:a:pull",
                "repository:b:pull,push"
            ]
        );
        // host:port repositories keep their colon-free resource names intact
        assert_eq!(
            merge_scopes(&[repo_scope("x/y", "pull")]),
            ["repository:x/y:pull"]
        );
    }

    #[test]
    fn token_responses() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.token.as_str(), t.lifetime.as_secs()), ("abc", 300));
        let t = parse_token_response(br#"{"access_token":"xyz","refresh_token":"r"}"#).unwrap();
        assert_eq!((t.token.as_str(), t.lifetime.as_secs()), ("xyz", 60));
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }
}
