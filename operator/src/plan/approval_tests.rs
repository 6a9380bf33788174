//! Planner rows of `approval: Manual`: an upgrade starts only once the annotation
//! `apprelease.io/approve` names its version.

use crate::api::conditions::{self, ConditionStatus};
use crate::api::*;

use super::fixtures::*;
use super::observed::JobOutcome;

fn manual(mut r: AppRelease) -> AppRelease {
    r.spec.approval = Approval::Manual;
    r
}

fn approve(world: &mut World, version: &str) {
    world
        .release
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(APPROVE_ANNOTATION.into(), version.into());
}

fn ready_message(world: &World) -> String {
    conditions::get(&world.status().conditions, conditions::READY)
        .unwrap()
        .message
        .clone()
}

#[test]
fn an_unapproved_version_waits_and_says_what_to_run() {
    let mut world = World::new(manual(with_backup(release("2.0"))), cluster("1.0"));
    let decision = world.step();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert!(world.status().upgrade.is_none());
    assert_eq!(
        ready(world.status()),
        (ConditionStatus::False, "AwaitingApproval".into())
    );
    assert!(
        !conditions::get(&world.status().conditions, conditions::STALLED)
            .is_some_and(|c| c.status == ConditionStatus::True),
        "waiting for a human who was told what to do is not stalled"
    );
    assert_eq!(
        ready_message(&world),
        "the upgrade from 1.0 to 2.0 waits for approval: kubectl annotate appreleases.apprelease.io meet -n meet apprelease.io/approve=2.0 --overwrite"
    );
    let told: Vec<&str> = decision.notes.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(told, ["AwaitingApproval"]);
    // Said once, not on every look.
    let again = world.step();
    assert!(again.notes.is_empty(), "{:?}", again.notes);
}

#[test]
fn an_approval_of_another_version_approves_nothing() {
    let mut world = World::new(manual(release("2.0")), cluster("1.0"));
    approve(&mut world, "3.0");
    let decision = world.step();
    assert!(decision.actions.is_empty());
    assert_eq!(ready(world.status()).1, "AwaitingApproval");
    approve(&mut world, " 2.0 ");
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.to.as_str()),
        Some("2.0"),
        "the approved version starts (surrounding blanks ignored)"
    );
}

#[test]
fn an_approved_upgrade_runs_to_the_end() {
    let mut world = World::new(manual(full("2.0")), cluster("1.0"));
    approve(&mut world, "2.0");
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    world.finish_job("backup", JobOutcome::Succeeded, None);
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.run(10);
    world.finish_job("verify", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    assert_eq!(ready(world.status()).0, ConditionStatus::True);
}

#[test]
fn a_release_at_its_version_and_a_drift_repair_need_no_approval() {
    let mut world = World::new(manual(release("1.0")), cluster("1.0"));
    world.step();
    assert_eq!(ready(world.status()).0, ConditionStatus::True);
    // Someone sets another image; putting the release's own version back is no upgrade.
    world
        .cluster
        .deployments
        .get_mut("frontend")
        .unwrap()
        .containers[0]
        .1 = "ghcr.io/meet/web:hotfix".into();
    let decision = world.step();
    assert!(
        decision
            .actions
            .iter()
            .any(|a| matches!(a, super::Action::SetImages { .. })),
        "{:?}",
        decision.actions
    );
}

#[test]
fn a_new_unapproved_version_mid_upgrade_lets_the_approved_one_finish_then_waits() {
    let mut world = World::new(manual(release("2.0")), cluster("1.0"));
    approve(&mut world, "2.0");
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.step),
        Some(Step::RollingOut)
    );
    world.set_version("3.0");
    assert_eq!(world.run(10), None);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    assert_eq!(world.status().history[0].result, UpgradeResult::Succeeded);
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:2.0");
    assert_eq!(ready(world.status()).1, "AwaitingApproval");
    assert!(ready_message(&world).contains("from 2.0 to 3.0"));
}

#[test]
fn going_back_to_the_running_version_mid_upgrade_needs_no_approval() {
    let mut world = World::new(manual(release("2.0")), cluster("1.0"));
    approve(&mut world, "2.0");
    world.step();
    world.set_version("1.0");
    assert_eq!(world.run(10), None);
    assert_eq!(world.status().history[0].reason, "Cancelled");
    assert_eq!(world.images("frontend")[0].1, "ghcr.io/meet/web:1.0");
    assert_eq!(ready(world.status()).0, ConditionStatus::True);
}
