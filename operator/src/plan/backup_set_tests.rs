//! Planner rows of backup sets: every component backed up at once, the set counted only
//! whole, the leftovers of a failed set pruned by the next good one, retention by set, and a
//! rollback that restores the components one after the other in spec order.

use crate::api::conditions::ConditionStatus::False;
use crate::api::*;

use super::decision::Action;
use super::fixtures::*;
use super::observed::JobOutcome;

const COMPONENTS: [&str; 3] = ["db", "cache", "uploads"];

fn running_jobs(world: &World) -> Vec<String> {
    world
        .cluster
        .jobs
        .iter()
        .filter(|(_, j)| j.outcome == JobOutcome::Running)
        .map(|(name, _)| name.clone())
        .collect()
}

fn image_of(world: &World, deployment: &str, container: &str) -> String {
    world.cluster.deployments[deployment]
        .image(container)
        .unwrap()
        .to_string()
}

fn ever_set_images(world: &World) -> bool {
    world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .any(|a| matches!(a, Action::SetImages { .. }))
}

fn succeed(world: &mut World, job: &str) {
    world.finish_job(job, JobOutcome::Succeeded, Some(&preset_report(job)));
}

fn created(decision: &super::Decision) -> Vec<(String, Option<String>)> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(r) => Some((r.name.clone(), r.component.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn every_component_is_backed_up_at_once_and_the_set_counts_whole() {
    let mut world = World::new(with_set(release("2.0")), cluster("1.0"));
    let first = world.step();
    assert_eq!(
        created(&first),
        COMPONENTS.map(|c| (format!("meet-backup-1-{c}"), Some(c.to_string()))),
        "all three Jobs in one decision, in spec order"
    );
    succeed(&mut world, "meet-backup-1-db");
    succeed(&mut world, "meet-backup-1-uploads");
    world.step();
    assert!(
        world.status().backups.is_empty(),
        "not before every component"
    );
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.step),
        Some(Step::BackingUp)
    );
    assert!(!ever_set_images(&world));
    succeed(&mut world, "meet-backup-1-cache");
    assert_eq!(world.run(10), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));

    let set = &world.status().backups[0];
    assert_eq!(set.id, "meet-backup-1");
    assert_eq!(set.version, "1.0");
    let names: Vec<&str> = set.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names, COMPONENTS,
        "spec order, whatever order they finished in"
    );
    for c in &set.components {
        assert_eq!(c.job, format!("meet-backup-1-{}", c.name));
        assert_eq!(c.size_bytes, Some(4096));
        assert!(c.location.as_deref().unwrap().ends_with(".pgdump"));
        assert_eq!(c.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    }
    assert_eq!(
        set.size_bytes,
        Some(3 * 4096),
        "the set's size is the total"
    );
    assert!(
        set.images.iter().all(|i| i.image.ends_with(":1.0")) && !set.images.is_empty(),
        "the images of the version it holds: {:?}",
        set.images
    );
    assert_eq!(world.creates.values().max(), Some(&1), "no Job twice");
}

#[test]
fn a_failed_component_fails_the_set_after_the_others_finish_and_changes_nothing() {
    let mut world = World::new(with_set(release("2.0")), cluster("1.0"));
    world.step();
    succeed(&mut world, "meet-backup-1-db");
    world.finish_job(
        "meet-backup-1-cache",
        JobOutcome::Failed("redis-cli: connection refused".into()),
        None,
    );
    world.step();
    // uploads still runs: concluding now would leave its file unknown to anyone.
    let upgrade = world.status().upgrade.as_ref().expect("still backing up");
    assert_eq!(upgrade.step, Step::BackingUp);
    let message = &world.status().conditions[0].message;
    assert!(
        message.contains("meet-backup-1-cache failed") && message.contains("uploads"),
        "{message}"
    );
    succeed(&mut world, "meet-backup-1-uploads");
    assert_eq!(world.run(5), None);

    let status = world.status();
    assert_eq!(ready(status), (False, "BackupFailed".into()));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("backup set meet-backup-1 is not counted")
            && message.contains("connection refused")
            && message.contains("nothing was changed"),
        "{message}"
    );
    assert!(status.backups.is_empty(), "a set counts only whole");
    assert_eq!(
        status.incomplete_backups,
        ["meet-backup-1-db", "meet-backup-1-uploads"],
        "what the others wrote is remembered for pruning"
    );
    assert_eq!(status.history[0].result, UpgradeResult::Aborted);
    assert!(!ever_set_images(&world));
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:1.0");
}

