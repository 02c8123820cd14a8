//! Times as docker prints them for images: `CREATED` ("2 weeks ago", go-units'
//! HumanDuration) and `CreatedAt` ("2024-01-02 03:04:05 +0000 UTC").

use chrono::{DateTime, Utc};

/// An image config's `created` (RFC 3339), when it has a readable one.
pub fn parse(created: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(created)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How long ago `then` was, in docker's words.
pub fn since(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs < 0 {
        return "Less than a second from now".to_string();
    }
    let (m, h, d) = (60, 3600, 86400);
    let text = match secs {
        0 => "Less than a second".to_string(),
        s if s < m => format!("{s} seconds"),
        s if s < 2 * m => "About a minute".to_string(),
        s if s < h => format!("{} minutes", s / m),
        s if s < 2 * h => "About an hour".to_string(),
        s if s < 48 * h => format!("{} hours", s / h),
        s if s < 14 * d => format!("{} days", s / d),
        s if s < 60 * d => format!("{} weeks", s / (7 * d)),
        s if s < 730 * d => format!("{} months", s / (30 * d)),
        s => format!("{} years", s / (365 * d)),
    };
    format!("{text} ago")
}

/// `2024-01-02 03:04:05 +0000 UTC`.
pub fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_words() {
        let now = parse("2026-12-04T00:00:00Z").unwrap();
        let ago = |s: &str| since(parse(s).unwrap(), now);
        assert_eq!(ago("2026-12-04T00:00:00Z"), "Less than a second ago");
        assert_eq!(ago("2026-12-03T23:59:30Z"), "30 seconds ago");
        assert_eq!(ago("2026-12-03T23:58:30Z"), "About a minute ago");
        assert_eq!(ago("2026-12-03T22:30:00Z"), "About an hour ago");
        assert_eq!(ago("2026-12-01T00:00:00Z"), "3 days ago");
        assert_eq!(ago("2026-11-01T00:00:00Z"), "4 weeks ago");
        assert_eq!(ago("1970-01-01T00:00:00Z"), "56 years ago");
        assert_eq!(at(now), "2026-12-04 00:00:00 +0000 UTC");
        assert!(parse("yesterday").is_none());
    }
}
