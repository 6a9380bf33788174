//! Durations in the spec are written the way Kubernetes users know them (`90s`, `15m`,
//! `1h30m`), the Go `time.ParseDuration` subset of whole hours, minutes and seconds. The CRD
//! checks the same syntax with a CEL rule; this parser lets the operator report a
//! readable error itself when a server did not (an API server without CEL, the simulator).

use std::time::Duration;

/// The syntax accepted for durations, for error messages.
pub const DURATION_HINT: &str = "a duration such as 90s, 15m or 1h30m";

/// Pattern of the accepted syntax, checked by the CRD's CEL rule as well.
pub const DURATION_PATTERN: &str = "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/// Parses `1h30m`, `15m`, `90s`, `2h`. Rejects zero, fractions, negative values, units other
/// than `h`, `m` and `s`, and units out of that order.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not {DURATION_HINT}");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    // Units must come in the order h, m, s, each at most once, as the CRD's pattern requires.
    let mut last_unit = u64::MAX;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        if unit >= last_unit {
            return Err(invalid());
        }
        last_unit = unit;
        let value: u64 = number.parse().map_err(|_| invalid())?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(invalid)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "{text:?} has a number without a unit; write {DURATION_HINT}"
        ));
    }
    if total == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hours_minutes_seconds() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("1h30m", 5400),
            ("2h", 7200),
            ("1h1m1s", 3661),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_and_zero() {
        for text in [
            "", "15", "m", "1.5h", "-5m", "10ms", "1d", "0s", "0h0m", "5 m", "1m1h", "1m1m",
        ] {
            assert!(parse(text).is_err(), "{text:?} accepted");
        }
        assert!(parse("15").unwrap_err().contains("without a unit"));
    }
}
