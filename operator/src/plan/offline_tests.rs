//! Planner rows of the `Offline` strategy: stop, back up, migrate, set the images, start
//! with the recorded replica counts, verify — and every way back.

use std::time::Duration;

use crate::api::conditions::{self, ConditionStatus::False};
use crate::api::*;

use super::decision::Action;
use super::fixtures::*;
use super::observed::JobOutcome;

const REPORT: &str = r#"{"location":"pvc://backups/meet/meet-backup-1.sql.gz","sizeBytes":10}"#;

fn step_of(world: &World) -> Option<Step> {
    world.status().upgrade.as_ref().map(|u| u.step)
}

fn scales(decision: &super::Decision) -> Vec<(String, i32)> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Scale {
                deployment,
                replicas,
                ..
            } => Some((deployment.clone(), *replicas)),
            _ => None,
        })
        .collect()
}

fn recorded(world: &World) -> Vec<(String, i32)> {
    world
        .status()
        .upgrade
        .iter()
        .flat_map(|u| &u.previous_replicas)
        .map(|r| (r.deployment.clone(), r.replicas))
        .collect()
}

fn counts(pairs: &[(&str, i32)]) -> Vec<(String, i32)> {
    pairs.iter().map(|(d, n)| (d.to_string(), *n)).collect()
}

/// From rest to a stopped application: the first decision records the counts and scales to
/// zero; once the pods are gone the next step starts.
fn stop(world: &mut World) {
    let decision = world.step();
    assert_eq!(step_of(world), Some(Step::Stopping));
    assert_eq!(recorded(world), counts(&[("backend", 3), ("frontend", 2)]));
    assert_eq!(
        scales(&decision),
        counts(&[("backend", 0), ("frontend", 0)])
    );
    assert!(
        world.cluster.jobs.is_empty(),
        "nothing runs before the stop"
    );
    world.settle_deployments();
}

