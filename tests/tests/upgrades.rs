//! Scenarios 1–6: the upgrade paths of DESIGN.md's step table, end to end. Each asserts the
//! final cluster state, the AppRelease status and its Events.

use std::time::{Duration, Instant};

use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, Outcome, RELEASE, REPOSITORY, V1, V2, V4};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::conditions::{ConditionStatus, RECONCILING, STALLED};
use apprelease_operator::api::{DatabaseRollback, MigrationPhase, UpgradeResult};

fn fail(message: &str) -> Outcome {
    Outcome::Fail {
        message: message.into(),
    }
}

fn reasons(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(r, _)| r.as_str()).collect()
}

async fn images_are(s: &Scenario, version: &str) -> anyhow::Result<()> {
    assert_eq!(
        inspect::image(&s.cluster, "backend", "backend").await?,
        format!("{REPOSITORY}:{version}")
    );
    assert_eq!(
        inspect::image(&s.cluster, "frontend", "frontend").await?,
        format!("{REPOSITORY}:{version}")
    );
    // The containers that are not targets are never touched.
    assert_eq!(
        inspect::image(&s.cluster, "backend", "metrics").await?,
        "busybox:1.36"
    );
    assert_eq!(
        inspect::image(&s.cluster, "frontend", "metrics").await?,
        "busybox:1.36"
    );
    Ok(())
}

/// The operator's writes to Deployments (from the request log; 0 on a cluster given by
/// kubeconfig).
fn deployment_writes(s: &Scenario) -> usize {
    inspect::workload_writes(&s.cluster, "apprelease-operator")
        .iter()
        .filter(|(_, r, _)| r.starts_with("deployments"))
        .count()
}

