//! Planner rows for maintenance windows (`spec.maintenanceWindows`): a new upgrade starts only
//! inside a window; while it waits, Ready says when the next one opens and the decision
//! requeues for that moment; an upgrade in flight is never held or stopped by a window.
//! The fixtures' clock starts at 2026-11-21 12:00 UTC, a Saturday.

use std::time::Duration;

use crate::api::conditions::{self, ConditionStatus::*, RECONCILING, STALLED};
use crate::api::*;
use chrono::{TimeZone, Utc};

use super::decide;
use super::decision::{Action, Decision, NoteType, RESYNC};
use super::fixtures::*;
use super::observed::JobOutcome;

fn window(schedule: &str, duration: &str, zone: &str) -> MaintenanceWindow {
    MaintenanceWindow {
        schedule: schedule.into(),
        duration: duration.into(),
        time_zone: zone.into(),
    }
}

fn with_window(mut r: AppRelease, w: MaintenanceWindow) -> AppRelease {
    r.spec.maintenance_windows.push(w);
    r
}

/// Opens at 15:00 UTC, three hours after the fixtures' start.
fn closed_until_three() -> MaintenanceWindow {
    window("0 15 * * *", "1h", "UTC")
}

/// Opened at 11:00 UTC, closes at 13:00, an hour after the fixtures' start.
fn open_until_one() -> MaintenanceWindow {
    window("0 11 * * *", "2h", "UTC")
}

fn three_pm() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 15, 0, 0).unwrap()
}

fn message(status: &AppReleaseStatus) -> String {
    conditions::get(&status.conditions, conditions::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn reasons(decision: &Decision) -> Vec<&str> {
    decision.notes.iter().map(|n| n.reason.as_str()).collect()
}

fn changes_something(decision: &Decision) -> bool {
    decision
        .actions
        .iter()
        .any(|a| !matches!(a, Action::HandOver { .. }))
}

#[test]
fn a_closed_window_holds_the_upgrade_and_says_when_it_opens() {
    let r = with_window(full("2.0"), closed_until_three());
    let decision = decide(&r, &cluster("1.0"));

    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    let status = &decision.status;
    assert!(status.upgrade.is_none());
    assert_eq!(status.attempts, 0, "waiting is no attempt");
    assert_eq!(ready(status), (False, "AwaitingWindow".into()));
    assert_eq!(
        message(status),
        "the upgrade to 2.0 waits for the next maintenance window, which opens at 2026-11-21T15:00:00Z (UTC) (schedule \"0 15 * * *\", open for 1h); nothing was changed"
    );
    assert!(!has(status, RECONCILING) && !has(status, STALLED));
    assert_eq!(status.next_window, Some(three_pm()));
    // Exactly when the window opens, though that is past the idle resync.
    assert_eq!(decision.requeue_after, Duration::from_secs(3 * 3600));
    assert!(decision.requeue_after > RESYNC);
    assert_eq!(decision.notes.len(), 1);
    assert_eq!(decision.notes[0].type_, NoteType::Normal);
    assert_eq!(decision.notes[0].reason, "AwaitingWindow");
    assert_eq!(decision.notes[0].message, message(status));
}

#[test]
fn the_message_names_the_opening_in_the_windows_own_zone() {
    // 04:00 in Berlin on 22 November is 03:00 UTC, fifteen hours away.
    let r = with_window(full("2.0"), window("0 4 * * *", "2h", "Europe/Berlin"));
    let decision = decide(&r, &cluster("1.0"));
    assert!(
        message(&decision.status).contains(
            "opens at 2026-11-22T04:00:00+01:00 (Europe/Berlin) (schedule \"0 4 * * *\", open for 2h)"
        ),
        "{}",
        message(&decision.status)
    );
    assert_eq!(
        decision.status.next_window,
        Some(Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap())
    );
    assert_eq!(decision.requeue_after, Duration::from_secs(15 * 3600));
}

#[test]
fn a_window_days_away_is_waited_for_in_one_requeue() {
    // Tuesdays 02:00 UTC: from Saturday noon, 2 days and 14 hours.
    let r = with_window(full("2.0"), window("0 2 * * TUE", "3h", "UTC"));
    let decision = decide(&r, &cluster("1.0"));
    assert_eq!(
        decision.requeue_after,
        Duration::from_secs(2 * 86_400 + 14 * 3600)
    );
}

#[test]
fn waiting_is_told_once_and_the_requeue_shrinks() {
    let mut world = World::new(
        with_window(full("2.0"), closed_until_three()),
        cluster("1.0"),
    );
    let first = world.step();
    assert_eq!(reasons(&first), ["AwaitingWindow"]);
    let again = world.step();
    assert!(again.notes.is_empty(), "no news: {:?}", again.notes);
    assert_eq!(again.status, first.status, "nothing to write");
    world.advance(Duration::from_secs(3600));
    let later = world.step();
    assert!(later.notes.is_empty());
    assert_eq!(later.requeue_after, Duration::from_secs(2 * 3600));
    assert!(world.creates.is_empty());
}

#[test]
fn the_upgrade_starts_when_the_window_opens() {
    let mut world = World::new(
        with_window(full("2.0"), closed_until_three()),
        cluster("1.0"),
    );
    let waiting = world.step();
    world.advance(waiting.requeue_after);
    assert_eq!(world.cluster.now, three_pm());

    let decision = world.step();
    let upgrade = decision
        .status
        .upgrade
        .clone()
        .expect("the upgrade started");
    assert_eq!(upgrade.step, Step::BackingUp);
    assert_eq!(upgrade.started_at, three_pm());
    assert_eq!(decision.status.next_window, None);
    assert_eq!(ready(&decision.status), (Unknown, "Progressing".into()));
    assert_eq!(reasons(&decision), ["WindowOpen", "UpgradeStarted"]);
    assert!(
        decision.notes[0]
            .message
            .contains("open until 2026-11-21T16:00:00Z (UTC)"),
        "{}",
        decision.notes[0].message
    );
    assert_eq!(world.creates.keys().collect::<Vec<_>>(), ["meet-backup-1"]);
}

#[test]
fn an_open_window_lets_the_upgrade_start_at_once() {
    let r = with_window(full("2.0"), open_until_one());
    let decision = decide(&r, &cluster("1.0"));
    assert!(decision.status.upgrade.is_some());
    assert!(
        decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateJob(j) if j.name == "meet-backup-1"))
    );
    assert_eq!(decision.status.next_window, None);
}

