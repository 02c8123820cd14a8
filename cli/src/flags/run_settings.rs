//! The build flags that set what every RUN step gets, as docker's: `--add-host`,
//! `--ulimit`, `--shm-size`, `--cgroup-parent`, read into the graph's [`RunSettings`].

use anyhow::{Result, bail};
use rbuild_executor::{Resource, Rlimit};
use rbuild_graph::{HostEntry, RunSettings, Ulimit};
use std::net::IpAddr;

/// The four flags' values as given.
pub struct RunFlags<'a> {
    pub add_hosts: &'a [String],
    pub ulimits: &'a [String],
    pub shm_size: Option<&'a str>,
    pub cgroup_parent: Option<&'a str>,
}

/// Checks and types the flags.
pub fn parse(flags: &RunFlags<'_>) -> Result<RunSettings> {
    let mut ulimits: Vec<Ulimit> = Vec::new();
    for u in flags.ulimits {
        let limit = ulimit(u)?;
        // A later --ulimit for the same resource replaces the earlier one, as docker's.
        ulimits.retain(|l| l.name != limit.name);
        ulimits.push(limit);
    }
    Ok(RunSettings {
        extra_hosts: flags
            .add_hosts
            .iter()
            // buildx splits a value at commas: `--add-host a:1.2.3.4,b:5.6.7.8`.
            .flat_map(|h| h.split(','))
            .map(add_host)
            .collect::<Result<_>>()?,
        ulimits,
        shm_size: flags.shm_size.map(shm_size).transpose()?.flatten(),
        cgroup_parent: flags.cgroup_parent.map(cgroup_parent).transpose()?,
    })
}

/// `--add-host NAME:IP` or `NAME=IP` (an IPv6 address may be bracketed).
fn add_host(value: &str) -> Result<HostEntry> {
    let split = value.split_once('=').or_else(|| value.split_once(':'));
    let Some((host, ip)) = split else {
        bail!("--add-host {value:?}: write it as NAME:IP or NAME=IP, e.g. db.internal:10.0.0.5");
    };
    let host = host.trim();
    let ip = ip.trim();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '#') {
        bail!("--add-host {value:?}: {host:?} is not a host name");
    }
    if ip == "host-gateway" {
        bail!(
            "--add-host {value:?}: host-gateway is the address a docker daemon is configured with; rbuild has no daemon: give the address itself (RUN steps use the host's network, so 127.0.0.1 reaches the host)"
        );
    }
    let bare = ip.trim_start_matches('[').trim_end_matches(']');
    let Ok(addr) = bare.parse::<IpAddr>() else {
        bail!("--add-host {value:?}: {ip:?} is not an IP address");
    };
    Ok(HostEntry {
        host: host.to_string(),
        ip: addr.to_string(),
    })
}

/// `--ulimit NAME=SOFT[:HARD]`; `-1` or `unlimited` for no limit; HARD defaults to SOFT.
fn ulimit(value: &str) -> Result<Ulimit> {
    let Some((name, limits)) = value.split_once('=') else {
        bail!("--ulimit {value:?}: write it as NAME=SOFT[:HARD], e.g. nofile=1024:4096");
    };
    let Some(resource) = Resource::from_name(name.trim()) else {
        bail!(
            "--ulimit {value:?}: unknown resource {name:?} (docker's names: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)"
        );
    };
    let number = |s: &str| -> Result<u64> {
        match s.trim() {
            "-1" | "unlimited" => Ok(Rlimit::UNLIMITED),
            n => match n.parse::<u64>() {
                Ok(v) => Ok(v),
                Err(_) => bail!("--ulimit {value:?}: {n:?} is not a number (or -1 for no limit)"),
            },
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => {
            let v = number(limits)?;
            (v, v)
        }
    };
    if soft > hard {
        bail!("--ulimit {value:?}: the soft limit {soft} is above the hard limit {hard}");
    }
    Ok(Ulimit {
        name: resource.name().to_string(),
        soft,
        hard,
    })
}

/// `--shm-size` as docker reads it: a number with an optional binary unit (`b`, `k`,
/// `m`, `g`, `t`; `kb`, `mib`… too). `0` is the default size (`None`).
fn shm_size(value: &str) -> Result<Option<u64>> {
    let v = value.trim().to_ascii_lowercase();
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == ' ');
    let unit = v[digits.len()..].trim();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => bail!("--shm-size {value:?}: unknown unit {unit:?} (use b, k, m, g or t)"),
    };
    let Ok(n) = digits.parse::<f64>() else {
        bail!("--shm-size {value:?}: not a size; write e.g. 64m or 1g");
    };
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        bail!("--shm-size {value:?}: not a size; write e.g. 64m or 1g");
    }
    Ok(match bytes as u64 {
        0 => None,
        b => Some(b),
    })
}