#[tokio::test]
async fn s01_happy_path_backs_up_migrates_rolls_out_and_verifies() -> anyhow::Result<()> {
    let s = Scenario::start("happy").await?;
    s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_ready(RELEASE, V2).await?;

    images_are(&s, V2).await?;
    assert_eq!(
        inspect::ready(&status),
        Some((ConditionStatus::True, "Succeeded".into()))
    );
    assert!(!inspect::is_true(&status, RECONCILING) && !inspect::is_true(&status, STALLED));
    let entry = &status.history[0];
    assert_eq!(
        (entry.from.as_str(), entry.to.as_str(), entry.result),
        (V1, V2, UpgradeResult::Succeeded)
    );
    let backup = &status.backups[0];
    assert_eq!(backup.id, "shop-backup-1");
    assert_eq!(backup.version, V1);
    assert_eq!(
        backup.location.as_deref(),
        Some("pvc://shop-backups/e2e/shop/backup.dump")
    );
    assert_eq!(backup.size_bytes, Some(4096));
    let mut jobs = inspect::jobs(&s.cluster).await?;
    jobs.sort();
    assert_eq!(jobs, ["shop-backup-1", "shop-migrate-1", "shop-verify-1"]);
    let events = s
        .events_with(
            RELEASE,
            &[
                "UpgradeStarted",
                "BackupSucceeded",
                "MigrationSucceeded",
                "TargetReady",
                "Verifying",
                "UpgradeSucceeded",
            ],
        )
        .await?;
    for reason in [
        "UpgradeStarted",
        "BackupSucceeded",
        "MigrationSucceeded",
        "TargetReady",
        "Verifying",
        "UpgradeSucceeded",
    ] {
        assert!(
            reasons(&events).contains(&reason),
            "no {reason} Event in {events:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn s02_failed_backup_changes_nothing() -> anyhow::Result<()> {
    let s = Scenario::start("backup-fails").await?;
    s.adopt(&Jobs {
        backup: fail("pg_dump: connection refused"),
        ..Jobs::default()
    })
    .await?;
    let writes_before = deployment_writes(&s);
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "BackupFailed").await?;

    images_are(&s, V1).await?;
    assert_eq!(
        deployment_writes(&s),
        writes_before,
        "no Deployment was written"
    );
    assert_eq!(inspect::ready(&status).unwrap().0, ConditionStatus::False);
    assert!(inspect::is_true(&status, STALLED));
    assert_eq!(status.history[0].result, UpgradeResult::Aborted);
    assert!(status.backups.is_empty());
    assert_eq!(
        inspect::jobs(&s.cluster).await?,
        ["shop-backup-1"],
        "nothing ran after the backup"
    );
    let events = s.events_with(RELEASE, &["BackupFailed"]).await?;
    assert!(reasons(&events).contains(&"BackupFailed"), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn s03a_failed_migration_rolls_back() -> anyhow::Result<()> {
    let s = Scenario::start("migration-fails").await?;
    s.adopt(&Jobs {
        migration: fail("migration 0042 failed"),
        ..Jobs::default()
    })
    .await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "RolledBack").await?;

    images_are(&s, V1).await?;
    assert!(inspect::is_true(&status, STALLED));
    assert_eq!(status.history[0].reason, "MigrationFailed");
    assert_eq!(status.current_version.as_deref(), Some(V1));
    let events = s
        .events_with(RELEASE, &["MigrationFailed", "RolledBack"])
        .await?;
    assert!(
        reasons(&events).contains(&"MigrationFailed") && reasons(&events).contains(&"RolledBack"),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test]
async fn s03b_downgrade_runs_with_the_new_image_before_the_images_go_back() -> anyhow::Result<()> {
    let s = Scenario::start("downgrade").await?;
    let jobs = Jobs {
        migration: fail("migration 0042 failed"),
        ..Jobs::default()
    };
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &jobs);
    release.spec.migration.as_mut().unwrap().when = MigrationPhase::AfterRollout;
    release.spec.rollback.database = DatabaseRollback::Downgrade;
    release.spec.rollback.downgrade = Some(fixtures::downgrade(&jobs));
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "RolledBack").await?;

    images_are(&s, V1).await?;
    let downgrade = k8s_job(&s, "shop-downgrade-1").await?;
    let image = downgrade.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some(format!("{REPOSITORY}:{V2}").as_str()),
        "the down-migration runs the new version's image"
    );
    assert_eq!(status.history[0].reason, "MigrationFailed");
    let events = s
        .events_with(RELEASE, &["Downgrading", "RollingBack"])
        .await?;
    let order = reasons(&events);
    let at = |r: &str| {
        order
            .iter()
            .position(|x| *x == r)
            .unwrap_or_else(|| panic!("no {r} in {order:?}"))
    };
    assert!(
        at("Downgrading") < at("RollingBack"),
        "down-migration first, then the images: {order:?}"
    );
    if let Some(log) = s.cluster.requests() {
        // In the request log: the downgrade Job was created before any image went back.
        let created = log.iter().position(|r| {
            r.verb == "create"
                && r.resource == "jobs"
                && r.user_agent.contains("apprelease-operator")
                && r.namespace == s.cluster.namespace
                && r.name == "shop-downgrade-1"
                && r.code == 201
        });
        let reverted = log.iter().rposition(|r| {
            r.verb == "patch"
                && r.resource == "deployments"
                && r.user_agent.contains("apprelease-operator")
        });
        assert!(
            created.is_some() && reverted.is_some() && created < reverted,
            "{created:?} < {reverted:?}"
        );
    }
    Ok(())
}

async fn k8s_job(s: &Scenario, name: &str) -> anyhow::Result<k8s_openapi::api::batch::v1::Job> {
    Ok(
        kube::Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
            .get(name)
            .await?,
    )
}

#[tokio::test]
async fn s04_a_version_that_never_becomes_ready_is_rolled_back_and_not_retried()
-> anyhow::Result<()> {
    let s = Scenario::start("never-ready").await?;
    s.adopt(&Jobs::default()).await?;
    let started = Instant::now();
    fixtures::set_version(&s.cluster, RELEASE, BAD_VERSION).await?;
    let status = s.wait_settled(RELEASE, "RolledBack").await?;
    // The rollout timeout is 60s; the progress deadline (10s) usually ends it sooner.
    assert!(
        started.elapsed() < Duration::from_secs(60 + 30),
        "rolled back after {:?}",
        started.elapsed()
    );
    images_are(&s, V1).await?;
    assert_eq!(status.history[0].reason, "RolloutFailed");
    let attempts = status.attempts;

    // Not retried with the same spec.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = inspect::status(&s.cluster, RELEASE).await;
    assert_eq!(
        again.attempts, attempts,
        "the failed version was tried again"
    );
    images_are(&s, V1).await?;

    // Retried when the retry annotation changes.
    fixtures::retry(&s.cluster, RELEASE, "1").await?;
    let retried = s
        .wait_for(RELEASE, "a second attempt", |st| {
            st.attempts == attempts + 1 && st.upgrade.is_none()
        })
        .await?;
    assert_eq!(retried.history[0].result, UpgradeResult::RolledBack);
    images_are(&s, V1).await?;

    // Upgraded when the spec moves on.
    fixtures::set_version(&s.cluster, RELEASE, V4).await?;
    s.wait_ready(RELEASE, V4).await?;
    images_are(&s, V4).await?;
    Ok(())
}

