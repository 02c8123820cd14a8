//! The terminal view's words and limits: BuildKit's header (`[+] Building 8.2s (7/7)`),
//! lines cut to the terminal's width, colours (blue for finished steps, red for errors,
//! yellow for warnings) unless `NO_COLOR` is set or `TERM=dumb`, and how many running steps fit.

use std::time::Duration;

/// The terminal's (columns, rows) on stderr, when stderr is one.
pub fn size() -> Option<(usize, usize)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct it is given, nothing else.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some((usize::from(ws.ws_col), usize::from(ws.ws_row)))
}

/// `line` cut to `width` characters (an ellipsis marks the cut).
pub fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width || width == 0 {
        return line.to_string();
    }
    let mut out: String = line.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// BuildKit's header: elapsed seconds, steps finished of those seen, and the state at
/// the end (`FINISHED`, `ERROR`).
pub fn header(elapsed: Duration, finished: usize, seen: usize, end: Option<&str>) -> String {
    let mut h = format!(
        "[+] Building {:.1}s ({finished}/{seen})",
        elapsed.as_secs_f64()
    );
    if let Some(e) = end {
        h.push(' ');
        h.push_str(e);
    }
    h
}

/// How a line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Finished,
    Error,
    Warning,
}

/// `text` in `tone`'s colour, unless `plain` (NO_COLOR).
pub fn paint(text: &str, tone: Tone, plain: bool) -> String {
    if plain {
        return text.to_string();
    }
    let code = match tone {
        Tone::Finished => 34,
        Tone::Error => 31,
        Tone::Warning => 33,
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Whether colours are off: `NO_COLOR` set to anything but empty, or `TERM=dumb` (a
/// terminal that says it has no escape sequences).
pub fn no_color() -> bool {
    colorless(std::env::var_os("NO_COLOR"), std::env::var_os("TERM"))
}

fn colorless(no_color: Option<std::ffi::OsString>, term: Option<std::ffi::OsString>) -> bool {
    no_color.is_some_and(|v| !v.is_empty()) || term.is_some_and(|t| t == "dumb")
}

/// How many running steps get a line of their own in `rows` (the header and one line of
/// room stay): the rest are counted on one line.
pub fn running_lines(rows: usize) -> usize {
    rows.saturating_sub(3).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_limits() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(
            header(Duration::from_millis(8240), 7, 7, Some("FINISHED")),
            "[+] Building 8.2s (7/7) FINISHED"
        );
        assert_eq!(
            header(Duration::ZERO, 0, 2, None),
            "[+] Building 0.0s (0/2)"
        );
        assert_eq!(paint("x", Tone::Error, false), "\x1b[31mx\x1b[0m");
        assert_eq!(paint("x", Tone::Error, true), "x");
        assert_eq!(running_lines(10), 7);
        assert_eq!(running_lines(2), 1);
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert!(colorless(os("1"), os("xterm")));
        assert!(colorless(None, os("dumb")));
        assert!(!colorless(os(""), os("xterm-256color")));
        assert!(!colorless(None, None));
    }
}
