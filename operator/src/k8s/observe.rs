//! Reads what one AppRelease depends on — its target Deployments and StatefulSets, its Jobs
//! and their pods, the requests naming it — and turns it into the planner's plain `Observed`
//! snapshot.
//!
//! Everything comes from the watch caches (`crate::cache`, which says why that is safe), so
//! that a reconcile costs no read; the API is asked only for what no cache holds and only
//! while it matters: the pods of a StatefulSet in the middle of a rollout, the autoscalers of
//! an offline release, and the requests once the cache shows one for the release.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, ListParams, ObjectMeta};
use kube::{Client, ResourceExt};

use crate::api::time::to_chrono;
use crate::api::{
    AppRelease, AppReleaseBackup, AppReleaseRestore, RequestKind, RequestStatus, RolloutStrategy,
    Target, TargetKind,
};
use crate::cache::Caches;
use crate::jobs::build::RELEASE_UID_LABEL;
use crate::plan::{DeploymentState, JobOutcome, JobState, Observed, Peer, PodState, Request};

use super::error::Error;

/// Reads the snapshot for `release` at time `now`, or says which of the operator's own
/// writes the caches do not show yet (`Error::CacheBehind`: nothing is decided then). The
/// other AppReleases of its namespace (`peers`) come from the controller's cache: claims
/// change rarely, and a claim the cache does not show yet belongs to a release created
/// later, which does not win it.
pub async fn observe(
    client: &Client,
    caches: &Caches,
    release: &AppRelease,
    peers: Vec<Peer>,
    now: DateTime<Utc>,
) -> Result<Observed, Error> {
    let namespace = release.namespace().unwrap_or_default();
    let name = release.name_any();
    if let Some(awaited) = caches
        .expectations
        .unmet(&namespace, &name, Instant::now(), |what| {
            caches.shows(&namespace, what)
        })
    {
        return Err(Error::CacheBehind(awaited.to_string()));
    }
    let mut deployments = BTreeMap::new();
    for target in &release.spec.targets {
        if let Some(state) = read_target(client, caches, &namespace, target).await? {
            deployments.insert(target.name().to_string(), state);
        }
    }
    if release.spec.rollout.strategy == RolloutStrategy::Offline {
        note_autoscalers(client, &namespace, &mut deployments).await?;
    }

    let mut pods: Vec<Pod> = caches
        .pods
        .keyed(&namespace, &name)
        .iter()
        .map(|pod| Pod::clone(pod))
        .collect();
    let mut jobs = BTreeMap::new();
    // Only this AppRelease's Jobs: a same-named leftover of a deleted namesake is not ours.
    for job in caches.jobs.keyed(&namespace, &name) {
        if !belongs_to(&job, release) {
            continue;
        }
        let mut state = job_state(&job, &pods);
        if lacks_final_pod(&state, &job, &pods, now) {
            pods.extend(read_job_pods(client, &namespace, &job.name_any()).await?);
            state = job_state(&job, &pods);
        }
        state.owned = owned_by(&job, release);
        jobs.insert(job.name_any(), state);
    }
    // Requests are rare: when the cache shows none for this release there are none, or one
    // so new that its watch event will wake the release again.
    let requests = if caches.backups.names(&namespace, &name).is_empty()
        && caches.restores.names(&namespace, &name).is_empty()
    {
        Vec::new()
    } else {
        read_requests(client, &namespace, &name).await?
    };
    Ok(Observed {
        now,
        deployments,
        jobs,
        peers,
        requests,
    })
}

/// A Job that just finished while the pod cache shows none of its pods finished: the two
/// watches are not ordered, and the pod's termination message (a backup's report) must not
/// be missed, so they are read from the API then. A Job finished longer ago than
/// `cache::expectations::TIMEOUT` is trusted to the cache: its pods may be gone for good.
fn lacks_final_pod(state: &JobState, job: &Job, pods: &[Pod], now: DateTime<Utc>) -> bool {
    let recent = state.finished_at.is_some_and(|at| {
        (now - at)
            .to_std()
            .is_ok_and(|age| age < crate::cache::expectations::TIMEOUT)
            || at > now
    });
    recent && !pods_of(&job.name_any(), pods).any(|pod| first_terminated(pod).is_some())
}

