//! What a decision changes that the operator counts: the step clocks it stops, the upgrades
//! it ends and the backups it records or loses. Derived from the status before and after the
//! decision, and counted when that status is written: the write is conditional on the
//! resourceVersion decided from (see `k8s::act::status_patch`), so each transition is counted
//! once, however often the controller reconciles or whatever its cache shows.

use chrono::{DateTime, Utc};

use crate::api::{AppReleaseStatus, HistoryEntry, Step, Upgrade, UpgradeResult};

/// The countable effects of one decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Telemetry {
    /// Step clocks stopped: a step left, or (while rolling out) one target done.
    pub steps: Vec<StepTime>,
    /// Upgrades that ended; on-demand backups and restores are not upgrades.
    pub upgrades: Vec<Ended>,
    /// Backups that ended, upgrades' and on-demand ones alike; a set counts as one.
    pub backups: Vec<BackupResult>,
}

/// How long one step clock ran (`status.upgrade.stepStartedAt` until it was restarted or the
/// operation ended). A step entered and left within one decision took no time and is not
/// seen: only the status before and after are compared.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTime {
    /// The step.
    pub step: Step,
    /// Seconds on its clock.
    pub seconds: f64,
}

/// An upgrade that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// How.
    pub result: UpgradeResult,
    /// Its history entry's reason (Succeeded, BackupFailed, RolloutFailed, …).
    pub reason: String,
}

/// How a backup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupResult {
    /// Recorded in `status.backups`.
    Succeeded,
    /// Its step ended with BackupFailed.
    Failed,
}

/// Compares the status the decision was made from with the one it writes, at `now`.
pub fn derive(
    before: &AppReleaseStatus,
    after: &AppReleaseStatus,
    now: DateTime<Utc>,
) -> Telemetry {
    let new_entries: Vec<&HistoryEntry> = after
        .history
        .iter()
        .filter(|h| !before.history.iter().any(|b| same_entry(b, h)))
        .collect();
    let mut telemetry = Telemetry {
        upgrades: new_entries
            .iter()
            .filter(|h| h.request.is_none())
            .map(|h| Ended {
                result: h.result,
                reason: h.reason.clone(),
            })
            .collect(),
        ..Telemetry::default()
    };
    telemetry.backups = after
        .backups
        .iter()
        .filter(|a| !before.backups.iter().any(|b| b.id == a.id))
        .map(|_| BackupResult::Succeeded)
        .collect();
    if let Some(was) = &before.upgrade
        && clock_stopped(was, after.upgrade.as_ref())
    {
        let seconds = (now - was.step_started_at).num_milliseconds().max(0) as f64 / 1000.0;
        telemetry.steps.push(StepTime {
            step: was.step,
            seconds,
        });
        if was.step == Step::BackingUp
            && failure_reason(was, after, &new_entries) == Some("BackupFailed")
        {
            telemetry.backups.push(BackupResult::Failed);
        }
    }
    telemetry
}

/// History entries are told apart by attempt: upgrades and requests number them together.
fn same_entry(a: &HistoryEntry, b: &HistoryEntry) -> bool {
    a.attempt == b.attempt && a.started_at == b.started_at
}

/// Whether the step clock of `was` stopped: the operation ended or moved on, or the clock was
/// restarted for the next rollout target.
fn clock_stopped(was: &Upgrade, now: Option<&Upgrade>) -> bool {
    now.is_none_or(|now| {
        now.attempt != was.attempt
            || now.step != was.step
            || now.step_started_at != was.step_started_at
    })
}

