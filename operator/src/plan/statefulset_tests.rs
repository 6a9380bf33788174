//! StatefulSet targets, row by row: readiness by revisions, the update strategies that are
//! refused, the rollback of a failed StatefulSet rollout, and the messages that name them.

use crate::api::conditions::{ConditionStatus::*, RECONCILING, STALLED};
use crate::api::*;

use super::decide;
use super::decision::Action;
use super::fixtures::*;
use super::observed::{DeploymentState, JobOutcome};

/// `meet` with backend and frontend Deployments and the `worker` StatefulSet.
fn world(version: &str, from: &str) -> World {
    World::new(with_worker(release(version)), cluster_with_worker(from))
}

fn worker(world: &World) -> &DeploymentState {
    &world.cluster.deployments["worker"]
}

/// The (kind, name) of every image change in the decisions so far.
fn image_changes(world: &World) -> Vec<(TargetKind, String)> {
    world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .filter_map(|a| match a {
            Action::SetImages {
                kind, deployment, ..
            } => Some((*kind, deployment.clone())),
            _ => None,
        })
        .collect()
}

fn ready_message(status: &AppReleaseStatus) -> String {
    conditions::get(&status.conditions, conditions::READY)
        .unwrap()
        .message
        .clone()
}

#[test]
fn a_statefulset_is_rolled_out_only_when_its_revisions_agree_and_every_replica_is_ready() {
    let done = stateful_set("worker", &[("worker", "w:2")], 3);
    assert!(done.is_rolled_out());
    type Change = fn(&mut DeploymentState);
    let cases: Vec<(&str, Change)> = vec![
        ("generation not observed yet", |d| d.generation += 1),
        ("update not finished: revisions differ", |d| {
            d.update_revision = "rev-new".into()
        }),
        ("no revision reported yet", |d| {
            d.update_revision.clear();
            d.current_revision.clear();
        }),
        ("a replica not updated", |d| d.updated_replicas = 2),
        ("a replica not ready", |d| d.ready_replicas = 2),
        ("a pod too many (scaling down)", |d| d.status_replicas = 4),
    ];
    for (name, change) in cases {
        let mut d = done.clone();
        change(&mut d);
        assert!(!d.is_rolled_out(), "{name}");
    }
    // The Deployment rule is not the StatefulSet's: no revisions, availability counts.
    let mut deployment = done.clone();
    deployment.kind = TargetKind::Deployment;
    deployment.update_revision = "rev-new".into();
    assert!(deployment.is_rolled_out());
}

#[test]
fn a_statefulset_and_a_deployment_upgrade_together_each_with_its_kind() {
    let mut world = world("2.0", "1.0");
    world.step();
    world.settle_deployments();
    world.step();
    world.settle_deployments();
    world.step();
    // Backend and frontend are done; the worker's new template is applied as a StatefulSet.
    assert_eq!(
        image_changes(&world),
        [
            (TargetKind::Deployment, "backend".to_string()),
            (TargetKind::Deployment, "frontend".to_string()),
            (TargetKind::StatefulSet, "worker".to_string()),
        ]
    );
    let upgrade = world.status().upgrade.clone().unwrap();
    assert_eq!((upgrade.step, upgrade.targets_done), (Step::RollingOut, 2));
    assert!(
        ready_message(world.status()).contains("rolling out 2.0 to StatefulSet worker"),
        "{}",
        ready_message(world.status())
    );
    // Every replica updated and ready, but the controller has not moved currentRevision
    // yet: still waiting.
    world.settle_deployments();
    let d = world.cluster.deployments.get_mut("worker").unwrap();
    d.current_revision = "rev-ghcr.io/meet/worker:1.0".into();
    // Progress shows once the target has been rolling out for a while.
    world.advance(super::decision::QUIET_PROGRESS);
    world.step();
    assert!(world.status().upgrade.is_some(), "not rolled out yet");
    let message = ready_message(world.status());
    assert!(
        message.contains("waiting for StatefulSet worker to roll out 2.0")
            && message.contains("3/3 ready")
            && message.contains("currentRevision rev-ghcr.io/meet/worker:1.0"),
        "{message}"
    );
    world.settle_deployments();
    assert_eq!(world.run(10), None);
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    assert_eq!(
        worker(&world).image("worker"),
        Some("ghcr.io/meet/worker:2.0")
    );
    assert_eq!(
        worker(&world).update_revision,
        worker(&world).current_revision
    );
    let ready_notes: Vec<String> = world
        .log
        .iter()
        .flat_map(|d| &d.notes)
        .filter(|n| n.reason == "TargetReady")
        .map(|n| n.message.clone())
        .collect();
    assert!(
        ready_notes.contains(&"StatefulSet worker runs 2.0 and is available".to_string()),
        "{ready_notes:?}"
    );
}