/// The pods of the Job `name`, from the API.
async fn read_job_pods(client: &Client, namespace: &str, name: &str) -> Result<Vec<Pod>, Error> {
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map(|list| list.items)
        .map_err(|source| Error::List {
            kind: "Pods",
            source,
        })
}

/// The on-demand backups and restores of the namespace that name this release. Read fresh:
/// a cache could still show as pending a request whose refusal the operator
/// just wrote, and a restore must never run after it was refused.
async fn read_requests(
    client: &Client,
    namespace: &str,
    release: &str,
) -> Result<Vec<Request>, Error> {
    let params = ListParams::default();
    let backups = Api::<AppReleaseBackup>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(|source| Error::List {
            kind: "AppReleaseBackups",
            source,
        })?;
    let restores = Api::<AppReleaseRestore>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(|source| Error::List {
            kind: "AppReleaseRestores",
            source,
        })?;
    let backups = backups
        .items
        .into_iter()
        .filter(|b| b.spec.release == release)
        .map(|b| Request {
            kind: RequestKind::Backup,
            backup: None,
            components: Vec::new(),
            ..request_meta(&b.metadata, b.status.clone())
        });
    let restores = restores
        .items
        .into_iter()
        .filter(|r| r.spec.release == release)
        .map(|r| Request {
            kind: RequestKind::Restore,
            backup: Some(r.spec.backup.clone()),
            components: r.spec.components.clone(),
            ..request_meta(&r.metadata, r.status.clone())
        });
    Ok(backups.chain(restores).collect())
}

fn request_meta(meta: &ObjectMeta, status: Option<RequestStatus>) -> Request {
    Request {
        kind: RequestKind::Backup,
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or(0),
        created: meta.creation_timestamp.as_ref().map(to_chrono),
        backup: None,
        components: Vec::new(),
        status: status.unwrap_or_default(),
    }
}

/// Marks the targets an autoscaler scales, so that an offline upgrade can say it scales
/// them to zero and back (and then leaves the count to the autoscaler).
async fn note_autoscalers(
    client: &Client,
    namespace: &str,
    deployments: &mut BTreeMap<String, DeploymentState>,
) -> Result<(), Error> {
    let autoscalers = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::List {
            kind: "HorizontalPodAutoscalers",
            source,
        })?;
    for hpa in &autoscalers.items {
        let Some(target) = hpa.spec.as_ref().map(|s| &s.scale_target_ref) else {
            continue;
        };
        if let Some(state) = deployments.get_mut(&target.name)
            && state.kind.to_string() == target.kind
        {
            state.autoscaler = Some(hpa.name_any());
        }
    }
    Ok(())
}

/// The Job carries the AppRelease's owner reference.
pub fn owned_by(job: &Job, release: &AppRelease) -> bool {
    let uid = release.uid();
    job.owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref())
}

/// The Job is this AppRelease's: owned by it, or (a data Job not yet handed over) labelled
/// with its uid.
pub fn belongs_to(job: &Job, release: &AppRelease) -> bool {
    owned_by(job, release)
        || release
            .uid()
            .is_some_and(|uid| job.labels().get(RELEASE_UID_LABEL) == Some(&uid))
}

/// What the claims need of another AppRelease.
pub fn peer(release: &AppRelease) -> Peer {
    Peer {
        name: release.name_any(),
        created: release.metadata.creation_timestamp.as_ref().map(to_chrono),
        targets: release
            .spec
            .targets
            .iter()
            .map(|t| (t.kind(), t.name().to_string()))
            .collect(),
    }
}

