//! `cargo fuzz run dockerignore`: the bytes before the first NUL as a `.dockerignore`,
//! the lines after it as context-relative paths. Compiling the patterns and matching the
//! paths must never panic, and the matcher must agree with itself: a path's verdict does
//! not depend on how it is spelled (`./a`, `a/`, `a//b`), the pattern list rbuild keeps in
//! the graph (`read_patterns`) compiles to the same verdicts as the file, and a directory
//! the context walk skips (`can_skip_dir`) holds nothing that is not excluded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_graph::dockerignore::{Patterns, read_patterns};

/// Paths checked per input; the skip check is quadratic in them.
const MAX_PATHS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let patterns = match Patterns::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let kept = Patterns::from_list(&read_patterns(&text)).expect("the kept list compiles again");
    let rest = String::from_utf8_lossy(rest);
    let paths: Vec<&str> = rest.split('\n').take(MAX_PATHS).collect();
    for p in &paths {
        let verdict = patterns.excluded(p);
        assert_eq!(kept.excluded(p), verdict, "kept list disagrees on {p:?}");
        for spelled in [format!("./{p}"), format!("{p}/"), p.replace('/', "//")] {
            if !p.is_empty() && !p.starts_with('/') {
                assert_eq!(patterns.excluded(&spelled), verdict, "{p:?} vs {spelled:?}");
            }
        }
        let _ = patterns.can_skip_dir(p);
    }
    // The context walk asks about relative paths; `..` could climb back out of a directory
    // and a leading `/` (cleaned away) would make `dir/below` a path beside it.
    let walkable =
        |p: &str| !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == "..");
    for dir in paths.iter().filter(|p| walkable(p)) {
        if !patterns.can_skip_dir(dir) {
            continue;
        }
        for below in paths.iter().filter(|p| walkable(p)) {
            let full = format!("{dir}/{below}");
            assert!(
                patterns.excluded(&full),
                "{dir:?} is skipped, yet {full:?} is not excluded (patterns {:?})",
                read_patterns(&text)
            );
        }
    }
});
