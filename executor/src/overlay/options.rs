//! The options rbuild mounts overlays with, in the two forms the kernel takes them: a
//! list of parameters for `fsconfig` (the new mount API), or one `key=value,…` string for
//! mount(2). In the string the lower, upper and work dirs are `/proc/self/fd/N` of O_PATH
//! descriptors: every path is ~17 bytes whatever the host path looks like (no escaping of
//! `:` or `,`), so about 200 layers fit in the one page of options mount(2) copies.

/// The kernel copies at most one page of mount(2) options.
pub(crate) const MAX_OPTIONS: usize = 4095;

/// The most lower layers one overlay takes, whatever the API (the kernel's
/// `OVL_MAX_STACK`).
pub const OVL_MAX_STACK: usize = 500;

/// One overlay parameter beside the layers: `key=value`, or a flag when there is no value.
pub(crate) type Param = (&'static str, Option<&'static str>);

/// Keeps the upper dir in plain overlay form (no redirect or metacopy xattrs a layer
/// differ would have to understand).
const STRICT: [Param; 3] = [
    ("index", Some("off")),
    ("redirect_dir", Some("off")),
    ("metacopy", Some("off")),
];

/// The parameter sets tried in turn, until the kernel takes one. `volatile` (Linux 5.10+)
/// skips the sync of the whole upper filesystem at unmount, which held up every step by
/// the time it took to write its upper dir (and anything else dirty on that filesystem)
/// to disk; the layer commit makes the upper dir durable instead, in the background
/// (`Store::commit_layer`). A `volatile` mount that did not end cleanly leaves a mark in
/// its workdir and the kernel refuses `volatile` on it again, hence the second set.
pub(crate) const VARIANTS: [&[Param]; 3] = [
    &[STRICT[0], STRICT[1], STRICT[2], ("volatile", None)],
    &STRICT,
    &[],
];

/// The mount(2) option string for layers at fd numbers `lower_top_first`, with the upper
/// and work dirs at `upper` and `work`, and `extra` (one of [`VARIANTS`]).
pub(crate) fn legacy_options(
    lower_top_first: &[i32],
    upper: i32,
    work: i32,
    extra: &[Param],
) -> String {
    let lowers: Vec<String> = lower_top_first
        .iter()
        .map(|fd| format!("/proc/self/fd/{fd}"))
        .collect();
    let mut s = format!(
        "lowerdir={},upperdir=/proc/self/fd/{upper},workdir=/proc/self/fd/{work}",
        lowers.join(":")
    );
    for (key, value) in extra {
        s.push(',');
        s.push_str(key);
        if let Some(v) = value {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

/// How many layers always fit in a mount(2) option string: fd numbers of up to four
/// digits, the longest parameter set.
pub(crate) fn legacy_max_lowers() -> usize {
    const FD: i32 = 9999;
    let fixed = legacy_options(&[], FD, FD, VARIANTS[0]).len();
    let per_layer = format!("/proc/self/fd/{FD}:").len();
    (MAX_OPTIONS - fixed) / per_layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_lowers_top_first_with_fd_paths() {
        assert_eq!(
            legacy_options(&[7, 5], 9, 10, &[]),
            "lowerdir=/proc/self/fd/7:/proc/self/fd/5,upperdir=/proc/self/fd/9,workdir=/proc/self/fd/10"
        );
        assert!(
            legacy_options(&[3], 4, 5, VARIANTS[0])
                .ends_with(",index=off,redirect_dir=off,metacopy=off,volatile")
        );
        // Strict first, with volatile, then without it, then plain.
        assert_eq!(VARIANTS[0][..3], STRICT);
        assert_eq!(VARIANTS[1], STRICT);
        assert!(VARIANTS[2].is_empty());
    }

    #[test]
    fn legacy_limit_fits_a_page_with_four_digit_fds() {
        let n = legacy_max_lowers();
        assert!((200..OVL_MAX_STACK).contains(&n), "{n}");
        let fds = vec![9999; n];
        assert!(legacy_options(&fds, 9999, 9999, VARIANTS[0]).len() <= MAX_OPTIONS);
        let fds = vec![9999; n + 1];
        assert!(legacy_options(&fds, 9999, 9999, VARIANTS[0]).len() > MAX_OPTIONS);
    }
}
