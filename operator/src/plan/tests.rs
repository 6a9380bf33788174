//! The step table, row by row, and each failure.

use std::time::Duration;

use crate::api::conditions::{self, ConditionStatus::*, RECONCILING, STALLED};
use crate::api::*;

use super::decide;
use super::decision::Action;
use super::fixtures::*;
use super::observed::JobOutcome;

fn set_images(decision: &super::Decision) -> Vec<&str> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SetImages { deployment, .. } => Some(deployment.as_str()),
            _ => None,
        })
        .collect()
}

fn image_of(world: &World, deployment: &str, container: &str) -> String {
    world.cluster.deployments[deployment]
        .image(container)
        .unwrap()
        .to_string()
}

fn ever_set_images(world: &World) -> bool {
    world.log.iter().any(|d| !set_images(d).is_empty())
}

const BACKUP_REPORT: &str =
    r#"{"location":"pvc://backups/meet/meet-backup-1.sql.gz","sizeBytes":2048,"sha256":"ab12"}"#;

#[test]
fn first_visit_at_the_version_is_ready_without_changes() {
    let decision = decide(&full("1.0"), &cluster("1.0"));
    assert!(decision.actions.is_empty());
    assert_eq!(ready(&decision.status), (True, "Succeeded".into()));
    assert_eq!(decision.status.current_version.as_deref(), Some("1.0"));
    assert_eq!(decision.status.observed_generation, Some(1));
    assert!(!has(&decision.status, STALLED) && !has(&decision.status, RECONCILING));
}

#[test]
fn deciding_twice_on_the_same_state_changes_nothing() {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    let first = world.step();
    let second = world.step();
    assert_eq!(
        first.status, second.status,
        "a status that differs each time makes the controller wake itself"
    );
}

#[test]
fn unavailable_targets_at_the_version_are_not_ready_but_not_stalled() {
    let mut observed = cluster("1.0");
    observed
        .deployments
        .get_mut("frontend")
        .unwrap()
        .available_replicas = 1;
    let decision = decide(&release("1.0"), &observed);
    assert_eq!(
        ready(&decision.status),
        (False, "TargetsUnavailable".into())
    );
    assert!(!has(&decision.status, STALLED));
    assert!(
        has(&decision.status, RECONCILING),
        "kstatus reads a release whose targets are still coming up as in progress"
    );
    assert!(decision.actions.is_empty());

    // Past its progress deadline the target has failed (kstatus says so of the Deployment):
    // Stalled, so a Flux health check fails instead of waiting for its timeout.
    let frontend = observed.deployments.get_mut("frontend").unwrap();
    frontend.deadline_exceeded = true;
    let decision = decide(&release("1.0"), &observed);
    assert_eq!(
        ready(&decision.status),
        (False, "TargetsUnavailable".into())
    );
    assert!(has(&decision.status, STALLED) && !has(&decision.status, RECONCILING));
    assert!(decision.actions.is_empty());
}

