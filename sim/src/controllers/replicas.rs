//! Mirrors a Deployment's simulated pods into objects clients can look at: one ReplicaSet
//! per pod template (named `<deployment>-<pod-template-hash>`, with the revision
//! annotations `kubectl rollout history/undo` read) and one Pod per simulated pod, owned
//! by its ReplicaSet, whose status follows readiness and image faults.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::deployment::{Rollout, SimPod};
use crate::cluster::Cluster;
use crate::meta;
use crate::registry::{self, ResourceType};
use crate::store::{DeleteOptions, Target};

const REVISION: &str = "deployment.kubernetes.io/revision";

/// What the objects are made from; when it has not changed since the last complete sync,
/// there is nothing to write (this runs on every pass, for every Deployment).
fn signature(d: &Value, rollout: &Rollout) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    if rollout.pods.iter().any(|p| p.crashing) {
        // Restart counts of crashing pods move with time.
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta::uid(d).hash(&mut h);
    d.pointer("/spec/replicas")
        .map(Value::to_string)
        .hash(&mut h);
    d.pointer("/spec/selector")
        .map(Value::to_string)
        .hash(&mut h);
    for p in &rollout.pods {
        (&p.name, &p.template_hash, p.ready).hash(&mut h);
    }
    rollout.revisions.hash(&mut h);
    Some(h.finish())
}

/// Brings ReplicaSets, Pods and the Deployment's revision annotation in line with `rollout`.
pub(super) fn sync(cluster: &Cluster, d: &Value, rollout: &mut Rollout) {
    annotate_revision(cluster, d, rollout);
    let signature = signature(d, rollout);
    if signature.is_some() && signature == rollout.synced {
        return;
    }
    let rs_rt = registry::builtin("ReplicaSet");
    let pod_rt = registry::builtin("Pod");
    let ns = meta::namespace(d);
    let name = meta::name(d);
    let keep = revisions_to_keep(d, rollout);
    let mut complete = true;
    let mut owners: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (hash, template) in &rollout.templates {
        let rs_name = format!("{name}-{hash}");
        if !keep.contains(hash) {
            // Beyond revisionHistoryLimit and without pods: the ReplicaSet goes.
            let _ = cluster
                .store
                .delete(&rs_rt, ns, &rs_name, &DeleteOptions::default());
            continue;
        }
        let pods: Vec<&SimPod> = rollout
            .pods
            .iter()
            .filter(|p| p.template_hash == *hash)
            .collect();
        let revision = rollout.revisions.get(hash).copied().unwrap_or(1);
        match upsert_replica_set(cluster, &rs_rt, d, hash, template, &pods, revision) {
            Some(uid) => {
                owners.insert(hash.clone(), (rs_name, uid));
            }
            None => complete = false,
        }
    }
    complete &= sync_pods(cluster, &pod_rt, d, rollout, &owners);
    // After a conflict or a failed write the next pass tries again.
    rollout.synced = signature.filter(|_| complete);
}

/// Keeps `deployment.kubernetes.io/revision` on the Deployment at its current revision.
fn annotate_revision(cluster: &Cluster, d: &Value, rollout: &Rollout) {
    let ns = meta::namespace(d);
    let name = meta::name(d);
    let current = rollout
        .revisions
        .values()
        .copied()
        .max()
        .unwrap_or(1)
        .to_string();
    let annotated = d
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str);
    if annotated != Some(current.as_str())
        && let Some(mut fresh) = cluster
            .store
            .get(&registry::builtin("Deployment").key(), ns, name)
    {
        meta::set(
            &mut fresh,
            &["metadata", "annotations", REVISION],
            json!(current),
        );
        // A conflict only delays the annotation to the next pass.
        let _ = cluster
            .store
            .update(&registry::builtin("Deployment"), fresh, Target::Main);
    }
}

/// Templates whose ReplicaSets stay: those with pods, and the newest
/// `revisionHistoryLimit` + 1 revisions.
fn revisions_to_keep(d: &Value, rollout: &Rollout) -> Vec<String> {
    let limit = d
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_u64)
        .unwrap_or(10) as usize;
    let mut by_revision: Vec<(&u64, &String)> =
        rollout.revisions.iter().map(|(h, r)| (r, h)).collect();
    by_revision.sort_by(|a, b| b.0.cmp(a.0));
    let mut keep: Vec<String> = by_revision
        .iter()
        .take(limit + 1)
        .map(|(_, h)| (*h).clone())
        .collect();
    for p in &rollout.pods {
        if !keep.contains(&p.template_hash) {
            keep.push(p.template_hash.clone());
        }
    }
    keep
}

fn with_hash(labels: Option<&Value>, hash: &str) -> Value {
    let mut labels: Map<String, Value> = labels
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert("pod-template-hash".into(), json!(hash));
    Value::Object(labels)
}

