//! Planner rows of on-demand requests: a backup taken now, a restore of a chosen backup, and
//! everything that refuses or holds them back.

use crate::api::conditions::{ConditionStatus::False, READY, get};
use crate::api::*;

use super::decision::Action;
use super::fixtures::*;
use super::observed::JobOutcome;

const COMPONENTS: [&str; 3] = ["db", "cache", "uploads"];

fn phase(world: &World, name: &str) -> Option<RequestPhase> {
    world.request_status(name).phase
}

fn reason(world: &World, name: &str) -> String {
    get(&world.request_status(name).conditions, READY)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

fn message(world: &World, name: &str) -> String {
    get(&world.request_status(name).conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn succeed(world: &mut World, job: &str) {
    world.finish_job(job, JobOutcome::Succeeded, Some(&preset_report(job)));
}

/// A set release at rest on 1.0 after upgrading from 0.9, with backup set 1 (of 0.9) in the
/// inventory; then at rest on 1.0.
fn at_rest_with_a_set() -> World {
    let mut world = World::new(with_set(release("1.0")), cluster("0.9"));
    world.finish_every_job(vec![], 10);
    assert_eq!(world.status().current_version.as_deref(), Some("1.0"));
    assert_eq!(world.status().backups[0].id, "meet-backup-1");
    world
}

fn actions_changing_targets(world: &World) -> usize {
    world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .filter(|a| matches!(a, Action::SetImages { .. } | Action::Scale { .. }))
        .count()
}

#[test]
fn a_backup_request_takes_a_set_now_and_joins_the_inventory() {
    let mut world = at_rest_with_a_set();
    let changes_before = actions_changing_targets(&world);
    world
        .cluster
        .requests
        .push(request(RequestKind::Backup, "before-import", 1));
    let decision = world.step();
    let created: Vec<String> = decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(r) => Some(r.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        COMPONENTS.map(|c| format!("meet-backup-2-{c}")),
        "attempt 2 names its Jobs"
    );
    assert_eq!(phase(&world, "before-import"), Some(RequestPhase::Running));
    assert_eq!(
        world
            .status()
            .upgrade
            .as_ref()
            .unwrap()
            .request
            .as_ref()
            .unwrap()
            .name,
        "before-import"
    );
    for c in COMPONENTS {
        succeed(&mut world, &format!("meet-backup-2-{c}"));
    }
    assert_eq!(world.run(5), None);

    let status = world.status();
    assert_eq!(status.backups[0].id, "meet-backup-2");
    assert_eq!(status.backups[0].version, "1.0");
    assert_eq!(status.backups[0].components.len(), 3);
    assert_eq!(status.history[0].reason, "BackupTaken");
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    assert_eq!(ready(status).1, "Succeeded", "at rest again");
    assert!(status.failed.is_none());
    let request = world.request_status("before-import");
    assert_eq!(request.phase, Some(RequestPhase::Succeeded));
    assert_eq!(request.backup.as_deref(), Some("meet-backup-2"));
    assert_eq!(request.version.as_deref(), Some("1.0"));
    assert_eq!(request.attempt, Some(2));
    assert_eq!(
        actions_changing_targets(&world),
        changes_before,
        "a backup changes no target"
    );
}

#[test]
fn a_backup_request_waits_for_the_upgrade_in_flight_and_the_upgrade_for_it() {
    let mut world = World::new(with_preset(release("2.0")), cluster("1.0"));
    world.step();
    world
        .cluster
        .requests
        .push(request(RequestKind::Backup, "nightly", 1));
    world.step();
    assert_eq!(phase(&world, "nightly"), Some(RequestPhase::Pending));
    assert!(
        message(&world, "nightly").contains("waits for the upgrade from 1.0 to 2.0"),
        "{}",
        message(&world, "nightly")
    );
    world.finish_every_job(vec![], 10);
    // The upgrade ended; the request went next.
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    assert_eq!(phase(&world, "nightly"), Some(RequestPhase::Succeeded));
    assert_eq!(world.status().backups[0].version, "2.0");

    // And an upgrade asked for while a requested backup runs waits for it.
    world
        .cluster
        .requests
        .push(request(RequestKind::Backup, "again", 2));
    world.step();
    assert_eq!(phase(&world, "again"), Some(RequestPhase::Running));
    world.set_version("3.0");
    world.step();
    world.step();
    let upgrade = world.status().upgrade.clone().unwrap();
    assert!(upgrade.request.is_some(), "still the backup: {upgrade:?}");
    assert_eq!(image_tag(&world), "2.0");
    world.finish_every_job(vec![], 10);
    assert_eq!(phase(&world, "again"), Some(RequestPhase::Succeeded));
    assert_eq!(world.status().current_version.as_deref(), Some("3.0"));
}

fn image_tag(world: &World) -> String {
    let image = world.cluster.deployments["frontend"].image("web").unwrap();
    image.rsplit(':').next().unwrap().to_string()
}

#[test]
fn a_failed_requested_backup_holds_nothing_back() {
    let mut world = World::new(with_preset(release("1.0")), cluster("1.0"));
    world.step();
    world
        .cluster
        .requests
        .push(request(RequestKind::Backup, "b", 1));
    world.step();
    world.finish_job(
        "backup",
        JobOutcome::Failed("pg_dump: no route".into()),
        None,
    );
    assert_eq!(world.run(5), None);
    assert_eq!(phase(&world, "b"), Some(RequestPhase::Failed));
    assert_eq!(reason(&world, "b"), "BackupFailed");
    assert!(world.status().failed.is_none(), "no version is held");
    world.set_version("2.0");
    world.step();
    assert!(
        world
            .status()
            .upgrade
            .as_ref()
            .is_some_and(|u| u.request.is_none()),
        "the upgrade starts"
    );
}

#[test]
fn restores_that_cannot_run_are_refused_and_change_nothing() {
    let cases: Vec<(&str, super::observed::Request, &str, &str)> = vec![
        (
            "unknown backup",
            restore_request("r", "meet-backup-9", &[]),
            "BackupNotFound",
            "it has meet-backup-1",
        ),
        (
            "unknown component",
            restore_request("r", "meet-backup-1", &["db", "search"]),
            "ComponentNotFound",
            "no component search (it has db, cache, uploads)",
        ),
    ];
    for (name, restore, reason_wanted, text) in cases {
        let mut world = at_rest_with_a_set();
        let before = world.status().clone();
        world.cluster.requests.push(restore);
        let decision = world.step();
        assert!(
            decision.actions.is_empty(),
            "{name}: {:?}",
            decision.actions
        );
        assert_eq!(phase(&world, "r"), Some(RequestPhase::Failed), "{name}");
        assert_eq!(reason(&world, "r"), reason_wanted, "{name}");
        assert!(
            message(&world, "r").contains(text),
            "{name}: {}",
            message(&world, "r")
        );
        assert_eq!(world.status().attempts, before.attempts, "{name}");
        assert!(world.status().upgrade.is_none(), "{name}");
        // Over: never run later.
        world.step();
        assert!(world.status().upgrade.is_none(), "{name}");
    }
}

#[test]
fn a_restore_during_an_upgrade_is_refused_not_deferred() {
    let mut world = at_rest_with_a_set();
    world.set_version("2.0");
    world.step();
    assert!(world.status().upgrade.is_some());
    world
        .cluster
        .requests
        .push(restore_request("r", "meet-backup-1", &[]));
    world.step();
    assert_eq!(phase(&world, "r"), Some(RequestPhase::Failed));
    assert_eq!(reason(&world, "r"), "UpgradeInProgress");
    world.finish_every_job(vec![], 10);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    assert!(
        !world
            .cluster
            .jobs
            .keys()
            .any(|j| j.contains("restore") || j.contains("check")),
        "the refused restore never ran after the upgrade"
    );
}

/// A set release on 2.0 with set 1 (of 1.0) and set 2 (of 2.0, taken on request), and a
/// restore of set 1's `components` asked for.
fn restoring(components: &[&str]) -> World {
    let mut world = World::new(with_set(release("2.0")), cluster("1.0"));
    world.finish_every_job(vec![], 10);
    assert_eq!(world.status().current_version.as_deref(), Some("2.0"));
    world
        .cluster
        .requests
        .push(restore_request("back-to-1", "meet-backup-1", components));
    world
}

#[test]
fn a_restore_checks_scales_down_restores_in_order_and_brings_back_the_backups_images() {
    let mut world = restoring(&["uploads", "db"]);
    let decision = world.step();
    let checks: Vec<String> = decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(r) if r.kind == crate::jobs::names::JobKind::Check => {
                Some(r.name.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        checks,
        ["meet-check-2-db", "meet-check-2-uploads"],
        "set order, at once"
    );
    assert!(
        !decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Scale { .. })),
        "nothing scaled before the checks pass"
    );
    assert_eq!(phase(&world, "back-to-1"), Some(RequestPhase::Running));
    world.finish_job("meet-check-2-db", JobOutcome::Succeeded, None);
    world.finish_job("meet-check-2-uploads", JobOutcome::Succeeded, None);
    world.step();
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    world.let_the_pods_go();
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-2-db"));
    world.finish_job("meet-restore-2-db", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5).as_deref(), Some("meet-restore-2-uploads"));
    world.finish_job("meet-restore-2-uploads", JobOutcome::Succeeded, None);
    assert_eq!(world.run(10), None);

    assert!(
        !world.cluster.jobs.contains_key("meet-restore-2-cache"),
        "only those asked"
    );
    assert_eq!(
        image_tag(&world),
        "1.0",
        "the images recorded with the backup"
    );
    assert_eq!(world.replicas(), (3, 2), "the replica counts from before");
    let status = world.status();
    assert_eq!(status.current_version.as_deref(), Some("1.0"));
    assert_eq!(status.history[0].reason, "Restored");
    assert_eq!(phase(&world, "back-to-1"), Some(RequestPhase::Succeeded));
    assert_eq!(
        world.request_status("back-to-1").version.as_deref(),
        Some("1.0")
    );
    // spec.version still says 2.0: it waits, or it would upgrade the restored data away.
    assert_eq!(ready(status), (False, "Restored".into()));
    assert!(
        status.conditions[0]
            .message
            .contains("spec.version says 2.0"),
        "{}",
        status.conditions[0].message
    );
    world.step();
    assert!(
        world.status().upgrade.is_none(),
        "no upgrade starts by itself"
    );
    // The retry annotation lets it go on.
    world
        .release
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(RETRY_ANNOTATION.into(), "now".into());
    world.step();
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.to.as_str()),
        Some("2.0")
    );
}

