//! The StatefulSet controller, simulated after kube-controller-manager's
//! (pkg/controller/statefulset, v1.37.2): pods `<name>-<ordinal>` labelled with the
//! `controller-revision-hash` of the template they were made from; with the default
//! OrderedReady pod management one pod is created at a time, lowest ordinal first, and
//! nothing goes on while a pod is not ready. A RollingUpdate replaces pods from the highest
//! ordinal down to the partition, one at a time, each only once the one above is ready;
//! OnDelete replaces none. `currentRevision` becomes `updateRevision` once every replica is
//! updated and ready. As in the real controller, a pod of a template that never becomes
//! ready blocks everything, also after the template is reverted, until someone deletes it
//! (the "forced rollback" of the StatefulSet documentation). ControllerRevision objects are
//! not made: the revisions live in this controller's memory and in the status.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::deployment::{SimPod, template_hash};
use super::replicas::pod_status;
use crate::cluster::Cluster;
use crate::faults::{ImageEffect, images};
use crate::meta;
use crate::registry;
use crate::store::{DeleteOptions, Target};

/// The controller's memory of one StatefulSet.
#[derive(Default)]
struct Set {
    /// Its pods by ordinal; `template_hash` holds the revision name.
    pods: BTreeMap<usize, SimPod>,
    /// Every template seen, by revision name.
    templates: BTreeMap<String, Value>,
    /// `status.currentRevision`.
    current: Option<String>,
    /// Names of the Pod objects made for its pods.
    objects: BTreeSet<String>,
}

/// The controller's memory of each StatefulSet, by uid.
#[derive(Default)]
pub struct StatefulSetController {
    sets: HashMap<String, Set>,
}

impl StatefulSetController {
    /// One pass over every StatefulSet.
    pub fn reconcile_all(&mut self, cluster: &Cluster) {
        let rt = registry::builtin("StatefulSet");
        let (sets, _) = cluster.store.list(&rt.key(), None);
        // A set, not a scan of the list per entry: a pass stays linear in the objects.
        let live: std::collections::HashSet<&str> = sets.iter().map(meta::uid).collect();
        self.sets.retain(|uid, _| live.contains(uid.as_str()));
        for s in sets {
            if s.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let set = self.sets.entry(meta::uid(&s).to_string()).or_default();
            let status = reconcile(cluster, &s, set);
            sync_pods(cluster, &s, set);
            if Some(&status) != s.get("status") {
                let mut updated = s.clone();
                updated["status"] = status;
                // A conflict means someone wrote meanwhile; the next pass catches up.
                let _ = cluster.store.update(&rt, updated, Target::Status);
            }
        }
    }
}

