//! Property tests: random configurations driven through random interleavings of reconciles,
//! crashes, Job outcomes, rollouts, time and spec changes; the invariants of DESIGN.md are
//! checked after every step.

use std::time::Duration;

use proptest::prelude::*;

use crate::api::conditions::{self, ConditionStatus};
use crate::api::*;

use super::decide;
use super::decision::Action;
use super::fixtures::*;
use super::observed::JobOutcome;

#[derive(Clone, Debug)]
enum Event {
    Reconcile,
    ReconcileAndCrash,
    /// A reconcile from a copy of the AppRelease this many writes older than the stored one
    /// (a cache that lags): the API server refuses its writes (see `World::reconcile_from`).
    ReconcileStale(usize),
    Rollout,
    FinishJob {
        succeed: bool,
        report: bool,
    },
    DeleteSeenJob,
    Wait(u64),
    SetVersion(&'static str),
    Retry,
    /// Someone else sets the frontend's image (a person, a GitOps tool).
    ForeignImage(&'static str),
    /// The AppRelease is deleted (it stays while the operator holds its finalizer).
    Delete,
    /// A human approves a version (`approval: Manual`).
    Approve(&'static str),
    /// Someone asks for a backup now (`AppReleaseBackup`).
    RequestBackup,
    /// Someone asks for the restore of a backup (`AppReleaseRestore`): the newest, the
    /// oldest, or one the inventory does not have.
    RequestRestore(Pick),
}

#[derive(Clone, Copy, Debug)]
enum Pick {
    Newest,
    Oldest,
    Unknown,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::Reconcile),
        1 => Just(Event::ReconcileAndCrash),
        2 => (1usize..4).prop_map(Event::ReconcileStale),
        3 => Just(Event::Rollout),
        3 => (any::<bool>(), prop::bool::weighted(0.8)).prop_map(|(succeed, report)| Event::FinishJob { succeed, report }),
        1 => Just(Event::DeleteSeenJob),
        2 => (1u64..900).prop_map(Event::Wait),
        1 => prop_oneof![Just("1.0"), Just("2.0"), Just("3.0"), Just("4.0")].prop_map(Event::SetVersion),
        1 => Just(Event::Retry),
        1 => prop_oneof![Just("1.0"), Just("2.0"), Just("hotfix")].prop_map(Event::ForeignImage),
        1 => Just(Event::Delete),
        2 => prop_oneof![Just("2.0"), Just("3.0"), Just("4.0")].prop_map(Event::Approve),
        1 => Just(Event::RequestBackup),
        1 => prop_oneof![Just(Pick::Newest), Just(Pick::Oldest), Just(Pick::Unknown)].prop_map(Event::RequestRestore),
    ]
}

#[derive(Clone, Debug)]
struct Config {
    backup: bool,
    /// The backup is a postgres preset (which restores by itself) instead of a template.
    preset: bool,
    migration: Option<MigrationPhase>,
    verify: bool,
    database: DatabaseRollback,
    automatic: bool,
    bad_tags: Vec<&'static str>,
    offline: bool,
    manual: bool,
    downgrade: DowngradePolicy,
    /// The frontend is a StatefulSet instead of a Deployment.
    stateful: bool,
    /// With a preset backup: a backup set of three presets instead.
    set: bool,
    /// A version whose frontend image alone never becomes available: the rollout fails
    /// after the backend changed.
    frontend_bad: Option<&'static str>,
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(MigrationPhase::BeforeRollout)),
            Just(Some(MigrationPhase::AfterRollout))
        ],
        any::<bool>(),
        prop_oneof![
            Just(DatabaseRollback::None),
            Just(DatabaseRollback::Downgrade),
            Just(DatabaseRollback::Restore)
        ],
        prop::bool::weighted(0.8),
        prop::sample::subsequence(vec!["2.0", "3.0", "4.0"], 0..=2),
        any::<bool>(),
        (
            any::<bool>(),
            prop_oneof![Just(None), Just(Some("2.0")), Just(Some("3.0"))],
        ),
        (
            any::<bool>(),
            prop::bool::weighted(0.3),
            prop_oneof![Just(DowngradePolicy::Refuse), Just(DowngradePolicy::Allow)],
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                backup,
                migration,
                verify,
                database,
                automatic,
                bad_tags,
                preset,
                (stateful, frontend_bad),
                (offline, manual, downgrade),
                set,
            )| Config {
                // Restore needs a backup to restore from.
                backup: backup || database == DatabaseRollback::Restore,
                preset,
                migration,
                verify,
                database,
                automatic,
                bad_tags,
                offline,
                manual,
                downgrade,
                stateful,
                frontend_bad,
                set,
            },
        )
}