#[test]
fn statefulset_strategies_that_never_replace_pods_are_refused_and_nothing_changes() {
    type Change = fn(&mut DeploymentState);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "OnDelete",
            |d| d.on_delete = true,
            "updateStrategy is OnDelete",
        ),
        (
            "a partition",
            |d| d.partition = 2,
            "partition is 2: pods with a lower ordinal keep the old template",
        ),
    ];
    for (name, change, says) in cases {
        let mut observed = cluster_with_worker("1.0");
        change(observed.deployments.get_mut("worker").unwrap());
        let decision = decide(&full_with_worker("2.0"), &observed);
        assert!(
            decision.actions.is_empty(),
            "{name}: {:?}",
            decision.actions
        );
        assert!(decision.status.upgrade.is_none(), "{name}");
        assert_eq!(
            ready(&decision.status),
            (False, "UnsupportedUpdateStrategy".into()),
            "{name}"
        );
        assert!(
            has(&decision.status, STALLED) && !has(&decision.status, RECONCILING),
            "{name}"
        );
        let message = ready_message(&decision.status);
        assert!(
            message.contains("StatefulSet worker cannot be upgraded")
                && message.contains(says)
                && message.contains("would never finish")
                && message.contains("Nothing was changed")
                && message.contains("RollingUpdate without a partition"),
            "{name}: {message}"
        );
        let warned = decision
            .notes
            .iter()
            .any(|n| n.reason == "UnsupportedUpdateStrategy" && n.message == message);
        assert!(warned, "{name}: an Event says it");

        // The same StatefulSet at rest at the version is fine: nothing to roll out.
        let decision = decide(&full_with_worker("1.0"), &observed);
        assert_eq!(
            ready(&decision.status),
            (True, "Succeeded".into()),
            "{name}"
        );
    }
}

fn full_with_worker(version: &str) -> AppRelease {
    with_worker(full(version))
}

#[test]
fn a_failed_statefulset_rollout_rolls_back_every_target_and_replaces_the_stuck_pod() {
    let mut world = world("3.0", "1.0");
    world
        .faults
        .bad_images
        .push("ghcr.io/meet/worker:3.0".into());
    assert_eq!(world.run(100), None);
    let status = world.status();
    assert_eq!(ready(status), (False, "RolledBack".into()));
    assert!(
        status.history[0]
            .message
            .contains("StatefulSet worker did not become available with 3.0"),
        "{}",
        status.history[0].message
    );
    for (target, container, image) in [
        ("backend", "backend", "ghcr.io/meet/backend:1.0"),
        ("frontend", "web", "ghcr.io/meet/web:1.0"),
        ("worker", "worker", "ghcr.io/meet/worker:1.0"),
    ] {
        assert_eq!(
            world.cluster.deployments[target].image(container),
            Some(image)
        );
    }
    // Its highest pod ran 3.0 and never became ready; with the old template back, the
    // StatefulSet controller would wait for it forever, so the rollback deleted it, that
    // pod only, by uid.
    let deleted: Vec<(String, String)> = world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .filter_map(|a| match a {
            Action::DeletePod { pod, uid } => Some((pod.clone(), uid.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].0, "worker-2");
    let said: Vec<&str> = world
        .log
        .iter()
        .flat_map(|d| &d.notes)
        .filter(|n| n.reason == "StuckPodDeleted")
        .map(|n| n.message.as_str())
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0]
            .starts_with("deleted pod worker-2 of StatefulSet worker: it runs the failed version"),
        "{}",
        said[0]
    );
    let d = worker(&world);
    assert!(d.is_rolled_out(), "{d:?}");
    assert!(
        d.pods
            .iter()
            .all(|p| p.ready && p.revision == d.update_revision)
    );
}

