//! Property tests of maintenance windows. Random windows (schedules, durations, zones with
//! and without daylight saving, Lord Howe's half-hour change included), random starting
//! moments (often hours around a change), random interleavings of reconciles, Job outcomes,
//! rollouts, waits and spec changes. Checked after every reconcile:
//! - an upgrade starts only while a window is open, also one chained onto an upgrade in
//!   flight by a newer version;
//! - while it waits: nothing changes in the cluster, Ready says AwaitingWindow, and
//!   `status.nextWindow` and the requeue both name the moment the next window opens;
//! - an upgrade in flight decides exactly as if there were no windows (a window closing
//!   never holds or stops it), except that a new upgrade it would make room for waits;
//!
//! and separately: the gate agrees with a minute-by-minute reading of the schedule in UTC,
//! is consistent with itself across daylight-saving changes, and an upgrade started in a
//! window comes to rest however long after the window closed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use crate::api::conditions::{self, ConditionStatus};
use crate::api::*;

use super::decide;
use super::decision::{Action, MIN_REQUEUE};
use super::fixtures::*;
use super::observed::JobOutcome;
use super::window::{Gate, gate};

const SCHEDULES: &[&str] = &[
    "0 4 * * *",
    "30 2 * * *",
    "0 */6 * * *",
    "45 23 * * FRI",
    "0 1 * * SUN",
    "*/30 2-3 * * *",
    "0 2 1 * *",
    "15 0 * * MON-FRI",
];
const DURATIONS: &[&str] = &["15m", "1h", "2h30m", "7h"];
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
];

fn a_window() -> impl Strategy<Value = MaintenanceWindow> {
    (
        prop::sample::select(SCHEDULES),
        prop::sample::select(DURATIONS),
        prop::sample::select(ZONES),
    )
        .prop_map(|(schedule, duration, zone)| MaintenanceWindow {
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: zone.into(),
        })
}

/// Moments of daylight-saving changes (UTC) in the fixtures' year: Berlin, New York and Lord
/// Howe, both ways.
fn changes() -> Vec<DateTime<Utc>> {
    [
        (2027, 3, 28, 1),  // Berlin springs forward
        (2027, 10, 31, 1), // Berlin falls back
        (2027, 3, 14, 7),  // New York springs forward
        (2026, 11, 1, 6),  // New York falls back
        (2027, 4, 3, 15),  // Lord Howe falls back (02:00 local, +11)
        (2026, 10, 3, 15), // Lord Howe springs forward (02:00 local, +10:30)
    ]
    .into_iter()
    .map(|(y, m, d, h)| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap())
    .collect()
}

/// A moment: anywhere in the year after the fixtures' start, or within six hours of a change.
fn a_moment() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        (0i64..366 * 86_400).prop_map(|s| t0() + TimeDelta::seconds(s)),
        (prop::sample::select(changes()), -6 * 3600i64..6 * 3600)
            .prop_map(|(change, s)| change + TimeDelta::seconds(s)),
    ]
}

#[derive(Clone, Debug)]
enum Event {
    Reconcile,
    Rollout,
    FinishJob(bool),
    /// Time passes, up to half a day.
    Wait(u64),
    /// Time passes until the last decision's requeue, as the controller would wait.
    WaitForRequeue,
    SetVersion(&'static str),
    /// The user changes the windows (a new generation).
    SetWindows(Vec<MaintenanceWindow>),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::Reconcile),
        3 => Just(Event::Rollout),
        3 => any::<bool>().prop_map(Event::FinishJob),
        2 => (1u64..43_200).prop_map(Event::Wait),
        2 => Just(Event::WaitForRequeue),
        1 => prop_oneof![Just("2.0"), Just("3.0"), Just("4.0")].prop_map(Event::SetVersion),
        1 => prop::collection::vec(a_window(), 0..3).prop_map(Event::SetWindows),
    ]
}

fn world(windows: Vec<MaintenanceWindow>, now: DateTime<Utc>, bad: bool) -> World {
    let mut r = full("2.0");
    // Offline on odd seconds: the targets are stopped for the upgrade.
    if now.timestamp() % 2 == 1 {
        r = offline(r);
    }
    r.spec.maintenance_windows = windows;
    let mut cluster = cluster("1.0");
    cluster.now = now;
    let mut world = World::new(r, cluster);
    if bad {
        world.faults.bad_tags = vec!["3.0".into()];
    }
    world
}

fn without_windows(release: &AppRelease) -> AppRelease {
    let mut r = release.clone();
    r.spec.maintenance_windows.clear();
    r
}