#[test]
fn a_failed_check_refuses_the_restore_without_touching_anything() {
    let mut world = restoring(&[]);
    world.step();
    world.finish_job("meet-check-2-db", JobOutcome::Succeeded, None);
    world.finish_job(
        "meet-check-2-cache",
        JobOutcome::Failed("checksum of /backups/meet/meet/meet-backup-1-cache.pgdump is 00, expected ab: the backup is damaged".into()),
        None,
    );
    world.step();
    assert!(
        world.status().upgrade.is_some(),
        "uploads' check still runs"
    );
    world.finish_job("meet-check-2-uploads", JobOutcome::Succeeded, None);
    assert_eq!(world.run(5), None);
    assert_eq!(phase(&world, "back-to-1"), Some(RequestPhase::Failed));
    assert_eq!(reason(&world, "back-to-1"), "BackupCheckFailed");
    assert!(message(&world, "back-to-1").contains("damaged"));
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(image_tag(&world), "2.0");
    assert_eq!(
        ready(world.status()).1,
        "Succeeded",
        "the release is as it was"
    );
    assert!(world.status().failed.is_none());
}

#[test]
fn a_pending_restore_keeps_its_backup_from_being_pruned() {
    // keepLast 2: a third set would prune set 1, unless a restore waits for it. A requested
    // backup runs first (it is older) while the restore of set 1 waits.
    let mut world = World::new(with_set(release("2.0")), cluster("1.0"));
    world.finish_every_job(vec![], 10);
    world.set_version("3.0");
    world.finish_every_job(vec![], 10);
    assert_eq!(world.status().backups.len(), 2);
    world
        .cluster
        .requests
        .push(request(RequestKind::Backup, "first", 1));
    world
        .cluster
        .requests
        .push(restore_request("later", "meet-backup-1", &[]));
    let decision = world.step();
    assert_eq!(phase(&world, "later"), Some(RequestPhase::Pending));
    let prune: Vec<String> = decision
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreateJob(r) => Some(r.prune.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        !prune.iter().any(|f| f.starts_with("meet-backup-1-")),
        "{prune:?}"
    );
    for c in COMPONENTS {
        succeed(&mut world, &format!("meet-backup-3-{c}"));
    }
    world.step();
    assert!(
        world
            .status()
            .backups
            .iter()
            .any(|b| b.id == "meet-backup-1")
    );
    assert_eq!(phase(&world, "later"), Some(RequestPhase::Running));
}

