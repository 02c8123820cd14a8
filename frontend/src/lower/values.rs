//! Docker's syntax for instruction values: `--chown`/USER owners, EXPOSE
//! ports, STOPSIGNAL signals and mount sizes.

use rbuild_graph::Owner;

/// `user[:group]` as written in `--chown` or USER. An empty group (`1000:`) is kept: BuildKit
/// reads it as gid 0.
pub fn parse_owner(s: &str) -> Option<Owner> {
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(':') {
        Some((u, g)) => Owner {
            user: u.to_string(),
            group: Some(g.to_string()),
        },
        None => Owner {
            user: s.to_string(),
            group: None,
        },
    })
}

/// What is wrong with an EXPOSE spec (Docker's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    #[error("invalid proto: {0}")]
    InvalidProto(String),
    #[error("invalid containerPort: {0}")]
    InvalidPort(String),
    #[error("invalid range specified for port: {0}")]
    InvalidRange(String),
}

/// EXPOSE specs (`80`, `80/udp`, `8000-8002/tcp`, `[ip:]host:container/proto`) as `port/proto` keys.
pub fn parse_port_spec(raw: &str) -> Result<Vec<String>, PortError> {
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(PortError::NoPort(raw.to_string()));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        p => return Err(PortError::InvalidProto(p.to_string())),
    };
    let bad = || PortError::InvalidPort(port.to_string());
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = port.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if end < start {
        return Err(PortError::InvalidRange(port.to_string()));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Whether STOPSIGNAL accepts `s` (a number, or a signal name with or without `SIG`).
pub fn valid_signal(s: &str) -> bool {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ",
    ];
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if NAMES.contains(&name) {
        return true;
    }
    // RTMIN+n / RTMAX-n
    for (base, sep) in [("RTMIN", '+'), ("RTMAX", '-')] {
        if name == base {
            return true;
        }
        if let Some(n) = name
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix(sep))
            .and_then(|n| n.parse::<u32>().ok())
        {
            return n <= 15;
        }
    }
    false
}

/// A docker size (`64m`, `1g`, `512k`, `100`) in bytes; units are powers of 1024.
pub fn parse_ram_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(
            parse_owner("1000:1000"),
            Some(Owner {
                user: "1000".into(),
                group: Some("1000".into())
            })
        );
        assert_eq!(parse_owner("app").unwrap().group, None);
        assert_eq!(parse_owner("7:").unwrap().group.as_deref(), Some(""));
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        let e = |s: &str| parse_port_spec(s).unwrap_err().to_string();
        assert_eq!(e("80/xyz"), "invalid proto: xyz");
        assert_eq!(e("http"), "invalid containerPort: http");
        assert_eq!(e("1.2.3.4:/tcp"), "no port specified: 1.2.3.4:/tcp<empty>");
        assert_eq!(e("90-80"), "invalid range specified for port: 90-80");
        assert!(valid_signal("SIGTERM"));
        assert!(valid_signal("kill"));
        assert!(valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGFOO"));
        assert!(!valid_signal("0"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_ram_size("64m"), Some(64 << 20));
        assert_eq!(parse_ram_size("1g"), Some(1 << 30));
        assert_eq!(parse_ram_size("100"), Some(100));
        assert_eq!(parse_ram_size("1x"), None);
    }
}