#[test]
fn a_stuck_pod_is_deleted_only_once_the_old_template_is_back_and_seen() {
    let mut world = world("3.0", "1.0");
    world
        .faults
        .bad_images
        .push("ghcr.io/meet/worker:3.0".into());
    // Up to the rollback's first decision, which applies the old template.
    for _ in 0..100 {
        world.step();
        if world.status().upgrade.as_ref().map(|u| u.step) == Some(Step::RollingBack) {
            break;
        }
        world.settle_deployments();
        world.advance(std::time::Duration::from_secs(30));
    }
    assert_eq!(
        world.status().upgrade.as_ref().map(|u| u.step),
        Some(Step::RollingBack)
    );
    let d = worker(&world);
    assert_eq!(d.image("worker"), Some("ghcr.io/meet/worker:1.0"));
    let stuck = d.pods[2].clone();
    assert!(!stuck.ready && stuck.revision == "rev-ghcr.io/meet/worker:3.0");
    // The StatefulSet controller has not seen the old template yet: no pod is deleted.
    assert!(d.observed_generation < d.generation);
    let deletes = |decision: &super::Decision| -> Vec<Action> {
        decision
            .actions
            .iter()
            .filter(|a| matches!(a, Action::DeletePod { .. }))
            .cloned()
            .collect()
    };
    assert_eq!(deletes(&decide(&world.release, &world.cluster)), []);
    // Seen: the update revision is the old one again, and pod 2 is the one it waits for.
    world.settle_deployments();
    assert_eq!(worker(&world).pods[2], stuck, "the controller is stuck");
    assert_eq!(
        deletes(&decide(&world.release, &world.cluster)),
        [Action::DeletePod {
            pod: stuck.name.clone(),
            uid: stuck.uid.clone()
        }]
    );
    // A pod that is ready is the controller's to replace, not ours.
    let mut observed = world.cluster.clone();
    observed.deployments.get_mut("worker").unwrap().pods[2].ready = true;
    assert_eq!(deletes(&decide(&world.release, &observed)), []);
    // Once deleted, the controller recreates it from the old template and all is well.
    world.step();
    world.settle_deployments();
    assert_eq!(world.run(10), None);
    assert!(worker(&world).is_rolled_out());
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
}

#[test]
fn a_restore_scales_a_statefulset_down_and_back_with_the_scale_kind() {
    let mut world = World::new(
        with_worker(with_database(full("2.0"), DatabaseRollback::Restore)),
        cluster_with_worker("1.0"),
    );
    world.run(5);
    world.finish_job("backup", JobOutcome::Succeeded, None);
    world.run(5);
    world.finish_job("migrate", JobOutcome::Succeeded, None);
    world.run(20);
    world.fail_verify_and_reach_the_restore();
    assert_eq!(worker(&world).replicas, 0);
    let scaled: Vec<(TargetKind, String, i32)> = world
        .log
        .iter()
        .flat_map(|d| &d.actions)
        .filter_map(|a| match a {
            Action::Scale {
                kind,
                deployment,
                replicas,
            } => Some((*kind, deployment.clone(), *replicas)),
            _ => None,
        })
        .collect();
    assert!(
        scaled.contains(&(TargetKind::StatefulSet, "worker".into(), 0)),
        "{scaled:?}"
    );
    world.finish_job("restore", JobOutcome::Succeeded, None);
    assert_eq!(world.run(10), None);
    assert_eq!(worker(&world).replicas, 3);
    assert!(worker(&world).is_rolled_out());
    assert_eq!(
        worker(&world).image("worker"),
        Some("ghcr.io/meet/worker:1.0")
    );
    assert_eq!(ready(world.status()), (False, "RolledBack".into()));
}

