//! Offline upgrades end to end: the application is stopped before the backup and the
//! migration, and comes back with the replica counts it had — after a good upgrade, and after
//! a rollback that restores the backup with the targets stopped again.

use std::time::Duration;

use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, Outcome, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::{Cluster, Scenario, inspect};
use apprelease_operator::api::{
    AppRelease, DatabaseRollback, JobTemplate, RolloutStrategy, UpgradeResult,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The example release in `Offline` mode, with a backup that runs for a while so the test
/// can look at the stopped application while it runs.
fn offline_release(s: &Scenario, jobs: &Jobs) -> AppRelease {
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, jobs);
    release.spec.rollout.strategy = RolloutStrategy::Offline;
    release
}

/// (spec.replicas, status.replicas) of a Deployment: status.replicas counts its pods.
async fn replicas(cluster: &Cluster, name: &str) -> anyhow::Result<(i32, i32)> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let d = api.get(name).await?;
    let spec = d.spec.and_then(|s| s.replicas).unwrap_or(1);
    let pods = d.status.and_then(|s| s.replicas).unwrap_or(0);
    Ok((spec, pods))
}

async fn app_is_stopped(cluster: &Cluster) -> anyhow::Result<()> {
    for name in ["backend", "frontend"] {
        assert_eq!(replicas(cluster, name).await?, (0, 0), "{name} is stopped");
    }
    Ok(())
}

async fn app_runs_as_before(cluster: &Cluster, version: &str) -> anyhow::Result<()> {
    for (name, count) in [("backend", 2), ("frontend", 1)] {
        assert_eq!(replicas(cluster, name).await?.0, count, "{name}");
        assert_eq!(
            inspect::image(cluster, name, name).await?,
            format!("{REPOSITORY}:{version}")
        );
    }
    Ok(())
}

/// The operator's requests in the scenario's namespace, as (verb, resource, name) in order.
fn operator_requests(s: &Scenario) -> Option<Vec<(String, String, String)>> {
    let log = s.cluster.requests()?;
    Some(
        log.into_iter()
            .filter(|r| {
                r.user_agent.contains("apprelease-operator")
                    && r.namespace == s.cluster.namespace
                    && r.code < 300
            })
            .map(|r| (r.verb, r.resource, r.name))
            .collect(),
    )
}

