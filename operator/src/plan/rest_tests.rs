//! A release at rest and what others do to its targets: drifted images, sidecars, targets on
//! mixed versions, paused Deployments, and going back to an older version.

use std::time::Duration;

use crate::api::conditions::{ConditionStatus::*, RECONCILING, STALLED};
use crate::api::*;

use super::decision::{Action, Decision, NoteType};
use super::drift;
use super::fixtures::*;

fn image_applies(decision: &Decision) -> Vec<(String, Vec<(String, String)>)> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SetImages {
                deployment, images, ..
            } => Some((deployment.clone(), images.clone())),
            _ => None,
        })
        .collect()
}

fn notes<'a>(world: &'a World, reason: &str) -> Vec<&'a str> {
    world
        .log
        .iter()
        .flat_map(|d| &d.notes)
        .filter(|n| n.reason == reason)
        .map(|n| n.message.as_str())
        .collect()
}

fn message(status: &AppReleaseStatus) -> String {
    conditions::get(&status.conditions, conditions::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Someone (`manager`) sets the frontend's image to `image`, as `kubectl set image` would.
fn hand_edit(world: &mut World, image: &str, manager: &str) {
    let d = world.cluster.deployments.get_mut("frontend").unwrap();
    d.containers[0].1 = image.into();
    d.image_managers
        .insert("web".into(), vec![manager.into(), "kubectl-create".into()]);
    d.generation += 1;
}

fn at_rest_full() -> World {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    world.step();
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    world
}

#[test]
fn a_repair_waits_until_the_newest_change_has_settled_and_then_puts_back_everything() {
    let mut world = at_rest_full();
    // A tool changes the frontend now; its change of the backend is not seen yet.
    hand_edit(&mut world, "ghcr.io/meet/web:0.9", "kustomize-controller");
    let now = world.cluster.now;
    let frontend = world.cluster.deployments.get_mut("frontend").unwrap();
    frontend.image_changed.insert("web".into(), now);
    let decision = world.step();
    assert!(image_applies(&decision).is_empty(), "{decision:?}");
    assert!(decision.requeue_after <= drift::SETTLE, "{decision:?}");
    assert!(notes(&world, "DriftRepaired").is_empty());
    assert!(message(world.status()).contains("putting it back at"));

    // A second later the backend's change shows; the repair still waits for it to settle.
    world.advance(Duration::from_secs(1));
    let now = world.cluster.now;
    let backend = world.cluster.deployments.get_mut("backend").unwrap();
    backend.containers[0].1 = "ghcr.io/meet/backend:0.9".into();
    backend.image_changed.insert("backend".into(), now);
    backend.generation += 1;
    assert!(image_applies(&world.step()).is_empty());

    // Settled: one repair puts both back, and counts once.
    world.advance(drift::SETTLE);
    let decision = world.step();
    let mut repaired: Vec<String> = image_applies(&decision)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    repaired.sort();
    assert_eq!(repaired, ["backend", "frontend"]);
    assert_eq!(world.status().drift.as_ref().unwrap().repairs.len(), 1);
}

#[test]
fn a_change_time_ahead_of_the_operators_clock_does_not_hold_a_repair() {
    let mut world = at_rest_full();
    hand_edit(&mut world, "ghcr.io/meet/web:hotfix", "kubectl-set");
    let ahead = world.cluster.now + chrono::Duration::hours(1);
    let frontend = world.cluster.deployments.get_mut("frontend").unwrap();
    frontend.image_changed.insert("web".into(), ahead);
    assert_eq!(image_applies(&world.step()).len(), 1);
}

#[test]
fn drift_at_the_current_version_is_put_back_without_an_upgrade() {
    let mut world = at_rest_full();
    hand_edit(&mut world, "ghcr.io/meet/web:hotfix", "kubectl-set");
    let decision = world.step();
    assert_eq!(
        image_applies(&decision),
        [(
            "frontend".to_string(),
            vec![("web".to_string(), "ghcr.io/meet/web:1.0".to_string())]
        )]
    );
    assert!(
        !decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateJob(_))),
        "no backup, migration or verification for a repair"
    );
    let status = world.status().clone();
    assert_eq!(status.attempts, 0, "a repair is not an upgrade attempt");
    assert!(status.upgrade.is_none() && status.history.is_empty());
    assert!(has(&status, RECONCILING) && !has(&status, STALLED));
    let repaired = notes(&world, "DriftRepaired");
    assert_eq!(repaired.len(), 1);
    assert!(
        repaired[0].contains("web:hotfix") && repaired[0].contains("set by kubectl-set"),
        "{}",
        repaired[0]
    );
    assert!(
        decision
            .notes
            .iter()
            .all(|n| n.type_ == NoteType::Warning || n.reason != "DriftRepaired")
    );

    for d in &decision.actions {
        world.apply(d);
    }
    world.settle_deployments();
    world.step();
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    assert_eq!(world.status().drift.as_ref().unwrap().repairs.len(), 1);
}

