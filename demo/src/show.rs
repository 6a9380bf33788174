//! Printing: titles, lines, tables.

/// A section title.
pub fn title(text: &str) {
    println!("\n== {text}");
}

/// An indented line.
pub fn line(text: &str) {
    println!("   {text}");
}

/// Rows aligned in columns, the way kubectl prints them.
pub fn table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        line(cells.join("   ").trim_end());
    }
}
