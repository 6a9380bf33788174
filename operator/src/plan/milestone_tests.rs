//! The milestones of each way an upgrade goes, in order: what a notification receiver sees.

use std::time::Duration;

use crate::api::*;

use super::fixtures::*;
use super::milestone::Milestone;
use super::observed::JobOutcome;

const BACKUP_REPORT: &str =
    r#"{"location":"pvc://backups/meet/meet-backup-1.sql.gz","sizeBytes":2048,"sha256":"ab12"}"#;

/// Every milestone of every decision the world took, in order.
fn milestones(world: &World) -> Vec<Milestone> {
    world
        .log
        .iter()
        .flat_map(|d| d.milestones.clone())
        .collect()
}

/// (kind, from → to, step, reason, backup) of each milestone: one row per line in the tests.
fn rows(world: &World) -> Vec<(&'static str, String, Step, String, Option<String>)> {
    milestones(world)
        .into_iter()
        .map(|m| {
            (
                m.kind.as_str(),
                format!("{}→{}", m.from, m.to),
                m.step,
                m.reason,
                m.backup,
            )
        })
        .collect()
}

fn backup1() -> Option<String> {
    Some("meet-backup-1".into())
}

#[test]
fn a_successful_upgrade_is_started_then_succeeded() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.run(10);
    world.finish_job("verify", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(
        rows(&world),
        [
            (
                "Started",
                "1.0→2.0".into(),
                Step::BackingUp,
                "UpgradeStarted".into(),
                None
            ),
            (
                "Succeeded",
                "1.0→2.0".into(),
                Step::Verifying,
                "Succeeded".into(),
                backup1()
            ),
        ]
    );
    let all = milestones(&world);
    assert_eq!(all[0].message, "upgrading from 1.0 to 2.0 (attempt 1)");
    assert_eq!(all[1].message, "upgraded from 1.0 to 2.0");
    assert_eq!(all[1].attempt, 1);
    // Stamped with the time the decision was made from: the upgrade took 30 s of world time.
    assert_eq!(all[0].at, t0());
    assert!(all[1].at > all[0].at);
}