#[test]
fn deleting_the_release_during_a_restore_before_anything_was_restored_brings_the_targets_back() {
    let mut world = restoring(&[]);
    world.step();
    for c in COMPONENTS {
        world.finish_job(&format!("meet-check-2-{c}"), JobOutcome::Succeeded, None);
    }
    world.step();
    assert_eq!(world.cluster.deployments["backend"].replicas, 0);
    world.release.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    for _ in 0..5 {
        world.step();
        world.settle_deployments();
    }
    assert_eq!(world.replicas(), (3, 2));
    assert_eq!(image_tag(&world), "2.0", "no image changed");
    assert!(world.release.metadata.finalizers.is_none(), "let go");
}

#[test]
fn a_request_naming_no_release_waits_and_says_so() {
    let now = t0();
    let status = super::orphaned(None, "shop", "apps", 1, now).expect("written");
    assert_eq!(status.phase, Some(RequestPhase::Pending));
    let ready = get(&status.conditions, READY).unwrap();
    assert_eq!(ready.reason, "ReleaseNotFound");
    assert!(
        ready
            .message
            .contains("AppRelease shop does not exist in namespace apps")
    );
    // Written once: the same state again changes nothing.
    assert_eq!(super::orphaned(Some(&status), "shop", "apps", 1, now), None);
    // A request that is over is left alone.
    let done = RequestStatus {
        phase: Some(RequestPhase::Succeeded),
        ..RequestStatus::default()
    };
    assert_eq!(super::orphaned(Some(&done), "shop", "apps", 1, now), None);
}