#[test]
fn any_open_window_of_several_lets_the_upgrade_start() {
    let mut r = with_window(full("2.0"), closed_until_three());
    r = with_window(r, open_until_one());
    assert!(decide(&r, &cluster("1.0")).status.upgrade.is_some());
    // Both closed: the first to open is named.
    let mut r = with_window(full("2.0"), window("0 20 * * *", "1h", "UTC"));
    r = with_window(r, closed_until_three());
    let decision = decide(&r, &cluster("1.0"));
    assert_eq!(decision.status.next_window, Some(three_pm()));
    assert!(message(&decision.status).contains("schedule \"0 15 * * *\""));
}

/// Runs the started upgrade of `world` to its end, the window closing at 13:00 on the way;
/// `migration` is how the migration ends.
fn run_past_the_window(world: &mut World, migration: JobOutcome) {
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    world.advance(Duration::from_secs(2 * 3600));
    assert!(
        matches!(
            super::window::gate(&world.release.spec.maintenance_windows, world.cluster.now),
            Ok(Some(super::window::Gate::Closed { .. }))
        ),
        "the window has closed"
    );
    world.finish_job("backup", JobOutcome::Succeeded, Some(PRESET_LIKE_REPORT));
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    world.finish_job("migrate", migration, None);
    if let Some(job) = world.run(20) {
        assert_eq!(job, "meet-verify-1");
        world.finish_job("verify", JobOutcome::Succeeded, None);
        assert_eq!(world.run(20), None);
    }
}

const PRESET_LIKE_REPORT: &str =
    r#"{"location":"s3://backups/meet-backup-1.dump","sizeBytes":2048,"sha256":"abc"}"#;

#[test]
fn an_upgrade_in_flight_goes_on_to_success_after_its_window_closed() {
    let mut world = World::new(with_window(full("2.0"), open_until_one()), cluster("1.0"));
    run_past_the_window(&mut world, JobOutcome::Succeeded);
    let status = world.status();
    assert_eq!(ready(status), (True, "Succeeded".into()));
    assert_eq!(status.current_version.as_deref(), Some("2.0"));
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    assert_eq!(status.next_window, None);
    assert_eq!(
        world.images("frontend"),
        [("web".to_string(), "ghcr.io/meet/web:2.0".to_string())]
    );
    assert!(
        world
            .log
            .iter()
            .all(|d| ready(&d.status).1 != "AwaitingWindow"),
        "never held once started"
    );
}