#[test]
fn repeated_drift_is_repaired_a_few_times_then_reported_not_fought() {
    let mut world = at_rest_full();
    let mut applies = 0;
    // A GitOps tool with self-heal puts its image back every 3 s, 25 times.
    for _ in 0..25 {
        hand_edit(&mut world, "ghcr.io/meet/web:0.9", "argocd-controller");
        let decision = world.step();
        applies += image_applies(&decision).len();
        world.settle_deployments();
        world.advance(Duration::from_secs(3));
    }
    assert!(
        applies <= drift::MAX_REPAIRS,
        "{applies} image applies in 75 s"
    );
    assert_eq!(
        applies, 2,
        "at 0 s and 30 s; the third is due 60 s after the second"
    );
    // Past the pauses the remaining repairs happen, then the operator stops.
    for _ in 0..60 {
        hand_edit(&mut world, "ghcr.io/meet/web:0.9", "argocd-controller");
        let decision = world.step();
        applies += image_applies(&decision).len();
        for a in &decision.actions {
            world.apply(a);
        }
        world.settle_deployments();
        world.advance(Duration::from_secs(5));
    }
    assert_eq!(applies, drift::MAX_REPAIRS);
    let status = world.status().clone();
    assert_eq!(ready(&status), (False, "Drifted".into()));
    assert!(has(&status, STALLED) && !has(&status, RECONCILING));
    let text = message(&status);
    assert!(
        text.contains("argocd-controller")
            && text.contains("web:0.9")
            && text.contains("apprelease-operator"),
        "{text}"
    );
    assert_eq!(
        notes(&world, "Drifted").len(),
        1,
        "one Event for the report, not one per flip"
    );
    assert_eq!(status.attempts, 0);
    assert!(status.history.is_empty() && world.creates.is_empty());

    // A human puts the image back: Ready again, and the record says it was settled.
    world
        .cluster
        .deployments
        .get_mut("frontend")
        .unwrap()
        .containers[0]
        .1 = "ghcr.io/meet/web:1.0".into();
    world.step();
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    assert!(world.status().drift.as_ref().is_none_or(|d| !d.stopped));
}

#[test]
fn a_new_spec_lets_the_operator_repair_again_after_it_stopped() {
    let mut world = at_rest_full();
    for _ in 0..10 {
        hand_edit(&mut world, "ghcr.io/meet/web:0.9", "flux");
        let decision = world.step();
        for a in &decision.actions {
            world.apply(a);
        }
        world.advance(Duration::from_secs(70));
    }
    assert_eq!(ready(world.status()), (False, "Drifted".into()));
    world.bump_generation();
    let decision = world.step();
    assert_eq!(image_applies(&decision).len(), 1);
}

#[test]
fn repairs_never_push_real_upgrades_out_of_the_history() {
    let mut world = World::new(release("1.0"), cluster("1.0"));
    world.step();
    world.set_version("1.1");
    assert_eq!(world.run(20), None);
    assert_eq!(world.status().history.len(), 1);
    for i in 0..50 {
        hand_edit(&mut world, &format!("ghcr.io/meet/web:x{i}"), "someone");
        let decision = world.step();
        for a in &decision.actions {
            world.apply(a);
        }
        world.settle_deployments();
        world.advance(Duration::from_secs(400));
    }
    let history = &world.status().history;
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].from.as_str(), history[0].to.as_str()),
        ("1.0", "1.1")
    );
}

/// The frontend with a metrics sidecar that has a tag of its own.
fn with_sidecar(mut observed: super::Observed, sidecar_first: bool) -> super::Observed {
    let d = observed.deployments.get_mut("frontend").unwrap();
    let sidecar = (
        "statsd".to_string(),
        "prom/statsd-exporter:v0.26".to_string(),
    );
    if sidecar_first {
        d.containers.insert(0, sidecar);
    } else {
        d.containers.push(sidecar);
    }
    observed
}

#[test]
fn without_a_container_list_sidecars_keep_their_own_tags() {
    let mut world = World::new(release("1.0"), with_sidecar(cluster("1.0"), false));
    world.step();
    assert_eq!(
        world.status().untouched_containers,
        [ContainerImage {
            deployment: "frontend".into(),
            container: "statsd".into(),
            image: "prom/statsd-exporter:v0.26".into()
        }],
        "named in the status on first visit"
    );
    assert_eq!(notes(&world, "ContainersLeftAlone").len(), 1);
    world.set_version("1.1");
    assert_eq!(world.run(20), None);
    assert_eq!(ready(world.status()), (True, "Succeeded".into()));
    let frontend = world.images("frontend");
    assert_eq!(frontend[0].1, "ghcr.io/meet/web:1.1");
    assert_eq!(frontend[1].1, "prom/statsd-exporter:v0.26");
    assert_eq!(notes(&world, "ContainersLeftAlone").len(), 1, "said once");
}