#[test]
fn messages_name_a_missing_or_drifted_statefulset_as_one() {
    let mut observed = cluster_with_worker("1.0");
    observed.deployments.remove("worker");
    let decision = decide(&with_worker(release("2.0")), &observed);
    assert_eq!(ready(&decision.status), (False, "TargetNotFound".into()));
    assert!(
        ready_message(&decision.status)
            .contains("StatefulSet \"worker\" (spec.targets[2]) does not exist"),
        "{}",
        ready_message(&decision.status)
    );

    let mut world = world("1.0", "1.0");
    world.step();
    world.set_image("worker", 0, "ghcr.io/meet/worker:hotfix");
    let decision = world.step();
    assert!(
        decision.actions.contains(&Action::SetImages {
            kind: TargetKind::StatefulSet,
            deployment: "worker".into(),
            images: vec![("worker".into(), "ghcr.io/meet/worker:1.0".into())],
        }),
        "{:?}",
        decision.actions
    );
    let repaired = decision
        .notes
        .iter()
        .find(|n| n.reason == "DriftRepaired")
        .unwrap();
    assert!(
        repaired
            .message
            .contains("StatefulSet worker container worker runs ghcr.io/meet/worker:hotfix"),
        "{}",
        repaired.message
    );
}

#[test]
fn targets_of_both_kinds_must_be_named_once_and_exactly_once() {
    type Breaks = fn(&mut AppRelease);
    let cases: Vec<(&str, Breaks, &str)> = vec![
        (
            "both names",
            |r| r.spec.targets[0].stateful_set = Some("backend".into()),
            "either deployment or statefulSet, not both",
        ),
        (
            "no name",
            |r| r.spec.targets[0].deployment = None,
            "deployment: <name> or statefulSet: <name>",
        ),
        (
            "a StatefulSet named like a Deployment target",
            |r| r.spec.targets.push(Target::stateful_set("frontend")),
            "StatefulSet \"frontend\" has the name of Deployment \"frontend\"",
        ),
        (
            "a StatefulSet twice",
            |r| r.spec.targets.push(Target::stateful_set("worker")),
            "StatefulSet \"worker\" is listed twice",
        ),
        (
            "a bad StatefulSet name",
            |r| r.spec.targets[2].stateful_set = Some("Wor_ker".into()),
            "spec.targets[2].statefulSet: \"Wor_ker\" is not a StatefulSet name",
        ),
    ];
    for (name, break_it, says) in cases {
        let mut r = with_worker(release("2.0"));
        break_it(&mut r);
        let decision = decide(&r, &cluster_with_worker("1.0"));
        assert!(decision.actions.is_empty(), "{name}");
        assert_eq!(ready(&decision.status), (False, "InvalidSpec".into()));
        let message = ready_message(&decision.status);
        assert!(message.contains(says), "{name}: {message}");
    }
}

#[test]
fn deleting_mid_rollout_puts_a_statefulset_back_as_a_statefulset() {
    let mut world = world("2.0", "1.0");
    for _ in 0..3 {
        world.step();
        world.settle_deployments();
    }
    assert_eq!(
        worker(&world).image("worker"),
        Some("ghcr.io/meet/worker:2.0")
    );
    world.release.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let decision = world.step();
    assert!(
        decision.actions.contains(&Action::SetImages {
            kind: TargetKind::StatefulSet,
            deployment: "worker".into(),
            images: vec![("worker".into(), "ghcr.io/meet/worker:1.0".into())],
        }),
        "{:?}",
        decision.actions
    );
}