#[test]
fn a_failure_after_the_window_closed_still_rolls_back() {
    let mut world = World::new(with_window(full("2.0"), open_until_one()), cluster("1.0"));
    run_past_the_window(&mut world, JobOutcome::Failed("exit code 1".into()));
    let status = world.status();
    assert_eq!(ready(status), (False, "RolledBack".into()));
    assert_eq!(status.history[0].result, UpgradeResult::RolledBack);
    assert_eq!(status.history[0].reason, "MigrationFailed");
    assert!(status.upgrade.is_none());
    assert_eq!(
        world.images("backend")[0],
        (
            "backend".to_string(),
            "ghcr.io/meet/backend:1.0".to_string()
        )
    );
}

#[test]
fn an_upgrade_in_flight_decides_as_if_there_were_no_windows() {
    // Mid-rollout with the window closed: the same decision as without windows.
    let mut world = World::new(with_window(full("2.0"), open_until_one()), cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(PRESET_LIKE_REPORT));
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.step();
    world.advance(Duration::from_secs(3 * 3600));
    assert!(world.status().upgrade.is_some());
    let with = decide(&world.release, &world.cluster);
    let mut without = world.release.clone();
    without.spec.maintenance_windows.clear();
    assert_eq!(with, decide(&without, &world.cluster));
}

#[test]
fn suspend_outranks_the_window() {
    let mut r = with_window(full("2.0"), closed_until_three());
    r.spec.suspend = true;
    let decision = decide(&r, &cluster("1.0"));
    assert_eq!(ready(&decision.status), (False, "Suspended".into()));
    assert_eq!(decision.status.next_window, None);
    assert_eq!(decision.requeue_after, RESYNC);
}

#[test]
fn a_release_at_its_version_is_ready_whatever_the_window() {
    let r = with_window(full("2.0"), closed_until_three());
    let decision = decide(&r, &cluster("2.0"));
    assert_eq!(ready(&decision.status), (True, "Succeeded".into()));
    assert_eq!(decision.status.next_window, None);
    assert_eq!(decision.requeue_after, RESYNC);
}

#[test]
fn drift_repairs_do_not_wait_for_a_window() {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    world.step();
    world.release = with_window(world.release.clone(), closed_until_three());
    world.bump_generation();
    world.step();
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    let d = world.cluster.deployments.get_mut("frontend").unwrap();
    d.containers[0].1 = "ghcr.io/meet/web:hotfix".into();
    d.generation += 1;
    let decision = world.step();
    assert!(reasons(&decision).contains(&"DriftRepaired"));
    assert!(
        changes_something(&decision),
        "the image is put back at once"
    );
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:1.0");
}

#[test]
fn taking_the_windows_away_starts_the_waiting_upgrade() {
    let mut world = World::new(
        with_window(full("2.0"), closed_until_three()),
        cluster("1.0"),
    );
    world.step();
    world.release.spec.maintenance_windows.clear();
    world.bump_generation();
    let decision = world.step();
    assert!(decision.status.upgrade.is_some());
    assert_eq!(decision.status.next_window, None);
    assert_eq!(
        reasons(&decision),
        ["UpgradeStarted"],
        "no window, no WindowOpen"
    );
}

#[test]
fn a_new_version_while_waiting_is_told_again() {
    let mut world = World::new(
        with_window(full("2.0"), closed_until_three()),
        cluster("1.0"),
    );
    world.step();
    world.set_version("3.0");
    let decision = world.step();
    assert_eq!(reasons(&decision), ["AwaitingWindow"]);
    assert!(message(&decision.status).starts_with("the upgrade to 3.0 waits"));
}

