//! Maintenance windows end to end: an upgrade waits for its window (Ready, status.nextWindow,
//! `kubectl get apr`, an Event; nothing runs, nothing changes), starts when the spec opens a
//! window or when the window opens by itself (the operator wakes for that moment), and an
//! upgrade in flight is not stopped when its window is taken away.

use std::time::Duration;

use apprelease_e2e::fixtures::{self, Jobs, Outcome, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::conditions::{self, ConditionStatus};
use apprelease_operator::api::{AppRelease, AppReleaseStatus, MaintenanceWindow, UpgradeResult};
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Timelike, Utc};

fn window(schedule: &str, duration: &str) -> MaintenanceWindow {
    MaintenanceWindow {
        schedule: schedule.into(),
        duration: duration.into(),
        time_zone: "UTC".into(),
    }
}

/// A daily one-hour window that opens at `at` (UTC, whole minutes).
fn daily_at(at: DateTime<Utc>) -> MaintenanceWindow {
    window(&format!("{} {} * * *", at.minute(), at.hour()), "1h")
}

/// An hourly window of an hour: open at every moment.
fn always_open() -> MaintenanceWindow {
    window("0 * * * *", "1h")
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).expect("a minute")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ready_message(status: &AppReleaseStatus) -> String {
    inspect::condition(status, conditions::READY)
        .map(|c| c.message)
        .unwrap_or_default()
}

/// The NEXT WINDOW cell of `kubectl get apr` for the release (empty when unset), read
/// between its header and the next one (AGE).
async fn next_window_column(s: &Scenario) -> anyhow::Result<String> {
    let table = s
        .cluster
        .run_kubectl(&["get", "apr", RELEASE, "-n", &s.cluster.namespace])
        .await?;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    let (Some(start), Some(end)) = (header.find("NEXT WINDOW"), header.find("AGE")) else {
        anyhow::bail!("no NEXT WINDOW column before AGE in\n{table}");
    };
    Ok(row.get(start..end).unwrap_or_default().trim().to_string())
}

async fn images_are(s: &Scenario, version: &str) -> anyhow::Result<()> {
    for target in ["backend", "frontend"] {
        assert_eq!(
            inspect::image(&s.cluster, target, target).await?,
            format!("{REPOSITORY}:{version}"),
            "{target}"
        );
    }
    Ok(())
}

/// Applies the default release at `version` with these windows.
async fn apply(
    s: &Scenario,
    base: &AppRelease,
    version: &str,
    windows: Vec<MaintenanceWindow>,
) -> anyhow::Result<()> {
    let mut release = base.clone();
    release.spec.version = version.into();
    release.spec.maintenance_windows = windows;
    fixtures::apply(&s.cluster, &release).await
}

#[tokio::test]
async fn w01_an_upgrade_waits_for_a_closed_window_then_runs_inside_an_open_one()
-> anyhow::Result<()> {
    let s = Scenario::start("window-wait").await?;
    let base = s.adopt(&Jobs::default()).await?;

    // A daily window that opened 12 hours ago for an hour: closed now, next in 12 hours.
    let opens = minute(Utc::now() + TimeDelta::hours(12));
    apply(&s, &base, V2, vec![daily_at(opens)]).await?;
    let status = s.wait_settled(RELEASE, "AwaitingWindow").await?;

    assert_eq!(inspect::ready(&status).unwrap().0, ConditionStatus::False);
    let message = ready_message(&status);
    assert!(
        message.contains(&format!("which opens at {} (UTC)", rfc3339(opens))),
        "{message}"
    );
    assert!(message.contains(V2), "{message}");
    assert_eq!(status.next_window, Some(opens));
    assert_eq!(status.attempts, 0, "no upgrade started");
    assert!(
        inspect::jobs(&s.cluster).await?.is_empty(),
        "no Job before the window"
    );
    images_are(&s, V1).await?;
    let events = s.events_with(RELEASE, &["AwaitingWindow"]).await?;
    assert!(
        events
            .iter()
            .any(|(r, note)| r == "AwaitingWindow" && note.contains(&rfc3339(opens))),
        "{events:?}"
    );
    assert_eq!(next_window_column(&s).await?, rfc3339(opens));

    // A window open now: the upgrade runs, all of it.
    apply(&s, &base, V2, vec![always_open()]).await?;
    let status = s.wait_ready(RELEASE, V2).await?;
    images_are(&s, V2).await?;
    assert_eq!(status.next_window, None);
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    let mut jobs = inspect::jobs(&s.cluster).await?;
    jobs.sort();
    assert_eq!(jobs, ["shop-backup-1", "shop-migrate-1", "shop-verify-1"]);
    s.events_with(
        RELEASE,
        &["WindowOpen", "UpgradeStarted", "UpgradeSucceeded"],
    )
    .await?;
    assert_eq!(
        next_window_column(&s).await?,
        "",
        "no opening shown once it ran"
    );
    Ok(())
}

