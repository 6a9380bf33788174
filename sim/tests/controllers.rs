//! The simulated Deployment and Job controllers and garbage collection, through the kube
//! client, with time sped up.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::watcher;
use serde_json::json;

use apprelease_sim::{ImageEffect, JobMatch, JobRule};

fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<(&'a str, &'a str)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_deref().unwrap_or_default()))
}

fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && condition(d, "Progressing") == Some(("True", "NewReplicaSetAvailable"))
}

fn image_patch(image: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
}

#[tokio::test]
async fn deployment_rolls_out_within_surge_and_stalls_on_a_never_ready_image() {
    let (sim, client) = common::start(100.0).await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let mut d = common::deployment("web", 4, &[("app", "app:1")]);
    d["spec"]["progressDeadlineSeconds"] = json!(60);
    d["spec"]["strategy"] = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    common::wait_for(&deploys, "web", "initial rollout", |d| rolled_out(d, 4)).await;

    // Record every status during the next rollout, from a watch that is running before
    // the change is made.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let recorder = {
        let seen = seen.clone();
        let mut stream = watcher(deploys.clone(), watcher::Config::default()).boxed();
        tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            while let Ok(Some(event)) = stream.try_next().await {
                match event {
                    watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                        seen.lock().unwrap().push(d.status.unwrap_or_default());
                    }
                    watcher::Event::InitDone => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
        })
    };
    listed_rx.await.unwrap();
    let pp = PatchParams::apply("apprelease-operator").force();
    let applied = deploys
        .patch("web", &pp, &Patch::Apply(image_patch("app:2")))
        .await
        .unwrap();
    assert_eq!(applied.metadata.generation, Some(2));
    common::wait_for(&deploys, "web", "rollout to app:2", |d| rolled_out(d, 4)).await;
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.updated_replicas.unwrap_or(0) < 4),
        "saw the rollout in progress"
    );
    for s in &seen {
        assert!(
            s.replicas.unwrap_or(0) <= 5,
            "never more than replicas + maxSurge: {s:?}"
        );
        assert!(
            s.available_replicas.unwrap_or(0) >= 3,
            "never less than replicas - maxUnavailable: {s:?}"
        );
    }

    // A never-ready image stalls the rollout until the progress deadline passes.
    sim.fault_image("app:broken", ImageEffect::NeverReady);
    deploys
        .patch("web", &pp, &Patch::Apply(image_patch("app:broken")))
        .await
        .unwrap();
    let stalled = common::wait_for(&deploys, "web", "ProgressDeadlineExceeded", |d| {
        condition(d, "Progressing") == Some(("False", "ProgressDeadlineExceeded"))
    })
    .await;
    assert_eq!(condition(&stalled, "Available").map(|c| c.0), Some("True"));
    let s = stalled.status.unwrap();
    assert_eq!(s.observed_generation, Some(3));
    assert!(s.updated_replicas.unwrap_or(0) < 4);
    assert!(
        s.available_replicas.unwrap_or(0) >= 3,
        "old pods keep serving"
    );

    // Rolling back to the good image recovers.
    deploys
        .patch("web", &pp, &Patch::Apply(image_patch("app:2")))
        .await
        .unwrap();
    common::wait_for(&deploys, "web", "rollback", |d| rolled_out(d, 4)).await;

    // The pods are there to see, owned by the current ReplicaSet.
    let pods: Api<Pod> = Api::namespaced(deploys.clone().into_client(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(deploys.clone().into_client(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let web_pods = loop {
        let listed = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        if listed.items.len() == 4 {
            break listed.items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "4 pods, got {}",
            listed.items.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let owner = web_pods[0]
        .metadata
        .owner_references
        .clone()
        .unwrap()
        .remove(0);
    assert_eq!(owner.kind, "ReplicaSet");
    let current = rs_api.get(&owner.name).await.unwrap();
    assert_eq!(current.spec.unwrap().replicas, Some(4));
    assert!(
        web_pods
            .iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    );

    // Scaling through the scale subresource.
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    common::wait_for(&deploys, "web", "scaled to 2", |d| rolled_out(d, 2)).await;

    // Deleting the Deployment collects its ReplicaSets and their pods.
    deploys
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .is_empty()
        || !rs_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ReplicaSets and pods are collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn job_condition(j: &Job, type_: &str) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

#[tokio::test]
async fn jobs_succeed_fail_and_time_out_as_scripted() {
    let (sim, client) = common::start(100.0).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let message = r#"{"location":"s3://b/k","sizeBytes":42}"#;
    sim.script_job(JobRule::succeed(
        JobMatch::label("role", "backup"),
        Duration::from_secs(5),
        Some(message),
    ));
    sim.script_job(JobRule::fail(
        JobMatch::image("app:*-migrate"),
        Duration::from_secs(1),
        3,
        Some("migration 7 failed"),
    ));
    sim.script_job(JobRule::hang(JobMatch::name("stuck-*")));

    let backup = common::job("db-backup-x1", "postgres:16", json!({"role": "backup"}), 0);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(backup).unwrap(),
    )
    .await
    .unwrap();
    let done = common::wait_for(&jobs, "db-backup-x1", "Complete", |j| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(done.status.as_ref().unwrap().succeeded, Some(1));
    assert!(done.status.as_ref().unwrap().completion_time.is_some());
    let job_pods = pods
        .list(&ListParams::default().labels("job-name=db-backup-x1"))
        .await
        .unwrap();
    assert_eq!(job_pods.items.len(), 1);
    let pod = &job_pods.items[0];
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["batch.kubernetes.io/job-name"], "db-backup-x1");
    assert_eq!(labels["controller-uid"], done.metadata.uid.clone().unwrap());
    assert_eq!(
        pod.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Job"
    );
    let terminated = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.message.as_deref(), Some(message));

    // A failing migration with one retry: two pods, then BackoffLimitExceeded.
    let migrate = common::job("migrate-1", "app:2-migrate", json!({}), 1);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(migrate).unwrap(),
    )
    .await
    .unwrap();
    let failed = common::wait_for(&jobs, "migrate-1", "Failed", |j| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&failed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(failed.status.as_ref().unwrap().failed, Some(2));
    let failed_pods = pods
        .list(&ListParams::default().labels("job-name=migrate-1"))
        .await
        .unwrap();
    assert_eq!(failed_pods.items.len(), 2);
    let t = failed_pods.items[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        (t.exit_code, t.message.as_deref()),
        (3, Some("migration 7 failed"))
    );

    // A hanging Job is stopped by its deadline.
    let mut stuck = common::job("stuck-1", "busybox", json!({}), 0);
    stuck["spec"]["activeDeadlineSeconds"] = json!(30);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(stuck).unwrap(),
    )
    .await
    .unwrap();
    let timed_out = common::wait_for(&jobs, "stuck-1", "DeadlineExceeded", |j| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&timed_out, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );

    // Deleting the pod of a running Job fails that attempt.
    let doomed = common::job("stuck-2", "busybox", json!({}), 0);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(doomed).unwrap(),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pod = loop {
        let listed = pods
            .list(&ListParams::default().labels("job-name=stuck-2"))
            .await
            .unwrap();
        if let Some(p) = listed.items.first() {
            break p.metadata.name.clone().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Job starts a pod"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    pods.delete(&pod, &DeleteParams::default()).await.unwrap();
    let lost = common::wait_for(&jobs, "stuck-2", "Failed", |j| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&lost, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );

    // A suspended Job starts nothing until it is resumed.
    let mut paused = common::job("paused", "busybox", json!({}), 0);
    paused["spec"]["suspend"] = json!(true);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(paused).unwrap(),
    )
    .await
    .unwrap();
    let suspended = common::wait_for(&jobs, "paused", "Suspended", |j| {
        job_condition(j, "Suspended").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&suspended, "Suspended").as_deref(),
        Some("JobSuspended")
    );
    let none = pods
        .list(&ListParams::default().labels("job-name=paused"))
        .await
        .unwrap();
    assert!(none.items.is_empty(), "no pod while suspended");
    jobs.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let resumed = common::wait_for(&jobs, "paused", "Complete", |j| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    let suspended_condition = resumed.status.unwrap().conditions.unwrap();
    assert!(
        suspended_condition
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "False")
    );

    // A finished Job with a TTL goes away by itself.
    let mut ttl = common::job("short-lived", "busybox", json!({}), 0);
    ttl["spec"]["ttlSecondsAfterFinished"] = json!(60);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(ttl).unwrap(),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while jobs.get_opt("short-lived").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the TTL deletes the Job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Deleting a Job deletes its pods (background propagation through ownerReferences).
    jobs.delete("migrate-1", &DeleteParams::background())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pods
        .list(&ListParams::default().labels("job-name=migrate-1"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods of a deleted Job are collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... unless they are orphaned.
    jobs.delete(
        "db-backup-x1",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let orphans = pods
        .list(&ListParams::default().labels("job-name=db-backup-x1"))
        .await
        .unwrap();
    assert_eq!(orphans.items.len(), 1);
    assert!(
        orphans.items[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty())
    );
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let (_sim, client) = common::start(100.0).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let job = common::job("fg", "busybox", json!({}), 0);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job).unwrap(),
    )
    .await
    .unwrap();
    common::wait_for(&jobs, "fg", "Complete", |j| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    let pending = jobs
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    let pending = pending.left().expect("the Job waits for its pods");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        pending
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jobs.get_opt("fg").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Job goes after its pods"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = pods
        .list(&ListParams::default().labels("job-name=fg"))
        .await
        .unwrap();
    assert!(left.items.is_empty());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_sim, client) = common::start(1.0).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    let cm = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let answer = cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(answer.is_left(), "a held object comes back, not a Status");
    let pending = cms.get("held").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());
    let cm = serde_json::from_value(json!({"metadata": {"name": "free"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let answer = cms.delete("free", &DeleteParams::default()).await.unwrap();
    assert!(
        answer.is_right(),
        "an immediate deletion answers with a Success status"
    );
}

fn sts_rolled_out(s: &k8s_openapi::api::apps::v1::StatefulSet, replicas: i32) -> bool {
    let st = s.status.clone().unwrap_or_default();
    st.observed_generation == s.metadata.generation
        && st.replicas == replicas
        && st.ready_replicas == Some(replicas)
        && st.updated_replicas == Some(replicas)
        && st.update_revision.is_some()
        && st.update_revision == st.current_revision
}

fn sts_image_patch(image: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
}

/// The pods of `db`: (name, revision label, ready).
async fn sts_pods(pods: &Api<Pod>) -> Vec<(String, String, bool)> {
    let mut seen: Vec<(String, String, bool)> = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let revision = p.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
            (p.metadata.name.unwrap(), revision, ready)
        })
        .collect();
    seen.sort();
    seen
}

#[tokio::test]
async fn statefulset_updates_from_the_top_and_waits_forever_for_a_pod_that_never_gets_ready() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let (sim, client) = common::start(100.0).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut s = common::deployment("db", 3, &[("app", "db:1")]);
    s["kind"] = json!("StatefulSet");
    s["spec"]["serviceName"] = json!("db");
    sets.create(&PostParams::default(), &serde_json::from_value(s).unwrap())
        .await
        .unwrap();
    let first = common::wait_for(&sets, "db", "initial rollout", |s| sts_rolled_out(s, 3)).await;
    let spec = first.spec.as_ref().unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let strategy = spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(strategy.rolling_update.as_ref().unwrap().partition, Some(0));
    let v1 = first.status.unwrap().update_revision.unwrap();
    let names: Vec<String> = sts_pods(&pods).await.into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);

    // A good update replaces every pod and moves currentRevision.
    let apply = PatchParams::apply("test").force();
    sets.patch("db", &apply, &Patch::Apply(sts_image_patch("db:2")))
        .await
        .unwrap();
    let second = common::wait_for(&sets, "db", "update to db:2", |s| {
        sts_rolled_out(s, 3) && s.status.as_ref().unwrap().update_revision.as_ref() != Some(&v1)
    })
    .await;
    let v2 = second.status.unwrap().update_revision.unwrap();
    assert!(
        sts_pods(&pods)
            .await
            .iter()
            .all(|(_, r, ready)| *r == v2 && *ready)
    );

    // An image that never becomes ready: the top pod is replaced and the update stops there.
    sim.fault_image("db:3", ImageEffect::NeverReady);
    sets.patch("db", &apply, &Patch::Apply(sts_image_patch("db:3")))
        .await
        .unwrap();
    let stuck = common::wait_for(&sets, "db", "db-2 on the bad revision", |s| {
        let st = s.status.clone().unwrap_or_default();
        st.updated_replicas == Some(1) && st.ready_replicas == Some(2)
    })
    .await;
    let v3 = stuck
        .status
        .as_ref()
        .unwrap()
        .update_revision
        .clone()
        .unwrap();
    assert_eq!(
        stuck.status.unwrap().current_revision.as_deref(),
        Some(v2.as_str())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = sts_pods(&pods).await;
    assert_eq!(seen[2], ("db-2".into(), v3.clone(), false));
    assert!(
        seen[..2].iter().all(|(_, r, ready)| *r == v2 && *ready),
        "{seen:?}"
    );

    // Reverting the template is not enough: the controller waits for db-2 forever.
    sets.patch("db", &apply, &Patch::Apply(sts_image_patch("db:2")))
        .await
        .unwrap();
    common::wait_for(&sets, "db", "the revert observed", |s| {
        s.status.as_ref().unwrap().update_revision.as_deref() == Some(v2.as_str())
            && s.status.as_ref().unwrap().observed_generation == s.metadata.generation
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sts_pods(&pods).await[2], ("db-2".into(), v3, false));
    // Deleted, it comes back from the reverted template and the set is whole again.
    pods.delete("db-2", &DeleteParams::default()).await.unwrap();
    let back = common::wait_for(&sets, "db", "rolled back", |s| sts_rolled_out(s, 3)).await;
    assert_eq!(
        back.status.unwrap().current_revision.as_deref(),
        Some(v2.as_str())
    );
    assert!(
        sts_pods(&pods)
            .await
            .iter()
            .all(|(_, r, ready)| *r == v2 && *ready)
    );

    // OnDelete: a new template replaces no pod.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
        ),
    )
    .await
    .unwrap();
    sets.patch("db", &apply, &Patch::Apply(sts_image_patch("db:4")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = sets.get("db").await.unwrap().status.unwrap();
    assert_ne!(held.update_revision, held.current_revision);
    assert_eq!(held.updated_replicas, None, "no pod was replaced");
    assert!(sts_pods(&pods).await.iter().all(|(_, r, _)| *r == v2));
}
