//! Go durations (`1m30s`, `500ms`), as HEALTHCHECK flags take them: checked with Go's
//! `time.ParseDuration` rules and messages when instructions are typed
//! ([`go_duration_nanos`]), read as whole nanoseconds for the image config and printed
//! back like Go's `Duration.String` when they are lowered ([`parse_duration_ns`],
//! [`format_duration_ns`]).
//!
//! The two parsers came from the two layers (typing, lowering) and are kept as they were,
//! since the config's values must not move. They disagree at the edges (`-0` passes the
//! first and fails the second); making one parser of them is a change of its own.

use crate::parser::go_quote;

/// Why Go's `time.ParseDuration` rejects a duration (its messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("time: invalid duration {}", go_quote(.0))]
    Invalid(String),
    #[error("time: missing unit in duration {}", go_quote(.0))]
    MissingUnit(String),
    #[error("time: unknown unit {} in duration {}", go_quote(.unit), go_quote(.duration))]
    UnknownUnit { unit: String, duration: String },
}

/// Go's `time.ParseDuration`, in nanoseconds (as f64: only compared).
pub(crate) fn go_duration_nanos(s: &str) -> Result<f64, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, r) = rest.split_at(int_len);
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(n)
            }
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = r
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(r.len());
        let (unit, r) = r.split_at(unit_len);
        let scale = match unit {
            "" => return Err(DurationError::MissingUnit(s.to_string())),
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    duration: s.to_string(),
                });
            }
        };
        let num: f64 = format!(
            "{}.{}",
            if int.is_empty() { "0" } else { int },
            if frac.is_empty() { "0" } else { frac }
        )
        .parse()
        .map_err(|_| invalid())?;
        total += num * scale;
        rest = r;
    }
    if total > 9.223_372_036_854_776e18 {
        return Err(invalid());
    }
    Ok(if neg { -total } else { total })
}

/// A Go `time.ParseDuration` string (`1m30s`, `500ms`, `2h`) in nanoseconds.
pub(crate) fn parse_duration_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if neg { -ns } else { ns })
}

/// Go's `Duration.String()` for whole-ish values (`1m30s`, `500ms`, `0s`).
pub(crate) fn format_duration_ns(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let body = if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim_float(ns as f64 / 1e3) + "µs"
    } else if ns < 1_000_000_000 {
        trim_float(ns as f64 / 1e6) + "ms"
    } else {
        let h = ns / 3_600_000_000_000;
        let m = (ns / 60_000_000_000) % 60;
        let s = (ns % 60_000_000_000) as f64 / 1e9;
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&trim_float(s));
        out.push('s');
        out
    };
    if neg { format!("-{body}") } else { body }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(go_duration_nanos("1m30s"), Ok(90e9));
        assert_eq!(go_duration_nanos("0"), Ok(0.0));
        assert_eq!(go_duration_nanos("1.5h"), Ok(5400e9));
        assert!(
            go_duration_nanos("10")
                .unwrap_err()
                .to_string()
                .contains("missing unit")
        );
        assert!(
            go_duration_nanos("5x")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(go_duration_nanos("").is_err());
        assert!(go_duration_nanos(".s").is_err());
    }

    #[test]
    fn durations_match_go() {
        assert_eq!(parse_duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Some(500_000_000));
        assert_eq!(parse_duration_ns("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration_ns("0"), Some(0));
        assert_eq!(parse_duration_ns("10"), None);
        assert_eq!(parse_duration_ns("abc"), None);
        assert_eq!(format_duration_ns(90_000_000_000), "1m30s");
        assert_eq!(format_duration_ns(500_000_000), "500ms");
        assert_eq!(format_duration_ns(0), "0s");
        assert_eq!(format_duration_ns(3_600_000_000_000), "1h0m0s");
    }
}