fn build(config: &Config) -> World {
    let mut r = release("2.0");
    if config.backup {
        r = with_backup(r);
    }
    if let Some(when) = config.migration {
        r = with_migration(r, when);
    }
    if config.verify {
        r = with_verify(r);
    }
    r = with_database(r, config.database);
    if config.backup && config.preset {
        // The preset restores by itself: no restore template.
        r = if config.set {
            with_set(r)
        } else {
            with_preset(r)
        };
        r.spec.rollback.restore = None;
        r.spec.rollback.database = config.database;
    }
    r.spec.rollback.automatic = config.automatic;
    let mut observed = cluster("1.0");
    if config.stateful {
        r.spec.targets[1] = Target::stateful_set("frontend");
        let images: Vec<(&str, &str)> = vec![("web", "ghcr.io/meet/web:1.0")];
        observed
            .deployments
            .insert("frontend".into(), stateful_set("frontend", &images, 2));
    }
    if config.offline {
        r = offline(r);
    }
    if config.manual {
        r.spec.approval = Approval::Manual;
    }
    r.spec.downgrade = config.downgrade;
    let mut world = World::new(r, observed);
    world.faults.bad_tags = config.bad_tags.iter().map(|t| t.to_string()).collect();
    world.faults.bad_images = config
        .frontend_bad
        .iter()
        .map(|v| format!("ghcr.io/meet/web:{v}"))
        .collect();
    world
}

/// The AppRelease was deleted and the operator let it go: nothing more happens to it.
fn gone(world: &World) -> bool {
    world.release.metadata.deletion_timestamp.is_some()
        && world.release.metadata.finalizers.is_none()
}