/// One reconcile, and every window invariant that can be seen in it.
fn reconcile(world: &mut World) -> Result<Duration, TestCaseError> {
    let release = world.release.clone();
    let seen = world.cluster.clone();
    let now = seen.now;
    let before = release.status.clone().unwrap_or_default();
    let decision = world.step();
    let status = &decision.status;
    let gate = gate(&release.spec.maintenance_windows, now).expect("valid windows");
    let ready = conditions::get(&status.conditions, conditions::READY).expect("Ready is set");

    if let Some(in_flight) = &before.upgrade {
        // In flight: the windows make no difference to it. What they may hold is a new
        // upgrade: one chained onto it (a newer version), or the next one once it ended
        // within the same decision (a version change during the backup drops it; a finished
        // one makes room for a newer version).
        let free = decide(&without_windows(&release), &seen);
        // A new upgrade started inside a window also tells until when it is open.
        let mut told = decision.clone();
        told.notes.retain(|n| n.reason != "WindowOpen");
        if told != free {
            prop_assert!(
                matches!(gate, Some(Gate::Closed { .. })),
                "windows changed a decision while open: {:?}",
                gate
            );
            let kept = status
                .upgrade
                .as_ref()
                .is_some_and(|u| u.attempt == in_flight.attempt)
                || (ready.reason == "AwaitingWindow"
                    && status
                        .history
                        .iter()
                        .any(|h| h.attempt == in_flight.attempt));
            prop_assert!(
                kept,
                "attempt {} was not kept to: {:?}",
                in_flight.attempt,
                status.upgrade
            );
            prop_assert!(
                free.status.attempts > status.attempts,
                "the windows held something other than a new upgrade"
            );
        }
    }
    // No upgrade starts outside a window: neither from rest nor chained onto one in flight.
    if status.attempts > before.attempts {
        prop_assert!(
            gate.is_none() || matches!(gate, Some(Gate::Open { .. })),
            "attempt {} started at {} outside every window: {:?}",
            status.attempts,
            now,
            gate
        );
    }
    if let (None, Some(upgrade)) = (&before.upgrade, &status.upgrade) {
        prop_assert_eq!(upgrade.started_at, now);
    }
    let waiting = ready.reason == "AwaitingWindow";
    prop_assert_eq!(status.next_window.is_some(), waiting, "{:?}", ready);
    if waiting {
        let Some(Gate::Closed { opens_at, .. }) = gate else {
            return Err(TestCaseError::fail(format!(
                "waits at {now} though the gate is {gate:?}"
            )));
        };
        prop_assert_eq!(ready.status, ConditionStatus::False);
        prop_assert!(status.upgrade.is_none());
        prop_assert!(opens_at > now);
        prop_assert_eq!(status.next_window, Some(opens_at));
        let until = (opens_at - now).to_std().unwrap().max(MIN_REQUEUE);
        prop_assert_eq!(decision.requeue_after, until);
        prop_assert!(
            decision
                .actions
                .iter()
                .all(|a| matches!(a, Action::HandOver { .. })),
            "changed something while waiting: {:?}",
            decision.actions
        );
    }
    Ok(decision.requeue_after)
}

