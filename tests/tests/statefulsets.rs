//! StatefulSet targets end to end: a StatefulSet upgraded together with the Deployments, one
//! whose update strategy never replaces pods refused before anything changes, and a failed
//! StatefulSet rollout rolled back with every other target.
//!
//! The `worker` StatefulSet runs busybox under another name for the same image
//! (`docker.io/library/busybox`), so that a version can fail in the worker alone: its pod
//! template names the images that never become ready in the annotation
//! `e2e.apprelease.io/never-ready-images`, which the KWOK Stages of the control plane read
//! (testbed/kwok/stages.yaml), and the simulator gets the same image fault.

use apprelease_e2e::cluster::Backend;
use apprelease_e2e::fixtures::{
    self, Jobs, RELEASE, REPOSITORY, V1, V2, restricted_container, restricted_pod,
};
use apprelease_e2e::{Cluster, Scenario, inspect};
use apprelease_operator::api::conditions::{ConditionStatus, RECONCILING, STALLED};
use apprelease_operator::api::{AppRelease, Target, UpgradeResult};
use apprelease_sim::ImageEffect;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// The worker's image repository: busybox, spelt so that its images are the worker's own.
const WORKER_REPOSITORY: &str = "docker.io/library/busybox";

/// Creates the `worker` StatefulSet (2 replicas) on `V1`, with `strategy` as its
/// updateStrategy when given, and `never_ready` images that never become ready.
async fn deploy_worker(
    cluster: &Cluster,
    strategy: Option<Value>,
    never_ready: &[String],
) -> anyhow::Result<()> {
    if let Some(sim) = cluster.sim() {
        for image in never_ready {
            sim.fault_image(image, ImageEffect::NeverReady);
        }
    }
    let mut set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "worker", "labels": {"app": "worker"}},
        "spec": {
            "replicas": 2,
            "serviceName": "worker",
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"},
                    "annotations": {"e2e.apprelease.io/never-ready-images": never_ready.join(",")}},
                "spec": {"securityContext": restricted_pod(), "containers": [
                    {"name": "worker", "image": format!("{WORKER_REPOSITORY}:{V1}"),
                     "command": ["sleep", "3600"], "securityContext": restricted_container()}
                ]}
            }
        }
    });
    if let Some(strategy) = strategy {
        set["spec"]["updateStrategy"] = strategy;
    }
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.create(&PostParams::default(), &serde_json::from_value(set)?)
        .await?;
    Ok(())
}

/// The default release with the worker as a third target.
fn release_with_worker(cluster: &Cluster, version: &str) -> AppRelease {
    let mut release = fixtures::release(cluster, RELEASE, version, &Jobs::default());
    release.spec.targets.push(Target {
        containers: Some(vec!["worker".into()]),
        ..Target::stateful_set("worker")
    });
    release
}

async fn worker(cluster: &Cluster) -> anyhow::Result<StatefulSet> {
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    Ok(api.get("worker").await?)
}

fn worker_image(set: &StatefulSet) -> String {
    set.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// The StatefulSet readiness rule: the update finished (`updateRevision ==
/// currentRevision`), every replica updated and ready, the generation observed.
fn worker_rolled_out(set: &StatefulSet) -> bool {
    let status = set.status.clone().unwrap_or_default();
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.observed_generation == set.metadata.generation
        && status.update_revision.is_some()
        && status.update_revision == status.current_revision
        && status.updated_replicas == Some(replicas)
        && status.ready_replicas == Some(replicas)
        && status.replicas == replicas
}

/// The worker's pods: (name, controller-revision-hash, Ready).
async fn worker_pods(cluster: &Cluster) -> anyhow::Result<Vec<(String, String, bool)>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut pods: Vec<_> = api
        .list(&ListParams::default().labels("app=worker"))
        .await?
        .items
        .into_iter()
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let revision = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash").cloned())
                .unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), revision, ready)
        })
        .collect();
    pods.sort();
    Ok(pods)
}

/// The operator's writes to the StatefulSet and its pods (from the request log).
fn worker_writes(s: &Scenario) -> Vec<(String, String, String)> {
    inspect::workload_writes(&s.cluster, "apprelease-operator")
        .into_iter()
        .filter(|(_, resource, name)| {
            resource.starts_with("statefulsets")
                || (resource == "pods" && name.starts_with("worker-"))
        })
        .collect()
}

#[tokio::test]
async fn st01_a_deployment_and_a_statefulset_upgrade_together() -> anyhow::Result<()> {
    let s = Scenario::start("sts-upgrade").await?;
    deploy_worker(&s.cluster, None, &[]).await?;
    fixtures::apply(&s.cluster, &release_with_worker(&s.cluster, V1)).await?;
    s.wait_ready(RELEASE, V1).await?;
    let before = worker(&s.cluster).await?;
    assert!(worker_rolled_out(&before), "{:?}", before.status);
    let old_revision = before.status.unwrap().update_revision.unwrap();

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_ready(RELEASE, V2).await?;
    assert_eq!(
        inspect::ready(&status),
        Some((ConditionStatus::True, "Succeeded".into()))
    );
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    for name in ["backend", "frontend"] {
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("{REPOSITORY}:{V2}")
        );
    }
    let set = worker(&s.cluster).await?;
    assert_eq!(worker_image(&set), format!("{WORKER_REPOSITORY}:{V2}"));
    assert!(worker_rolled_out(&set), "{:?}", set.status);
    let revision = set.status.unwrap().update_revision.unwrap();
    assert_ne!(revision, old_revision, "a new revision rolled out");
    let pods = worker_pods(&s.cluster).await?;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(
        pods.iter().all(|(_, r, ready)| *r == revision && *ready),
        "{pods:?}"
    );
    // The StatefulSet got its image by the operator's apply, and nothing of it was deleted.
    let writes = worker_writes(&s);
    assert!(
        writes
            .iter()
            .any(|(verb, resource, _)| verb == "patch" && resource == "statefulsets"),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|(verb, ..)| verb == "delete"),
        "{writes:?}"
    );
    let events = s
        .events_with(RELEASE, &["TargetReady", "UpgradeSucceeded"])
        .await?;
    assert!(
        events.iter().any(|(r, m)| r == "TargetReady"
            && m == &format!("StatefulSet worker runs {V2} and is available")),
        "{events:?}"
    );
    let outside = inspect::operator_requests_outside_rbac(&s.cluster)?;
    assert!(
        outside.is_empty(),
        "not allowed by manifests/rbac.yaml: {outside:?}"
    );
    Ok(())
}