/// Runs one event and checks every invariant that can be seen at that point.
fn play(world: &mut World, event: &Event) -> Result<(), TestCaseError> {
    if gone(world) {
        return Ok(());
    }
    match event {
        Event::Reconcile | Event::ReconcileAndCrash => {
            let before = world.release.status.clone().unwrap_or_default();
            let seen = world.cluster.clone();
            let decision = if matches!(event, Event::Reconcile) {
                world.step()
            } else {
                world.step_and_crash()
            };
            check_decision(world, &seen, &before, &decision)?;
        }
        Event::ReconcileStale(age) => {
            let read = world.stored_ago(*age);
            world.reconcile_from(&read);
        }
        Event::Rollout => world.settle_deployments(),
        Event::FinishJob { succeed, report } => {
            let running = world
                .cluster
                .jobs
                .iter()
                .find(|(_, j)| j.outcome == JobOutcome::Running)
                .map(|(n, _)| n.clone());
            if let Some(name) = running {
                let outcome = if *succeed {
                    JobOutcome::Succeeded
                } else {
                    JobOutcome::Failed("scripted".into())
                };
                // A backup Job that succeeded reports what it wrote, or (sometimes) nothing.
                let message = (*report && name.contains("-backup-")).then(|| preset_report(&name));
                world.finish_job(&name, outcome, message.as_deref());
            }
        }
        Event::DeleteSeenJob => {
            // Someone deletes a Job the operator has already seen (a TTL, a human).
            let seen: Vec<String> = world
                .log
                .iter()
                .filter_map(|d| d.status.upgrade.as_ref())
                .flat_map(|u| u.jobs_seen.clone())
                .collect();
            if let Some(name) = seen.iter().find(|n| world.cluster.jobs.contains_key(*n)) {
                world.cluster.jobs.remove(name);
            }
        }
        Event::Wait(secs) => world.advance(Duration::from_secs(*secs)),
        Event::SetVersion(v) => world.set_version(v),
        Event::Retry => {
            let n = world.log.len().to_string();
            world.release.metadata.annotations = Some([(RETRY_ANNOTATION.to_string(), n)].into());
        }
        Event::ForeignImage(tag) => {
            world.set_image("frontend", 0, &format!("ghcr.io/meet/web:{tag}"));
        }
        // Without the finalizer it is gone at once (see `gone`).
        Event::Approve(version) => {
            world
                .release
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(APPROVE_ANNOTATION.into(), version.to_string());
        }
        Event::Delete => {
            world.release.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ))
        }
        Event::RequestBackup => {
            let n = world.cluster.requests.len() as i64;
            let name = format!("backup-{n}");
            world
                .cluster
                .requests
                .push(request(RequestKind::Backup, &name, n));
        }
        Event::RequestRestore(pick) => {
            let n = world.cluster.requests.len() as i64;
            let backups = &world.status_or_default().backups;
            let id = match pick {
                Pick::Newest => backups.first().map(|b| b.id.clone()),
                Pick::Oldest => backups.last().map(|b| b.id.clone()),
                Pick::Unknown => None,
            }
            .unwrap_or_else(|| "meet-backup-999".into());
            let mut restore = restore_request(&format!("restore-{n}"), &id, &[]);
            restore.created = Some(t0() + chrono::Duration::minutes(n));
            world.cluster.requests.push(restore);
        }
    }
    // Whatever changed the AppRelease is a write of its own, with a resourceVersion of its own.
    world.store();
    check_requests(world)?;
    check_steps(world)?;
    // Invariant 2: each Job (so each migration of a release, from, to, attempt) is created at
    // most once, whatever happened to it afterwards.
    for (name, count) in &world.creates {
        prop_assert_eq!(*count, 1, "Job {} created {} times", name, count);
    }
    Ok(())
}

