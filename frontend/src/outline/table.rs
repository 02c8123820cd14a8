//! Columns aligned the way buildx prints its outline and target lists (Go's tabwriter with
//! a minimum padding): every column but the last as wide as its widest cell plus the
//! padding. Trailing blanks are dropped.

/// `rows` (the first being the header) as aligned lines, each ending in a newline.
pub(super) fn render(rows: &[Vec<String>], padding: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + padding;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn aligns_all_but_the_last_column() {
        let rows = vec![
            vec![
                "BUILD ARG".to_string(),
                "VALUE".into(),
                "DESCRIPTION".into(),
            ],
            vec!["A".into(), "1".into(), "".into()],
            vec!["LONGER_NAME".into(), "".into(), "what it is".into()],
        ];
        assert_eq!(
            render(&rows, 3),
            "BUILD ARG     VALUE   DESCRIPTION\nA             1\nLONGER_NAME           what it is\n"
        );
    }
}