#[tokio::test]
async fn offline_upgrade_stops_backs_up_migrates_and_starts_with_the_same_replicas()
-> anyhow::Result<()> {
    let s = Scenario::start("offline").await?;
    let jobs = Jobs {
        backup: Outcome::RunFor(Duration::from_secs(3)),
        migration: Outcome::RunFor(Duration::from_secs(2)),
        ..Jobs::default()
    };
    fixtures::apply(&s.cluster, &offline_release(&s, &jobs)).await?;
    s.wait_ready(RELEASE, V1).await?;
    // An autoscaler for the backend: it is named in an Event, and left alone.
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "backend-hpa"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "backend"},
            "minReplicas": 1,
            "maxReplicas": 5
        }
    }))?;
    Api::<HorizontalPodAutoscaler>::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .create(&PostParams::default(), &hpa)
        .await?;

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    // While the backup runs, no pod of the application does, and the counts to come back to
    // are in the status.
    let status = s.wait_for_step(RELEASE, "BackingUp").await?;
    let recorded: Vec<(String, i32)> = status
        .upgrade
        .as_ref()
        .unwrap()
        .previous_replicas
        .iter()
        .map(|r| (r.deployment.clone(), r.replicas))
        .collect();
    assert_eq!(
        recorded,
        [("backend".to_string(), 2), ("frontend".to_string(), 1)]
    );
    app_is_stopped(&s.cluster).await?;
    s.wait_for_step(RELEASE, "Migrating").await?;
    app_is_stopped(&s.cluster).await?;
    assert_eq!(
        inspect::image(&s.cluster, "backend", "backend").await?,
        format!("{REPOSITORY}:{V1}"),
        "the images change only after the migration"
    );

    let status = s.wait_ready(RELEASE, V2).await?;
    app_runs_as_before(&s.cluster, V2).await?;
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    let steps = [
        "BackingUp",
        "Migrating",
        "RollingOut",
        "Starting",
        "Verifying",
    ];
    let events = s.events_with(RELEASE, &steps).await?;
    let order: Vec<&str> = events
        .iter()
        .map(|(r, _)| r.as_str())
        .filter(|r| steps.contains(r))
        .collect();
    assert_eq!(order, steps, "each step once, in order");
    let autoscaled: Vec<&String> = events
        .iter()
        .filter(|(r, _)| r == "AutoscaledTarget")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(autoscaled.len(), 1, "{events:?}");
    assert!(autoscaled[0].contains("backend-hpa"), "{}", autoscaled[0]);
    if let Some(requests) = operator_requests(&s) {
        // In order: both targets scaled to zero, the backup, the migration, the images, both
        // scaled back up.
        let at = |verb: &str, resource: &str, name: &str| {
            requests
                .iter()
                .position(|(v, r, n)| v == verb && r == resource && n == name)
                .unwrap_or_else(|| panic!("no {verb} {resource}/{name} in {requests:?}"))
        };
        let last_scale = |name: &str| {
            requests
                .iter()
                .rposition(|(v, r, n)| v == "patch" && r == "deployments/scale" && n == name)
                .unwrap()
        };
        let stop = at("patch", "deployments/scale", "backend").max(at(
            "patch",
            "deployments/scale",
            "frontend",
        ));
        let backup = at("create", "jobs", "shop-backup-1");
        let migration = at("create", "jobs", "shop-migrate-1");
        let images = at("patch", "deployments", "backend");
        let start = last_scale("backend").min(last_scale("frontend"));
        assert!(
            stop < backup && backup < migration && migration < images && images < start,
            "stop {stop}, backup {backup}, migration {migration}, images {images}, start {start}"
        );
    }
    assert_eq!(inspect::each_job_ran_once(&s.cluster).await?, 3);
    assert_eq!(inspect::operator_requests_outside_rbac(&s.cluster)?, vec![]);
    Ok(())
}

#[tokio::test]
async fn offline_rollback_restores_with_the_application_stopped_again() -> anyhow::Result<()> {
    let s = Scenario::start("offline-restore").await?;
    let mut release = offline_release(&s, &Jobs::default());
    release.spec.rollback.database = DatabaseRollback::Restore;
    let restore = Outcome::RunFor(Duration::from_secs(3));
    s.cluster.script_jobs(RELEASE, "restore", &restore);
    release.spec.rollback.restore = Some(JobTemplate {
        template: fixtures::job_template(&restore, Some("busybox:1.36")),
        timeout: "5m".into(),
    });
    // The bad version's pods never become ready: the start times out after 20 s.
    release.spec.rollout.timeout = "20s".into();
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;

    fixtures::set_version(&s.cluster, RELEASE, BAD_VERSION).await?;
    s.wait_for_step(RELEASE, "Starting").await?;
    let status = s.wait_for_step(RELEASE, "Restoring").await?;
    assert_eq!(
        status
            .upgrade
            .as_ref()
            .and_then(|u| u.failure.as_ref())
            .map(|f| f.reason.as_str()),
        Some("RolloutFailed")
    );
    app_is_stopped(&s.cluster).await?;

    let status = s.wait_settled(RELEASE, "RolledBack").await?;
    app_runs_as_before(&s.cluster, V1).await?;
    let entry = &status.history[0];
    assert_eq!(
        (entry.result, entry.reason.as_str()),
        (UpgradeResult::RolledBack, "RolloutFailed")
    );
    assert_eq!(inspect::operator_requests_outside_rbac(&s.cluster)?, vec![]);
    Ok(())
}
