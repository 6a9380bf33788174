//! Planner rows of downgrades by spec: refused by default (nothing changes, the message says
//! the ways back), installed like an upgrade with a warning under `downgrade: Allow`.

use crate::api::conditions::{self, ConditionStatus};
use crate::api::*;

use super::decision::NoteType;
use super::fixtures::*;
use super::observed::JobOutcome;

/// A release upgraded from 1.0 to 1.1 (with a backup of 1.0 and a migration), at rest.
fn upgraded_to_1_1(downgrade: DowngradePolicy) -> World {
    let mut r = with_migration(with_backup(release("1.0")), MigrationPhase::BeforeRollout);
    r.spec.downgrade = downgrade;
    let mut world = World::new(r, cluster("1.0"));
    world.step();
    world.set_version("1.1");
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, None);
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    assert_eq!(world.run(20), None);
    assert_eq!(world.status().current_version.as_deref(), Some("1.1"));
    world
}

fn warnings(world: &World, reason: &str) -> Vec<String> {
    world
        .log
        .iter()
        .flat_map(|d| &d.notes)
        .filter(|n| n.reason == reason && n.type_ == NoteType::Warning)
        .map(|n| n.message.clone())
        .collect()
}

#[test]
fn a_downgrade_by_spec_is_refused_and_changes_nothing() {
    let mut world = upgraded_to_1_1(DowngradePolicy::Refuse);
    let jobs = world.cluster.jobs.len();
    world.set_version("1.0");
    let decision = world.step();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert!(world.status().upgrade.is_none());
    assert_eq!(world.cluster.jobs.len(), jobs, "no Job");
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:1.1");
    assert_eq!(
        ready(world.status()),
        (ConditionStatus::False, "DowngradeRefused".into())
    );
    assert!(has(world.status(), conditions::STALLED));
    let message = &conditions::get(&world.status().conditions, conditions::READY)
        .unwrap()
        .message;
    assert!(
        message.contains("1.0 is older than the running 1.1")
            && message.contains("backups taken at 1.0: meet-backup-1")
            && message.contains("spec.downgrade: Allow"),
        "{message}"
    );
    assert_eq!(warnings(&world, "DowngradeRefused").len(), 1);
    // Told once; setting the version back ends it.
    world.step();
    assert_eq!(warnings(&world, "DowngradeRefused").len(), 1);
    world.set_version("1.1");
    world.step();
    assert_eq!(ready(world.status()).0, ConditionStatus::True);
}

#[test]
fn an_allowed_downgrade_runs_like_an_upgrade_and_warns_that_migrations_do_not_undo() {
    let mut world = upgraded_to_1_1(DowngradePolicy::Allow);
    assert!(
        warnings(&world, "Downgrade").is_empty(),
        "1.0 → 1.1 is no downgrade"
    );
    world.set_version("1.0");
    world.step();
    let warned = warnings(&world, "Downgrade");
    assert_eq!(warned.len(), 1);
    assert!(
        warned[0].contains("older than the running 1.1") && warned[0].contains("do not undo"),
        "{}",
        warned[0]
    );
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.to.as_str()),
        Some("1.0")
    );
}

#[test]
fn versions_that_cannot_be_ordered_are_no_downgrade() {
    let mut world = World::new(release("stable"), cluster("1.0"));
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.to.as_str()),
        Some("stable")
    );
}

#[test]
fn going_back_mid_upgrade_is_a_rollback_not_a_refused_downgrade() {
    let mut world = World::new(release("2.0"), cluster("1.0"));
    world.step();
    world.set_version("1.0");
    assert_eq!(world.run(10), None);
    assert_eq!(world.status().history[0].reason, "Cancelled");
    assert_eq!(ready(world.status()).0, ConditionStatus::True);
}

#[test]
fn an_older_version_set_after_the_migration_ran_is_not_chained_onto_it() {
    // 1.0 → 3.0 with the migration done: the data is at 3.0, so 2.0 would be a downgrade of
    // the data. The upgrade to 3.0 finishes; then 2.0 is refused.
    let mut world = World::new(
        with_migration(release("3.0"), MigrationPhase::BeforeRollout),
        cluster("1.0"),
    );
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.step();
    world.set_version("2.0");
    assert_eq!(world.run(10), None);
    assert_eq!(world.status().current_version.as_deref(), Some("3.0"));
    assert_eq!(ready(world.status()).1, "DowngradeRefused");
}

#[test]
fn a_newer_version_before_the_migration_ran_is_chained_as_before() {
    let mut world = World::new(with_backup(release("3.0")), cluster("1.0"));
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, None);
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.step),
        Some(Step::RollingOut)
    );
    world.set_version("2.0");
    assert_eq!(world.run(10), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    assert_eq!(world.status().history[1].result, UpgradeResult::Superseded);
}
