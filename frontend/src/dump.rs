//! BuildKit's AST dump format: one `(keyword ["--flag"] "arg" ...)` line per
//! instruction, strings quoted like Go's `%q`.

use std::fmt::Write;

use crate::ast::{Dockerfile, Node};

/// Renders `df` as BuildKit's parser dump, one line per instruction, ending with a newline.
pub fn dump(df: &Dockerfile) -> String {
    let mut out = String::new();
    for node in &df.nodes {
        out.push('(');
        dump_node(node, &mut out);
        out.push_str(")\n");
    }
    out
}

fn dump_node(node: &Node, out: &mut String) {
    out.push_str(&node.keyword);
    if !node.flags.is_empty() {
        out.push_str(" [");
        for (i, f) in node.flags.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&quote(f));
        }
        out.push(']');
    }
    if let Some(inner) = &node.inner {
        out.push_str(" (");
        dump_node(inner, out);
        out.push(')');
    }
    for a in &node.args {
        out.push(' ');
        out.push_str(&quote(a));
    }
}

/// Go's `strconv.Quote`: printable characters as they are, the rest escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_printable(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space): controls, non-ASCII spaces,
/// format characters, private-use and non-characters are not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
    let nonchar = matches!(u, 0xFDD0..=0xFDEF) || (u & 0xFFFE) == 0xFFFE;
    !(format || private || nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            quote("\u{0} \u{8} \u{c} \n \r \t \u{b} \u{7} \u{1b} \u{7f}"),
            r#""\x00 \b \f \n \r \t \v \a \x1b \x7f""#
        );
        assert_eq!(quote("♥ ☃ é"), "\"♥ ☃ é\"");
        assert_eq!(
            quote("\u{a0}\u{85}\u{200b}\u{feff}"),
            r#""\u00a0\u0085\u200b\ufeff""#
        );
        assert_eq!(quote("\u{f0000}"), r#""\U000f0000""#);
    }
}