/// Does the schedule fire at minute `m`?
fn fires(s: &crate::api::schedule::Schedule, m: DateTime<Utc>) -> bool {
    s.cron.is_time_matching(&m.with_timezone(&s.zone)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn upgrades_start_only_inside_a_window_and_are_never_held_in_flight(
        windows in prop::collection::vec(a_window(), 1..3),
        now in a_moment(),
        bad in any::<bool>(),
        events in prop::collection::vec(event(), 1..80),
    ) {
        let mut world = world(windows, now, bad);
        let mut requeue = Duration::from_secs(300);
        for event in &events {
            match event {
                Event::Reconcile => requeue = reconcile(&mut world)?,
                Event::Rollout => world.settle_deployments(),
                Event::FinishJob(succeed) => {
                    let running = world.cluster.jobs.iter()
                        .find(|(_, j)| j.outcome == JobOutcome::Running)
                        .map(|(n, _)| n.clone());
                    if let Some(name) = running {
                        let outcome = if *succeed { JobOutcome::Succeeded } else { JobOutcome::Failed("x".into()) };
                        let report = name.contains("-backup-").then(|| preset_report(&name));
                        world.finish_job(&name, outcome, report.as_deref());
                    }
                }
                Event::Wait(secs) => world.advance(Duration::from_secs(*secs)),
                Event::WaitForRequeue => world.advance(requeue),
                Event::SetVersion(v) => world.set_version(v),
                Event::SetWindows(windows) => {
                    world.release.spec.maintenance_windows = windows.clone();
                    world.bump_generation();
                }
            }
        }
    }

    /// Waiting for the requeue a waiting decision asked for is enough: the next reconcile
    /// starts the upgrade. And an upgrade started in a window comes to rest however long
    /// after the window closed, its Jobs ending as they may.
    #[test]
    fn the_requeue_reaches_the_window_and_the_upgrade_ends_after_it(
        windows in prop::collection::vec(a_window(), 1..3),
        now in a_moment(),
        later in 0u64..14 * 86_400,
        outcomes in prop::collection::vec(any::<bool>(), 0..6),
    ) {
        let mut world = world(windows, now, false);
        let first = reconcile(&mut world)?;
        if world.status().upgrade.is_none() {
            prop_assert_eq!(ready(world.status()).1, "AwaitingWindow");
            world.advance(first);
            reconcile(&mut world)?;
            prop_assert!(world.status().upgrade.is_some(), "still waiting after the requeue: {:?}", world.status().conditions);
        }
        world.advance(Duration::from_secs(later));
        world.finish_every_job(outcomes, 50);
        prop_assert!(world.status().upgrade.is_none(), "still in flight: {:?}", world.status().upgrade);
        prop_assert_eq!(world.status().history.len(), 1, "one upgrade, ended");
        prop_assert!(world.log.iter().skip(1).all(|d| ready(&d.status).1 != "AwaitingWindow"));
    }

    /// In UTC (no clock changes) the gate is what reading the schedule minute by minute says:
    /// open when it fired less than `duration` ago, the window closing last named; otherwise
    /// closed until the next minute it fires.
    #[test]
    fn the_gate_agrees_with_a_minute_by_minute_reading_in_utc(
        schedule in prop::sample::select(SCHEDULES),
        minutes in 1i64..600,
        now in a_moment(),
    ) {
        let w = MaintenanceWindow { schedule: schedule.into(), duration: format!("{minutes}m"), time_zone: "UTC".into() };
        let parsed = crate::api::schedule::parse(&w).unwrap();
        let minute = |t: DateTime<Utc>| Utc.timestamp_opt(t.timestamp() / 60 * 60, 0).unwrap();
        let latest = (0..minutes)
            .map(|back| minute(now) - TimeDelta::minutes(back))
            .find(|m| *m > now - TimeDelta::minutes(minutes) && fires(&parsed, *m));
        let expected = match latest {
            Some(opened) => Gate::Open { closes_at: opened + TimeDelta::minutes(minutes), window: 0 },
            None => {
                let opens_at = (1..=32 * 24 * 60)
                    .map(|ahead| minute(now) + TimeDelta::minutes(ahead))
                    .find(|m| fires(&parsed, *m))
                    .expect("every schedule here fires within a month");
                Gate::Closed { opens_at, window: 0 }
            }
        };
        prop_assert_eq!(gate(std::slice::from_ref(&w), now).unwrap(), Some(expected));
    }

    /// In every zone, across changes too, the gate agrees with itself: closed from now until
    /// the opening it names and open at that moment; open from now until the closing it names.
    #[test]
    fn the_gate_is_consistent_across_daylight_saving_changes(
        windows in prop::collection::vec(a_window(), 1..3),
        now in a_moment(),
        samples in prop::collection::vec(0.0f64..1.0, 4),
    ) {
        let second = TimeDelta::seconds(1);
        match gate(&windows, now).unwrap().unwrap() {
            Gate::Closed { opens_at, window } => {
                prop_assert!(opens_at > now);
                let open = gate(&windows, opens_at).unwrap().unwrap();
                prop_assert!(matches!(open, Gate::Open { .. }), "closed at its own opening {}: {:?}", opens_at, open);
                let span = (opens_at - now).num_seconds();
                for f in samples.iter().copied().chain([0.0]) {
                    let t = (now + TimeDelta::seconds((span as f64 * f) as i64)).min(opens_at - second);
                    prop_assert_eq!(gate(&windows, t).unwrap(), Some(Gate::Closed { opens_at, window }), "at {}", t);
                }
            }
            Gate::Open { closes_at, .. } => {
                prop_assert!(closes_at > now);
                let span = (closes_at - now).num_seconds();
                for f in samples.iter().copied().chain([1.0]) {
                    let t = (now + TimeDelta::seconds((span as f64 * f) as i64)).min(closes_at - second);
                    let g = gate(&windows, t).unwrap().unwrap();
                    prop_assert!(matches!(g, Gate::Open { closes_at: c, .. } if c >= closes_at), "at {}: {:?}", t, g);
                }
            }
        }
    }
}
