//! Maintenance windows (`spec.maintenanceWindows`): whether one is open at a given moment and,
//! if none is, when the next one opens. A window opens at each time its cron schedule fires,
//! read in its time zone, and stays open for its duration of elapsed time: it is the
//! half-open interval `[opening, opening + duration)`. Windows only gate the START of an
//! upgrade (`holds`, called by `idle::settle` just before an upgrade would start, and `open`,
//! asked before a newer version is chained onto an upgrade in flight); an upgrade in flight
//! is otherwise never held, so a window closing under it changes nothing — it finishes or
//! rolls back, as stopping halfway would leave the targets on mixed versions.
//!
//! Daylight-saving changes follow croner, which follows Vixie cron:
//! - a time the clock skips (02:30 on the night Europe/Berlin springs from 02:00 to 03:00)
//!   opens that day's window at the first moment after the jump, 03:00, for the full
//!   duration: the window is late, not lost;
//! - a time the clock repeats (02:30 on the night it falls back from 03:00 to 02:00) opens
//!   the window once, at the first 02:30: one window a day, as the user wrote;
//! - schedules that fire every hour or minute (`0 * * * *`) fire at each real hour, so they
//!   skip the missing hour and fire in both passes of the repeated one;
//! - a duration is elapsed time: a 2h window opening at 01:00 on the spring-forward night
//!   closes at 04:00 on the wall clock, two real hours later.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::api::MaintenanceWindow;
use crate::api::schedule::{self, Schedule};

use super::decision::{NoteType, Planner};

/// The reason of Ready while a new upgrade waits for a window.
pub const AWAITING_WINDOW: &str = "AwaitingWindow";

/// Whether an upgrade may start at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// A window is open. Of the windows open, `window` (an index into the list) closes last,
    /// at `closes_at`.
    Open {
        /// When that window closes (a window opening at that very moment is a new one).
        closes_at: DateTime<Utc>,
        /// Index of the window in `spec.maintenanceWindows`.
        window: usize,
    },
    /// No window is open; `window` opens first, at `opens_at` (after the moment asked about).
    Closed {
        /// When it opens.
        opens_at: DateTime<Utc>,
        /// Index of the window in `spec.maintenanceWindows`.
        window: usize,
    },
}

/// The gate at `now`, or None when there are no windows (upgrades start at any time). An
/// error names a window that does not parse (validation reports those first) or says that
/// no window ever opens again.
pub fn gate(windows: &[MaintenanceWindow], now: DateTime<Utc>) -> Result<Option<Gate>, String> {
    if windows.is_empty() {
        return Ok(None);
    }
    let schedules = windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            schedule::parse(w).map_err(|problems| {
                let problems: Vec<String> = problems
                    .into_iter()
                    .map(|(field, message)| {
                        format!("spec.maintenanceWindows[{i}].{field}: {message}")
                    })
                    .collect();
                problems.join("; ")
            })
        })
        .collect::<Result<Vec<Schedule>, String>>()?;
    let mut open: Option<(DateTime<Utc>, usize)> = None;
    let mut next: Option<(DateTime<Utc>, usize)> = None;
    for (i, s) in schedules.iter().enumerate() {
        let local = now.with_timezone(&s.zone);
        // Every opening of a window lasts as long, so the latest one at or before `now`
        // is the one that closes last.
        if let Ok(opened) = s.cron.find_previous_occurrence(&local, true) {
            let closes_at = opened.with_timezone(&Utc) + s.duration;
            if closes_at > now && open.is_none_or(|(c, _)| closes_at > c) {
                open = Some((closes_at, i));
            }
        }
        if let Ok(opens) = s.cron.find_next_occurrence(&local, false) {
            let opens_at = opens.with_timezone(&Utc);
            if next.is_none_or(|(o, _)| opens_at < o) {
                next = Some((opens_at, i));
            }
        }
    }
    match (open, next) {
        (Some((closes_at, window)), _) => Ok(Some(Gate::Open { closes_at, window })),
        (None, Some((opens_at, window))) => Ok(Some(Gate::Closed { opens_at, window })),
        (None, None) => Err("no maintenance window opens again".into()),
    }
}