#[test]
fn offline_stops_backs_up_migrates_sets_images_starts_and_verifies() {
    let mut world = World::new(offline(full("2.0")), cluster("1.0"));
    stop(&mut world);
    // The backup and the migration run with no pod of the old version writing.
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    assert!(!world.pods_run());
    world.finish_job("backup", JobOutcome::Succeeded, Some(REPORT));
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    assert!(!world.pods_run());
    assert_eq!(world.replicas(), (0, 0));
    assert_eq!(
        world.images("backend")[0].1,
        "ghcr.io/meet/backend:1.0",
        "images change only after the migration"
    );
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    // New images on stopped targets, then the recorded counts, then the verification.
    assert_eq!(world.run(10).as_deref(), Some("meet-verify-1"));
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(world.images("backend")[0].1, "ghcr.io/meet/backend:2.0");
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:2.0");
    world.finish_job("verify", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    assert_eq!(world.status().history[0].result, UpgradeResult::Succeeded);
    let steps: Vec<String> = world
        .log
        .iter()
        .flat_map(|d| &d.notes)
        .map(|n| n.reason.clone())
        .filter(|r| {
            [
                "Stopping",
                "BackingUp",
                "Migrating",
                "RollingOut",
                "Starting",
                "Verifying",
            ]
            .contains(&r.as_str())
        })
        .collect();
    assert_eq!(
        steps,
        [
            "BackingUp",
            "Migrating",
            "RollingOut",
            "Starting",
            "Verifying"
        ],
        "each step entered once, in order (Stopping is the first, recorded at the start)"
    );
}

#[test]
fn offline_waits_for_the_last_pod_to_go_before_the_backup() {
    let mut world = World::new(offline(with_backup(release("2.0"))), cluster("1.0"));
    world.step();
    // Scaled to zero, but a pod is still terminating.
    for d in world.cluster.deployments.values_mut() {
        d.observed_generation = d.generation;
    }
    world.step();
    assert_eq!(step_of(&world), Some(Step::Stopping));
    assert!(world.cluster.jobs.is_empty());
    let message = &conditions::get(&world.status().conditions, conditions::READY)
        .unwrap()
        .message;
    assert!(message.contains("stopping backend, frontend"), "{message}");
    world.settle_deployments();
    world.step();
    assert!(world.cluster.jobs.contains_key("meet-backup-1"));
}

#[test]
fn offline_targets_that_do_not_stop_are_started_again_and_nothing_else_runs() {
    let mut world = World::new(offline(full("2.0")), cluster("1.0"));
    world.step();
    // The pods never go (a stuck finalizer, a node gone).
    world.advance(Duration::from_secs(601));
    world.step();
    assert_eq!(step_of(&world), Some(Step::RollingBack));
    world.settle_deployments();
    assert_eq!(world.run(5), None);
    assert!(world.cluster.jobs.is_empty(), "no backup, no migration");
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(world.status().history[0].reason, "StopFailed");
    assert_eq!(world.status().history[0].result, UpgradeResult::RolledBack);
}

#[test]
fn offline_backup_failure_starts_the_old_version_again() {
    let mut world = World::new(offline(full("2.0")), cluster("1.0"));
    stop(&mut world);
    world.run(5);
    world.finish_job("backup", JobOutcome::Failed("disk full".into()), None);
    assert_eq!(world.run(5), None);
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(world.images("backend")[0].1, "ghcr.io/meet/backend:1.0");
    assert!(!world.cluster.jobs.contains_key("meet-migrate-1"));
    let entry = &world.status().history[0];
    assert_eq!(
        (entry.result, entry.reason.as_str()),
        (UpgradeResult::RolledBack, "BackupFailed")
    );
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
}

#[test]
fn offline_restore_stops_the_new_version_restores_and_starts_the_old_one() {
    let r = offline(with_database(
        with_verify(with_backup(release("2.0"))),
        DatabaseRollback::Restore,
    ));
    let mut world = World::new(r, cluster("1.0"));
    stop(&mut world);
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(REPORT));
    assert_eq!(world.run(10).as_deref(), Some("meet-verify-1"));
    assert_eq!(world.replicas(), (3, 2));
    world.finish_job("verify", JobOutcome::Failed("smoke".into()), None);
    world.step();
    assert_eq!(step_of(&world), Some(Step::ScalingDown));
    // The counts recorded before the first stop are kept, not the running ones.
    assert_eq!(recorded(&world), counts(&[("backend", 3), ("frontend", 2)]));
    world.settle_deployments();
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-1"));
    assert!(!world.pods_run(), "nothing writes while the restore runs");
    world.finish_job("restore", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(world.images("backend")[0].1, "ghcr.io/meet/backend:1.0");
    assert_eq!(world.status().history[0].result, UpgradeResult::RolledBack);
}

#[test]
fn offline_downgrade_runs_with_the_targets_stopped() {
    let r = offline(with_database(
        with_migration(release("2.0"), MigrationPhase::AfterRollout),
        DatabaseRollback::Downgrade,
    ));
    let mut world = World::new(r, cluster("1.0"));
    stop(&mut world);
    // The after-rollout migration runs once the new version is up again.
    assert_eq!(world.run(10).as_deref(), Some("meet-migrate-1"));
    assert_eq!(world.replicas(), (3, 2));
    world.finish_job("migrate", JobOutcome::Failed("bad".into()), None);
    world.step();
    assert_eq!(step_of(&world), Some(Step::ScalingDown));
    world.settle_deployments();
    assert_eq!(world.run(5).as_deref(), Some("meet-downgrade-1"));
    assert!(!world.pods_run());
    world.finish_job("downgrade", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:1.0");
}

#[test]
fn offline_start_scales_once_and_then_leaves_the_count_to_an_autoscaler() {
    let mut world = World::new(offline(with_verify(release("2.0"))), cluster("1.0"));
    stop(&mut world);
    assert_eq!(world.run(10).as_deref(), Some("meet-verify-1"));
    // An autoscaler (or a human) changes the count while the verification runs.
    world
        .cluster
        .deployments
        .get_mut("backend")
        .unwrap()
        .replicas = 5;
    world.settle_deployments();
    let decision = world.step();
    assert!(scales(&decision).is_empty(), "{:?}", decision.actions);
    world.finish_job("verify", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(world.replicas(), (5, 2));
}

#[test]
fn offline_a_crash_after_every_status_write_brings_back_the_recorded_counts() {
    let mut world = World::new(offline(full("2.0")), cluster("1.0"));
    for _ in 0..40 {
        world.step_and_crash();
        world.step();
        world.settle_deployments();
        if let Some((name, _)) = world
            .cluster
            .jobs
            .iter()
            .find(|(_, j)| j.outcome == JobOutcome::Running)
        {
            let name = name.clone();
            let report = name.contains("backup").then_some(REPORT);
            world.finish_job(&name, JobOutcome::Succeeded, report);
        }
        if world.status().upgrade.is_none() {
            break;
        }
        world.advance(Duration::from_secs(10));
    }
    assert_eq!(world.status().history[0].result, UpgradeResult::Succeeded);
    assert_eq!(world.replicas(), (3, 2));
    assert!(
        world.creates.values().all(|n| *n == 1),
        "{:?}",
        world.creates
    );
}

#[test]
fn offline_a_new_version_while_stopped_keeps_the_first_recorded_counts() {
    let mut world = World::new(offline(with_backup(release("2.0"))), cluster("1.0"));
    stop(&mut world);
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    world.set_version("3.0");
    world.step();
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!((upgrade.to.as_str(), upgrade.attempt), ("3.0", 2));
    assert_eq!(recorded(&world), counts(&[("backend", 3), ("frontend", 2)]));
    assert_eq!(world.status().history[0].result, UpgradeResult::Superseded);
    world.finish_job("backup-1", JobOutcome::Succeeded, Some(REPORT));
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-2"));
    world.finish_job("backup-2", JobOutcome::Succeeded, Some(REPORT));
    assert_eq!(world.run(10), None);
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(world.images("backend")[0].1, "ghcr.io/meet/backend:3.0");
}

#[test]
fn offline_deleted_while_stopped_starts_the_old_version_before_letting_go() {
    let mut world = World::new(offline(with_backup(release("2.0"))), cluster("1.0"));
    stop(&mut world);
    world.run(5);
    world.release.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    world.step();
    assert_eq!(world.replicas(), (3, 2));
    world.settle_deployments();
    let decision = world.step();
    assert!(
        !decision.finalizer,
        "let go once the old version runs again"
    );
    assert_eq!(world.images("backend")[0].1, "ghcr.io/meet/backend:1.0");
}

#[test]
fn offline_names_a_target_an_autoscaler_scales_once() {
    let mut cluster = cluster("1.0");
    cluster.deployments.get_mut("backend").unwrap().autoscaler = Some("backend-hpa".into());
    let mut world = World::new(offline(with_backup(release("2.0"))), cluster);
    let decision = world.step();
    let told: Vec<&str> = decision
        .notes
        .iter()
        .filter(|n| n.reason == "AutoscaledTarget")
        .map(|n| n.message.as_str())
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("Deployment backend") && told[0].contains("backend-hpa"),
        "{}",
        told[0]
    );
    world.settle_deployments();
    let again = world.step();
    assert!(again.notes.iter().all(|n| n.reason != "AutoscaledTarget"));
}
