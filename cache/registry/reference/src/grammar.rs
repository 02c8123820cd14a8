//! The parts of a reference checked against Docker's grammar (distribution/reference's
//! `regexp.go`), hand-written so that each refusal says which part is wrong:
//!
//! ```text
//! host       := domain-name | '[' ipv6 ']'      domain-name := label ('.' label)*
//! label      := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port       := [0-9]+                         path := component ('/' component)*
//! component  := [a-z0-9]+ (separator [a-z0-9]+)*     separator := '.' | '_' | '__' | '-'+
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```

use crate::{DigestError, ReferenceError};

/// `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in brackets.
pub(crate) fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let bad_host = || ReferenceError::Host(host.to_string());
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(inner) => {
            let (addr, after) = inner.split_once(']').ok_or_else(bad_host)?;
            let ok = !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad_host)?),
            };
            (ok, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (domain_name(name), Some(port)),
            None => (domain_name(host), None),
        },
    };
    if !name_ok {
        return Err(bad_host());
    }
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(ReferenceError::Port(host.to_string()));
    }
    Ok(())
}

/// Dot-separated labels of letters, digits and inner '-'.
fn domain_name(name: &str) -> bool {
    name.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

/// Repository components: `[a-z0-9]+` joined by `.`, `_`, `__` or `-+`.
pub(crate) fn validate_repository(repo: &str) -> Result<(), ReferenceError> {
    if repo.is_empty() {
        return Err(ReferenceError::EmptyRepository);
    }
    for comp in repo.split('/') {
        if comp.is_empty() {
            return Err(ReferenceError::EmptyComponent);
        }
        if comp.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(comp.to_string()));
        }
        if !valid_component(comp) {
            return Err(ReferenceError::Component(comp.to_string()));
        }
    }
    Ok(())
}

fn valid_component(comp: &str) -> bool {
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Docker's tag grammar, ASCII `[\w][\w.-]{0,127}`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() {
        return Err(ReferenceError::EmptyTag);
    }
    if b.len() > 128 {
        return Err(ReferenceError::TagTooLong);
    }
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(ReferenceError::Tag(tag.to_string()));
    }
    Ok(())
}

/// Accepts `sha256:<64 lowercase hex>`; other algorithms are refused by name.
pub fn validate_digest(d: &str) -> Result<(), DigestError> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(DigestError::Format(d.to_string()));
    };
    if alg != "sha256" {
        return Err(DigestError::Algorithm(alg.to_string()));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(DigestError::Hex(d.to_string()));
    }
    Ok(())
}