#[tokio::test]
async fn s05_failed_verification_rolls_back() -> anyhow::Result<()> {
    let s = Scenario::start("verify-fails").await?;
    s.adopt(&Jobs {
        verify: fail("GET /health: 500"),
        ..Jobs::default()
    })
    .await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "RolledBack").await?;
    images_are(&s, V1).await?;
    assert_eq!(status.history[0].reason, "VerifyFailed");
    let message = &inspect::condition(&status, "Ready").unwrap().message;
    assert!(
        message.contains("verify Job shop-verify-1 failed"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn s06_a_running_migration_finishes_before_a_newer_version_is_planned() -> anyhow::Result<()>
{
    let s = Scenario::start("superseded").await?;
    s.adopt(&Jobs {
        migration: Outcome::RunFor(Duration::from_secs(4)),
        ..Jobs::default()
    })
    .await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_for_step(RELEASE, "Migrating").await?;
    fixtures::set_version(&s.cluster, RELEASE, V4).await?;
    let status = s.wait_ready(RELEASE, V4).await?;

    images_are(&s, V4).await?;
    let first = k8s_job(&s, "shop-migrate-1").await?;
    let job_status = first.status.unwrap_or_default();
    assert_eq!(
        job_status.succeeded,
        Some(1),
        "the first migration ran to completion"
    );
    assert_eq!(job_status.failed.unwrap_or(0), 0, "and was not interrupted");
    assert!(
        status
            .history
            .iter()
            .any(|h| h.to == V2 && h.result == UpgradeResult::Superseded)
    );
    assert!(
        inspect::jobs(&s.cluster)
            .await?
            .contains(&"shop-migrate-2".to_string()),
        "V4's own migration ran"
    );
    Ok(())
}

#[tokio::test]
async fn s07_each_upgrade_has_events_of_its_own() -> anyhow::Result<()> {
    let s = Scenario::start("two-upgrades").await?;
    s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;
    fixtures::set_version(&s.cluster, RELEASE, V4).await?;
    s.wait_ready(RELEASE, V4).await?;

    // Events lag the status a little: wait for the second upgrade's to be in.
    let started = |events: &[(String, String)]| -> Vec<String> {
        events
            .iter()
            .filter(|(reason, _)| reason == "UpgradeStarted")
            .map(|(_, note)| note.clone())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = s.events_with(RELEASE, &["UpgradeStarted"]).await?;
    while started(&events).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events = inspect::events(&s.cluster, RELEASE).await?;
    }
    let notes = started(&events);
    assert_eq!(notes.len(), 2, "one UpgradeStarted per upgrade: {events:?}");
    assert!(
        notes[0].contains(&format!("from {V1} to {V2} (attempt ")),
        "{notes:?}"
    );
    assert!(
        notes[1].contains(&format!("from {V2} to {V4} (attempt ")),
        "{notes:?}"
    );
    // No Event stands for several different messages: none is a series of the first one.
    let counted = inspect::event_counts(&s.cluster, RELEASE).await?;
    let upgrade_started: Vec<_> = counted
        .iter()
        .filter(|(reason, _, _)| reason == "UpgradeStarted")
        .collect();
    assert!(
        upgrade_started.iter().all(|(_, _, count)| *count == 1),
        "{upgrade_started:?}"
    );
    eprintln!(
        "Events after two upgrades: {} in all, UpgradeStarted {:?}",
        counted.len(),
        upgrade_started
    );
    Ok(())
}