/// `at` in the window's own zone, RFC 3339, with the zone's name: `2026-12-02T04:00:00+01:00
/// (Europe/Berlin)`.
pub fn local_time(at: DateTime<Utc>, window: &MaintenanceWindow) -> String {
    let zone = schedule::parse(window).map_or(chrono_tz::Tz::UTC, |s| s.zone);
    format!(
        "{} ({})",
        at.with_timezone(&zone)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        zone.name()
    )
}

/// Whether a chained upgrade (a new `spec.version` while one is in flight) may start now:
/// no windows, or one is open. When not, the upgrade in flight goes on to its own version,
/// and the newer one then waits for a window like any other (`holds`).
pub fn open(plan: &Planner) -> bool {
    matches!(
        gate(&plan.spec.maintenance_windows, plan.now()),
        Ok(None | Some(Gate::Open { .. }))
    )
}

/// Whether the upgrade to `spec.version`, about to start, must wait for a maintenance window.
/// When it must: Ready False with reason AwaitingWindow and a message saying when the next
/// window opens, `status.nextWindow` set to that moment, an Event when this is news, and a
/// requeue for exactly that moment. When a window is open, a Normal Event says until when.
pub fn holds(plan: &mut Planner) -> bool {
    let now = plan.now();
    let gate = match gate(&plan.spec.maintenance_windows, now) {
        Ok(None) => return false,
        Ok(Some(gate)) => gate,
        Err(message) => {
            plan.blocked(
                "InvalidSpec",
                &format!("the spec is invalid, nothing was changed: {message}"),
            );
            return true;
        }
    };
    let version = plan.spec.version.clone();
    match gate {
        Gate::Open { closes_at, window } => {
            let closes = local_time(closes_at, &plan.spec.maintenance_windows[window]);
            plan.note(
                NoteType::Normal,
                "WindowOpen",
                format!(
                    "the maintenance window is open until {closes}: the upgrade to {version} starts; if it runs longer, it still finishes or rolls back"
                ),
            );
            false
        }
        Gate::Closed { opens_at, window } => {
            let w = &plan.spec.maintenance_windows[window];
            let message = format!(
                "the upgrade to {version} waits for the next maintenance window, which opens at {} (schedule {:?}, open for {}); nothing was changed",
                local_time(opens_at, w),
                w.schedule,
                w.duration
            );
            plan.waiting(AWAITING_WINDOW, &message);
            plan.status.next_window = Some(opens_at);
            // `opens_at` is after `now`, so this is positive; the controller schedules it
            // after this reconcile's writes, so it never fires before the window opens.
            plan.requeue_until(
                (opens_at - now)
                    .to_std()
                    .unwrap_or(super::decision::MIN_REQUEUE),
            );
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use chrono_tz::Tz;

    use super::*;

    fn window(schedule: &str, duration: &str, zone: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: zone.into(),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// A wall-clock time in `zone` that exists exactly once.
    fn local(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("an unambiguous local time")
            .with_timezone(&Utc)
    }

    fn open(closes_at: DateTime<Utc>) -> Option<Gate> {
        Some(Gate::Open {
            closes_at,
            window: 0,
        })
    }

    fn closed(opens_at: DateTime<Utc>) -> Option<Gate> {
        Some(Gate::Closed {
            opens_at,
            window: 0,
        })
    }

    fn at(windows: &[MaintenanceWindow], now: DateTime<Utc>) -> Option<Gate> {
        gate(windows, now).expect("valid windows")
    }

    #[test]
    fn no_windows_means_no_gate() {
        assert_eq!(gate(&[], utc(2026, 11, 21, 12, 0)), Ok(None));
    }

    /// Daily 04:00–06:00 UTC: the rows of a day, the boundaries included (the interval is
    /// half-open: open at 04:00:00, closed again at 06:00:00).
    #[test]
    fn a_daily_window() {
        let w = [window("0 4 * * *", "2h", "UTC")];
        let day = |h, m| utc(2026, 11, 21, h, m);
        let rows = [
            (day(3, 59), closed(day(4, 0))),
            (day(4, 0), open(day(6, 0))),
            (day(5, 59), open(day(6, 0))),
            (day(6, 0), closed(utc(2026, 11, 22, 4, 0))),
            (day(12, 0), closed(utc(2026, 11, 22, 4, 0))),
        ];
        for (now, expected) in rows {
            assert_eq!(at(&w, now), expected, "at {now}");
        }
        // One second before the opening, and a moment with sub-second digits inside it.
        let just_before = day(4, 0) - chrono::TimeDelta::seconds(1);
        assert_eq!(at(&w, just_before), closed(day(4, 0)));
        let inside = day(4, 0) + chrono::TimeDelta::milliseconds(1500);
        assert_eq!(at(&w, inside), open(day(6, 0)));
    }

    /// 23:00 for 3h: a window that opened yesterday is still open after midnight.
    #[test]
    fn a_window_spanning_midnight() {
        let w = [window("0 23 * * *", "3h", "UTC")];
        assert_eq!(
            at(&w, utc(2026, 11, 22, 1, 30)),
            open(utc(2026, 11, 22, 2, 0))
        );
        assert_eq!(
            at(&w, utc(2026, 11, 21, 23, 0)),
            open(utc(2026, 11, 22, 2, 0))
        );
        assert_eq!(
            at(&w, utc(2026, 11, 22, 2, 0)),
            closed(utc(2026, 11, 22, 23, 0))
        );
    }

    /// Sundays 03:00 for 4h; 2026-11-22 is a Sunday.
    #[test]
    fn a_weekly_window() {
        let w = [window("0 3 * * SUN", "4h", "UTC")];
        assert_eq!(
            at(&w, utc(2026, 11, 21, 12, 0)),
            closed(utc(2026, 11, 22, 3, 0))
        );
        assert_eq!(
            at(&w, utc(2026, 11, 22, 6, 59)),
            open(utc(2026, 11, 22, 7, 0))
        );
        assert_eq!(
            at(&w, utc(2026, 11, 22, 7, 0)),
            closed(utc(2026, 11, 29, 3, 0))
        );
        // `0` is Sunday too, and a weekday name is the same schedule.
        let w0 = [window("0 3 * * 0", "4h", "UTC")];
        assert_eq!(
            at(&w0, utc(2026, 11, 23, 0, 0)),
            closed(utc(2026, 11, 29, 3, 0))
        );
    }

    /// Of several windows, any open one opens the gate (the one closing last is named), and
    /// the first to open is named while all are closed.
    #[test]
    fn several_windows() {
        let w = [
            window("0 4 * * *", "1h", "UTC"),
            window("30 4 * * SAT", "3h", "UTC"),
            window("0 22 * * *", "30m", "UTC"),
        ];
        // Saturday 2026-11-21.
        assert_eq!(
            at(&w, utc(2026, 11, 21, 4, 45)),
            Some(Gate::Open {
                closes_at: utc(2026, 11, 21, 7, 30),
                window: 1
            })
        );
        assert_eq!(
            at(&w, utc(2026, 11, 21, 8, 0)),
            Some(Gate::Closed {
                opens_at: utc(2026, 11, 21, 22, 0),
                window: 2
            })
        );
        assert_eq!(
            at(&w, utc(2026, 11, 21, 22, 30)),
            Some(Gate::Closed {
                opens_at: utc(2026, 11, 22, 4, 0),
                window: 0
            })
        );
        // Sunday: the Saturday window is closed, the daily one opens and closes as usual.
        assert_eq!(
            at(&w, utc(2026, 11, 22, 5, 0)),
            Some(Gate::Closed {
                opens_at: utc(2026, 11, 22, 22, 0),
                window: 2
            })
        );
    }

    /// The same schedule means different moments in different zones: 04:00 in Berlin is 03:00
    /// UTC in winter and 02:00 UTC in summer; in Kolkata (+05:30) 22:30 UTC the day before.
    #[test]
    fn schedules_are_read_in_their_time_zone() {
        let berlin = [window("0 4 * * *", "2h", "Europe/Berlin")];
        assert_eq!(
            at(&berlin, utc(2026, 11, 21, 2, 0)),
            closed(utc(2026, 11, 21, 3, 0))
        );
        assert_eq!(
            at(&berlin, utc(2026, 7, 1, 1, 0)),
            closed(utc(2026, 7, 1, 2, 0))
        );
        assert_eq!(
            at(&berlin, utc(2026, 7, 1, 3, 59)),
            open(utc(2026, 7, 1, 4, 0))
        );
        let kolkata = [window("0 4 * * *", "1h", "Asia/Kolkata")];
        assert_eq!(
            at(&kolkata, utc(2026, 11, 21, 12, 0)),
            closed(utc(2026, 11, 21, 22, 30))
        );
        let new_york = [window("0 4 * * *", "1h", "America/New_York")];
        assert_eq!(
            at(&new_york, utc(2026, 11, 21, 9, 30)),
            open(utc(2026, 11, 21, 10, 0))
        );
    }

    /// Spring forward: on 2026-03-29 Europe/Berlin goes from 02:00 CET straight to 03:00 CEST,
    /// so 02:30 does not exist that night. The window opens at the first moment after the
    /// jump, 03:00 CEST (01:00 UTC), and stays open its full hour: late, not lost. The days
    /// around it open at 02:30 local as usual.
    #[test]
    fn a_window_in_the_spring_forward_gap_opens_after_the_jump() {
        let berlin = chrono_tz::Europe::Berlin;
        let w = [window("30 2 * * *", "1h", "Europe/Berlin")];
        let before = local(berlin, 2026, 3, 28, 12, 0);
        assert_eq!(at(&w, before), closed(utc(2026, 3, 29, 1, 0)));
        assert_eq!(utc(2026, 3, 29, 1, 0), local(berlin, 2026, 3, 29, 3, 0));
        assert_eq!(at(&w, utc(2026, 3, 29, 1, 0)), open(utc(2026, 3, 29, 2, 0)));
        assert_eq!(
            at(&w, local(berlin, 2026, 3, 29, 3, 59)),
            open(utc(2026, 3, 29, 2, 0))
        );
        assert_eq!(
            at(&w, local(berlin, 2026, 3, 29, 4, 0)),
            closed(local(berlin, 2026, 3, 30, 2, 30))
        );
        // The day before, 02:30 CET is 01:30 UTC; the day after, 02:30 CEST is 00:30 UTC.
        assert_eq!(
            at(&w, utc(2026, 3, 28, 1, 30)),
            open(utc(2026, 3, 28, 2, 30))
        );
        assert_eq!(
            at(&w, utc(2026, 3, 30, 0, 30)),
            open(utc(2026, 3, 30, 1, 30))
        );
    }

    /// Fall back: on 2026-10-25 Europe/Berlin goes from 03:00 CEST back to 02:00 CET, so
    /// 02:30 happens twice (00:30 UTC and 01:30 UTC). The window opens once, at the first
    /// 02:30 (CEST), like cron: during the second 02:30 it is closed again (a 45 minute
    /// window) and the next one is the 26th's.
    #[test]
    fn a_window_in_the_fall_back_overlap_opens_once() {
        let w = [window("30 2 * * *", "45m", "Europe/Berlin")];
        assert_eq!(
            at(&w, utc(2026, 10, 25, 0, 0)),
            closed(utc(2026, 10, 25, 0, 30))
        );
        assert_eq!(
            at(&w, utc(2026, 10, 25, 0, 30)),
            open(utc(2026, 10, 25, 1, 15))
        );
        // 01:45 UTC is 02:45 CET, the second pass: closed, the next opening is tomorrow's
        // 02:30 CET.
        let next = local(chrono_tz::Europe::Berlin, 2026, 10, 26, 2, 30);
        assert_eq!(next, utc(2026, 10, 26, 1, 30));
        assert_eq!(at(&w, utc(2026, 10, 25, 1, 30)), closed(next));
        assert_eq!(at(&w, utc(2026, 10, 25, 1, 45)), closed(next));
        // A window long enough to cover the repeated hour stays open through both passes.
        let long = [window("30 2 * * *", "2h", "Europe/Berlin")];
        assert_eq!(
            at(&long, utc(2026, 10, 25, 1, 45)),
            open(utc(2026, 10, 25, 2, 30))
        );
    }

    /// A duration is elapsed time, also across a change: 01:00 CET + 2h on the spring-forward
    /// night closes at 04:00 CEST on the wall clock; on the fall-back night at 02:00 CET.
    #[test]
    fn durations_are_elapsed_time_across_a_change() {
        let berlin = chrono_tz::Europe::Berlin;
        let w = [window("0 1 * * *", "2h", "Europe/Berlin")];
        let spring = at(&w, local(berlin, 2026, 3, 29, 1, 30));
        assert_eq!(spring, open(local(berlin, 2026, 3, 29, 4, 0)));
        assert_eq!(spring, open(utc(2026, 3, 29, 2, 0)));
        let fall = at(&w, utc(2026, 10, 25, 0, 30));
        // 01:00 CEST is 23:00 UTC on the 24th; two hours later is 01:00 UTC = 02:00 CET.
        assert_eq!(fall, open(utc(2026, 10, 25, 1, 0)));
        assert_eq!(
            NaiveDate::from_ymd_opt(2026, 10, 25)
                .unwrap()
                .and_hms_opt(2, 0, 0)
                .unwrap()
                .and_local_timezone(berlin)
                .latest()
                .unwrap()
                .with_timezone(&Utc),
            utc(2026, 10, 25, 1, 0)
        );
    }

    /// An hourly schedule open for an hour is open at every moment, also through both
    /// changes of the year: it fires at every real hour, skipping the missing one and firing
    /// in both passes of the repeated one. (The e2e scenario uses it as "open now".)
    #[test]
    fn an_hourly_window_of_an_hour_is_always_open() {
        let w = [window("0 * * * *", "1h", "Europe/Berlin")];
        let mut now = utc(2026, 3, 28, 22, 0);
        while now < utc(2026, 3, 29, 4, 0) {
            assert!(
                matches!(at(&w, now), Some(Gate::Open { .. })),
                "closed at {now}"
            );
            now += chrono::TimeDelta::minutes(7);
        }
        let mut now = utc(2026, 10, 24, 22, 0);
        while now < utc(2026, 10, 25, 4, 0) {
            assert!(
                matches!(at(&w, now), Some(Gate::Open { .. })),
                "closed at {now}"
            );
            now += chrono::TimeDelta::minutes(7);
        }
    }

    /// In the US the changes fall on other dates (2026-03-08 and 2026-11-01) and at 02:00:
    /// a 02:15 window on 8 March opens at 03:00 EDT.
    #[test]
    fn us_changes_follow_the_us_dates() {
        let w = [window("15 2 * * *", "1h", "America/New_York")];
        let jump = local(chrono_tz::America::New_York, 2026, 3, 8, 3, 0);
        assert_eq!(at(&w, utc(2026, 3, 8, 0, 0)), closed(jump));
        // The week before, Berlin had not changed yet: a Berlin 02:15 opens at 01:15 UTC.
        let berlin = [window("15 2 * * *", "1h", "Europe/Berlin")];
        assert_eq!(
            at(&berlin, utc(2026, 3, 8, 0, 0)),
            closed(utc(2026, 3, 8, 1, 15))
        );
    }

    #[test]
    fn local_times_carry_offset_and_zone() {
        let berlin = window("0 4 * * *", "2h", "Europe/Berlin");
        assert_eq!(
            local_time(utc(2026, 12, 2, 3, 0), &berlin),
            "2026-12-02T04:00:00+01:00 (Europe/Berlin)"
        );
        let utc_window = window("0 4 * * *", "2h", "UTC");
        assert_eq!(
            local_time(utc(2026, 12, 2, 4, 0), &utc_window),
            "2026-12-02T04:00:00Z (UTC)"
        );
    }

    #[test]
    fn a_window_that_does_not_parse_is_an_error() {
        let w = [window("0 4 * * *", "1h", "UTC"), window("bad", "1h", "UTC")];
        let error = gate(&w, utc(2026, 11, 21, 12, 0)).unwrap_err();
        assert!(
            error.starts_with("spec.maintenanceWindows[1].schedule: \"bad\""),
            "{error}"
        );
    }
}