#[test]
fn invalid_specs_get_a_readable_condition_and_change_nothing() {
    type Breaks = Box<dyn Fn(&mut AppRelease)>;
    let cases: Vec<(&str, Breaks, &str)> = vec![
        (
            "empty version",
            Box::new(|r| r.spec.version = String::new()),
            "spec.version",
        ),
        (
            "version with +",
            Box::new(|r| r.spec.version = "1.0+build".into()),
            "spec.version",
        ),
        (
            "version starting with -",
            Box::new(|r| r.spec.version = "-1".into()),
            "must start",
        ),
        (
            "no targets",
            Box::new(|r| r.spec.targets.clear()),
            "spec.targets",
        ),
        (
            "duplicate target",
            Box::new(|r| {
                let t = r.spec.targets[0].clone();
                r.spec.targets.push(t)
            }),
            "listed twice",
        ),
        (
            "bad deployment name",
            Box::new(|r| r.spec.targets[0].deployment = Some("Back_End".into())),
            "not a Deployment name",
        ),
        (
            "empty container list",
            Box::new(|r| r.spec.targets[0].containers = Some(vec![])),
            "containers",
        ),
        (
            "image with tag",
            Box::new(|r| r.spec.targets[0].image = Some("ghcr.io/x:1".into())),
            "without tag",
        ),
        (
            "image with digest",
            Box::new(|r| r.spec.targets[0].image = Some("x@sha256:00".into())),
            "without tag",
        ),
        (
            "keepLast 0",
            Box::new(|r| r.spec.backup.as_mut().unwrap().keep_last = 0),
            "keepLast",
        ),
        (
            "backup timeout",
            Box::new(|r| r.spec.backup.as_mut().unwrap().timeout = "soon".into()),
            "spec.backup.timeout",
        ),
        (
            "zero rollout timeout",
            Box::new(|r| r.spec.rollout.timeout = "0s".into()),
            "longer than zero",
        ),
        (
            "migration timeout",
            Box::new(|r| r.spec.migration.as_mut().unwrap().timeout = "1.5h".into()),
            "spec.migration.timeout",
        ),
        (
            "no containers",
            Box::new(|r| {
                r.spec
                    .migration
                    .as_mut()
                    .unwrap()
                    .template
                    .spec
                    .as_mut()
                    .unwrap()
                    .containers
                    .clear()
            }),
            "at least one container",
        ),
        (
            "no pod spec",
            Box::new(|r| r.spec.verify.as_mut().unwrap().template.spec = None),
            "spec.verify.template.spec",
        ),
        (
            "restart Always",
            Box::new(|r| {
                r.spec
                    .backup
                    .as_mut()
                    .unwrap()
                    .template
                    .as_mut()
                    .unwrap()
                    .spec
                    .as_mut()
                    .unwrap()
                    .restart_policy = Some("Always".into())
            }),
            "restartPolicy",
        ),
        (
            "backup with template and preset",
            Box::new(|r| {
                let preset = with_preset(r.clone()).spec.backup.unwrap().preset;
                r.spec.backup.as_mut().unwrap().preset = preset;
            }),
            "not several",
        ),
        (
            "backup with neither template nor preset",
            Box::new(|r| r.spec.backup.as_mut().unwrap().template = None),
            "a template, a preset (postgres, mysql, redis, mongodb, volume) or components",
        ),
        (
            "backup set with a template and components",
            Box::new(|r| {
                let set = with_set(r.clone()).spec.backup.unwrap().components;
                r.spec.backup.as_mut().unwrap().components = set;
            }),
            "not several",
        ),
        (
            "backup set naming a component twice",
            Box::new(|r| {
                let mut set = with_set(r.clone()).spec.backup.unwrap();
                set.components[2].name = "db".into();
                r.spec.backup = Some(set);
                r.spec.rollback.restore = None;
            }),
            "component db is listed twice",
        ),
        (
            "backup set component name too long for its Jobs",
            Box::new(|r| {
                let mut set = with_set(r.clone()).spec.backup.unwrap();
                set.components[0].name = "the-main-postgres-database".into();
                r.spec.backup = Some(set);
                r.spec.rollback.restore = None;
            }),
            "spec.backup.components[0].name",
        ),
        (
            "backup set template component without restore, database Restore",
            Box::new(|r| {
                let mut set = with_set(r.clone()).spec.backup.unwrap();
                set.components[1].preset = None;
                set.components[1].template = Some(template("redis:7"));
                r.spec.backup = Some(set);
                r.spec.rollback.restore = None;
                r.spec.rollback.database = DatabaseRollback::Restore;
            }),
            "restore Job template for the template component cache",
        ),
        (
            "backup set with rollback.restore",
            Box::new(|r| {
                *r = with_database(with_set(r.clone()), DatabaseRollback::Restore);
            }),
            "rollback.restore is for a single backup",
        ),
        (
            "malformed maxAge",
            Box::new(|r| r.spec.backup.as_mut().unwrap().max_age = Some("a month".into())),
            "spec.backup.maxAge",
        ),
        (
            "preset with a bad secret name",
            Box::new(|r| {
                *r = with_preset(r.clone());
                if let Some(BackupPreset::Postgres(p)) = &mut r.spec.backup.as_mut().unwrap().preset
                {
                    p.connection_secret = "Not/A-Name".into();
                }
            }),
            "connectionSecret",
        ),
        (
            "volume preset archiving its own storage claim",
            Box::new(|r| {
                *r = with_preset(r.clone());
                r.spec.backup.as_mut().unwrap().preset = Some(BackupPreset::Volume(VolumePreset {
                    claim: "uploads".into(),
                    storage: BackupStorage {
                        pvc: "uploads".into(),
                    },
                    image: None,
                    security_context: None,
                }));
            }),
            "must differ",
        ),
        (
            "downgrade without template",
            Box::new(|r| r.spec.rollback.database = DatabaseRollback::Downgrade),
            "downgrade",
        ),
        (
            "restore without template",
            Box::new(|r| r.spec.rollback.database = DatabaseRollback::Restore),
            "restore",
        ),
        (
            "restore without backup",
            Box::new(|r| {
                *r = with_database(r.clone(), DatabaseRollback::Restore);
                r.spec.backup = None
            }),
            "no backup",
        ),
    ];
    for (name, break_it, expected) in cases {
        let mut r = full("2.0");
        break_it(&mut r);
        let decision = decide(&r, &cluster("1.0"));
        assert!(
            decision.actions.is_empty(),
            "{name}: {:?}",
            decision.actions
        );
        assert_eq!(
            ready(&decision.status),
            (False, "InvalidSpec".into()),
            "{name}"
        );
        assert!(has(&decision.status, STALLED), "{name}");
        let message = &decision.status.conditions[0].message;
        assert!(message.contains(expected), "{name}: {message}");
        assert_eq!(decision.notes.len(), 1, "{name}: one Event");
        assert!(decision.status.upgrade.is_none(), "{name}");
    }
}

#[test]
fn missing_deployment_or_container_changes_nothing() {
    let mut observed = cluster("1.0");
    observed.deployments.remove("frontend");
    let decision = decide(&full("2.0"), &observed);
    assert!(decision.actions.is_empty());
    assert_eq!(ready(&decision.status), (False, "TargetNotFound".into()));
    assert!(
        decision.status.conditions[0]
            .message
            .contains("\"frontend\"")
    );

    let mut r = full("2.0");
    r.spec.targets[0].containers = Some(vec!["api".into()]);
    let decision = decide(&r, &cluster("1.0"));
    assert!(decision.actions.is_empty());
    assert_eq!(ready(&decision.status), (False, "InvalidSpec".into()));
    assert!(
        decision.status.conditions[0]
            .message
            .contains("has no container \"api\" (it has backend, sidecar)")
    );
}