fn check_decision(
    world: &World,
    seen: &super::Observed,
    before: &AppReleaseStatus,
    decision: &super::Decision,
) -> Result<(), TestCaseError> {
    let status = &decision.status;
    // A Job is created only by an upgrade, never for a drift repair or for a deleted
    // AppRelease.
    let creates_job = decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::CreateJob(_)));
    if creates_job {
        prop_assert!(status.upgrade.is_some(), "a Job without an upgrade");
        prop_assert!(
            world.release.metadata.deletion_timestamp.is_none(),
            "a Job started for a deleted AppRelease"
        );
    }
    // No upgrade from a version to itself: a drifted image is repaired, not upgraded.
    if let Some(u) = &status.upgrade
        && u.request.is_none()
    {
        prop_assert_ne!(&u.from, &u.to, "same-version upgrade");
    }
    if let Some(drift) = &status.drift {
        prop_assert!(drift.repairs.len() <= super::drift::MAX_REPAIRS);
    }
    // A deleted AppRelease is let go only once no data Job of it runs.
    if world.release.metadata.deletion_timestamp.is_some() && !decision.finalizer {
        for (name, job) in &seen.jobs {
            let data = ["-migrate-", "-restore-", "-downgrade-"]
                .iter()
                .any(|k| name.contains(k));
            prop_assert!(
                !(data && job.outcome == JobOutcome::Running),
                "let go while {} runs",
                name
            );
        }
    }
    // Conditions: Ready always present; Stalled and Reconciling never both true.
    let is_true = |t: &str| {
        conditions::get(&status.conditions, t).is_some_and(|c| c.status == ConditionStatus::True)
    };
    prop_assert!(conditions::get(&status.conditions, conditions::READY).is_some());
    prop_assert!(!(is_true(conditions::STALLED) && is_true(conditions::RECONCILING)));
    prop_assert_eq!(
        status.observed_generation,
        world.release.metadata.generation
    );

    // Invariant 1: no target changes towards a new version before this upgrade's backup.
    for action in &decision.actions {
        if let (Action::SetImages { .. }, Some(upgrade)) = (action, &status.upgrade) {
            let forward = upgrade.step == Step::RollingOut;
            if forward && world.release.spec.backup.is_some() && upgrade.from != upgrade.to {
                let backup = upgrade.backup.as_ref();
                prop_assert!(
                    backup.is_some(),
                    "images changed before a backup: {:?}",
                    upgrade
                );
                prop_assert!(
                    status.backups.iter().any(|b| Some(&b.id) == backup),
                    "backup not in inventory"
                );
            }
        }
    }

    // Manual approval: an upgrade (or the continuation of one towards a newer version)
    // starts only towards the version the annotation names.
    if world.release.spec.approval == Approval::Manual
        && let Some(now) = status.upgrade.as_ref().filter(|u| u.request.is_none())
        && before
            .upgrade
            .as_ref()
            .is_none_or(|was| was.attempt != now.attempt)
    {
        let approved = world
            .release
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPROVE_ANNOTATION));
        prop_assert_eq!(
            approved,
            Some(&now.to),
            "upgrade to {} without approval",
            now.to
        );
    }

    // Refused downgrades: no upgrade starts towards a version older than the data, which is
    // at `from`, or, when it continues one whose migration may have run, at that one's `to`.
    if world.release.spec.downgrade == DowngradePolicy::Refuse
        && let Some(now) = status.upgrade.as_ref().filter(|u| u.request.is_none())
        && before
            .upgrade
            .as_ref()
            .is_none_or(|was| was.attempt != now.attempt)
    {
        let chained = |was: &Upgrade| {
            status
                .history
                .first()
                .is_some_and(|h| h.attempt == was.attempt && h.result == UpgradeResult::Superseded)
        };
        let data = match &before.upgrade {
            Some(was) if chained(was) && was.migration_started => was.to.clone(),
            _ => now.from.clone(),
        };
        prop_assert_ne!(
            version::compare(&now.to, &data),
            Some(std::cmp::Ordering::Less),
            "downgrade from {} to {} started",
            data,
            now.to
        );
    }

    // Offline: no backup and no before-rollout migration starts while a pod of a target runs.
    if world.release.spec.rollout.strategy == RolloutStrategy::Offline {
        for action in &decision.actions {
            let Action::CreateJob(job) = action else {
                continue;
            };
            // An on-demand backup does not stop the application (see README).
            if status.upgrade.as_ref().is_some_and(|u| u.request.is_some()) {
                continue;
            }
            let before_rollout = status.upgrade.as_ref().is_some_and(|u| u.targets_done == 0);
            let data = job.kind == crate::jobs::names::JobKind::Backup
                || job.kind == crate::jobs::names::JobKind::Migration && before_rollout;
            if data {
                for (name, d) in &seen.deployments {
                    prop_assert!(
                        d.replicas == 0 && d.status_replicas == 0,
                        "{:?} Job {} created while {} runs pods",
                        job.kind,
                        job.name,
                        name
                    );
                }
            }
        }
    }

    // The replica counts recorded before a stop are never overwritten while the upgrade (or
    // the chain that continues it) is in flight.
    let continued = |was: &Upgrade, now: &Upgrade| {
        now.attempt == was.attempt
            || status
                .history
                .first()
                .is_some_and(|h| h.attempt == was.attempt && h.result == UpgradeResult::Superseded)
    };
    if let (Some(was), Some(now)) = (&before.upgrade, &status.upgrade)
        && !was.previous_replicas.is_empty()
        && continued(was, now)
    {
        prop_assert_eq!(&was.previous_replicas, &now.previous_replicas);
    }

    // The one deletion: during a rollback, a StatefulSet pod the decision saw stuck (not
    // ready, not on the update revision of a template its controller has seen).
    for action in &decision.actions {
        if let Action::DeletePod { pod, uid } = action {
            prop_assert_eq!(
                status.upgrade.as_ref().map(|u| u.step),
                Some(Step::RollingBack),
                "pod {} deleted outside a rollback",
                pod
            );
            let stuck = seen
                .deployments
                .values()
                .flat_map(|d| d.stuck_pods())
                .any(|p| &p.name == pod && &p.uid == uid);
            prop_assert!(stuck, "pod {} was not stuck", pod);
        }
    }

    // Invariant 5: a rollback is declared finished only when the cluster it looked at runs
    // exactly the recorded previous images.
    if let (Some(upgrade), Some(last)) = (&before.upgrade, status.history.first())
        && last.attempt == upgrade.attempt
        && last.result == UpgradeResult::RolledBack
    {
        for p in &upgrade.previous_images {
            if let Some(d) = seen.deployments.get(&p.deployment) {
                prop_assert_eq!(d.image(&p.container), Some(p.image.as_str()));
            }
        }
    }

    // A preset backup is in the inventory only with the location, size and checksum its Job
    // reported; one without a report never is.
    if world
        .release
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.preset.is_some())
    {
        for b in &status.backups {
            prop_assert!(
                b.location.is_some() && b.size_bytes.is_some_and(|s| s > 0) && b.sha256.is_some(),
                "preset backup recorded without a report: {:?}",
                b
            );
        }
    }

    // A restore Job runs only while no pod of any target runs.
    for action in &decision.actions {
        if let Action::CreateJob(job) = action
            && job.kind == crate::jobs::names::JobKind::Restore
        {
            for (name, d) in &seen.deployments {
                prop_assert!(
                    d.replicas == 0 && d.status_replicas == 0,
                    "restore Job {} created while {} runs pods",
                    job.name,
                    name
                );
            }
        }
    }

    // An upgrade never starts while an on-demand request runs: the request ended first.
    if let (Some(was), Some(now)) = (&before.upgrade, &status.upgrade)
        && let Some(request) = &was.request
        && now.request.is_none()
    {
        prop_assert!(
            status
                .history
                .iter()
                .any(|h| h.request.as_ref().is_some_and(|r| r.uid == request.uid)),
            "upgrade {:?} started while request {} ran",
            now,
            request.name
        );
    }

    // A backup that a pending restore names is never pruned — by a prune planned since: one
    // a running backup Job was told before the restore was asked for has deleted the files
    // by the time the Job succeeded, and the restore is then refused (BackupNotFound).
    let committed: Vec<String> = before
        .upgrade
        .iter()
        .flat_map(|u| u.prune.clone())
        .collect();
    for r in &seen.requests {
        if r.kind == RequestKind::Restore
            && !r.is_final()
            && let Some(id) = &r.backup
            && let Some(backup) = before.backups.iter().find(|b| &b.id == id)
            && !super::retention::is_pruned(backup, &committed)
        {
            prop_assert!(
                status.backups.iter().any(|b| &b.id == id),
                "backup {} pruned while restore {} waits for it",
                id,
                r.name
            );
        }
    }

    // Invariant 6: a backup an upgrade depends on stays in the inventory.
    let depended: Vec<&String> = status
        .upgrade
        .iter()
        .filter_map(|u| u.backup.as_ref())
        .chain(status.history.first().and_then(|h| h.backup.as_ref()))
        .collect();
    for id in depended {
        let was_recorded = before.backups.iter().any(|b| &b.id == id);
        if was_recorded {
            prop_assert!(
                status.backups.iter().any(|b| &b.id == id),
                "backup {} pruned while needed",
                id
            );
        }
    }
    Ok(())
}

