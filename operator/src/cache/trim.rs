//! What the caches keep of each watched object: only what `k8s::observe` reads, so that a
//! cluster of many workloads costs the operator little memory. Each function empties the
//! rest in place, as the watch delivers the object (`WatchStreamExt::modify`).
//!
//! Kept of an AppRelease: all but managedFields and other tools' annotations. Of the rest:
//! name, namespace, uid, generation, labels and owner references; of a workload its
//! containers' names and images, replicas, update strategy, selector, the default-container
//! annotation, its status, and of its managedFields only who owns the images; of a Job its
//! status; of a pod its phase, conditions and containers' states.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::api::ObjectMeta;

use crate::controller::Guarded;
use serde_json::{Map, Value};

/// Keeps of an AppRelease all but its managedFields and the annotations of other tools (such
/// as kubectl's last-applied-configuration, a copy of the whole spec): the operator reads
/// only its own (`apprelease.io/...`).
pub fn release(guarded: &mut Guarded) {
    let meta = match &mut guarded.0 {
        Ok(release) => &mut release.metadata,
        Err(invalid) => &mut invalid.metadata,
    };
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OWN_ANNOTATIONS));
    }
}

/// The prefix of the annotations the operator reads on an AppRelease.
const OWN_ANNOTATIONS: &str = "apprelease.io/";

/// Keeps what `observe::deployment_state` reads.
pub fn deployment(deployment: &mut Deployment) {
    metadata(&mut deployment.metadata);
    if let Some(spec) = deployment.spec.as_mut() {
        template(&mut spec.template);
        spec.strategy = None;
    }
    if let Some(status) = deployment.status.as_mut() {
        for condition in status.conditions.iter_mut().flatten() {
            condition.message = None;
        }
    }
}

/// Keeps what `observe::stateful_set_state` reads, and the selector its pods are listed by.
pub fn stateful_set(set: &mut StatefulSet) {
    metadata(&mut set.metadata);
    if let Some(spec) = set.spec.as_mut() {
        template(&mut spec.template);
        spec.volume_claim_templates = None;
    }
}

/// Keeps what `observe::job_state` and `observe::belongs_to` read.
pub fn job(job: &mut Job) {
    metadata(&mut job.metadata);
    job.spec = None;
}

/// Keeps what `observe::job_state` reads of a Job's pods.
pub fn pod(pod: &mut Pod) {
    metadata(&mut pod.metadata);
    pod.spec = None;
    if let Some(status) = pod.status.as_mut() {
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
        status.host_ip = None;
        status.host_ips = None;
        status.pod_ip = None;
        status.pod_ips = None;
        status.resource_claim_statuses = None;
        for container in status.container_statuses.iter_mut().flatten() {
            container.image_id = String::new();
            container.container_id = None;
            container.volume_mounts = None;
            container.allocated_resources = None;
            container.resources = None;
            container.last_state = None;
        }
    }
}

fn metadata(meta: &mut ObjectMeta) {
    meta.annotations = None;
    meta.managed_fields = meta.managed_fields.take().map(image_owners);
}