#[test]
fn a_failed_backup_is_started_then_failed_without_a_backup() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    world.run(5);
    world.finish_job(
        "backup",
        JobOutcome::Failed("pg_dump: connection refused".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    assert_eq!(
        rows(&world),
        [
            (
                "Started",
                "1.0→2.0".into(),
                Step::BackingUp,
                "UpgradeStarted".into(),
                None
            ),
            (
                "Failed",
                "1.0→2.0".into(),
                Step::BackingUp,
                "BackupFailed".into(),
                None
            ),
        ]
    );
    let failed = &milestones(&world)[1];
    assert!(
        failed.message.contains("pg_dump: connection refused")
            && failed.message.contains("nothing was changed"),
        "{}",
        failed.message
    );
}

#[test]
fn a_failed_rollout_is_failed_at_its_step_then_rolled_back() {
    let mut world = World::new(with_backup(release("3.0")), cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    assert_eq!(world.run(20), None);
    assert_eq!(
        rows(&world),
        [
            (
                "Started",
                "1.0→3.0".into(),
                Step::BackingUp,
                "UpgradeStarted".into(),
                None
            ),
            (
                "Failed",
                "1.0→3.0".into(),
                Step::RollingOut,
                "RolloutFailed".into(),
                backup1()
            ),
            (
                "RolledBack",
                "1.0→3.0".into(),
                Step::RollingBack,
                "RolloutFailed".into(),
                backup1()
            ),
        ]
    );
    let all = milestones(&world);
    assert!(
        all[1].message.contains("progress deadline") && all[1].message.ends_with("; rolling back"),
        "{}",
        all[1].message
    );
    assert!(
        all[2].message.ends_with("rolled back to 1.0"),
        "{}",
        all[2].message
    );
}

#[test]
fn a_failed_restore_is_failed_then_rollback_failed_at_the_restore() {
    let r = with_database(
        with_verify(with_backup(release("2.0"))),
        DatabaseRollback::Restore,
    );
    let mut world = World::new(r, cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    world.run(20);
    world.fail_verify_and_reach_the_restore();
    world.finish_job(
        "restore",
        JobOutcome::Failed("pg_restore: error".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    let kinds: Vec<_> = rows(&world).into_iter().map(|r| (r.0, r.2, r.3)).collect();
    assert_eq!(
        kinds,
        [
            ("Started", Step::BackingUp, "UpgradeStarted".into()),
            ("Failed", Step::Verifying, "VerifyFailed".into()),
            ("RollbackFailed", Step::Restoring, "RollbackFailed".into()),
        ]
    );
    let failed = &milestones(&world)[2];
    assert_eq!(failed.backup, backup1());
    assert!(
        failed.message.contains("pg_restore: error") && failed.message.contains("meet-backup-1"),
        "{}",
        failed.message
    );
}

#[test]
fn with_automatic_rollback_off_a_failure_is_the_last_milestone() {
    let mut r = release("3.0");
    r.spec.rollback.automatic = false;
    let mut world = World::new(r, cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    assert_eq!(world.run(20), None);
    let kinds: Vec<_> = rows(&world).into_iter().map(|r| (r.0, r.2, r.3)).collect();
    assert_eq!(
        kinds,
        [
            ("Started", Step::RollingOut, "UpgradeStarted".into()),
            ("Failed", Step::RollingOut, "RolloutFailed".into()),
        ]
    );
    assert!(
        milestones(&world)[1]
            .message
            .contains("automatic rollback is off")
    );
}

#[test]
fn a_superseded_upgrade_tells_only_the_start_of_the_next() {
    let mut world = World::new(release("2.0"), cluster("1.0"));
    world.faults.bad_tags.push("2.0".into());
    world.step();
    world.settle_deployments();
    world.set_version("3.0");
    assert_eq!(world.run(20), None);
    assert_eq!(world.status().history[1].result, UpgradeResult::Superseded);
    let kinds: Vec<_> = rows(&world).into_iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        kinds,
        [
            ("Started", "1.0→2.0".into()),
            ("Started", "1.0→3.0".into()),
            ("Succeeded", "1.0→3.0".into()),
        ]
    );
    assert_eq!(milestones(&world)[1].attempt, 2);
}

#[test]
fn rest_repairs_retries_refused_and_crashes_tell_nothing_twice() {
    // At rest, and deciding again and again: nothing.
    let mut world = World::new(full("1.0"), cluster("1.0"));
    world.step();
    world.step();
    assert!(milestones(&world).is_empty());

    // A drift repair is not an upgrade.
    let d = world.cluster.deployments.get_mut("frontend").unwrap();
    d.containers[0].1 = "ghcr.io/meet/web:hotfix".into();
    world.step();
    world.settle_deployments();
    world.step();
    assert!(milestones(&world).is_empty());

    // The operator dies after writing the status that starts an upgrade, then decides again
    // from it: Started was in the decision that wrote it, and only there.
    world.set_version("2.0");
    world.step_and_crash();
    world.step();
    world.step();
    let kinds: Vec<_> = rows(&world).into_iter().map(|r| r.0).collect();
    assert_eq!(kinds, ["Started"]);

    // A failed version that is not retried says nothing more, however long it waits.
    let mut world = World::new(release("3.0"), cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    world.run(20);
    let before = milestones(&world).len();
    for _ in 0..3 {
        world.advance(Duration::from_secs(600));
        world.step();
    }
    assert_eq!(milestones(&world).len(), before);
    // An invalid spec changes nothing and tells nothing.
    world.release.spec.targets.clear();
    world.bump_generation();
    world.step();
    assert_eq!(milestones(&world).len(), before);
}

#[test]
fn deleting_mid_upgrade_is_no_milestone() {
    let mut world = World::new(release("3.0"), cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    world.step();
    world.settle_deployments();
    world.release.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    world.run(20);
    let kinds: Vec<_> = rows(&world).into_iter().map(|r| r.0).collect();
    assert_eq!(kinds, ["Started"]);
    assert_eq!(world.status().history[0].result, UpgradeResult::Cancelled);
}

/// The milestones a world's decisions produced follow the grammar of an upgrade, attempt by
/// attempt: `Started`, then at most one `Failed`, then at most one ending (`Succeeded` only
/// without a failure, `RolledBack` or `RollbackFailed` only after one); and each ended attempt
/// in the history has the ending its result says. Checked after every random walk of
/// `properties::upgrades_keep_every_invariant`.
pub(super) fn check_grammar(world: &World) -> Result<(), String> {
    use std::collections::BTreeMap;
    let mut by_attempt: BTreeMap<i64, Vec<&'static str>> = BTreeMap::new();
    for m in milestones(world) {
        by_attempt
            .entry(m.attempt)
            .or_default()
            .push(m.kind.as_str());
    }
    for (attempt, kinds) in &by_attempt {
        let allowed: &[&[&str]] = &[
            &["Started"],
            &["Started", "Succeeded"],
            &["Started", "Failed"],
            &["Started", "Failed", "RolledBack"],
            &["Started", "Failed", "RollbackFailed"],
        ];
        if !allowed.contains(&kinds.as_slice()) {
            return Err(format!("attempt {attempt}: milestones {kinds:?}"));
        }
    }
    // On-demand requests notify nothing.
    let history = world
        .release
        .status
        .iter()
        .flat_map(|s| &s.history)
        .filter(|h| h.request.is_none());
    for entry in history {
        let last = by_attempt
            .get(&entry.attempt)
            .and_then(|k| k.last().copied());
        let fits = match entry.result {
            UpgradeResult::Succeeded => last == Some("Succeeded"),
            UpgradeResult::RolledBack => last == Some("RolledBack"),
            UpgradeResult::Aborted => last == Some("Failed"),
            UpgradeResult::Failed => matches!(last, Some("Failed" | "RollbackFailed")),
            UpgradeResult::Superseded | UpgradeResult::Cancelled => {
                matches!(last, Some("Started" | "Failed"))
            }
        };
        if !fits {
            return Err(format!(
                "attempt {} ended {:?} but its last milestone is {last:?}",
                entry.attempt, entry.result
            ));
        }
    }
    Ok(())
}