/// No step of an operation is entered again once left: each (attempt, step) of the stored
/// statuses is one unbroken run. A stale decision that went through could set an upgrade
/// back to a step it had finished.
fn check_steps(world: &World) -> Result<(), TestCaseError> {
    let mut left = std::collections::BTreeSet::new();
    let mut current = None;
    for stored in &world.stored {
        let now = stored
            .status
            .as_ref()
            .and_then(|s| s.upgrade.as_ref())
            .map(|u| (u.attempt, u.step.as_str()));
        if now != current {
            left.extend(current);
            if let Some(step) = now {
                prop_assert!(!left.contains(&step), "step {:?} entered again", step);
            }
            current = now;
        }
    }
    Ok(())
}

/// Requests over: a refused one (never started) never ran; one that ran has its history
/// entry; none runs twice.
fn check_requests(world: &World) -> Result<(), TestCaseError> {
    let Some(status) = world.release.status.as_ref() else {
        return Ok(());
    };
    for r in &world.cluster.requests {
        let entries = status
            .history
            .iter()
            .filter(|h| h.request.as_ref().is_some_and(|q| q.uid == r.uid))
            .count();
        prop_assert!(entries <= 1, "request {} ran {} times", r.name, entries);
        let refused = r.status.phase == Some(RequestPhase::Failed) && r.status.attempt.is_none();
        if refused {
            let running = status
                .upgrade
                .as_ref()
                .and_then(|u| u.request.as_ref())
                .is_some_and(|q| q.uid == r.uid);
            prop_assert!(entries == 0 && !running, "refused request {} ran", r.name);
        }
    }
    Ok(())
}