#[test]
fn a_missing_deployment_that_appears_later_is_upgraded() {
    let mut world = World::new(release("2.0"), cluster("1.0"));
    let frontend = world.cluster.deployments.remove("frontend").unwrap();
    world.step();
    assert_eq!(ready(world.status()), (False, "TargetNotFound".into()));
    world
        .cluster
        .deployments
        .insert("frontend".into(), frontend);
    assert_eq!(world.run(20), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
}

#[test]
fn suspend_holds_the_upgrade() {
    let mut r = full("2.0");
    r.spec.suspend = true;
    let decision = decide(&r, &cluster("1.0"));
    assert!(decision.actions.is_empty());
    assert_eq!(ready(&decision.status), (False, "Suspended".into()));
    assert!(!has(&decision.status, STALLED));
}

#[test]
fn happy_path_backs_up_migrates_rolls_out_in_order_and_verifies() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    let job = world.run(5).expect("backup Job");
    assert_eq!(job, "meet-backup-1");
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!(
        (upgrade.from.as_str(), upgrade.to.as_str(), upgrade.step),
        ("1.0", "2.0", Step::BackingUp)
    );
    assert_eq!(ready(world.status()), (Unknown, "Progressing".into()));
    assert!(has(world.status(), RECONCILING));
    assert!(
        !ever_set_images(&world),
        "nothing changes before the backup succeeded"
    );

    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    assert!(
        !ever_set_images(&world),
        "migration runs before the rollout"
    );
    let Some(Action::CreateJob(request)) = world.log.last().unwrap().actions.first().cloned()
    else {
        panic!()
    };
    assert_eq!(request.app_image, "ghcr.io/meet/backend:2.0");
    assert_eq!(request.backup_id.as_deref(), Some("meet-backup-1"));

    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.step();
    assert_eq!(
        set_images(world.log.last().unwrap()),
        ["backend"],
        "one target at a time, in order"
    );
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:1.0");
    assert_eq!(world.run(10).as_deref(), Some("meet-verify-1"));
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:2.0"
    );
    assert_eq!(
        image_of(&world, "backend", "sidecar"),
        "envoy:1.30",
        "untargeted containers are untouched"
    );
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:2.0");

    world.finish_job("verify", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    let status = world.status();
    assert_eq!(status.current_version.as_deref(), Some("2.0"));
    assert_eq!(ready(status), (True, "Succeeded".into()));
    assert!(!has(status, RECONCILING) && !has(status, STALLED));
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    assert_eq!(status.history[0].backup.as_deref(), Some("meet-backup-1"));
    let backup = &status.backups[0];
    assert_eq!(
        (backup.id.as_str(), backup.version.as_str()),
        ("meet-backup-1", "1.0")
    );
    assert_eq!(
        backup.location.as_deref(),
        Some("pvc://backups/meet/meet-backup-1.sql.gz")
    );
    assert_eq!(
        (backup.size_bytes, backup.sha256.as_deref()),
        (Some(2048), Some("ab12"))
    );
    assert!(world.creates.values().all(|n| *n == 1));
}

#[test]
fn backup_failure_aborts_before_any_change() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    world.run(5);
    world.finish_job(
        "backup",
        JobOutcome::Failed("BackoffLimitExceeded: pg_dump: connection refused".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    assert!(!ever_set_images(&world));
    let status = world.status();
    assert_eq!(ready(status), (False, "BackupFailed".into()));
    assert!(has(status, STALLED));
    assert!(status.conditions[0].message.contains("connection refused"));
    assert_eq!(status.history[0].result, UpgradeResult::Aborted);
    assert!(status.backups.is_empty());
    assert_eq!(status.current_version.as_deref(), Some("1.0"));
    assert!(
        world
            .log
            .last()
            .unwrap()
            .notes
            .iter()
            .any(|n| n.reason == "BackupFailed")
    );
}

#[test]
fn migration_failure_rolls_back_and_is_not_retried() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, None);
    world.run(5);
    world.finish_job("migrate", JobOutcome::Failed("exit code 1".into()), None);
    assert_eq!(world.run(10), None);
    assert!(
        !ever_set_images(&world),
        "nothing was rolled out, so nothing to put back"
    );
    let status = world.status().clone();
    assert_eq!(ready(&status), (False, "RolledBack".into()));
    assert!(has(&status, STALLED));
    assert_eq!(status.history[0].reason, "MigrationFailed");
    for _ in 0..3 {
        world.advance(Duration::from_secs(600));
        world.step();
    }
    assert_eq!(
        world.creates.len(),
        2,
        "the failed migration is not run again"
    );
}

