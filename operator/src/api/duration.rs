//! Durations in the spec are written the way Kubernetes users know them (`90s`, `15m`,
//! `1h30m`), the Go `time.ParseDuration` subset of whole hours, minutes and seconds. The CRD
//! checks the same syntax with a CEL rule; this parser lets the operator report a
//! readable error itself when a server did not (an API server without CEL, the simulator).

use std::time::Duration;

/// The syntax accepted for durations, for error messages.
pub const DURATION_HINT: &str = "a duration such as 90s, 15m or 1h30m";

/// Pattern of the accepted syntax, checked by the CRD's CEL rule as well.
pub const DURATION_PATTERN: &str = "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/// Pattern of ages (`backup.maxAge`): durations that may also count whole days, `30d`, `7d12h`.
/// Kept apart from [`DURATION_PATTERN`] because CEL's `duration()` knows no days.
pub const AGE_PATTERN: &str = "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/// The syntax accepted for ages, for error messages.
pub const AGE_HINT: &str = "an age such as 30d, 720h or 7d12h";

/// Parses an age: what [`parse`] accepts, optionally led by whole days (`30d`, `7d12h`). A
/// day is 24 hours.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let total = sum_units(text, &[('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)])
        .map_err(|_| format!("{text:?} is not {AGE_HINT}"))?;
    if total == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// Why [`sum_units`] refused a text.
enum UnitError {
    Malformed,
    NoUnit,
}

/// Sums `<number><unit>` groups, units in the order of `units`, each at most once.
fn sum_units(text: &str, units: &[(char, u64)]) -> Result<u64, UnitError> {
    if text.is_empty() {
        return Err(UnitError::Malformed);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut next_unit = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let Some(offset) = units[next_unit..].iter().position(|(u, _)| *u == c) else {
            return Err(UnitError::Malformed);
        };
        let factor = units[next_unit + offset].1;
        next_unit += offset + 1;
        let value: u64 = number.parse().map_err(|_| UnitError::Malformed)?;
        total = value
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or(UnitError::Malformed)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(UnitError::NoUnit);
    }
    Ok(total)
}

/// Parses `1h30m`, `15m`, `90s`, `2h`. Rejects zero, fractions, negative values, units other
/// than `h`, `m` and `s`, and units out of that order.
pub fn parse(text: &str) -> Result<Duration, String> {
    let total = sum_units(text, &[('h', 3600), ('m', 60), ('s', 1)]).map_err(|e| match e {
        UnitError::NoUnit => format!("{text:?} has a number without a unit; write {DURATION_HINT}"),
        UnitError::Malformed => format!("{text:?} is not {DURATION_HINT}"),
    })?;
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

    #[test]
    fn ages_count_days_too() {
        for (text, secs) in [
            ("30d", 30 * 86_400),
            ("720h", 720 * 3600),
            ("7d12h", 7 * 86_400 + 12 * 3600),
            ("1d0h", 86_400),
            ("90s", 90),
        ] {
            assert_eq!(parse_age(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for text in [
            "", "d", "0d", "1.5d", "-1d", "1h1d", "1dd", "1d1d", "30", "1w", "0d0h",
        ] {
            assert!(parse_age(text).is_err(), "{text:?} accepted");
        }
    }
}