#[test]
fn a_preset_component_without_a_valid_report_fails_the_set() {
    let mut world = World::new(with_set(release("2.0")), cluster("1.0"));
    world.step();
    succeed(&mut world, "meet-backup-1-db");
    succeed(&mut world, "meet-backup-1-cache");
    world.finish_job("meet-backup-1-uploads", JobOutcome::Succeeded, Some("done"));
    assert_eq!(world.run(5), None);
    let status = world.status();
    assert_eq!(ready(status), (False, "BackupFailed".into()));
    assert!(
        status.conditions[0]
            .message
            .contains("meet-backup-1-uploads finished without a valid report"),
        "{}",
        status.conditions[0].message
    );
    assert!(status.backups.is_empty());
    assert_eq!(
        status.incomplete_backups,
        [
            "meet-backup-1-db",
            "meet-backup-1-cache",
            "meet-backup-1-uploads"
        ]
    );
}

fn backup_ids(world: &World) -> Vec<&str> {
    let backups = &world.status().backups;
    backups.iter().map(|b| b.id.as_str()).collect()
}

/// keepLast 2: upgrades 1.0→2.0→3.0 succeed, then 3.0→4.0 starts its set (attempt 3), which
/// is to prune the first set's files.
fn third_set_started() -> World {
    let mut world = World::new(with_set(release("2.0")), cluster("1.0"));
    world.finish_every_job(vec![], 10);
    world.set_version("3.0");
    world.finish_every_job(vec![], 10);
    assert_eq!(backup_ids(&world), ["meet-backup-2", "meet-backup-1"]);
    world.set_version("4.0");
    world.step();
    world
}

#[test]
fn a_failed_set_drops_what_its_jobs_pruned_and_the_next_good_set_prunes_its_leftovers() {
    // 3.0→4.0 fails a component, 3.0→5.0 succeeds.
    let mut world = third_set_started();
    let jobs = running_jobs(&world);
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    succeed(&mut world, "meet-backup-3-db");
    succeed(&mut world, "meet-backup-3-uploads");
    world.finish_job("meet-backup-3-cache", JobOutcome::Failed("x".into()), None);
    assert_eq!(world.run(5), None);
    assert_eq!(
        world.status().incomplete_backups,
        ["meet-backup-3-db", "meet-backup-3-uploads"]
    );
    // db's and uploads' Jobs deleted the oldest set's files once they had written theirs, so
    // it leaves the inventory although this set failed.
    assert_eq!(backup_ids(&world), ["meet-backup-2"]);

    world.set_version("5.0");
    let decision = world.step();
    let prune: Vec<Vec<String>> = decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(r) => Some(r.prune.clone()),
            _ => None,
        })
        .collect();
    // The failed set's two leftovers go; the newest set stays (keepLast 2 with the new one,
    // and the last upgrade's backup).
    let expected = ["meet-backup-3-db", "meet-backup-3-uploads"];
    assert_eq!(prune.len(), 3, "every component Job prunes");
    assert!(prune.iter().all(|p| *p == expected), "{prune:?}");
    assert_eq!(
        world.status().incomplete_backups,
        expected,
        "nothing leaves the inventory before the new set succeeded"
    );

    for c in COMPONENTS {
        succeed(&mut world, &format!("meet-backup-4-{c}"));
    }
    assert_eq!(world.run(10), None);
    assert_eq!(backup_ids(&world), ["meet-backup-4", "meet-backup-2"]);
    assert!(world.status().incomplete_backups.is_empty());
}