/// The containers' names and images, and the default-container annotation.
fn template(template: &mut PodTemplateSpec) {
    let annotation = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(crate::k8s::observe::DEFAULT_CONTAINER_ANNOTATION))
        .cloned();
    template.metadata = annotation.map(|value| ObjectMeta {
        annotations: Some(
            [(
                crate::k8s::observe::DEFAULT_CONTAINER_ANNOTATION.to_string(),
                value,
            )]
            .into(),
        ),
        ..Default::default()
    });
    let containers = template
        .spec
        .take()
        .map(|spec| spec.containers)
        .unwrap_or_default();
    template.spec = Some(PodSpec {
        containers: containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                image: c.image,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
}

/// Of each managedFields entry, only the containers' image fields, and only the entries that
/// own one: that is what tells who else changes an image (`observe::image_managers`).
fn image_owners(entries: Vec<ManagedFieldsEntry>) -> Vec<ManagedFieldsEntry> {
    entries
        .into_iter()
        .filter_map(|mut entry| {
            let images = entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:template/f:spec/f:containers"))
                .and_then(Value::as_object)
                .map(|containers| {
                    containers
                        .iter()
                        .filter(|(_, fields)| fields.get("f:image").is_some())
                        .map(|(key, _)| (key.clone(), serde_json::json!({"f:image": {}})))
                        .collect::<Map<_, _>>()
                })
                .filter(|images| !images.is_empty())?;
            entry.fields_v1 = Some(FieldsV1(serde_json::json!({
                "f:spec": {"f:template": {"f:spec": {"f:containers": images}}}
            })));
            Some(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::observe::{deployment_state, job_state, stateful_set_state};
    use serde_json::json;

    fn full_deployment() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "backend", "namespace": "apps", "uid": "u1", "generation": 4,
                "resourceVersion": "77",
                "labels": {"app": "backend"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": true}"},
                "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "time": "2026-11-21T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"backend\"}": {".": {}, "f:image": {}, "f:name": {}, "f:env": {}},
                    "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}}}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                 "time": "2026-11-21T10:00:01Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}}}
            ]},
            "spec": {"replicas": 3, "paused": true, "selector": {"matchLabels": {"app": "backend"}},
                "strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": "backend"},
                        "annotations": {"kubectl.kubernetes.io/default-container": "backend", "other": "x"}},
                    "spec": {"containers": [
                        {"name": "backend", "image": "ghcr.io/meet/backend:2.0",
                         "env": [{"name": "A", "value": "b"}], "args": ["--serve"]},
                        {"name": "sidecar", "image": "envoy:1"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]}}},
            "status": {"observedGeneration": 4, "replicas": 4, "updatedReplicas": 2, "availableReplicas": 3,
                "readyReplicas": 3,
                "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded", "message": "a long sentence"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_trimmed_app_release_keeps_its_spec_status_and_own_annotations() {
        let full: crate::api::AppRelease = serde_json::from_value(json!({
            "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": "meet", "namespace": "apps", "uid": "u1", "generation": 3,
                "resourceVersion": "42", "finalizers": ["apprelease.io/upgrade-in-flight"],
                "annotations": {
                    "apprelease.io/retry": "2", "apprelease.io/approve": "1.2.0",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\": {}}",
                    "argocd.argoproj.io/tracking-id": "meet:apprelease.io/AppRelease:apps/meet"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:version": {}}}}]},
            "spec": {"version": "1.2.0",
                "targets": [{"deployment": "meet", "containers": ["web"]}]},
            "status": {"observedGeneration": 2}
        }))
        .unwrap();
        let mut trimmed = kube::core::error_boundary::DeserializeGuard(Ok(full.clone()));
        release(&mut trimmed);
        let trimmed = trimmed.0.unwrap();
        assert_eq!(trimmed.spec, full.spec);
        assert_eq!(trimmed.status, full.status);
        let mut expected = full.metadata.clone();
        expected.managed_fields = None;
        expected.annotations = Some(
            [
                ("apprelease.io/retry", "2"),
                ("apprelease.io/approve", "1.2.0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        assert_eq!(trimmed.metadata, expected);
    }

    #[test]
    fn a_trimmed_deployment_reads_as_the_full_one() {
        let full = full_deployment();
        let mut trimmed = full.clone();
        deployment(&mut trimmed);
        assert_eq!(deployment_state(&trimmed), deployment_state(&full));
        let kept = serde_json::to_string(&trimmed).unwrap();
        for gone in [
            "last-applied",
            "--serve",
            "emptyDir",
            "f:env",
            "f:replicas",
            "RollingUpdate",
        ] {
            assert!(!kept.contains(gone), "{gone} is still in {kept}");
        }
        assert!(kept.len() < serde_json::to_string(&full).unwrap().len());
    }

    #[test]
    fn a_trimmed_stateful_set_reads_as_the_full_one() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "apps", "uid": "u2", "generation": 2},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                "template": {"spec": {"containers": [{"name": "db", "image": "postgres:17", "args": ["-c", "x"]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
            "status": {"replicas": 2, "currentRevision": "db-1", "updateRevision": "db-2"}
        }))
        .unwrap();
        let mut trimmed = set.clone();
        stateful_set(&mut trimmed);
        assert_eq!(stateful_set_state(&trimmed), stateful_set_state(&set));
        assert_eq!(
            trimmed.spec.as_ref().unwrap().selector.match_labels,
            set.spec.as_ref().unwrap().selector.match_labels
        );
    }

    #[test]
    fn a_trimmed_job_and_pod_read_as_the_full_ones() {
        let job_full: Job = serde_json::from_value(json!({
            "metadata": {"name": "meet-backup-1", "namespace": "apps", "uid": "j1",
                "labels": {"apprelease.io/release": "meet", "apprelease.io/release-uid": "r1"},
                "ownerReferences": [{"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
                    "name": "meet", "uid": "r1", "controller": true}]},
            "spec": {"template": {"spec": {"containers": [{"name": "dump", "image": "postgres:17"}]}}},
            "status": {"completionTime": "2026-11-21T11:00:02Z",
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-21T11:00:01Z"}]}
        }))
        .unwrap();
        let pod_full: Pod = serde_json::from_value(json!({
            "metadata": {"name": "meet-backup-1-x", "namespace": "apps",
                "labels": {"batch.kubernetes.io/job-name": "meet-backup-1", "apprelease.io/release": "meet"}},
            "spec": {"containers": [{"name": "dump", "image": "postgres:17"}]},
            "status": {"phase": "Succeeded", "podIP": "10.0.0.1",
                "containerStatuses": [{"name": "dump", "image": "postgres:17", "imageID": "sha256:abc",
                    "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-21T11:00:00Z",
                        "message": "{\"location\":\"x\"}"}}}]}
        }))
        .unwrap();
        let (mut job_kept, mut pod_kept) = (job_full.clone(), pod_full.clone());
        job(&mut job_kept);
        pod(&mut pod_kept);
        assert_eq!(
            job_state(&job_kept, std::slice::from_ref(&pod_kept)),
            job_state(&job_full, std::slice::from_ref(&pod_full))
        );
        assert_eq!(
            job_kept.metadata.owner_references,
            job_full.metadata.owner_references
        );
        assert_eq!(job_kept.metadata.labels, job_full.metadata.labels);
        assert!(job_kept.spec.is_none() && pod_kept.spec.is_none());
    }
}