#[test]
fn a_decision_from_a_copy_older_than_a_seen_job_would_create_it_again_and_is_refused() {
    let mut world = World::new(with_backup(release("2.0")), cluster("1.0"));
    world.step();
    world.store();
    let before_seen = world.stored_ago(0);
    world.step();
    world.store();
    let seen = &world.status().upgrade.as_ref().unwrap().jobs_seen;
    assert_eq!(seen, &["meet-backup-1"]);
    // The backup Job is deleted (a TTL, a human): the stored status remembers it was seen.
    world.cluster.jobs.remove("meet-backup-1");
    // From the copy before that, it was never seen: the decision creates it again without
    // changing the status it was made from...
    let decision = decide(&before_seen, &world.cluster);
    assert!(
        matches!(decision.actions[..], [Action::CreateJob(_)]),
        "{:?}",
        decision.actions
    );
    assert_eq!(Some(&decision.status), before_seen.status.as_ref());
    // ...and is refused all the same, as its precondition is.
    assert_eq!(world.reconcile_from(&before_seen), Carried::Refused);
    assert_eq!(world.creates["meet-backup-1"], 1);
    // From the stored version it goes on.
    let current = world.stored_ago(0);
    assert!(matches!(world.reconcile_from(&current), Carried::Done(_)));
    assert_eq!(world.creates["meet-backup-1"], 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn upgrades_keep_every_invariant(config in config(), events in prop::collection::vec(event(), 1..120)) {
        let mut world = build(&config);
        for event in &events {
            play(&mut world, event)?;
        }
        super::milestone_tests::check_grammar(&world).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn every_upgrade_comes_to_rest(config in config(), outcomes in prop::collection::vec(any::<bool>(), 0..8)) {
        // With the cluster always catching up, an upgrade ends (succeeded, rolled back or
        // stopped for a human) within a bounded number of reconciles.
        let mut world = build(&config);
        // A StatefulSet has no progress deadline: a stalled one fails at the rollout timeout
        // (10m, 60 steps of 10 s), then rolls back.
        world.finish_every_job(outcomes, 200);
        prop_assert!(world.status().upgrade.is_none(), "still in flight: {:?}", world.status().upgrade);
        // The previous version always comes back: a StatefulSet stuck on a pod of the failed
        // version is unstuck by the rollback, not left to time out.
        for entry in &world.status().history {
            prop_assert!(!entry.message.contains("did not become available again"), "{}", entry.message);
        }
        let ready = conditions::get(&world.status().conditions, conditions::READY).unwrap();
        let expected_ready = world.status().current_version.as_deref() == Some("2.0");
        prop_assert_eq!(ready.status == ConditionStatus::True, expected_ready, "{:?}", ready);
        // Whatever the strategy, an upgrade that succeeded or rolled back leaves every target
        // with the replica count it had (an offline stop and a restore bring them back).
        let result = world.status().history.first().map(|h| h.result);
        if matches!(result, Some(UpgradeResult::Succeeded | UpgradeResult::RolledBack | UpgradeResult::Aborted)) {
            prop_assert_eq!(world.replicas(), (3, 2), "{:?}", world.status().history.first());
        }
    }

    #[test]
    fn statefulsets_that_would_never_roll_out_are_never_changed(on_delete in any::<bool>(), partition in 0i32..4, version in prop_oneof![Just("1.0"), Just("2.0")]) {
        let mut r = full(version);
        r.spec.targets.push(Target::stateful_set("worker"));
        let mut observed = cluster_with_worker("1.0");
        let d = observed.deployments.get_mut("worker").unwrap();
        d.on_delete = on_delete;
        d.partition = partition;
        let decision = decide(&r, &observed);
        let ready = conditions::get(&decision.status.conditions, conditions::READY).unwrap();
        if version != "1.0" && (on_delete || partition > 0) {
            prop_assert!(decision.actions.is_empty(), "{:?}", decision.actions);
            prop_assert!(decision.status.upgrade.is_none());
            prop_assert_eq!(ready.reason.as_str(), "UnsupportedUpdateStrategy");
        } else {
            prop_assert_ne!(ready.reason.as_str(), "UnsupportedUpdateStrategy");
        }
    }

    #[test]
    fn malformed_versions_change_nothing(version in "\\PC{0,140}") {
        let mut r = full("2.0");
        r.spec.version = version.clone();
        let decision = decide(&r, &cluster("1.0"));
        if version::tag_error(&version).is_some() {
            prop_assert!(decision.actions.is_empty());
            prop_assert!(decision.status.upgrade.is_none());
            let ready = conditions::get(&decision.status.conditions, conditions::READY).unwrap();
            prop_assert_eq!(ready.reason.as_str(), "InvalidSpec");
            prop_assert!(ready.message.contains("spec.version"));
        }
    }

    #[test]
    fn malformed_durations_change_nothing(timeout in "[0-9hms. -]{0,8}", field in 0usize..4) {
        let mut r = full("2.0");
        match field {
            0 => r.spec.rollout.timeout = timeout.clone(),
            1 => r.spec.backup.as_mut().unwrap().timeout = timeout.clone(),
            2 => r.spec.migration.as_mut().unwrap().timeout = timeout.clone(),
            _ => r.spec.verify.as_mut().unwrap().timeout = timeout.clone(),
        }
        let decision = decide(&r, &cluster("1.0"));
        if duration::parse(&timeout).is_err() {
            prop_assert!(decision.actions.is_empty());
            prop_assert_eq!(&conditions::get(&decision.status.conditions, conditions::READY).unwrap().reason, "InvalidSpec");
        } else {
            prop_assert!(!decision.actions.is_empty(), "a valid spec starts the upgrade");
        }
    }

    #[test]
    fn unknown_targets_change_nothing(deployment in "[a-z][a-z0-9-]{0,20}", container in "[a-z]{1,8}") {
        let mut r = full("2.0");
        r.spec.targets[1].deployment = Some(deployment.clone());
        r.spec.targets[0].containers = Some(vec![container.clone()]);
        let decision = decide(&r, &cluster("1.0"));
        let known = (deployment == "frontend" || deployment == "backend") && (container == "backend" || container == "sidecar");
        if !known {
            prop_assert!(decision.actions.is_empty());
            let ready = conditions::get(&decision.status.conditions, conditions::READY).unwrap();
            prop_assert!(ready.reason == "TargetNotFound" || ready.reason == "InvalidSpec", "{:?}", ready);
        }
    }
}