#[test]
fn downgrade_runs_with_the_new_image_before_images_go_back() {
    let r = with_database(
        with_migration(release("2.0"), MigrationPhase::AfterRollout),
        DatabaseRollback::Downgrade,
    );
    let mut world = World::new(r, cluster("1.0"));
    assert_eq!(world.run(20).as_deref(), Some("meet-migrate-1"));
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:2.0",
        "AfterRollout: rolled out first"
    );
    world.finish_job(
        "migrate",
        JobOutcome::Failed("DeadlineExceeded".into()),
        None,
    );
    assert_eq!(world.run(5).as_deref(), Some("meet-downgrade-1"));
    let Some(Action::CreateJob(request)) = world.log.last().unwrap().actions.first().cloned()
    else {
        panic!()
    };
    assert_eq!(request.app_image, "ghcr.io/meet/backend:2.0");
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:2.0",
        "images wait for the downgrade"
    );
    world.finish_job("downgrade", JobOutcome::Succeeded, None);
    assert_eq!(world.run(10), None);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:1.0"
    );
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:1.0");
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
}

#[test]
fn failed_downgrade_stops_and_leaves_targets_as_they_are() {
    let r = with_database(
        with_migration(release("2.0"), MigrationPhase::AfterRollout),
        DatabaseRollback::Downgrade,
    );
    let mut world = World::new(r, cluster("1.0"));
    world.run(20);
    world.finish_job("migrate", JobOutcome::Failed("boom".into()), None);
    world.run(5);
    world.finish_job(
        "downgrade",
        JobOutcome::Failed("down-migration 42 failed".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:2.0"
    );
    let status = world.status();
    assert_eq!(ready(status), (False, "RollbackFailed".into()));
    assert!(has(status, STALLED));
    assert!(
        status.conditions[0]
            .message
            .contains("down-migration 42 failed")
    );
    assert_eq!(status.history[0].result, UpgradeResult::Failed);
}

#[test]
fn readiness_failure_puts_back_exactly_the_previous_images_of_every_target() {
    let mut world = World::new(release("3.0"), cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    let before: Vec<_> = ["backend", "frontend"]
        .iter()
        .map(|d| world.images(d))
        .collect();
    // backend rolls out to 3.0, stalls, and everything goes back.
    assert_eq!(world.run(20), None);
    let after: Vec<_> = ["backend", "frontend"]
        .iter()
        .map(|d| world.images(d))
        .collect();
    assert_eq!(before, after);
    let status = world.status().clone();
    assert_eq!(ready(&status), (False, "RolledBack".into()));
    assert_eq!(status.history[0].reason, "RolloutFailed");
    assert!(status.history[0].message.contains("progress deadline"));
    assert_eq!(status.failed.as_ref().unwrap().version, "3.0");

    // Not retried with the same spec...
    world.advance(Duration::from_secs(3600));
    world.step();
    assert!(world.log.last().unwrap().actions.is_empty());
    assert_eq!(world.status().attempts, 1);
    // ...but retried when the retry annotation changes...
    world.release.metadata.annotations =
        Some([(RETRY_ANNOTATION.to_string(), "1".to_string())].into());
    world.step();
    assert_eq!(world.status().attempts, 2);
    assert_eq!(world.run(20), None);
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
    // ...and upgraded when the spec moves on to a good version.
    world.set_version("4.0");
    assert_eq!(world.run(20), None);
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:4.0");
}

#[test]
fn rollout_timeout_counts_without_a_progress_deadline() {
    let mut r = release("2.0");
    r.spec.rollout.timeout = "2m".into();
    let mut world = World::new(r, cluster("1.0"));
    world.step();
    // The deployment controller never reports progress.
    world
        .cluster
        .deployments
        .get_mut("backend")
        .unwrap()
        .observed_generation = 2;
    world.advance(Duration::from_secs(60));
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().unwrap().step,
        Step::RollingOut
    );
    world.advance(Duration::from_secs(61));
    world.step();
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!(upgrade.step, Step::RollingBack);
    assert!(upgrade.failure.unwrap().message.contains("rollout timeout"));
}

#[test]
fn verify_failure_rolls_back() {
    let mut world = World::new(with_verify(release("2.0")), cluster("1.0"));
    assert_eq!(world.run(20).as_deref(), Some("meet-verify-1"));
    world.finish_job(
        "verify",
        JobOutcome::Failed("smoke test: HTTP 500".into()),
        None,
    );
    assert_eq!(world.run(20), None);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:1.0"
    );
    assert_eq!(world.status().history[0].reason, "VerifyFailed");
}

#[test]
fn restore_scales_down_restores_this_backup_then_brings_everything_back() {
    let r = with_database(
        with_verify(with_backup(release("2.0"))),
        DatabaseRollback::Restore,
    );
    let mut world = World::new(r, cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some(BACKUP_REPORT));
    world.run(20);
    world.finish_job("verify", JobOutcome::Failed("bad".into()), None);
    // Scale-down is recorded before it is done.
    world.step();
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!(upgrade.step, Step::ScalingDown);
    assert_eq!(upgrade.previous_replicas.len(), 2);
    assert_eq!(upgrade.previous_replicas[0].replicas, 3);
    world.settle_deployments();
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    // Images are still the new ones while the restore runs.
    world
        .cluster
        .deployments
        .values_mut()
        .for_each(|d| d.status_replicas = 0);
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-1"));
    let Some(Action::CreateJob(request)) = world.log.last().unwrap().actions.first().cloned()
    else {
        panic!()
    };
    assert_eq!(request.backup_id.as_deref(), Some("meet-backup-1"));
    assert_eq!(
        request.backup_location.as_deref(),
        Some("pvc://backups/meet/meet-backup-1.sql.gz")
    );
    assert_eq!(world.cluster.deployments["frontend"].replicas, 0);
    world.finish_job("restore", JobOutcome::Succeeded, None);
    assert_eq!(world.run(10), None);
    assert_eq!(world.cluster.deployments["backend"].replicas, 3);
    assert_eq!(world.cluster.deployments["frontend"].replicas, 2);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:1.0"
    );
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
}