/// The operator wakes for the moment the window opens, with no change to wake it: the
/// upgrade starts then, not before, and not a resync (300 s) later.
#[tokio::test]
async fn w02_an_upgrade_starts_when_its_window_opens() -> anyhow::Result<()> {
    let s = Scenario::start("window-opens").await?;
    let base = s.adopt(&Jobs::default()).await?;
    // The next whole minute at least 20 s away: under 80 s of waiting.
    let opens = minute(Utc::now() + TimeDelta::seconds(80));
    apply(&s, &base, V2, vec![daily_at(opens)]).await?;
    let waiting = s.wait_settled(RELEASE, "AwaitingWindow").await?;
    assert_eq!(waiting.next_window, Some(opens));
    assert!(Utc::now() < opens, "the scenario reached the wait in time");

    let started = s
        .wait_for(RELEASE, "the upgrade started", |st| st.attempts == 1)
        .await?;
    let upgrade_start = started
        .upgrade
        .as_ref()
        .map(|u| u.started_at)
        .or_else(|| started.history.first().map(|h| h.started_at))
        .expect("an upgrade in flight or done");
    assert!(
        upgrade_start >= opens,
        "started at {upgrade_start}, before the window opened at {opens}"
    );
    assert!(
        upgrade_start < opens + TimeDelta::seconds(15),
        "started at {upgrade_start}: not woken when the window opened at {opens}"
    );
    let done = s.wait_ready(RELEASE, V2).await?;
    assert_eq!(done.history[0].result, UpgradeResult::Succeeded);
    images_are(&s, V2).await?;
    Ok(())
}

/// A window that closes under an upgrade in flight (here: taken away by a spec change
/// mid-migration) neither holds nor stops it.
#[tokio::test]
async fn w03_an_upgrade_in_flight_finishes_when_its_window_closes() -> anyhow::Result<()> {
    let s = Scenario::start("window-closes").await?;
    let base = s
        .adopt(&Jobs {
            migration: Outcome::RunFor(Duration::from_secs(4)),
            ..Jobs::default()
        })
        .await?;
    apply(&s, &base, V2, vec![always_open()]).await?;
    s.wait_for_step(RELEASE, "Migrating").await?;

    let far = minute(Utc::now() + TimeDelta::hours(12));
    apply(&s, &base, V2, vec![daily_at(far)]).await?;
    // Decided for the closed window's generation, still in flight.
    let in_flight = s
        .wait_for(RELEASE, "the operator saw the closed window", |st| {
            st.upgrade.is_some()
        })
        .await?;
    assert_eq!(in_flight.next_window, None);

    let done = s.wait_ready(RELEASE, V2).await?;
    assert_eq!(done.history[0].result, UpgradeResult::Succeeded);
    assert_eq!(done.next_window, None);
    images_are(&s, V2).await?;
    let events = inspect::events(&s.cluster, RELEASE).await?;
    assert!(
        !events.iter().any(|(r, _)| r == "AwaitingWindow"),
        "{events:?}"
    );
    Ok(())
}
