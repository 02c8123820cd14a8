//! The raw command line before clap reads it, and words clap could not place. Docker users
//! put flags before the subcommand (`rbuild --no-cache build .`): [`hoist`] moves the
//! subcommand (and its nested subcommands: `image ls`, `buildx build`) in front of them, so
//! they are the subcommand's flags rather than lost.

use std::ffi::OsString;

/// Whether the flag spelled `word` (`--name`, or one short letter) takes a value, among
/// `cmd`'s arguments.
fn takes_value(cmd: &clap::Command, long: Option<&str>, short: Option<char>) -> bool {
    cmd.get_arguments().any(|a| {
        let named = match (long, short) {
            (Some(l), _) => {
                a.get_long() == Some(l) || a.get_all_aliases().is_some_and(|v| v.contains(&l))
            }
            (_, Some(s)) => a.get_short() == Some(s),
            _ => false,
        };
        // A flag whose value must follow `=` (`--pull[=BOOL]`) never takes the next word.
        named && a.get_action().takes_values() && !a.is_require_equals_set()
    })
}

/// `rbuild FLAGS… SUBCOMMAND [NESTED] REST…` → `rbuild SUBCOMMAND [NESTED] FLAGS… REST…`.
/// Left as it is when no subcommand comes before the first positional word (a context) or
/// `--`, or when a word is not UTF-8.
pub fn hoist(args: Vec<OsString>, cmd: &clap::Command) -> Vec<OsString> {
    let mut i = 1;
    let found = loop {
        let Some(word) = args.get(i).and_then(|a| a.to_str()) else {
            return args;
        };
        if word == "--" {
            return args;
        }
        if let Some(long) = word.strip_prefix("--") {
            if !long.contains('=') && takes_value(cmd, Some(long), None) {
                i += 1;
            }
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let letters: Vec<char> = shorts.chars().collect();
            if let Some(at) = letters
                .iter()
                .position(|c| takes_value(cmd, None, Some(*c)))
                && at + 1 == letters.len()
            {
                i += 1;
            }
        } else if cmd.find_subcommand(word).is_some() {
            break i;
        } else {
            return args;
        }
        i += 1;
    };
    if found == 1 {
        return args;
    }
    // The nested subcommands right after it (`image ls`).
    let mut end = found + 1;
    let mut sub = cmd.find_subcommand(args[found].to_str().unwrap_or_default());
    while let Some(s) = sub.filter(|s| s.has_subcommands()) {
        match args.get(end).and_then(|a| a.to_str()) {
            Some(w) if s.find_subcommand(w).is_some() => {
                sub = s.find_subcommand(w);
                end += 1;
            }
            _ => break,
        }
    }
    let mut out = vec![args[0].clone()];
    out.extend_from_slice(&args[found..end]);
    out.extend_from_slice(&args[1..found]);
    out.extend_from_slice(&args[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::lowargs::LowArgs;
    use clap::CommandFactory;

    fn hoisted(line: &str) -> String {
        let args = line.split(' ').map(OsString::from).collect();
        let out = hoist(args, &LowArgs::command());
        out.iter()
            .map(|a| a.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn flags_before_the_subcommand_follow_it() {
        assert_eq!(
            hoisted("rbuild --no-cache build ."),
            "rbuild build --no-cache ."
        );
        assert_eq!(
            hoisted("rbuild -t x:1 --root /r build -q ."),
            "rbuild build -t x:1 --root /r -q ."
        );
        assert_eq!(
            hoisted("rbuild --no-cache buildx build ."),
            "rbuild buildx build --no-cache ."
        );
        assert_eq!(hoisted("rbuild -q image ls"), "rbuild image ls -q");
        // A value that looks like a command stays a value; a context stops the search.
        assert_eq!(hoisted("rbuild -t build ."), "rbuild -t build .");
        assert_eq!(hoisted("rbuild --tag=x build"), "rbuild build --tag=x");
        assert_eq!(hoisted("rbuild -qt build ."), "rbuild -qt build .");
        assert_eq!(hoisted("rbuild ctx build"), "rbuild ctx build");
        assert_eq!(hoisted("rbuild build ."), "rbuild build .");
        // --pull[=BOOL] never takes the next word: `build` is the command.
        assert_eq!(hoisted("rbuild --pull build ."), "rbuild build --pull .");
        assert_eq!(hoisted("rbuild"), "rbuild");
    }
}