#[test]
fn failed_restore_leaves_targets_at_zero_and_names_the_backup() {
    let r = with_database(
        with_verify(with_backup(release("2.0"))),
        DatabaseRollback::Restore,
    );
    let mut world = World::new(r, cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, None);
    world.run(20);
    world.finish_job("verify", JobOutcome::Failed("bad".into()), None);
    world.step();
    world.let_the_pods_go();
    world.run(5);
    world.finish_job(
        "restore",
        JobOutcome::Failed("pg_restore: error".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    let status = world.status();
    assert_eq!(ready(status), (False, "RollbackFailed".into()));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("meet-backup-1") && message.contains("scaled to zero"),
        "{message}"
    );
}

#[test]
fn a_running_migration_is_not_interrupted_by_a_new_version() {
    let mut world = World::new(
        with_migration(release("2.0"), MigrationPhase::BeforeRollout),
        cluster("1.0"),
    );
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
    world.set_version("3.0");
    world.step();
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().unwrap().step,
        Step::Migrating
    );
    assert_eq!(world.creates.len(), 1);
    assert!(!ever_set_images(&world));
    world.finish_job("migrate-1", JobOutcome::Succeeded, None);
    // Then it plans again from there: 3.0's migration, then the rollout of 3.0.
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-2"));
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!((upgrade.from.as_str(), upgrade.to.as_str()), ("1.0", "3.0"));
    assert_eq!(world.status().history[0].result, UpgradeResult::Superseded);
    world.finish_job("migrate-2", JobOutcome::Succeeded, None);
    assert_eq!(world.run(20), None);
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:3.0");
    assert!(!world.cluster.jobs.keys().any(|k| k.contains("2.0")));
}

#[test]
fn a_backup_is_superseded_and_a_new_one_taken() {
    let mut world = World::new(with_backup(release("2.0")), cluster("1.0"));
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    world.set_version("3.0");
    world.step();
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!(
        (upgrade.to.as_str(), upgrade.step),
        ("3.0", Step::BackingUp)
    );
    assert_eq!(world.creates.get("meet-backup-2"), Some(&1));
    assert_eq!(world.status().history[0].result, UpgradeResult::Superseded);
    assert!(!ever_set_images(&world));
}

#[test]
fn going_back_to_the_old_version_mid_rollout_rolls_back_and_is_ready() {
    let mut world = World::new(release("3.0"), cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    world.step();
    world.settle_deployments();
    world.set_version("1.0");
    assert_eq!(world.run(20), None);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:1.0"
    );
    assert_eq!(world.status().history[0].reason, "Cancelled");
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
}

#[test]
fn a_crash_after_the_status_write_repeats_the_action_without_duplicating() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    world.step_and_crash();
    assert!(world.cluster.jobs.is_empty());
    assert_eq!(
        world.status().upgrade.as_ref().unwrap().step,
        Step::BackingUp,
        "intent written first"
    );
    world.step();
    world.step();
    assert_eq!(world.creates.get("meet-backup-1"), Some(&1));
    assert_eq!(world.status().attempts, 1);
}

#[test]
fn a_job_that_vanishes_after_it_was_seen_is_not_created_again() {
    let mut world = World::new(
        with_migration(release("2.0"), MigrationPhase::BeforeRollout),
        cluster("1.0"),
    );
    world.run(5);
    world.step();
    world.cluster.jobs.remove("meet-migrate-1");
    assert_eq!(world.run(10), None);
    assert_eq!(world.creates["meet-migrate-1"], 1);
    assert!(
        world.status().history[0]
            .message
            .contains("not run a second time")
    );
}

#[test]
fn automatic_rollback_off_leaves_targets_for_a_human() {
    let mut r = release("3.0");
    r.spec.rollback.automatic = false;
    let mut world = World::new(r, cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    assert_eq!(world.run(20), None);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:3.0"
    );
    let status = world.status();
    assert_eq!(ready(status), (False, "RolloutFailed".into()));
    assert!(
        status.conditions[0]
            .message
            .contains("backend/backend=ghcr.io/meet/backend:1.0")
    );
}

#[test]
fn a_target_deleted_mid_upgrade_rolls_the_others_back() {
    let mut world = World::new(release("2.0"), cluster("1.0"));
    world.step();
    world.settle_deployments();
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:2.0"
    );
    world.cluster.deployments.remove("frontend");
    world.step();
    assert_eq!(world.run(10), None);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:1.0"
    );
    assert!(
        world.status().history[0]
            .message
            .contains("frontend was deleted")
    );
}

