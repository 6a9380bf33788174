//! The fields of a maintenance window, parsed: the cron schedule (croner, five fields as in
//! crontab and Kubernetes CronJobs), the duration, and the IANA time zone (chrono-tz, whose
//! database is compiled in). `validate` reports what fails here; the planner's
//! `plan::window` does the time arithmetic with what succeeds.

use std::str::FromStr as _;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::duration;
use super::spec::MaintenanceWindow;

/// A window ready for arithmetic.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// When it opens.
    pub cron: Cron,
    /// How long it stays open (elapsed time, longer than zero).
    pub duration: TimeDelta,
    /// The zone `cron` is read in.
    pub zone: Tz,
}

/// One field of a window that does not parse: its name (`schedule`, `duration`, `timeZone`)
/// and what is wrong with it.
pub type FieldProblem = (&'static str, String);

/// Parses every field of `window`, reporting each one that is wrong.
pub fn parse(window: &MaintenanceWindow) -> Result<Schedule, Vec<FieldProblem>> {
    let cron = cron(&window.schedule).map_err(|m| ("schedule", m));
    let length = duration::parse(&window.duration)
        .map_err(|m| ("duration", m))
        .and_then(|d| {
            TimeDelta::from_std(d)
                .map_err(|_| ("duration", format!("{:?} is too long", window.duration)))
        });
    let zone = zone(&window.time_zone).map_err(|m| ("timeZone", m));
    match (cron, length, zone) {
        (Ok(cron), Ok(duration), Ok(zone)) => Ok(Schedule {
            cron,
            duration,
            zone,
        }),
        (cron, length, zone) => Err([cron.err(), length.err(), zone.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

/// A five-field cron schedule that fires at some time.
fn cron(text: &str) -> Result<Cron, String> {
    const FORM: &str =
        "five fields, minute hour day-of-month month day-of-week, such as \"0 4 * * *\"";
    if text.trim_start().starts_with("CRON_TZ=") || text.trim_start().starts_with("TZ=") {
        return Err(format!(
            "{text:?} names a time zone in the schedule: set timeZone instead and write {FORM}"
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(text)
        .map_err(|e| format!("{text:?} is not a cron schedule ({e}); write {FORM}"))?;
    // A pattern of five fields repeats within a few years (29 February: eight at most), so
    // one that finds no time from an arbitrary start never fires at all (31 April).
    let start = DateTime::<Utc>::UNIX_EPOCH;
    if cron.find_next_occurrence(&start, false).is_err() {
        return Err(format!("{text:?} never fires: no date matches it"));
    }
    Ok(cron)
}

/// A zone of the IANA database, by its exact name.
fn zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        let hint = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|z| z.name().eq_ignore_ascii_case(name))
            .map(|z| format!("; did you mean {}?", z.name()))
            .unwrap_or_default();
        format!(
            "{name:?} is not a time zone of the IANA database: write a name such as Europe/Berlin, America/New_York or UTC{hint}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(schedule: &str, duration: &str, zone: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: zone.into(),
        }
    }

    fn problems(w: &MaintenanceWindow) -> Vec<FieldProblem> {
        parse(w).err().unwrap_or_default()
    }

    #[test]
    fn parses_the_usual_forms() {
        for schedule in [
            "0 4 * * *",
            "30 22 * * FRI",
            "0 3 * * 0",
            "*/15 1-4 * * *",
            "0 2 1 * *",
            "@daily",
            "@weekly",
        ] {
            let parsed = parse(&window(schedule, "2h", "Europe/Berlin"));
            assert!(parsed.is_ok(), "{schedule}: {parsed:?}");
        }
        let parsed = parse(&window("0 4 * * *", "1h30m", "UTC")).unwrap();
        assert_eq!(parsed.duration, TimeDelta::minutes(90));
        assert_eq!(parsed.zone, Tz::UTC);
    }

    #[test]
    fn says_what_is_wrong_with_each_field() {
        let all = problems(&window("0 4 * *", "2 hours", "Berlin"));
        let fields: Vec<&str> = all.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["schedule", "duration", "timeZone"]);
        assert!(all[0].1.contains("is not a cron schedule"), "{}", all[0].1);
        assert!(all[0].1.contains("five fields"), "{}", all[0].1);
        assert!(
            all[1].1.contains("is not a duration such as 90s"),
            "{}",
            all[1].1
        );
        assert!(all[2].1.contains("is not a time zone of the IANA database"));
    }

    #[test]
    fn refuses_seconds_years_and_out_of_range_values() {
        for schedule in [
            "0 0 4 * * *",
            "0 4 * * * 2027",
            "61 4 * * *",
            "0 24 * * *",
            "",
        ] {
            let p = problems(&window(schedule, "1h", "UTC"));
            assert_eq!(p.len(), 1, "{schedule:?}: {p:?}");
            assert_eq!(p[0].0, "schedule");
        }
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused() {
        let p = problems(&window("0 4 31 4 *", "1h", "UTC"));
        assert_eq!(
            p,
            [(
                "schedule",
                "\"0 4 31 4 *\" never fires: no date matches it".to_string()
            )]
        );
        // 29 February does fire, every four years.
        assert!(parse(&window("0 4 29 2 *", "1h", "UTC")).is_ok());
    }

    #[test]
    fn a_zone_in_the_schedule_points_to_time_zone() {
        let p = problems(&window("CRON_TZ=Europe/Berlin 0 4 * * *", "1h", "UTC"));
        assert!(p[0].1.contains("set timeZone instead"), "{p:?}");
    }

    #[test]
    fn zones_are_exact_iana_names_with_a_hint_for_the_case() {
        let p = problems(&window("0 4 * * *", "1h", "europe/berlin"));
        assert!(p[0].1.ends_with("did you mean Europe/Berlin?"), "{p:?}");
        let p = problems(&window("0 4 * * *", "1h", "CEST"));
        assert_eq!(p[0].0, "timeZone");
        assert!(parse(&window("0 4 * * *", "1h", "Asia/Kolkata")).is_ok());
    }

    #[test]
    fn zero_durations_are_refused() {
        let p = problems(&window("0 4 * * *", "0s", "UTC"));
        assert_eq!(p[0].0, "duration");
        assert!(p[0].1.contains("longer than zero"));
    }
}