#[test]
fn invalid_windows_are_an_invalid_spec_and_change_nothing() {
    let r = with_window(full("2.0"), window("0 4 * *", "2 hours", "Mars/Olympus"));
    let decision = decide(&r, &cluster("1.0"));
    assert!(decision.actions.is_empty());
    assert_eq!(ready(&decision.status), (False, "InvalidSpec".into()));
    assert!(has(&decision.status, STALLED));
    let text = message(&decision.status);
    for part in [
        "spec.maintenanceWindows[0].schedule: \"0 4 * *\" is not a cron schedule",
        "spec.maintenanceWindows[0].duration: \"2 hours\" is not a duration",
        "spec.maintenanceWindows[0].timeZone: \"Mars/Olympus\" is not a time zone of the IANA database",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[test]
fn next_window_goes_when_waiting_ends_for_another_reason() {
    let mut world = World::new(
        with_window(full("2.0"), closed_until_three()),
        cluster("1.0"),
    );
    world.step();
    assert!(world.status().next_window.is_some());
    world.release.spec.maintenance_windows[0].time_zone = "Nowhere".into();
    world.bump_generation();
    world.step();
    assert_eq!(ready(world.status()), (False, "InvalidSpec".into()));
    assert_eq!(world.status().next_window, None);
}

/// Runs `world` (window open 11:00–13:00) into its rollout, with the backup and the
/// migration done.
fn into_the_rollout(world: &mut World) {
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    world.finish_job("backup", JobOutcome::Succeeded, Some(PRESET_LIKE_REPORT));
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.step),
        Some(Step::RollingOut)
    );
}

#[test]
fn a_newer_version_set_mid_upgrade_outside_a_window_waits_for_the_next_one() {
    let mut world = World::new(with_window(full("2.0"), open_until_one()), cluster("1.0"));
    into_the_rollout(&mut world);
    // The first target has rolled out when the window closes (so no rollout timeout).
    world.settle_deployments();
    world.advance(Duration::from_secs(2 * 3600));
    world.set_version("3.0");
    // The upgrade in flight goes on to 2.0 (its verification too), not on to 3.0.
    assert_eq!(world.run(20).as_deref(), Some("meet-verify-1"));
    world.finish_job("verify", JobOutcome::Succeeded, None);
    assert_eq!(world.run(20), None);

    let status = world.status();
    assert_eq!(status.current_version.as_deref(), Some("2.0"));
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    assert_eq!(status.attempts, 1, "3.0 did not start");
    assert_eq!(ready(status), (False, "AwaitingWindow".into()));
    assert!(message(status).starts_with("the upgrade to 3.0 waits"));
    assert_eq!(
        status.next_window,
        Some(Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap())
    );
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:2.0");
}

#[test]
fn a_newer_version_set_mid_upgrade_inside_a_window_is_chained_at_once() {
    let mut world = World::new(with_window(full("2.0"), open_until_one()), cluster("1.0"));
    into_the_rollout(&mut world);
    world.set_version("3.0");
    let decision = world.step();
    let upgrade = decision.status.upgrade.as_ref().expect("in flight");
    assert_eq!((upgrade.to.as_str(), upgrade.attempt), ("3.0", 2));
    assert_eq!(decision.status.history[0].result, UpgradeResult::Superseded);
}

#[test]
fn going_back_mid_upgrade_outside_a_window_still_rolls_back() {
    let mut world = World::new(with_window(full("2.0"), open_until_one()), cluster("1.0"));
    into_the_rollout(&mut world);
    world.settle_deployments();
    world.advance(Duration::from_secs(2 * 3600));
    world.set_version("1.0");
    assert_eq!(world.run(20), None);
    let status = world.status();
    assert_eq!(status.history[0].reason, "Cancelled");
    assert_eq!(status.current_version.as_deref(), Some("1.0"));
    assert_eq!(
        ready(status).0,
        True,
        "back where it was, nothing to wait for"
    );
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:1.0");
}

#[test]
fn with_manual_approval_an_upgrade_is_approved_then_waits_for_its_window() {
    let mut r = with_window(full("2.0"), closed_until_three());
    r.spec.approval = Approval::Manual;
    let mut world = World::new(r, cluster("1.0"));
    world.step();
    assert_eq!(ready(world.status()), (False, "AwaitingApproval".into()));
    assert_eq!(
        world.status().next_window,
        None,
        "approval is asked for first"
    );

    world.release.metadata.annotations =
        Some([(APPROVE_ANNOTATION.to_string(), "2.0".to_string())].into());
    let decision = world.step();
    assert_eq!(ready(&decision.status), (False, "AwaitingWindow".into()));
    assert_eq!(decision.status.next_window, Some(three_pm()));
    assert_eq!(decision.requeue_after, Duration::from_secs(3 * 3600));

    world.advance(decision.requeue_after);
    assert!(
        world.step().status.upgrade.is_some(),
        "approved and inside the window"
    );
}
