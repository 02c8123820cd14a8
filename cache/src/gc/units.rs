//! The spellings of sizes and durations the cache policy takes, as docker takes them:
//! sizes as `docker builder prune --keep-storage` (go-units' RAMInBytes: `10GB`,
//! `512mb`, `1.5g`, `2GiB`, a plain number of bytes; K, M, G, T, P are powers of 1024),
//! durations as Go's `time.ParseDuration` (`72h`, `1h30m`, `90m`, `1.5h`, `300ms`).

/// A size or duration that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid size {0:?}: use a number with an optional unit, as docker does (512MB, 10GB, 1.5TB)"
    )]
    Size(String),
    #[error("invalid duration {0:?}: use Go's duration syntax (72h, 1h30m, 90m, 45s)")]
    Duration(String),
    #[error("invalid percentage {0:?}: use 0% to 100% of the filesystem")]
    Percent(String),
}

/// Parses a size (see the module docs) into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let bad = || UnitError::Size(text.to_string());
    let s = text.trim();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut rest = unit.as_str();
    let mult: u64 = match rest.chars().next() {
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some('t') => 1 << 40,
        Some('p') => 1 << 50,
        _ => 1,
    };
    if mult > 1 {
        rest = &rest[1..];
        rest = rest.strip_prefix('i').unwrap_or(rest);
    }
    if !(rest.is_empty() || rest == "b") {
        return Err(bad());
    }
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a Go duration (see the module docs). Negative durations are refused: a cache
/// cannot be kept for less than no time.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, UnitError> {
    let bad = || UnitError::Duration(text.to_string());
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut secs = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(end);
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        secs += value * scale;
        rest = next;
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// `1.2GB`-style sizes, decimal, as docker prints what prune reclaimed.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("100 kb").unwrap(), 100 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("7b").unwrap(), 7);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in [
            "",
            "GB",
            "-1GB",
            "10XB",
            "1..5GB",
            "10 GB foo",
            ".5GB",
            "10GBB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("x").unwrap_err().to_string().contains("10GB"));
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_500_000), "1.5MB");
    }

    #[test]
    fn durations_read_as_go_reads_them() {
        assert_eq!(
            parse_duration("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "72", "h", "-1h", "3d", "1h 30m", "."] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