#[test]
fn on_a_first_visit_before_an_upgrade_the_default_container_carries_the_version() {
    // Neither container carries 1.1 yet and nothing is known: the annotated default container
    // does, even when the sidecar comes first.
    let mut observed = with_sidecar(cluster("1.0"), true);
    observed
        .deployments
        .get_mut("frontend")
        .unwrap()
        .default_container = Some("web".into());
    let mut world = World::new(release("1.1"), observed);
    assert_eq!(world.run(20), None);
    let frontend = world.images("frontend");
    assert_eq!(frontend[0].1, "prom/statsd-exporter:v0.26");
    assert_eq!(frontend[1].1, "ghcr.io/meet/web:1.1");
}

#[test]
fn targets_on_mixed_versions_at_first_visit_are_refused_until_they_agree() {
    let mut observed = cluster("1.0");
    observed.deployments.get_mut("backend").unwrap().containers[0].1 =
        "ghcr.io/meet/backend:0.9".into();
    let mut world = World::new(full("1.0"), observed);
    let decision = world.step();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    let status = world.status().clone();
    assert_eq!(ready(&status), (False, "MixedVersions".into()));
    assert!(has(&status, STALLED));
    let text = message(&status);
    assert!(
        text.contains("backend/backend=0.9") && text.contains("frontend/web=1.0"),
        "{text}"
    );
    assert!(status.upgrade.is_none() && status.attempts == 0);

    // Once both run 0.9, it is an upgrade to 1.0 with backup and migration.
    world
        .cluster
        .deployments
        .get_mut("frontend")
        .unwrap()
        .containers[0]
        .1 = "ghcr.io/meet/web:0.9".into();
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    assert_eq!(world.status().upgrade.as_ref().unwrap().from, "0.9");
}

#[test]
fn a_paused_target_holds_the_upgrade_before_anything_runs() {
    let mut observed = cluster("1.0");
    observed.deployments.get_mut("frontend").unwrap().paused = true;
    let mut world = World::new(full("1.0"), observed);
    world.step();
    world.set_version("1.1");
    let decision = world.step();
    assert!(decision.actions.is_empty(), "no backup, no migration");
    let status = world.status().clone();
    assert_eq!(ready(&status), (False, "TargetPaused".into()));
    assert!(!has(&status, STALLED), "it goes on by itself once resumed");
    assert!(message(&status).contains("Deployment frontend is paused"));
    assert!(status.upgrade.is_none() && status.attempts == 0);

    world
        .cluster
        .deployments
        .get_mut("frontend")
        .unwrap()
        .paused = false;
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
}

fn claimed_by_older(mut world: World) -> World {
    let created = t0() - chrono::Duration::hours(1);
    world.release.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(created.timestamp()).unwrap(),
        ));
    world.cluster.peers = vec![super::Peer {
        name: "meet-old".into(),
        created: Some(created - chrono::Duration::days(3)),
        targets: vec![(TargetKind::Deployment, "frontend".into())],
    }];
    world
}

#[test]
fn a_target_claimed_by_an_earlier_release_is_refused_and_recovers_when_let_go() {
    let mut world = claimed_by_older(World::new(full("1.0"), cluster("1.0")));
    world.set_version("1.1");
    let first = world.step();
    assert!(first.actions.is_empty());
    let status = world.status().clone();
    assert_eq!(ready(&status), (False, "TargetClaimed".into()));
    assert!(has(&status, STALLED));
    assert!(
        message(&status).contains("Deployment frontend belongs to AppRelease meet-old"),
        "{}",
        message(&status)
    );
    assert!(status.upgrade.is_none() && status.attempts == 0);
    assert_eq!(
        first.requeue_after,
        super::decision::POLL,
        "the claim's end is seen by polling"
    );
    let again = world.step();
    assert_eq!(again.status, first.status, "nothing new to write");
    assert!(again.notes.is_empty(), "one Event, not one per look");

    // A later release targeting the same Deployment does not take it from us.
    world.cluster.peers[0].created = Some(t0());
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
}

#[test]
fn a_claim_mid_upgrade_holds_it_without_acting() {
    let mut world = World::new(full("1.0"), cluster("1.0"));
    world.step();
    world.set_version("1.1");
    assert_eq!(world.run(5).as_deref(), Some("meet-backup-1"));
    let mut world = claimed_by_older(world);
    world.finish_job("backup", super::JobOutcome::Succeeded, Some(BACKUP_REPORT));
    let decision = world.step();
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(ready(world.status()), (False, "TargetClaimed".into()));
    assert!(world.status().upgrade.is_some(), "held, not forgotten");
    world.cluster.peers.clear();
    assert_eq!(world.run(5).as_deref(), Some("meet-migrate-1"));
}

const BACKUP_REPORT: &str =
    r#"{"location":"pvc://backups/meet/meet-backup-1.sql.gz","sizeBytes":2048,"sha256":"ab12"}"#;
