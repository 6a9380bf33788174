//! Deleting an AppRelease at each step of an upgrade: a running data Job is waited for, the
//! targets end in the state that matches the database, and only then does the finalizer go.

use crate::api::*;

use super::decision::Action;
use super::fixtures::*;
use super::observed::JobOutcome;

const BACKUP_REPORT: &str =
    r#"{"location":"pvc://backups/meet/meet-backup-1.sql.gz","sizeBytes":2048,"sha256":"ab12"}"#;

fn delete(world: &mut World) {
    assert!(
        world.release.metadata.finalizers.is_some(),
        "an upgrade in flight holds the finalizer"
    );
    world.release.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
}

/// Reconciles a deleted release until the finalizer goes (at most `limit` times), checking
/// that no Job is ever created meanwhile. Returns the last Event note about the deletion.
fn wind_down(world: &mut World, limit: usize) -> String {
    let jobs_before = world.creates.clone();
    for _ in 0..limit {
        let decision = world.step();
        world.settle_deployments();
        assert!(
            !decision
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateJob(_))),
            "no Job is started for a deleted release"
        );
        if !decision.finalizer {
            assert_eq!(world.creates, jobs_before);
            let note = decision
                .notes
                .iter()
                .find(|n| n.reason == "DeletedDuringUpgrade")
                .expect("an Event says what happened");
            let entry = &world.status().history[0];
            assert_eq!(entry.result, UpgradeResult::Cancelled);
            return note.message.clone();
        }
    }
    panic!("still held after {limit} reconciles: {:#?}", world.status());
}

fn images(world: &World) -> (String, String) {
    (
        world.cluster.deployments["backend"]
            .image("backend")
            .unwrap()
            .to_string(),
        world.cluster.deployments["frontend"]
            .image("web")
            .unwrap()
            .to_string(),
    )
}

fn at(version: &str) -> (String, String) {
    (
        format!("ghcr.io/meet/backend:{version}"),
        format!("ghcr.io/meet/web:{version}"),
    )
}

#[test]
fn idle_release_is_let_go_at_once() {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    let decision = world.step();
    assert!(
        !decision.finalizer,
        "no finalizer while nothing is in flight"
    );
}

#[test]
fn during_the_backup_nothing_was_changed_and_nothing_is_waited_for() {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    world.step();
    world.set_version("2.0");
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    delete(&mut world);
    let note = wind_down(&mut world, 1);
    assert_eq!(images(&world), at("1.0"));
    assert!(note.contains("run 1.0 again"), "{note}");
}

#[test]
fn a_running_migration_is_waited_for_then_the_new_images_match_the_database() {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    world.step();
    world.set_version("2.0");
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    delete(&mut world);
    for _ in 0..3 {
        let decision = world.step();
        assert!(decision.finalizer && decision.actions.is_empty());
        assert!(has(world.status(), conditions::RECONCILING));
    }
    assert_eq!(images(&world), at("1.0"), "untouched while it runs");
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    let note = wind_down(&mut world, 3);
    assert_eq!(images(&world), at("2.0"));
    assert!(note.contains("migration to 2.0 had run"), "{note}");
}

#[test]
fn a_failed_migration_leaves_the_previous_images() {
    let mut world = World::new(
        with_migration(release("1.0"), MigrationPhase::BeforeRollout),
        cluster("1.0"),
    );
    world.step();
    world.set_version("2.0");
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    delete(&mut world);
    world.finish_job("migrate", JobOutcome::Failed("exit 1".into()), None);
    wind_down(&mut world, 2);
    assert_eq!(images(&world), at("1.0"));
}

#[test]
fn mid_rollout_the_targets_go_where_the_migration_put_the_database() {
    // Migrated before the rollout: every target gets the new version.
    let mut world = World::new(
        with_migration(release("1.0"), MigrationPhase::BeforeRollout),
        cluster("1.0"),
    );
    world.step();
    world.set_version("2.0");
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.step();
    world.settle_deployments();
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.targets_done),
        Some(1)
    );
    delete(&mut world);
    wind_down(&mut world, 3);
    assert_eq!(images(&world), at("2.0"));

    // No migration: the data never moved, so the targets go back.
    let mut world = World::new(release("1.0"), cluster("1.0"));
    world.step();
    world.set_version("2.0");
    world.step();
    assert_eq!(images(&world).0, at("2.0").0, "the first target moved");
    delete(&mut world);
    wind_down(&mut world, 3);
    assert_eq!(images(&world), at("1.0"));
}

/// A Restore rollback of a failed verification, up to the running restore Job.
fn restoring() -> World {
    let r = with_database(
        with_verify(with_backup(release("1.0"))),
        DatabaseRollback::Restore,
    );
    let mut world = World::new(r, cluster("1.0"));
    world.step();
    world.set_version("2.0");
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    world.run(20);
    world.fail_verify_and_reach_the_restore();
    world
}

#[test]
fn a_running_restore_is_waited_for_then_the_old_version_comes_back_with_its_replicas() {
    let mut world = restoring();
    delete(&mut world);
    let decision = world.step();
    assert!(decision.finalizer && decision.actions.is_empty());
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    world.finish_job("restore", JobOutcome::Succeeded, None);
    let note = wind_down(&mut world, 3);
    assert_eq!(images(&world), at("1.0"));
    assert_eq!(world.cluster.deployments["backend"].replicas, 3);
    assert_eq!(world.cluster.deployments["frontend"].replicas, 2);
    assert!(note.contains("run 1.0 again"), "{note}");
}

#[test]
fn a_failed_restore_leaves_the_targets_stopped_and_says_what_to_do() {
    let mut world = restoring();
    delete(&mut world);
    world.finish_job("restore", JobOutcome::Failed("exit 1".into()), None);
    let note = wind_down(&mut world, 1);
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    assert!(
        note.contains("half-way") && note.contains("meet-backup-1") && note.contains("backend=3"),
        "{note}"
    );
}

#[test]
fn a_running_down_migration_is_waited_for_then_the_previous_images_come_back() {
    let r = with_database(
        with_migration(release("1.0"), MigrationPhase::AfterRollout),
        DatabaseRollback::Downgrade,
    );
    let mut world = World::new(r, cluster("1.0"));
    world.step();
    world.set_version("2.0");
    assert_eq!(world.run(20).as_deref(), Some("meet-migrate-1"));
    world.finish_job("migrate", JobOutcome::Failed("exit 1".into()), None);
    assert_eq!(world.run(5).as_deref(), Some("meet-downgrade-1"));
    delete(&mut world);
    assert!(world.step().actions.is_empty());
    assert_eq!(images(&world), at("2.0"));
    world.finish_job("downgrade", JobOutcome::Succeeded, None);
    wind_down(&mut world, 3);
    assert_eq!(images(&world), at("1.0"));
}

#[test]
fn a_restore_that_was_never_created_is_not_taken_for_a_failed_one() {
    // The operator wrote "Restoring" and died before creating the Job: nothing touched the
    // database, so the replicas come back and nothing is left stopped.
    let mut world = restoring();
    world.cluster.jobs.remove("meet-restore-1");
    world.creates.remove("meet-restore-1");
    delete(&mut world);
    let note = wind_down(&mut world, 3);
    assert_eq!(world.cluster.deployments["backend"].replicas, 3);
    assert!(!note.contains("half-way"), "{note}");
}