/// One target as the kind it names, from the cache; None when it does not exist. The pods
/// of a StatefulSet are read (from the API: no cache holds other workloads' pods) only while
/// it is not rolled out: only then can one be stuck (see `DeploymentState::stuck_pods`), and
/// a release at rest costs no request.
async fn read_target(
    client: &Client,
    caches: &Caches,
    namespace: &str,
    target: &Target,
) -> Result<Option<DeploymentState>, Error> {
    let name = target.name();
    match target.kind() {
        TargetKind::Deployment => Ok(caches
            .deployments
            .get(namespace, name)
            .map(|d| deployment_state(&d))),
        TargetKind::StatefulSet => {
            let Some(set) = caches.stateful_sets.get(namespace, name) else {
                return Ok(None);
            };
            let mut state = stateful_set_state(&set);
            if !state.is_rolled_out() {
                let labels = set
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.as_ref())
                    .map(|labels| {
                        labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let pods = Api::<Pod>::namespaced(client.clone(), namespace)
                    .list(&ListParams::default().labels(&labels))
                    .await
                    .map_err(|source| Error::List {
                        kind: "Pods",
                        source,
                    })?;
                state.pods = stateful_set_pods(&set, &pods.items);
            }
            Ok(Some(state))
        }
    }
}

/// The (name, image) of each container of a workload's pod template, in order.
fn template_images(template: Option<&PodTemplateSpec>) -> Vec<(String, String)> {
    template
        .and_then(|t| t.spec.as_ref())
        .map(|pod| {
            pod.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// What the planner needs of a Deployment.
pub fn deployment_state(deployment: &Deployment) -> DeploymentState {
    let spec = deployment.spec.as_ref();
    let status = deployment.status.clone().unwrap_or_default();
    let containers = template_images(spec.map(|s| &s.template));
    let owners = image_owners(&deployment.metadata);
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    DeploymentState {
        kind: TargetKind::Deployment,
        containers,
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        generation: deployment.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation.unwrap_or(0),
        status_replicas: status.replicas.unwrap_or(0),
        updated_replicas: status.updated_replicas.unwrap_or(0),
        available_replicas: status.available_replicas.unwrap_or(0),
        ready_replicas: status.ready_replicas.unwrap_or(0),
        current_revision: String::new(),
        update_revision: String::new(),
        on_delete: false,
        partition: 0,
        pods: Vec::new(),
        deadline_exceeded,
        paused: spec.and_then(|s| s.paused).unwrap_or(false),
        image_managers: owners.managers,
        image_changed: owners.changed,
        default_container: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
            .cloned(),
        // Filled in by `note_autoscalers` when the release needs it.
        autoscaler: None,
    }
}

/// What the planner needs of a StatefulSet: its template's images, its revisions and counts,
/// and whether its update strategy replaces pods at all. Its pods are read apart.
pub fn stateful_set_state(set: &StatefulSet) -> DeploymentState {
    let spec = set.spec.as_ref();
    let status = set.status.clone().unwrap_or_default();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let owners = image_owners(&set.metadata);
    DeploymentState {
        kind: TargetKind::StatefulSet,
        containers: template_images(spec.map(|s| &s.template)),
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        generation: set.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation.unwrap_or(0),
        status_replicas: status.replicas,
        updated_replicas: status.updated_replicas.unwrap_or(0),
        available_replicas: status.available_replicas.unwrap_or(0),
        ready_replicas: status.ready_replicas.unwrap_or(0),
        current_revision: status.current_revision.unwrap_or_default(),
        update_revision: status.update_revision.unwrap_or_default(),
        on_delete: strategy.and_then(|u| u.type_.as_deref()) == Some("OnDelete"),
        partition: strategy
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0),
        pods: Vec::new(),
        deadline_exceeded: false,
        paused: false,
        autoscaler: None,
        image_managers: owners.managers,
        image_changed: owners.changed,
        default_container: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
            .cloned(),
    }
}

/// The pods the StatefulSet controls (its controller owner reference), with the revision
/// each runs and whether it is Running and Ready, as the StatefulSet controller judges it.
pub fn stateful_set_pods(set: &StatefulSet, pods: &[Pod]) -> Vec<PodState> {
    let uid = set.uid();
    pods.iter()
        .filter(|pod| {
            pod.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let status = pod.status.as_ref();
            let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            PodState {
                name: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                revision: pod
                    .labels()
                    .get("controller-revision-hash")
                    .cloned()
                    .unwrap_or_default(),
                ready: running && ready,
            }
        })
        .collect()
}

/// Who owns each container's image field besides the operator, newest entry first, and when
/// the newest of them wrote it. A managedFields entry lists the container as
/// `f:spec.f:template.f:spec.f:containers` → `k:{"name":"web"}` → `f:image` (the
/// structured-merge-diff field set, keyed by the list's merge key `name`).
fn image_owners(metadata: &kube::api::ObjectMeta) -> ImageOwners {
    let mut entries: Vec<_> = metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() != Some(crate::api::FIELD_MANAGER))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.time.as_ref().map(|t| t.0)));
    let mut owners = ImageOwners::default();
    for entry in entries {
        let (Some(manager), Some(fields)) = (&entry.manager, &entry.fields_v1) else {
            continue;
        };
        let containers = fields
            .0
            .pointer("/f:spec/f:template/f:spec/f:containers")
            .and_then(|c| c.as_object());
        for (key, set) in containers.into_iter().flatten() {
            let name = key
                .strip_prefix("k:")
                .and_then(|k| serde_json::from_str::<serde_json::Value>(k).ok())
                .and_then(|k| k.get("name").and_then(|n| n.as_str()).map(String::from));
            if let Some(name) = name
                && set.get("f:image").is_some()
            {
                if let Some(time) = &entry.time {
                    owners
                        .changed
                        .entry(name.clone())
                        .or_insert(to_chrono(time));
                }
                owners
                    .managers
                    .entry(name)
                    .or_default()
                    .push(manager.clone());
            }
        }
    }
    owners
}