fn reconcile(cluster: &Cluster, s: &Value, set: &mut Set) -> Value {
    let spec = &s["spec"];
    let name = meta::name(s).to_string();
    let replicas = spec["replicas"].as_u64().unwrap_or(1) as usize;
    let template = spec.get("template").cloned().unwrap_or(json!({}));
    let update = format!("{name}-{}", template_hash(Some(&template)));
    set.templates.insert(update.clone(), template.clone());
    let current = set.current.get_or_insert_with(|| update.clone()).clone();
    let min_ready = spec["minReadySeconds"].as_u64().unwrap_or(0);
    let ready_after = cluster.pod_ready_after + std::time::Duration::from_secs(min_ready);
    let now = Instant::now();

    // A pod whose object someone deleted is gone; it is recreated below.
    let pods_key = registry::builtin("Pod").key();
    let namespace = meta::namespace(s);
    let deleted: Vec<usize> = set
        .pods
        .iter()
        .filter(|(_, p)| {
            set.objects.contains(&p.name) && !cluster.store.contains(&pods_key, namespace, &p.name)
        })
        .map(|(i, _)| *i)
        .collect();
    for i in deleted {
        if let Some(p) = set.pods.remove(&i) {
            set.objects.remove(&p.name);
        }
    }
    for p in set.pods.values_mut() {
        p.ready = p
            .images
            .iter()
            .all(|i| cluster.faults.image_effect(i).is_none())
            && cluster.clock.since(p.created) >= ready_after;
        p.crashing = p
            .images
            .iter()
            .any(|i| cluster.faults.image_effect(i) == Some(ImageEffect::Crash));
    }

    let monotonic = spec["podManagementPolicy"] != json!("Parallel");
    let strategy = spec.pointer("/updateStrategy/type").and_then(Value::as_str);
    let rolling = strategy.is_none_or(|t| t == "RollingUpdate");
    let partition = spec
        .pointer("/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let new_pod = |set: &Set, ordinal: usize| {
        // Below the partition a RollingUpdate keeps making pods of the current revision.
        let revision = if rolling && ordinal < partition {
            current.clone()
        } else {
            update.clone()
        };
        let template = set.templates.get(&revision).unwrap_or(&template);
        SimPod {
            name: format!("{name}-{ordinal}"),
            template_hash: revision,
            images: images(template.get("spec")),
            created: now,
            started_at: meta::now(),
            ready: false,
            crashing: false,
            ready_at: None,
        }
    };

    // Every replica exists and is ready, lowest ordinal first (OrderedReady: one at a time).
    let mut blocked = false;
    for ordinal in 0..replicas {
        match set.pods.get(&ordinal) {
            None => {
                let pod = new_pod(set, ordinal);
                set.pods.insert(ordinal, pod);
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(p) if !p.ready && monotonic => {
                blocked = true;
                break;
            }
            Some(_) => {}
        }
    }
    // Then pods beyond `replicas` go, highest ordinal first.
    let condemned: Vec<usize> = set
        .pods
        .keys()
        .copied()
        .filter(|i| *i >= replicas)
        .collect();
    if !blocked && !condemned.is_empty() {
        blocked = true;
        for ordinal in condemned.iter().rev() {
            set.pods.remove(ordinal);
            if monotonic {
                break;
            }
        }
    }
    // Then the rolling update: the highest pod not on the update revision is replaced (it
    // is recreated on the next pass), each only once the ones above it are ready.
    if !blocked && rolling {
        for ordinal in (partition..replicas).rev() {
            let Some(p) = set.pods.get(&ordinal) else {
                break;
            };
            if p.template_hash != update {
                set.pods.remove(&ordinal);
                break;
            }
            if !p.ready {
                break;
            }
        }
    }

    let total = set.pods.len();
    let ready = set.pods.values().filter(|p| p.ready).count();
    let updated = set
        .pods
        .values()
        .filter(|p| p.template_hash == update)
        .count();
    let mut current_replicas = set
        .pods
        .values()
        .filter(|p| p.template_hash == current)
        .count();
    if updated == replicas && ready == replicas && total == replicas {
        set.current = Some(update.clone());
        current_replicas = updated;
    }
    let mut status = json!({
        "observedGeneration": meta::generation(s),
        "replicas": total,
        "readyReplicas": ready,
        "currentReplicas": current_replicas,
        "updatedReplicas": updated,
        "availableReplicas": ready,
        "currentRevision": set.current.clone().unwrap_or_default(),
        "updateRevision": update,
        "collisionCount": 0,
    });
    // Like the real controller, zero counts with omitempty are left out.
    if let Some(map) = status.as_object_mut() {
        for key in ["readyReplicas", "currentReplicas", "updatedReplicas"] {
            if map.get(key) == Some(&json!(0)) {
                map.remove(key);
            }
        }
    }
    status
}

/// Creates, updates and deletes the Pod objects of the set's pods.
fn sync_pods(cluster: &Cluster, s: &Value, set: &mut Set) {
    let rt = registry::builtin("Pod");
    let ns = meta::namespace(s);
    let gone: Vec<String> = set
        .objects
        .iter()
        .filter(|n| !set.pods.values().any(|p| p.name == **n))
        .cloned()
        .collect();
    for name in gone {
        // Already deleted by someone else is fine.
        let _ = cluster
            .store
            .delete(&rt, ns, &name, &DeleteOptions::default());
        set.objects.remove(&name);
    }
    for (ordinal, pod) in set.pods.iter_mut() {
        if pod.ready && pod.ready_at.is_none() {
            pod.ready_at = Some(meta::now());
        }
        let Some(template) = set.templates.get(&pod.template_hash) else {
            continue;
        };
        let restarts = if pod.crashing { 1 } else { 0 };
        let status = pod_status(pod, template, restarts);
        if !set.objects.contains(&pod.name) {
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            meta::set(
                &mut labels,
                &["controller-revision-hash"],
                json!(pod.template_hash),
            );
            meta::set(
                &mut labels,
                &["statefulset.kubernetes.io/pod-name"],
                json!(pod.name),
            );
            meta::set(
                &mut labels,
                &["apps.kubernetes.io/pod-index"],
                json!(ordinal.to_string()),
            );
            let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
            meta::set(&mut spec, &["nodeName"], json!("sim-node"));
            meta::set(&mut spec, &["hostname"], json!(pod.name));
            if let Some(service) = s.pointer("/spec/serviceName") {
                meta::set(&mut spec, &["subdomain"], service.clone());
            }
            let obj = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": ns, "labels": labels,
                    "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "name": meta::name(s), "uid": meta::uid(s), "controller": true,
                        "blockOwnerDeletion": true}]},
                "spec": spec, "status": status});
            if cluster.store.create(&rt, obj).is_ok() {
                set.objects.insert(pod.name.clone());
            }
            continue;
        }
        if let Some(mut obj) = cluster.store.get(&rt.key(), ns, &pod.name)
            && obj.get("status") != Some(&status)
        {
            meta::set(&mut obj, &["status"], status);
            let _ = cluster.store.update(&rt, obj, Target::Status);
        }
    }
}
