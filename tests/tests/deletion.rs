//! Deleting an AppRelease in the middle of an upgrade (`kubectl delete`, a GitOps prune): a
//! running migration or restore is never killed, the targets end consistent with the
//! database, and only then does the AppRelease go (with its Jobs).

use std::time::Duration;

use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, Outcome, RELEASE, V1, V2, V4};
use apprelease_e2e::scenario::PATIENCE;
use apprelease_e2e::{Scenario, inspect, wait};
use apprelease_operator::api::{AppRelease, DatabaseRollback, JobTemplate};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams};

/// Waits until the AppRelease is gone, and returns the Events it left.
async fn gone(s: &Scenario) -> anyhow::Result<Vec<(String, String)>> {
    let api: Api<AppRelease> = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    wait::until(PATIENCE, "the AppRelease is gone", || async {
        api.get_opt(RELEASE).await.is_ok_and(|r| r.is_none())
    })
    .await?;
    inspect::events(&s.cluster, RELEASE).await
}

async fn job(s: &Scenario, name: &str) -> anyhow::Result<Option<Job>> {
    Ok(
        Api::<Job>::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
            .get_opt(name)
            .await?,
    )
}

async fn replicas(s: &Scenario, name: &str) -> anyhow::Result<i32> {
    let d = Api::<Deployment>::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .get(name)
        .await?;
    Ok(d.spec.and_then(|s| s.replicas).unwrap_or(1))
}

/// `kubectl delete` during the migration: the AppRelease waits for the migration Job, then
/// sets the migrated version's images (the database is at it) and goes, Jobs and all.
#[tokio::test]
async fn s12a_deleted_during_a_migration_waits_for_it_then_matches_the_database()
-> anyhow::Result<()> {
    let s = Scenario::start("deleted-migrating").await?;
    s.adopt(&Jobs {
        migration: Outcome::RunFor(Duration::from_secs(3)),
        ..Jobs::default()
    })
    .await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let attempt = s
        .wait_for_step(RELEASE, "Migrating")
        .await?
        .upgrade
        .unwrap()
        .attempt;
    let api: Api<AppRelease> = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    api.delete(RELEASE, &DeleteParams::default()).await?;
    // Held: still there, the migration still running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = inspect::release(&s.cluster, RELEASE).await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    let migration = job(&s, &format!("shop-migrate-{attempt}"))
        .await?
        .expect("not deleted");
    assert_eq!(migration.status.and_then(|s| s.succeeded).unwrap_or(0), 0);

    let events = gone(&s).await?;
    let said: Vec<_> = events
        .iter()
        .filter(|(r, _)| r == "DeletedDuringUpgrade")
        .collect();
    assert_eq!(said.len(), 1, "{events:?}");
    assert!(
        said[0].1.contains("migration to 1.36.1 had run"),
        "{}",
        said[0].1
    );
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2),
        "the images that match the migrated database"
    );
    // The migration ran to its end, once; then its Jobs went with the AppRelease.
    wait::until(PATIENCE, "the Jobs are collected", || async {
        inspect::jobs(&s.cluster).await.is_ok_and(|j| j.is_empty())
    })
    .await?;

    // The operator carries on: a new AppRelease for the same app works.
    let release = fixtures::release(&s.cluster, RELEASE, V4, &Jobs::default());
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V4).await?;
    Ok(())
}

/// A GitOps prune with foreground propagation (Argo CD's default) during a Restore rollback:
/// the garbage collector deletes dependents first, so the restore Job must not be one while
/// it runs. It finishes, the old version comes back with its replica counts, then the
/// AppRelease goes.
#[tokio::test]
async fn s12b_a_foreground_deletion_during_a_restore_does_not_kill_it() -> anyhow::Result<()> {
    let s = Scenario::start("deleted-restoring").await?;
    let restore = Outcome::RunFor(Duration::from_secs(3));
    s.cluster.script_jobs(RELEASE, "restore", &restore);
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &Jobs::default());
    release.spec.rollback.database = DatabaseRollback::Restore;
    release.spec.rollback.restore = Some(JobTemplate {
        template: fixtures::job_template(&restore, Some("busybox:1.36")),
        timeout: "5m".into(),
    });
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    fixtures::set_version(&s.cluster, RELEASE, BAD_VERSION).await?;
    let attempt = s
        .wait_for_step(RELEASE, "Restoring")
        .await?
        .upgrade
        .unwrap()
        .attempt;
    let restore_job = format!("shop-restore-{attempt}");
    assert_eq!(
        replicas(&s, "backend").await?,
        0,
        "scaled down for the restore"
    );

    let api: Api<AppRelease> = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    api.delete(RELEASE, &DeleteParams::foreground()).await?;
    // Follow the restore Job until the AppRelease is gone: it must never be deleted while
    // it runs, and its last state must be a completion.
    let mut last = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while api.get_opt(RELEASE).await?.is_some() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "still held");
        if let Some(j) = job(&s, &restore_job).await? {
            assert!(
                j.metadata.deletion_timestamp.is_none(),
                "the running restore Job is being deleted"
            );
            last = j.status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = last.expect("the restore Job was seen");
    assert_eq!((last.succeeded, last.failed), (Some(1), None), "{last:?}");
    let events = gone(&s).await?;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "DeletedDuringUpgrade" && n.contains("run 1.36.0 again")),
        "{events:?}"
    );
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V1)
    );
    assert_eq!(
        (
            replicas(&s, "backend").await?,
            replicas(&s, "frontend").await?
        ),
        (2, 1),
        "the replica counts recorded before the restore"
    );
    Ok(())
}