/// What `image_owners` finds: the managers of each container's image, newest first, and
/// when the newest wrote it.
#[derive(Default)]
struct ImageOwners {
    managers: BTreeMap<String, Vec<String>>,
    changed: BTreeMap<String, DateTime<Utc>>,
}

/// The annotation `kubectl logs` and `kubectl exec` read to pick a pod's main container.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// What the planner needs of a Job: its outcome from the Complete/Failed conditions, and the
/// termination message of its newest pod (a backup's report, or a failure's last log lines).
pub fn job_state(job: &Job, pods: &[Pod]) -> JobState {
    let name = job.name_any();
    let status = job.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    let message = termination_message(&name, pods);
    let (outcome, finished) = if let Some(done) = condition("Complete") {
        (
            JobOutcome::Succeeded,
            status.completion_time.or(done.last_transition_time),
        )
    } else if let Some(failed) = condition("Failed") {
        let mut why = failed.reason.unwrap_or_else(|| "Failed".into());
        if let Some(text) = failed.message.filter(|m| !m.is_empty()) {
            why = format!("{why}: {text}");
        }
        if let Some(log) = message.as_deref().filter(|m| !m.trim().is_empty()) {
            why = format!("{why}; the container said: {}", log.trim());
        }
        (JobOutcome::Failed(why), failed.last_transition_time)
    } else {
        (JobOutcome::Running, None)
    };
    JobState {
        outcome,
        termination_message: message,
        finished_at: finished.map(|t| to_chrono(&t)),
        owned: true,
    }
}

/// The first container's termination message of the Job's newest finished pod.
fn termination_message(job: &str, pods: &[Pod]) -> Option<String> {
    pods_of(job, pods)
        .filter_map(|pod| {
            let terminated = first_terminated(pod)?;
            Some((
                terminated.finished_at.as_ref().map(to_chrono),
                terminated.message.clone(),
            ))
        })
        .max_by_key(|(finished, _)| *finished)
        .and_then(|(_, message)| message)
}

/// The pods of the Job `job`, by the label the Job controller gives them.
fn pods_of<'a>(job: &'a str, pods: &'a [Pod]) -> impl Iterator<Item = &'a Pod> {
    pods.iter().filter(move |pod| {
        let labels = pod.labels();
        labels
            .get("batch.kubernetes.io/job-name")
            .or_else(|| labels.get("job-name"))
            .map(String::as_str)
            == Some(job)
    })
}