#[test]
fn a_set_whose_every_component_failed_pruned_nothing() {
    // The third set would prune the first, but no Job of it wrote a file, so none deleted
    // anything.
    let mut world = third_set_started();
    for c in COMPONENTS {
        let job = format!("meet-backup-3-{c}");
        world.finish_job(&job, JobOutcome::Failed("x".into()), None);
    }
    assert_eq!(world.run(5), None);
    assert_eq!(ready(world.status()), (False, "BackupFailed".into()));
    assert_eq!(backup_ids(&world), ["meet-backup-2", "meet-backup-1"]);
    assert!(world.status().incomplete_backups.is_empty());
}

/// Set 1 taken, then the verification failed: the rollback has scaled the targets to zero
/// and no pod is left, so the restores come next.
fn set_taken_then_verify_failed() -> World {
    let mut world = World::new(with_verify(with_set(release("2.0"))), cluster("1.0"));
    world.step();
    for c in COMPONENTS {
        succeed(&mut world, &format!("meet-backup-1-{c}"));
    }
    world.run(10);
    world.finish_job("verify", JobOutcome::Failed("smoke".into()), None);
    world.step();
    world.let_the_pods_go();
    world
}

#[test]
fn a_rollback_restores_every_component_in_order_one_at_a_time() {
    let mut world = set_taken_then_verify_failed();
    for c in COMPONENTS {
        let job = format!("meet-restore-1-{c}");
        assert_eq!(world.run(5), Some(job.clone()));
        assert_eq!(
            running_jobs(&world),
            vec![job.clone()],
            "one restore at a time"
        );
        let request = world
            .log
            .iter()
            .flat_map(|d| &d.actions)
            .find_map(|a| match a {
                Action::CreateJob(r) if r.name == job => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        let backup = format!("meet-backup-1-{c}");
        assert_eq!(request.backup_id.as_deref(), Some(backup.as_str()));
        assert!(request.backup_location.unwrap().contains(&backup));
        assert_eq!(request.backup_sha256, Some("ab".repeat(32)));
        assert_eq!(world.cluster.deployments["backend"].replicas, 0);
        world.finish_job(&job, JobOutcome::Succeeded, None);
    }
    assert_eq!(world.run(10), None);
    let status = world.status();
    assert_eq!(status.history[0].result, UpgradeResult::RolledBack);
    assert_eq!(image_of(&world, "frontend", "web"), "ghcr.io/meet/web:1.0");
    assert_eq!(world.creates.values().max(), Some(&1), "no Job twice");
}

#[test]
fn a_failed_component_restore_stops_there_and_names_it_and_the_backup() {
    let mut world = set_taken_then_verify_failed();
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-1-db"));
    world.finish_job("meet-restore-1-db", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-1-cache"));
    world.finish_job(
        "meet-restore-1-cache",
        JobOutcome::Failed("MIGRATE failed".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    let status = world.status();
    assert_eq!(ready(status), (False, "RollbackFailed".into()));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("component cache of backup set meet-backup-1 was not restored")
            && message.contains("db restored before it")
            && message.contains("scaled to zero"),
        "{message}"
    );
    assert!(
        !world.cluster.jobs.contains_key("meet-restore-1-uploads"),
        "the restore stops at the first failure"
    );
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
}

#[test]
fn a_restored_component_is_not_restored_again_after_its_job_vanishes() {
    let mut world = set_taken_then_verify_failed();
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-1-db"));
    world.finish_job("meet-restore-1-db", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-1-cache"));
    world.cluster.jobs.remove("meet-restore-1-db");
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().unwrap().restored_components,
        ["db"]
    );
    assert_eq!(world.creates["meet-restore-1-db"], 1);
}
