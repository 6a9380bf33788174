//! Output in kubectl's style: tables with upper-case headers and columns separated by three
//! spaces, ages like `45s`, `12m`, `3h`, `5d`, sizes like `4.0 KiB`, `<none>` for nothing.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// What an empty cell shows.
pub const NONE: &str = "<none>";

/// A table: every column padded to its widest cell plus three spaces, the last one not
/// padded; an empty cell shows `<none>`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<&str>> = std::iter::once(headers.to_vec())
        .chain(rows.iter().map(|row| {
            row.iter()
                .map(|c| if c.is_empty() { NONE } else { c.as_str() })
                .collect()
        }))
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = width - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Lines `Key:   value` with the values aligned, as `kubectl describe` writes them.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| {
            let value = if value.is_empty() { NONE } else { value };
            format!("{:<width$}  {value}\n", format!("{key}:"))
        })
        .collect()
}

/// A duration as kubectl shows ages: seconds up to two minutes, then minutes (with seconds
/// below ten minutes), hours (with minutes below eight hours), days (with hours below eight
/// days), years. Slightly negative (clock skew) is `0s`; more is `<invalid>`.
pub fn duration(d: TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    match () {
        _ if secs < 120 => format!("{secs}s"),
        _ if mins < 10 => with(mins, "m", secs % 60, "s"),
        _ if mins < 180 => format!("{mins}m"),
        _ if hours < 8 => with(hours, "h", mins % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if days < 8 => with(days, "d", hours % 24, "h"),
        _ if days < 365 * 2 => format!("{days}d"),
        _ if days < 365 * 8 => with(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// How long ago `then` was, at `now`.
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    duration(now - then)
}

/// A moment as RFC 3339 in UTC, to the second.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A byte count in binary units with one decimal: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes.unsigned_abs() < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 KiB would print as 1024.0 KiB: move up while it rounds to 1024.
    while value.abs() >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `a`, `a and b`, `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn tables_pad_columns_by_three_and_fill_empty_cells() {
        let rows = vec![
            vec!["shop-backup-12".into(), "1.0.0".into(), String::new()],
            vec!["b".into(), "10.2.3".into(), "last upgrade".into()],
        ];
        assert_eq!(
            table(&["ID", "VERSION", "PROTECTED BY"], &rows),
            "ID               VERSION   PROTECTED BY\n\
             shop-backup-12   1.0.0     <none>\n\
             b                10.2.3    last upgrade\n"
        );
        // Characters, not bytes, count for the width.
        let rows = vec![vec!["1.0 → 2.0".into(), "x".into()]];
        assert_eq!(table(&["A", "B"], &rows), "A           B\n1.0 → 2.0   x\n");
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("Name", "shop".into()), ("Current", String::new())]),
            "Name:     shop\nCurrent:  <none>\n"
        );
    }

    #[test]
    fn durations_read_like_kubectl_ages() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (599, "9m59s"),
            (600, "10m"),
            (12 * 60 + 30, "12m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (5 * 86_400 + 3 * 3600, "5d3h"),
            (8 * 86_400, "8d"),
            (729 * 86_400, "729d"),
            (800 * 86_400, "2y70d"),
            (3000 * 86_400, "8y"),
        ] {
            assert_eq!(duration(TimeDelta::seconds(secs)), want, "{secs}s");
        }
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        assert_eq!(age(t, t + TimeDelta::days(5)), "5d");
        assert_eq!(time(t), "2026-12-01T12:00:00Z");
    }

    #[test]
    fn sizes_in_binary_units() {
        for (bytes, want) in [
            (0, "0 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (4096, "4.0 KiB"),
            (1536, "1.5 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (5 * 1024 * 1024 * 1024 + 1024 * 1024 * 512, "5.5 GiB"),
            (i64::MAX, "8.0 EiB"),
        ] {
            assert_eq!(size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn lists_read_as_prose() {
        let items = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(and_list(&items(&[])), "");
        assert_eq!(and_list(&items(&["a"])), "a");
        assert_eq!(and_list(&items(&["a", "b"])), "a and b");
        assert_eq!(and_list(&items(&["a", "b", "c"])), "a, b and c");
    }
}