#[test]
fn retention_keeps_the_newest_and_hands_the_rest_to_the_next_backup() {
    let mut world = World::new(with_backup(release("1")), cluster("1"));
    for v in 2..=6 {
        world.set_version(&v.to_string());
        let job = world.run(5).unwrap();
        world.advance(Duration::from_secs(60));
        world.finish_job(&job, JobOutcome::Succeeded, None);
        assert_eq!(world.run(20), None);
    }
    let ids: Vec<_> = world
        .status()
        .backups
        .iter()
        .map(|b| b.id.as_str())
        .collect();
    assert_eq!(ids, ["meet-backup-5", "meet-backup-4", "meet-backup-3"]);
    let last_request = world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .filter_map(|a| match a {
            Action::CreateJob(r) => Some(r),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(last_request.prune, ["meet-backup-2"]);
}

#[test]
fn initial_adoption_uses_the_running_tag_as_from() {
    let mut world = World::new(release("2.0"), cluster("1.0"));
    world.step();
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!(upgrade.from, "1.0");
    assert_eq!(upgrade.previous_images.len(), 2);
    assert_eq!(
        world.status().last_attempted_version.as_deref(),
        Some("2.0")
    );
}

#[test]
fn an_invalid_spec_mid_upgrade_holds_without_acting() {
    let mut world = World::new(
        with_migration(release("2.0"), MigrationPhase::BeforeRollout),
        cluster("1.0"),
    );
    world.run(5);
    world.release.spec.rollout.timeout = "never".into();
    let decision = world.step();
    assert!(decision.actions.is_empty());
    assert_eq!(ready(world.status()), (False, "InvalidSpec".into()));
    assert!(
        world.status().upgrade.is_some(),
        "the upgrade is held, not forgotten"
    );
    world.release.spec.rollout.timeout = "10m".into();
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    assert_eq!(world.run(20), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
}

fn created_jobs(world: &World) -> Vec<super::JobRequest> {
    world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .filter_map(|a| match a {
            Action::CreateJob(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_preset_backup_is_recorded_from_its_report_and_the_upgrade_goes_on() {
    let mut world = World::new(with_preset(release("2.0")), cluster("1.0"));
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    let request = created_jobs(&world).pop().unwrap();
    let job = crate::jobs::build(&world.release, &request).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("postgres:16-alpine")
    );
    world.finish_job(
        "backup",
        JobOutcome::Succeeded,
        Some(&preset_report("meet-backup-1")),
    );
    assert_eq!(world.run(20), None);
    let status = world.status();
    assert_eq!(ready(status), (True, "Succeeded".into()));
    let backup = &status.backups[0];
    assert_eq!(backup.id, "meet-backup-1");
    assert_eq!(
        backup.location.as_deref(),
        Some("pvc://meet-backups/meet/meet/meet-backup-1.pgdump")
    );
    assert_eq!(backup.size_bytes, Some(4096));
    assert_eq!(backup.sha256.as_deref(), Some("ab".repeat(32).as_str()));
}

#[test]
fn a_preset_backup_without_a_valid_report_is_a_failed_backup() {
    let sha = "ab".repeat(32);
    let bad_reports = [
        None,
        Some(String::new()),
        Some("pg_dump: done".into()),
        Some(r#"{"location":"pvc://x/y","sizeBytes":0,"sha256":"SHA"}"#.replace("SHA", &sha)),
        Some(r#"{"location":"","sizeBytes":10,"sha256":"SHA"}"#.replace("SHA", &sha)),
        Some(r#"{"location":"pvc://x/y","sizeBytes":10,"sha256":"abc"}"#.into()),
        Some(r#"{"location":"pvc://x/y","sizeBytes":"10","sha256":"SHA"}"#.replace("SHA", &sha)),
    ];
    for report in bad_reports {
        let mut world = World::new(with_preset(release("2.0")), cluster("1.0"));
        world.run(5);
        world.finish_job("backup", JobOutcome::Succeeded, report.as_deref());
        assert_eq!(world.run(5), None, "{report:?}");
        assert!(!ever_set_images(&world), "{report:?}: nothing may change");
        let status = world.status();
        assert_eq!(ready(status), (False, "BackupFailed".into()), "{report:?}");
        assert!(has(status, STALLED));
        assert!(
            status.conditions[0]
                .message
                .contains("without a valid report"),
            "{}",
            status.conditions[0].message
        );
        assert!(status.backups.is_empty(), "{report:?}: no inventory entry");
        assert_eq!(status.history[0].result, UpgradeResult::Aborted);
    }
}

#[test]
fn a_failed_preset_backup_records_nothing_and_changes_nothing() {
    let mut world = World::new(with_preset(release("2.0")), cluster("1.0"));
    world.run(5);
    world.finish_job(
        "backup",
        JobOutcome::Failed(
            "BackoffLimitExceeded; the container said: apprelease postgres backup failed: pg_dump: password authentication failed".into(),
        ),
        Some("apprelease postgres backup failed: pg_dump: password authentication failed"),
    );
    assert_eq!(world.run(5), None);
    assert!(!ever_set_images(&world));
    let status = world.status();
    assert_eq!(ready(status), (False, "BackupFailed".into()));
    assert!(
        status.conditions[0]
            .message
            .contains("password authentication failed")
    );
    assert!(status.backups.is_empty());
}

#[test]
fn a_template_backup_stays_lenient_about_its_report() {
    let mut world = World::new(with_backup(release("2.0")), cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, Some("not json"));
    assert_eq!(world.run(20), None);
    assert_eq!(world.status().backups.len(), 1);
    assert_eq!(world.status().backups[0].location, None);
}

/// A preset backup taken, the verification failed, the targets scaled to zero: the restore
/// Job of exactly that backup is running.
fn preset_restore_running() -> World {
    let mut r = with_verify(with_preset(release("2.0")));
    r.spec.rollback.database = DatabaseRollback::Restore;
    assert!(crate::api::validate::validate(&r.spec).is_empty());
    let mut world = World::new(r, cluster("1.0"));
    world.run(5);
    world.finish_job(
        "backup",
        JobOutcome::Succeeded,
        Some(&preset_report("meet-backup-1")),
    );
    world.run(20);
    world.fail_verify_and_reach_the_restore();
    world
}

#[test]
fn restore_with_a_preset_needs_no_template_and_restores_exactly_this_backup() {
    let mut world = preset_restore_running();
    let request = created_jobs(&world).pop().unwrap();
    assert_eq!(request.kind, crate::jobs::names::JobKind::Restore);
    assert_eq!(request.backup_id.as_deref(), Some("meet-backup-1"));
    assert_eq!(
        request.backup_location.as_deref(),
        Some("pvc://meet-backups/meet/meet/meet-backup-1.pgdump")
    );
    assert_eq!(request.backup_sha256, Some("ab".repeat(32)));
    assert_eq!(request.timeout, Duration::from_secs(30 * 60));
    // The restore Job is the preset's restore script, told which backup and checksum.
    let job = crate::jobs::build(&world.release, &request).unwrap();
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let script = &container.command.as_ref().unwrap()[2];
    assert!(script.contains("MODE=restore") && script.contains("pg_restore"));
    let env = container.env.as_ref().unwrap();
    let get = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        get("APPRELEASE_BACKUP_ID").as_deref(),
        Some("meet-backup-1")
    );
    assert_eq!(get("APPRELEASE_BACKUP_SHA256"), Some("ab".repeat(32)));
    // Still scaled to zero while it runs.
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    world.finish_job(
        "restore",
        JobOutcome::Failed("apprelease postgres restore failed: checksum mismatch".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:2.0",
        "a failed restore leaves the targets as they are"
    );
    let status = world.status();
    assert_eq!(ready(status), (False, "RollbackFailed".into()));
    assert!(has(status, STALLED));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("pvc://meet-backups/meet/meet/meet-backup-1.pgdump")
            && message.contains("scaled to zero")
            && message.contains("backend=3"),
        "{message}"
    );
    assert_eq!(status.backups.len(), 1, "nothing is deleted");
}

#[test]
fn a_successful_preset_restore_brings_the_old_version_back() {
    let mut world = preset_restore_running();
    world.finish_job("restore", JobOutcome::Succeeded, None);
    assert_eq!(world.run(10), None);
    assert_eq!(world.cluster.deployments["backend"].replicas, 3);
    assert_eq!(world.cluster.deployments["frontend"].replicas, 2);
    assert_eq!(
        image_of(&world, "backend", "backend"),
        "ghcr.io/meet/backend:1.0"
    );
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
}

/// 15 upgrades with keepLast 5: after each, the inventory is exactly the 5 newest backups,
/// the prune list handed to each backup Job is exactly what falls out, and the backup the
/// last upgrade used is never in it.
#[test]
fn retention_over_fifteen_upgrades_keeps_exactly_the_five_newest() {
    let mut r = with_preset(release("1"));
    r.spec.backup.as_mut().unwrap().keep_last = 5;
    let mut world = World::new(r, cluster("1"));
    for v in 2..=16_i64 {
        let n = v - 1;
        world.set_version(&v.to_string());
        let job = world.run(5).unwrap();
        assert_eq!(job, format!("meet-backup-{n}"));
        let request = created_jobs(&world).pop().unwrap();
        let last_used = world.status().history.iter().find_map(|h| h.backup.clone());
        if let Some(used) = &last_used {
            assert!(!request.prune.contains(used), "{used} is in use");
        }
        // The inventory holds backups n-5 … n-1; the new one makes five, so n-5 goes.
        let expected: Vec<String> = if n > 5 {
            vec![format!("meet-backup-{}", n - 5)]
        } else {
            Vec::new()
        };
        assert_eq!(request.prune, expected, "upgrade {n}");
        world.advance(Duration::from_secs(60));
        world.finish_job(&job, JobOutcome::Succeeded, Some(&preset_report(&job)));
        assert_eq!(world.run(20), None);
        let ids: Vec<String> = world
            .status()
            .backups
            .iter()
            .map(|b| b.id.clone())
            .collect();
        let newest: Vec<String> = (n.saturating_sub(4).max(1)..=n)
            .rev()
            .map(|i| format!("meet-backup-{i}"))
            .collect();
        assert_eq!(ids, newest, "after upgrade {n}");
        assert_eq!(
            world.status().current_version.as_deref(),
            Some(v.to_string().as_str())
        );
    }
}

#[test]
fn max_age_prunes_old_backups_but_never_the_one_in_use() {
    let mut r = with_preset(release("1"));
    let backup = r.spec.backup.as_mut().unwrap();
    backup.keep_last = 10;
    backup.max_age = Some("1d".into());
    let mut world = World::new(r, cluster("1"));
    for v in 2..=4 {
        world.set_version(&v.to_string());
        let job = world.run(5).unwrap();
        world.finish_job(&job, JobOutcome::Succeeded, Some(&preset_report(&job)));
        assert_eq!(world.run(20), None);
        world.advance(Duration::from_secs(20 * 3600));
    }
    // Backups 1, 2, 3 were taken at 0h, 20h, 40h. Backup 1 was already more than a day old
    // when backup 3 was taken, and went with it.
    let ids: Vec<_> = world
        .status()
        .backups
        .iter()
        .map(|b| b.id.as_str())
        .collect();
    assert_eq!(ids, ["meet-backup-3", "meet-backup-2"]);
    // Now, at 60h, backup 2 is older than a day; backup 3 is young (and in use anyway).
    world.set_version("5");
    world.run(5).unwrap();
    let request = created_jobs(&world).pop().unwrap();
    assert_eq!(request.prune, ["meet-backup-2"]);
    // Even when it is old, the last upgrade's backup stays.
    world.advance(Duration::from_secs(30 * 24 * 3600));
    world.finish_job(
        "backup",
        JobOutcome::Succeeded,
        Some(&preset_report("meet-backup-4")),
    );
    assert_eq!(world.run(20), None);
    world.set_version("6");
    world.run(5).unwrap();
    let request = created_jobs(&world).pop().unwrap();
    assert!(request.prune.contains(&"meet-backup-3".to_string()));
    assert!(
        !request.prune.contains(&"meet-backup-4".to_string()),
        "in use by the last upgrade"
    );
}

#[test]
fn keep_last_one_still_keeps_the_backup_the_last_upgrade_used() {
    let mut r = with_verify(with_preset(release("1.0")));
    r.spec.backup.as_mut().unwrap().keep_last = 1;
    r.spec.rollback.database = DatabaseRollback::Restore;
    let mut world = World::new(r, cluster("1.0"));
    // Upgrade to 2.0 fails its verification and is rolled back with backup 1.
    world.set_version("2.0");
    world.run(5);
    world.finish_job(
        "backup",
        JobOutcome::Succeeded,
        Some(&preset_report("meet-backup-1")),
    );
    world.run(20);
    world.finish_job("verify", JobOutcome::Failed("smoke".into()), None);
    world.step();
    world.let_the_pods_go();
    world.run(5);
    world.finish_job("restore", JobOutcome::Succeeded, None);
    assert_eq!(world.run(10), None);
    assert_eq!(
        world.status().history[0].backup.as_deref(),
        Some("meet-backup-1")
    );
    // The next upgrade may not prune backup 1: the last upgrade depended on it.
    world.set_version("3.0");
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-2"));
    let request = created_jobs(&world).pop().unwrap();
    assert!(request.prune.is_empty(), "{:?}", request.prune);
    world.finish_job(
        "backup",
        JobOutcome::Succeeded,
        Some(&preset_report("meet-backup-2")),
    );
    world.run(20);
    let ids: Vec<_> = world
        .status()
        .backups
        .iter()
        .map(|b| b.id.as_str())
        .collect();
    assert_eq!(ids, ["meet-backup-2", "meet-backup-1"]);
}

/// A rollout's progress counts are written once its target has rolled out for
/// QUIET_PROGRESS, not at each change before: the first message stays, the decision looks
/// again when the time is up, and a change of step is written at once.
#[test]
fn a_rollouts_progress_is_written_only_after_the_quiet_time() {
    use super::decision::QUIET_PROGRESS;
    let mut world = World::new(release("2.0"), cluster("1.0"));
    world.step();
    let first = world.status().clone();
    assert_eq!(
        first.upgrade.as_ref().map(|u| u.step),
        Some(Step::RollingOut)
    );
    // The controller moved the first target's counts: progress, within the quiet time.
    let backend = world.cluster.deployments.get_mut("backend").unwrap();
    backend.observed_generation = backend.generation;
    backend.updated_replicas = 1;
    world.advance(Duration::from_secs(3));
    let quiet = world.step();
    assert_eq!(quiet.status, first, "nothing new to write");
    assert!(
        quiet.requeue_after <= QUIET_PROGRESS - Duration::from_secs(3),
        "{:?}",
        quiet.requeue_after
    );
    // The quiet time is up: the counts show.
    world.advance(QUIET_PROGRESS);
    let shown = world.step();
    let message = &conditions::get(&shown.status.conditions, conditions::READY)
        .unwrap()
        .message;
    assert!(message.contains("updated"), "{message}");
    assert_ne!(shown.status, first);
    // The target done, the next one starts at once, whatever the time.
    world.settle_deployments();
    let next = world.step();
    assert!(next.status.upgrade.as_ref().unwrap().targets_done >= 1);
}
