//! `WWW-Authenticate` challenges, token-service responses and scopes (pure).

use std::time::Duration;

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

/// Parse `{"token"|"access_token", "expires_in"}`; tokens default to 60 s.
pub fn parse_token_response(body: &[u8]) -> Result<Token, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("token response is not JSON: {e}"))?;
    let token = v
        .get("token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .or_else(|| v.get("access_token").and_then(|t| t.as_str()))
        .filter(|t| !t.is_empty())
        .ok_or("token response has no token")?;
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
