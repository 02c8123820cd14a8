//! [`RegistryError`], and how HTTP failures become one: [`Ctx`] names the registry,
//! repository and object of an operation, so every error says where it happened.

use reqwest::{Response, StatusCode};
use serde::Deserialize;

/// Everything that can go wrong talking to a registry. Messages name the
/// registry, repository and digest involved and, where possible, what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    InvalidReference(#[from] crate::reference::InvalidReference),
    #[error("{registry}: authentication failed ({scope}): {message}")]
    Unauthorized {
        registry: String,
        scope: String,
        message: String,
    },
    #[error(
        "{registry}/{repository}: {what}: access denied ({message}); check that your account may access this repository"
    )]
    Denied {
        registry: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error("{registry}/{repository}: {what} not found{message}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error(
        "{registry}/{repository}: {what}: content digest mismatch: expected {expected}, got {actual}; the data was refused and nothing was stored"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{registry}/{repository}: {what}: HTTP {status}: {message}{}", attempts_note(*attempts))]
    Status {
        registry: String,
        repository: String,
        what: String,
        status: u16,
        message: String,
        attempts: u32,
    },
    #[error("{registry}: {what}: {message}{}", attempts_note(*attempts))]
    Network {
        registry: String,
        what: String,
        message: String,
        /// Timeouts, resets and refused connections are worth retrying.
        transient: bool,
        attempts: u32,
    },
    #[error("{registry}/{repository}: {message}")]
    Protocol {
        registry: String,
        repository: String,
        message: String,
    },
    #[error("{reference}: no image for platform {platform} in the index (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials: {0}")]
    Credentials(String),
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl RegistryError {
    /// Worth another attempt: server errors and transient network failures
    /// that were not already retried (so nested retry loops do not multiply).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status {
                status, attempts, ..
            } => *status >= 500 && *attempts <= 1,
            RegistryError::Network {
                transient,
                attempts,
                ..
            } => *transient && *attempts <= 1,
            _ => false,
        }
    }

    pub(crate) fn set_attempts(&mut self, n: u32) {
        match self {
            RegistryError::Status { attempts, .. } | RegistryError::Network { attempts, .. } => {
                // Keep the count of an inner retry loop that gave up first.
                *attempts = (*attempts).max(n)
            }
            _ => {}
        }
    }
}

/// Names used in errors for one operation.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a str,
    pub(crate) repository: &'a str,
    pub(crate) what: String,
}

/// A host name the resolver says does not exist (not a temporary DNS failure): asking
/// again only delays the error.
fn unknown_host(message: &str) -> bool {
    message.contains("Name or service not known")
        || message.contains("No address associated with hostname")
        || message.contains("nodename nor servname provided")
}

impl Ctx<'_> {
    pub(crate) fn net(&self, e: reqwest::Error) -> RegistryError {
        let message = error_chain(&e);
        // A certificate the client does not trust will not become trusted by asking again.
        let tls_trust = message.to_ascii_lowercase().contains("certificate");
        let transient = !tls_trust
            && !unknown_host(&message)
            && (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body());
        RegistryError::Network {
            registry: self.registry.to_string(),
            what: self.what.clone(),
            message: network_message(&message, tls_trust),
            transient,
            attempts: 1,
        }
    }

    pub(crate) fn status(&self, status: StatusCode, message: String) -> RegistryError {
        let (registry, repository, what) = (
            self.registry.to_string(),
            self.repository.to_string(),
            self.what.clone(),
        );
        match status.as_u16() {
            404 => RegistryError::NotFound {
                registry,
                repository,
                what,
                message: if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                },
            },
            403 => RegistryError::Denied {
                registry,
                repository,
                what,
                message,
            },
            s => RegistryError::Status {
                registry,
                repository,
                what,
                status: s,
                message,
                attempts: 1,
            },
        }
    }

    pub(crate) fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            message: format!("{}: {message}", self.what),
        }
    }

    pub(crate) fn mismatch(&self, expected: &str, actual: &str) -> RegistryError {
        RegistryError::DigestMismatch {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            what: self.what.clone(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    /// A failure while reading a body we already started: worth a retry.
    pub(crate) fn body_io(&self, message: String) -> RegistryError {
        RegistryError::Network {
            registry: self.registry.to_string(),
            what: self.what.clone(),
            message,
            transient: true,
            attempts: 1,
        }
    }
}

/// What a failed request says: for a host name that does not resolve, that alone (the
/// client's chain of wrappers says it five ways); else the chain and what to check.
fn network_message(chain: &str, tls_trust: bool) -> String {
    if unknown_host(chain) {
        return "the host name does not resolve; check the registry's name".to_string();
    }
    if tls_trust {
        return format!(
            "{chain}; to trust a private CA, add its certificate to the client's CA files"
        );
    }
    format!(
        "{chain}; check that the registry is reachable (plain-HTTP registries other than loopback must be listed as insecure)"
    )
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

pub(crate) fn io_err(context: String) -> impl FnOnce(std::io::Error) -> RegistryError {
    move |source| RegistryError::Io { context, source }
}

/// The registry's error text: `CODE: message` from its JSON envelope, else the
/// start of the body.
pub(crate) fn error_message_from(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body)
        && !env.errors.is_empty()
    {
        return env
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    t.chars().take(200).collect()
}

pub(crate) async fn error_message(resp: Response) -> String {
    let mut resp = resp;
    let mut body = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        body.extend_from_slice(&c);
        if body.len() > 64 << 10 {
            break;
        }
    }
    error_message_from(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hosts_are_not_retried() {
        assert!(unknown_host(
            "dns error: failed to lookup address information: Name or service not known"
        ));
        assert!(!unknown_host(
            "dns error: Temporary failure in name resolution"
        ));
        assert!(!unknown_host(
            "tcp connect error: Connection refused (os error 111)"
        ));
        // Said once, short, with what to check.
        assert_eq!(
            network_message(
                "error sending request for url (https://r.example/v2/): client error (Connect): dns error: failed to lookup address information: Name or service not known",
                false
            ),
            "the host name does not resolve; check the registry's name"
        );
        assert!(
            network_message(
                "tcp connect error: Connection refused (os error 111)",
                false
            )
            .ends_with("must be listed as insecure)")
        );
    }

    #[test]
    fn registry_error_text() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"}]}"#;
        assert_eq!(
            error_message_from(body),
            "BLOB_UNKNOWN: blob unknown to registry"
        );
        assert_eq!(error_message_from(b"  oops \n"), "oops");
        assert_eq!(error_message_from(&[b'x'; 500]).len(), 200);
    }
}