/// `--cgroup-parent PATH`: relative to each cgroup hierarchy's root (a leading `/` is
/// allowed, as docker's); it may not climb out.
fn cgroup_parent(value: &str) -> Result<String> {
    let path = value.trim().trim_matches('/');
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("--cgroup-parent {value:?}: give a cgroup path such as rbuild-ci or ci/builds");
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_forms() {
        let h = add_host("db:10.0.0.5").unwrap();
        assert_eq!((h.host.as_str(), h.ip.as_str()), ("db", "10.0.0.5"));
        let h = add_host("v6=::1").unwrap();
        assert_eq!((h.host.as_str(), h.ip.as_str()), ("v6", "::1"));
        let h = add_host("v6:[fe80::1]").unwrap();
        assert_eq!(h.ip, "fe80::1");
        for bad in ["nohost", "db:nope", ":1.2.3.4", "a b:1.2.3.4"] {
            assert!(add_host(bad).is_err(), "{bad}");
        }
        let e = add_host("gw:host-gateway").unwrap_err().to_string();
        assert!(e.contains("host-gateway"), "{e}");
    }

    #[test]
    fn ulimit_forms() {
        let u = ulimit("nofile=512:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 512, 2048));
        let u = ulimit("NPROC=100").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nproc", 100, 100));
        assert_eq!(ulimit("core=-1").unwrap().hard, Rlimit::UNLIMITED);
        assert!(
            ulimit("nofile=10:5")
                .unwrap_err()
                .to_string()
                .contains("above the hard")
        );
        assert!(
            ulimit("files=1")
                .unwrap_err()
                .to_string()
                .contains("unknown resource")
        );
        assert!(ulimit("nofile").is_err() && ulimit("nofile=x").is_err());
        let flags = RunFlags {
            add_hosts: &[],
            ulimits: &["nofile=1".into(), "nofile=2".into()],
            shm_size: None,
            cgroup_parent: None,
        };
        assert_eq!(parse(&flags).unwrap().ulimits.len(), 1, "the last one wins");
    }

    #[test]
    fn shm_sizes_as_docker_reads_them() {
        assert_eq!(shm_size("128m").unwrap(), Some(128 << 20));
        assert_eq!(shm_size("1g").unwrap(), Some(1 << 30));
        assert_eq!(shm_size("1GiB").unwrap(), Some(1 << 30));
        assert_eq!(shm_size("64mb").unwrap(), Some(64 << 20));
        assert_eq!(shm_size("4096").unwrap(), Some(4096));
        assert_eq!(shm_size("1.5k").unwrap(), Some(1536));
        assert_eq!(shm_size("0").unwrap(), None);
        assert!(shm_size("lots").is_err() && shm_size("5x").is_err());
    }

    #[test]
    fn cgroup_parents() {
        assert_eq!(cgroup_parent("/ci/builds/").unwrap(), "ci/builds");
        assert!(cgroup_parent("../up").is_err() && cgroup_parent("/").is_err());
    }
}
