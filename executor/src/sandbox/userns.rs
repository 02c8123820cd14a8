//! Whether rbuild runs in a user namespace of its own (rootless mode, entered by the
//! CLI), read from `/proc/self/uid_map`: the initial namespace maps every ID to itself.
//! What differs there: no cgroups (an unprivileged user cannot create them), and only
//! the mapped IDs can own files.

/// True inside a user namespace other than the initial one.
pub(super) fn rootless() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| !is_initial(&map))
}

/// True when this process's user namespace forbids `setgroups` (what is written to let an
/// unprivileged user map its own gid).
pub(super) fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// The initial namespace's map: one line, `0 0 4294967295`.
fn is_initial(uid_map: &str) -> bool {
    let lines: Vec<Vec<&str>> = uid_map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    matches!(lines.as_slice(), [one] if one.as_slice() == ["0", "0", "4294967295"])
}

/// The note a rootless build gives once instead of making each RUN's cgroup.
pub(super) fn no_cgroup_note(pids_limit: Option<u64>) -> String {
    let pids = match pids_limit {
        Some(n) => format!("not limited to {n} processes"),
        None => "not counted".to_string(),
    };
    format!(
        "rootless: RUN steps get no cgroup (an unprivileged user cannot create one): their processes are {pids} and their memory is not measured"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps() {
        assert!(is_initial("         0          0 4294967295\n"));
        assert!(!is_initial("         0       1000          1\n"));
        assert!(!is_initial("0 1000 1\n1 100000 65536\n"));
        assert!(no_cgroup_note(Some(4096)).contains("not limited to 4096 processes"));
    }
}