/// Creates or updates one ReplicaSet; returns its uid, or None when a write failed.
fn upsert_replica_set(
    cluster: &Cluster,
    rt: &ResourceType,
    d: &Value,
    hash: &str,
    template: &Value,
    pods: &[&SimPod],
    revision: u64,
) -> Option<String> {
    let ns = meta::namespace(d);
    let rs_name = format!("{}-{hash}", meta::name(d));
    let mut template = template.clone();
    let labels = with_hash(template.pointer("/metadata/labels"), hash);
    meta::set(&mut template, &["metadata", "labels"], labels.clone());
    let selector = with_hash(d.pointer("/spec/selector/matchLabels"), hash);
    let spec = json!({"replicas": pods.len(), "selector": {"matchLabels": selector},
                      "template": template,
                      "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0))});
    let ready = pods.iter().filter(|p| p.ready).count();
    let status = json!({"replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
                        "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1});
    let annotations = json!({REVISION: revision.to_string(),
        "deployment.kubernetes.io/desired-replicas": d.pointer("/spec/replicas").cloned().unwrap_or(json!(1)).to_string()});
    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta::name(d),
        "uid": meta::uid(d), "controller": true, "blockOwnerDeletion": true}]);
    let Some(mut existing) = cluster.store.get(&rt.key(), ns, &rs_name) else {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                         "annotations": annotations, "ownerReferences": owner},
            "spec": spec, "status": status});
        return cluster
            .store
            .create(rt, rs)
            .ok()
            .map(|rs| meta::uid(&rs).to_string());
    };
    let uid = meta::uid(&existing).to_string();
    if existing.get("spec") != Some(&spec)
        || existing.pointer("/metadata/annotations") != Some(&annotations)
    {
        meta::set(&mut existing, &["spec"], spec);
        meta::set(&mut existing, &["metadata", "annotations"], annotations);
        existing = cluster.store.update(rt, existing, Target::Main).ok()?;
    }
    if existing.get("status") != Some(&status) {
        meta::set(&mut existing, &["status"], status);
        cluster.store.update(rt, existing, Target::Status).ok()?;
    }
    Some(uid)
}

pub(super) fn pod_status(pod: &SimPod, template: &Value, crash_restarts: u64) -> Value {
    let since = pod
        .ready_at
        .clone()
        .unwrap_or_else(|| pod.started_at.clone());
    let ready = if pod.ready { "True" } else { "False" };
    let containers: Vec<Value> = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let state = if pod.crashing {
                        json!({"waiting": {"reason": "CrashLoopBackOff",
                            "message": "back-off restarting failed container (simulated image fault)"}})
                    } else {
                        json!({"running": {"startedAt": pod.started_at}})
                    };
                    json!({"name": c["name"], "image": c["image"], "imageID": "",
                           "ready": pod.ready, "started": !pod.crashing,
                           "restartCount": if pod.crashing { crash_restarts } else { 0 },
                           "state": state})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"phase": "Running", "startTime": pod.started_at, "podIP": "10.244.0.20",
           "conditions": [
               {"type": "PodScheduled", "status": "True", "lastTransitionTime": pod.started_at},
               {"type": "ContainersReady", "status": ready, "lastTransitionTime": since},
               {"type": "Ready", "status": ready, "lastTransitionTime": since}],
           "containerStatuses": containers})
}

/// Creates, updates and deletes Pod objects; false when a write failed.
fn sync_pods(
    cluster: &Cluster,
    rt: &ResourceType,
    d: &Value,
    rollout: &mut Rollout,
    owners: &BTreeMap<String, (String, String)>,
) -> bool {
    let ns = meta::namespace(d);
    let mut complete = true;
    // Pods the rollout no longer has were scaled away (or deleted by someone).
    let gone: Vec<String> = rollout
        .objects
        .iter()
        .filter(|n| !rollout.pods.iter().any(|p| p.name == **n))
        .cloned()
        .collect();
    for name in gone {
        // Already deleted by someone else is fine.
        let _ = cluster
            .store
            .delete(rt, ns, &name, &DeleteOptions::default());
        rollout.objects.remove(&name);
    }
    for pod in rollout.pods.iter_mut() {
        if pod.ready && pod.ready_at.is_none() {
            pod.ready_at = Some(meta::now());
        }
        let (Some(template), Some((rs_name, rs_uid))) = (
            rollout.templates.get(&pod.template_hash),
            owners.get(&pod.template_hash),
        ) else {
            complete = false;
            continue;
        };
        let restarts = if pod.crashing {
            let since = chrono::DateTime::parse_from_rfc3339(&pod.started_at)
                .map(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            (cluster.clock.simulated(since).as_secs() / 10).min(100)
        } else {
            0
        };
        let status = pod_status(pod, template, restarts);
        if !rollout.objects.contains(&pod.name) {
            let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
            meta::set(&mut spec, &["nodeName"], json!("sim-node"));
            let obj = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": ns,
                    "labels": with_hash(template.pointer("/metadata/labels"), &pod.template_hash),
                    "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": rs_name, "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": spec, "status": status});
            match cluster.store.create(rt, obj) {
                Ok(_) => {
                    rollout.objects.insert(pod.name.clone());
                }
                Err(_) => complete = false,
            }
            continue;
        }
        if let Some(mut obj) = cluster.store.get(&rt.key(), ns, &pod.name)
            && obj.get("status") != Some(&status)
        {
            meta::set(&mut obj, &["status"], status);
            complete &= cluster.store.update(rt, obj, Target::Status).is_ok();
        }
    }
    complete
}