/// Why the operation `was` stopped, when this decision says it failed: its new history entry,
/// or the failure of the rollback it entered.
fn failure_reason<'a>(
    was: &Upgrade,
    after: &'a AppReleaseStatus,
    new_entries: &[&'a HistoryEntry],
) -> Option<&'a str> {
    if let Some(entry) = new_entries.iter().find(|h| h.attempt == was.attempt) {
        return Some(entry.reason.as_str());
    }
    after
        .upgrade
        .as_ref()
        .filter(|now| now.attempt == was.attempt && was.failure.is_none())
        .and_then(|now| now.failure.as_ref())
        .map(|f| f.reason.as_str())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::api::{BackupRecord, Failure, RequestKind, RequestRef};
    use crate::plan::fixtures::t0;

    fn upgrade(attempt: i64, step: Step, clock: i64) -> Upgrade {
        Upgrade {
            from: "1.0".into(),
            to: "2.0".into(),
            attempt,
            step,
            started_at: t0(),
            step_started_at: t0() + Duration::seconds(clock),
            targets_done: 0,
            backup: None,
            previous_images: Vec::new(),
            previous_replicas: Vec::new(),
            jobs_seen: Vec::new(),
            prune: Vec::new(),
            migration_started: false,
            restored_components: Vec::new(),
            failure: None,
            request: None,
        }
    }

    fn entry(attempt: i64, result: UpgradeResult, reason: &str) -> HistoryEntry {
        HistoryEntry {
            from: "1.0".into(),
            to: "2.0".into(),
            attempt,
            started_at: t0(),
            finished_at: t0(),
            result,
            reason: reason.into(),
            message: String::new(),
            backup: None,
            request: None,
        }
    }

    fn backup(id: &str) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            version: "1.0".into(),
            taken_at: t0(),
            job: id.into(),
            location: None,
            size_bytes: None,
            sha256: None,
            components: Vec::new(),
            images: Vec::new(),
        }
    }

    fn status(
        upgrade: Option<Upgrade>,
        history: Vec<HistoryEntry>,
        backups: &[&str],
    ) -> AppReleaseStatus {
        AppReleaseStatus {
            upgrade,
            history,
            backups: backups.iter().map(|id| backup(id)).collect(),
            ..AppReleaseStatus::default()
        }
    }

    fn step(step: Step, seconds: f64) -> StepTime {
        StepTime { step, seconds }
    }

    fn ended(result: UpgradeResult, reason: &str) -> Ended {
        Ended {
            result,
            reason: reason.into(),
        }
    }

    #[test]
    fn each_transition_is_counted_from_the_status_before_and_after() {
        use BackupResult::{Failed, Succeeded};
        use Step::*;
        let now = t0() + Duration::seconds(100);
        let rolling_back = Upgrade {
            failure: Some(Failure {
                reason: "BackupFailed".into(),
                message: String::new(),
            }),
            ..upgrade(1, RollingBack, 90)
        };
        let on_request = |kind| Upgrade {
            request: Some(RequestRef {
                kind,
                name: "now".into(),
                uid: "uid-now".into(),
                components: Vec::new(),
            }),
            ..upgrade(2, BackingUp, 40)
        };
        let request_entry = |result, reason| HistoryEntry {
            request: on_request(RequestKind::Backup).request,
            ..entry(2, result, reason)
        };
        #[rustfmt::skip]
        let table: Vec<(&str, AppReleaseStatus, AppReleaseStatus, Telemetry)> = vec![
            ("nothing changed",
             status(Some(upgrade(1, BackingUp, 0)), vec![], &[]),
             status(Some(upgrade(1, BackingUp, 0)), vec![], &[]),
             Telemetry::default()),
            ("an upgrade starts: no clock ran yet",
             status(None, vec![], &[]),
             status(Some(upgrade(1, BackingUp, 100)), vec![], &[]),
             Telemetry::default()),
            ("the backup is recorded and the migration starts",
             status(Some(upgrade(1, BackingUp, 0)), vec![], &[]),
             status(Some(upgrade(1, Migrating, 100)), vec![], &["b1"]),
             Telemetry { steps: vec![step(BackingUp, 100.0)], backups: vec![Succeeded], ..Default::default() }),
            ("one target of the rollout is done: its clock restarts",
             status(Some(upgrade(1, RollingOut, 30)), vec![], &["b1"]),
             status(Some(Upgrade { targets_done: 1, ..upgrade(1, RollingOut, 100) }), vec![], &["b1"]),
             Telemetry { steps: vec![step(RollingOut, 70.0)], ..Default::default() }),
            ("the upgrade succeeds",
             status(Some(upgrade(1, Verifying, 75)), vec![], &["b1"]),
             status(None, vec![entry(1, UpgradeResult::Succeeded, "Succeeded")], &["b1"]),
             Telemetry { steps: vec![step(Verifying, 25.0)], upgrades: vec![ended(UpgradeResult::Succeeded, "Succeeded")], ..Default::default() }),
            ("the backup fails: nothing changed",
             status(Some(upgrade(1, BackingUp, 0)), vec![], &[]),
             status(None, vec![entry(1, UpgradeResult::Aborted, "BackupFailed")], &[]),
             Telemetry { steps: vec![step(BackingUp, 100.0)], upgrades: vec![ended(UpgradeResult::Aborted, "BackupFailed")], backups: vec![Failed] }),
            ("offline, the backup fails and the rollback starts",
             status(Some(upgrade(1, BackingUp, 0)), vec![], &[]),
             status(Some(Upgrade { step_started_at: now, ..rolling_back.clone() }), vec![], &[]),
             Telemetry { steps: vec![step(BackingUp, 100.0)], backups: vec![Failed], ..Default::default() }),
            ("the rollback ends: a failed rollback is counted by its reason",
             status(Some(rolling_back), vec![], &[]),
             status(None, vec![entry(1, UpgradeResult::Failed, "RollbackFailed")], &[]),
             Telemetry { steps: vec![step(RollingBack, 10.0)], upgrades: vec![ended(UpgradeResult::Failed, "RollbackFailed")], ..Default::default() }),
            ("a backup superseded by a new version is neither taken nor failed",
             status(Some(upgrade(1, BackingUp, 0)), vec![], &[]),
             status(None, vec![entry(1, UpgradeResult::Superseded, "Superseded")], &[]),
             Telemetry { steps: vec![step(BackingUp, 100.0)], upgrades: vec![ended(UpgradeResult::Superseded, "Superseded")], ..Default::default() }),
            ("superseded mid-rollout, a chained upgrade goes on: the old clock stops",
             status(Some(upgrade(1, RollingOut, 60)), vec![], &["b1"]),
             status(Some(upgrade(2, RollingOut, 100)), vec![entry(1, UpgradeResult::Superseded, "Superseded")], &["b1"]),
             Telemetry { steps: vec![step(RollingOut, 40.0)], upgrades: vec![ended(UpgradeResult::Superseded, "Superseded")], ..Default::default() }),
            ("an on-demand backup is a backup, not an upgrade",
             status(Some(on_request(RequestKind::Backup)), vec![entry(1, UpgradeResult::Succeeded, "Succeeded")], &["b1"]),
             status(None, vec![request_entry(UpgradeResult::Succeeded, "BackupTaken"), entry(1, UpgradeResult::Succeeded, "Succeeded")], &["b2", "b1"]),
             Telemetry { steps: vec![step(BackingUp, 60.0)], backups: vec![Succeeded], ..Default::default() }),
            ("an on-demand backup that fails",
             status(Some(on_request(RequestKind::Backup)), vec![], &[]),
             status(None, vec![request_entry(UpgradeResult::Aborted, "BackupFailed")], &[]),
             Telemetry { steps: vec![step(BackingUp, 60.0)], backups: vec![Failed], ..Default::default() }),
            ("a bounded history drops its oldest entry: nothing new ended",
             status(None, vec![entry(3, UpgradeResult::Succeeded, "Succeeded"), entry(2, UpgradeResult::Succeeded, "Succeeded")], &[]),
             status(None, vec![entry(3, UpgradeResult::Succeeded, "Succeeded")], &[]),
             Telemetry::default()),
        ];
        for (what, before, after, expected) in table {
            assert_eq!(derive(&before, &after, now), expected, "{what}");
        }
    }

    #[test]
    fn a_whole_upgrade_leaves_each_step_once_and_ends_once() {
        use crate::plan::fixtures::*;
        let mut world = World::new(full("2.0"), cluster("1.0"));
        world.finish_every_job(vec![true, true, true], 20);
        let telemetry: Vec<&Telemetry> = world.log.iter().map(|d| &d.telemetry).collect();
        let steps: Vec<Step> = telemetry
            .iter()
            .flat_map(|t| t.steps.iter().map(|s| s.step))
            .collect();
        // Two targets, so two rollout clocks.
        assert_eq!(
            steps,
            [
                Step::BackingUp,
                Step::Migrating,
                Step::RollingOut,
                Step::RollingOut,
                Step::Verifying
            ]
        );
        let upgrades: Vec<&Ended> = telemetry.iter().flat_map(|t| &t.upgrades).collect();
        assert_eq!(upgrades, [&ended(UpgradeResult::Succeeded, "Succeeded")]);
        let backups: Vec<&BackupResult> = telemetry.iter().flat_map(|t| &t.backups).collect();
        assert_eq!(backups, [&BackupResult::Succeeded]);
    }
}