/// The final state of the pod's first container, once it has ended.
fn first_terminated(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.first()?.state.as_ref()?.terminated.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_state_reads_rollout_progress() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "backend", "generation": 4, "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-21T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"backend\"}": {".": {}, "f:image": {}, "f:name": {}},
                    "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                {"manager": "apprelease-operator", "operation": "Apply", "time": "2026-11-21T11:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"backend\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                {"manager": "kubectl-set", "operation": "Update", "time": "2026-11-21T12:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"backend\"}": {"f:image": {}}}}}}}}
            ]},
            "spec": {"replicas": 3, "paused": true, "selector": {}, "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "backend"}},
                "spec": {"containers": [
                {"name": "backend", "image": "ghcr.io/meet/backend:2.0"}, {"name": "sidecar", "image": "envoy:1"}]}}},
            "status": {"observedGeneration": 4, "replicas": 4, "updatedReplicas": 2, "availableReplicas": 3,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
        }))
        .unwrap();
        let state = deployment_state(&deployment);
        assert_eq!(state.image("backend"), Some("ghcr.io/meet/backend:2.0"));
        assert_eq!(
            (state.replicas, state.generation, state.observed_generation),
            (3, 4, 4)
        );
        assert_eq!(
            (
                state.status_replicas,
                state.updated_replicas,
                state.available_replicas
            ),
            (4, 2, 3)
        );
        assert!(state.deadline_exceeded);
        assert!(state.paused);
        assert_eq!(
            state.image_managers["backend"],
            ["kubectl-set", "kubectl-client-side-apply"],
            "newest first, the operator's own entry left out"
        );
        assert_eq!(
            state.image_managers["sidecar"],
            ["kubectl-client-side-apply"]
        );
        assert_eq!(
            state.image_changed["backend"].to_rfc3339(),
            "2026-11-21T12:00:00+00:00",
            "when kubectl-set wrote it"
        );
        assert_eq!(
            state.image_changed["sidecar"].to_rfc3339(),
            "2026-11-21T10:00:00+00:00"
        );
        assert_eq!(state.default_container.as_deref(), Some("backend"));
        assert!(!state.is_rolled_out());
    }

    #[test]
    fn job_state_reads_outcome_and_termination_message() {
        let job = |conditions: serde_json::Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "meet-backup-1"}, "status": {"conditions": conditions}})).unwrap()
        };
        let pod = |name: &str, job: &str, at: &str, message: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"batch.kubernetes.io/job-name": job}},
                "status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "finishedAt": at, "message": message}}}]}
            }))
            .unwrap()
        };
        let pods = vec![
            pod("p1", "meet-backup-1", "2026-11-21T10:00:00Z", "old"),
            pod(
                "p2",
                "meet-backup-1",
                "2026-11-21T11:00:00Z",
                "{\"location\":\"x\"}",
            ),
            pod("p3", "other", "2026-11-21T12:00:00Z", "not mine"),
        ];
        let done = job_state(
            &job(
                json!([{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-21T11:00:01Z"}]),
            ),
            &pods,
        );
        assert_eq!(done.outcome, JobOutcome::Succeeded);
        assert_eq!(
            done.termination_message.as_deref(),
            Some("{\"location\":\"x\"}")
        );
        assert_eq!(
            done.finished_at.unwrap().to_rfc3339(),
            "2026-11-21T11:00:01+00:00"
        );

        let failed = job_state(
            &job(
                json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
            ),
            &[pod(
                "p",
                "meet-backup-1",
                "2026-11-21T10:00:00Z",
                "pg_dump: error: connection refused\n",
            )],
        );
        assert_eq!(
            failed.outcome,
            JobOutcome::Failed("BackoffLimitExceeded: Job has reached the specified backoff limit; the container said: pg_dump: error: connection refused".into())
        );
        assert_eq!(job_state(&job(json!([])), &[]).outcome, JobOutcome::Running);
    }
}