#[tokio::test]
async fn st02_an_on_delete_statefulset_is_refused_and_nothing_changes() -> anyhow::Result<()> {
    let s = Scenario::start("sts-ondelete").await?;
    deploy_worker(&s.cluster, Some(json!({"type": "OnDelete"})), &[]).await?;
    fixtures::apply(&s.cluster, &release_with_worker(&s.cluster, V1)).await?;
    // At its version it is fine: nothing has to roll out.
    s.wait_ready(RELEASE, V1).await?;

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "UnsupportedUpdateStrategy").await?;
    assert_eq!(
        inspect::ready(&status),
        Some((ConditionStatus::False, "UnsupportedUpdateStrategy".into()))
    );
    assert!(inspect::is_true(&status, STALLED) && !inspect::is_true(&status, RECONCILING));
    let message = inspect::condition(&status, "Ready").unwrap().message;
    assert!(
        message.contains("StatefulSet worker cannot be upgraded")
            && message.contains("OnDelete")
            && message.contains("Nothing was changed"),
        "{message}"
    );
    assert_eq!(status.attempts, 0, "no upgrade started");
    assert!(inspect::jobs(&s.cluster).await?.is_empty(), "no backup ran");
    for name in ["backend", "frontend"] {
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("{REPOSITORY}:{V1}")
        );
    }
    assert_eq!(
        worker_image(&worker(&s.cluster).await?),
        format!("{WORKER_REPOSITORY}:{V1}")
    );
    let writes = inspect::workload_writes(&s.cluster, "apprelease-operator");
    assert!(writes.is_empty(), "the operator wrote {writes:?}");
    let events = s
        .events_with(RELEASE, &["UnsupportedUpdateStrategy"])
        .await?;
    assert!(
        events.iter().any(|(_, m)| m.contains("OnDelete")),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test]
async fn st03_a_failed_statefulset_rollout_rolls_back_every_target() -> anyhow::Result<()> {
    let backend = Backend::from_env()?;
    anyhow::ensure!(
        !matches!(backend, Backend::Kubeconfig(_)),
        "this scenario needs a worker version that fails alone, which only the simulator's \
         image faults and the control plane's KWOK Stages can script; on a cluster given by \
         kubeconfig, exclude it (-- --skip st03)"
    );
    let s = Scenario::start("sts-rollback").await?;
    let bad = format!("{WORKER_REPOSITORY}:{V2}");
    deploy_worker(&s.cluster, None, std::slice::from_ref(&bad)).await?;
    let mut release = release_with_worker(&s.cluster, V1);
    // A StatefulSet has no progress deadline: its rollout fails at this timeout.
    release.spec.rollout.timeout = "20s".into();
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    let old_revision = worker(&s.cluster)
        .await?
        .status
        .unwrap()
        .update_revision
        .unwrap();

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "RolledBack").await?;
    let entry = &status.history[0];
    assert_eq!(
        (entry.result, entry.reason.as_str()),
        (UpgradeResult::RolledBack, "RolloutFailed")
    );
    assert!(
        entry.message.contains(&format!(
            "StatefulSet worker did not become available with {V2}"
        )),
        "{}",
        entry.message
    );
    // Every target is back on V1: the Deployments that had rolled out, and the worker.
    for name in ["backend", "frontend"] {
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("{REPOSITORY}:{V1}")
        );
    }
    let set = worker(&s.cluster).await?;
    assert_eq!(worker_image(&set), format!("{WORKER_REPOSITORY}:{V1}"));
    assert!(worker_rolled_out(&set), "{:?}", set.status);
    assert_eq!(
        set.status.unwrap().update_revision.as_deref(),
        Some(old_revision.as_str())
    );
    let pods = worker_pods(&s.cluster).await?;
    assert!(
        pods.iter()
            .all(|(_, r, ready)| *r == old_revision && *ready),
        "{pods:?}"
    );
    // The pod of V2 that never became ready was deleted by the operator, and only it: the
    // StatefulSet controller would have waited for it forever.
    let deleted: Vec<String> = worker_writes(&s)
        .into_iter()
        .filter(|(verb, resource, _)| verb == "delete" && resource == "pods")
        .map(|(_, _, name)| name)
        .collect();
    if s.cluster.requests().is_some() {
        assert_eq!(deleted, ["worker-1"], "{deleted:?}");
    }
    let events = s
        .events_with(RELEASE, &["RolloutFailed", "StuckPodDeleted", "RolledBack"])
        .await?;
    assert!(
        events.iter().any(|(r, m)| r == "StuckPodDeleted"
            && m.starts_with("deleted pod worker-1 of StatefulSet worker")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "RolledBack" && m.contains("StatefulSet worker")),
        "{events:?}"
    );
    let outside = inspect::operator_requests_outside_rbac(&s.cluster)?;
    assert!(
        outside.is_empty(),
        "not allowed by manifests/rbac.yaml: {outside:?}"
    );
    Ok(())
}
