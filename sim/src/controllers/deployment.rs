//! The Deployment controller, simulated. A template change starts a rolling update bounded
//! by maxSurge/maxUnavailable (or a Recreate), pods become ready after a (simulated) delay
//! unless their image is faulted, and status reports replicas, updated/ready/available
//! counts, observedGeneration, and the Available and Progressing conditions, including
//! ProgressDeadlineExceeded. The pods live in this controller's memory; `replicas` mirrors
//! them into ReplicaSet and Pod objects for clients to look at.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::conditions::Condition;
use crate::cluster::Cluster;
use crate::faults::{ImageEffect, images};
use crate::meta;
use crate::registry;
use crate::store::Target;

/// One simulated pod of a Deployment.
pub(super) struct SimPod {
    /// Pod name (`<deployment>-<hash>-<suffix>`).
    pub name: String,
    /// The pod-template-hash of its template.
    pub template_hash: String,
    /// The images of its template (for image faults).
    pub images: Vec<String>,
    /// When it was created, in the simulated clock's terms.
    pub created: Instant,
    /// Wall-clock creation time.
    pub started_at: String,
    /// Ready as of the last pass.
    pub ready: bool,
    /// Whether one of its images is faulted to crash.
    pub crashing: bool,
    /// Wall-clock time it became ready.
    pub ready_at: Option<String>,
}

/// The controller's memory of one Deployment.
#[derive(Default)]
pub(super) struct Rollout {
    /// Its pods, old and new.
    pub pods: Vec<SimPod>,
    template_hash: String,
    /// Every template seen, by hash (ReplicaSets are made from them).
    pub templates: BTreeMap<String, Value>,
    /// Revision number of each template hash.
    pub revisions: BTreeMap<String, u64>,
    /// Names of the Pod objects made for its pods.
    pub objects: BTreeSet<String>,
    /// Signature of the last complete sync of its objects (see `replicas`).
    pub synced: Option<u64>,
    last_progress: Option<Instant>,
    last_counts: (usize, usize, usize),
}

/// The controller's memory of each Deployment, by uid.
#[derive(Default)]
pub struct DeploymentController {
    rollouts: HashMap<String, Rollout>,
}

/// `maxSurge`/`maxUnavailable`: an absolute number or a percentage of `replicas`.
fn resolve(value: Option<&Value>, replicas: usize, round_up: bool, default: &str) -> usize {
    let default = json!(default);
    match value.unwrap_or(&default) {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        Value::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = pct * replicas as f64 / 100.0;
            if round_up {
                exact.ceil() as usize
            } else {
                exact.floor() as usize
            }
        }
        _ => 0,
    }
}

/// The value without `null` fields: clients that serialize typed objects send
/// `creationTimestamp: null` and the like, which must not make a template look different.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// A short stable hash of the pod template (like `pod-template-hash`).
pub(super) fn template_hash(template: Option<&Value>) -> String {
    let text = template
        .map(|t| without_nulls(t).to_string())
        .unwrap_or_default();
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{:010x}", h & 0xff_ffff_ffff)
}

impl DeploymentController {
    /// One pass over every Deployment.
    pub fn reconcile_all(&mut self, cluster: &Cluster) {
        let rt = registry::builtin("Deployment");
        let (deployments, _) = cluster.store.list(&rt.key(), None);
        // A set, not a scan of the list per entry: a pass stays linear in the objects.
        let live: std::collections::HashSet<&str> = deployments.iter().map(meta::uid).collect();
        self.rollouts.retain(|uid, _| live.contains(uid.as_str()));
        for d in deployments {
            if d.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let status = self.reconcile(cluster, &d);
            if Some(&status) != d.get("status") {
                let mut updated = d.clone();
                updated["status"] = status;
                // A conflict means someone wrote meanwhile; the next pass catches up.
                let _ = cluster.store.update(&rt, updated, Target::Status);
            }
            if let Some(rollout) = self.rollouts.get_mut(meta::uid(&d)) {
                super::replicas::sync(cluster, &d, rollout);
            }
        }
    }

    fn reconcile(&mut self, cluster: &Cluster, d: &Value) -> Value {
        let spec = &d["spec"];
        let replicas = spec["replicas"].as_u64().unwrap_or(1) as usize;
        let template = spec.get("template");
        let hash = template_hash(template);
        let min_ready = spec["minReadySeconds"].as_u64().unwrap_or(0);
        let ready_after = cluster.pod_ready_after + std::time::Duration::from_secs(min_ready);
        let rollout = self.rollouts.entry(meta::uid(d).to_string()).or_default();
        let now = Instant::now();
        let mut progressed = rollout.switch_template(&hash, template);
        // A pod whose object someone deleted is gone; the rollout below replaces it.
        let pods_key = registry::builtin("Pod").key();
        // (A pod whose object was never made has nothing to be deleted.)
        let objects = &rollout.objects;
        rollout.pods.retain(|p| {
            !objects.contains(&p.name)
                || cluster
                    .store
                    .contains(&pods_key, meta::namespace(d), &p.name)
        });
        let is_ready = |p: &SimPod| {
            p.images
                .iter()
                .all(|i| cluster.faults.image_effect(i).is_none())
                && cluster.clock.since(p.created) >= ready_after
        };
        let strategy = Strategy::of(spec, replicas);
        if spec["paused"] != json!(true) {
            let deployment_name = meta::name(d);
            let wanted_images = images(template.and_then(|t| t.get("spec")));
            let new_pod = || SimPod {
                name: format!("{deployment_name}-{hash}-{}", crate::rand::name_suffix()),
                template_hash: hash.clone(),
                images: wanted_images.clone(),
                created: now,
                started_at: meta::now(),
                ready: false,
                crashing: false,
                ready_at: None,
            };
            rollout.step(&strategy, replicas, new_pod, is_ready);
        }
        for p in rollout.pods.iter_mut() {
            p.ready = is_ready(p);
            p.crashing = p
                .images
                .iter()
                .any(|i| cluster.faults.image_effect(i) == Some(ImageEffect::Crash));
        }

        let total = rollout.pods.len();
        let updated = rollout
            .pods
            .iter()
            .filter(|p| p.template_hash == hash)
            .count();
        let ready = rollout.pods.iter().filter(|p| p.ready).count();
        if rollout.last_counts != (total, updated, ready) {
            rollout.last_counts = (total, updated, ready);
            progressed = true;
        }
        if progressed || rollout.last_progress.is_none() {
            rollout.last_progress = Some(now);
        }
        let complete = updated == replicas && total == replicas && ready == replicas;
        let deadline = spec["progressDeadlineSeconds"].as_u64().unwrap_or(600);
        let stalled = !complete
            && rollout
                .last_progress
                .is_some_and(|t| cluster.clock.since(t).as_secs() >= deadline);
        let rs = format!("ReplicaSet \"{}-{hash}\"", meta::name(d));
        let old_conditions = d.pointer("/status/conditions");
        let available = if ready >= replicas.saturating_sub(strategy.max_unavailable) {
            Condition {
                type_: "Available",
                status: "True",
                reason: "MinimumReplicasAvailable",
                message: "Deployment has minimum availability.",
            }
        } else {
            Condition {
                type_: "Available",
                status: "False",
                reason: "MinimumReplicasUnavailable",
                message: "Deployment does not have minimum availability.",
            }
        };
        let (status, reason, message) = if complete {
            (
                "True",
                "NewReplicaSetAvailable",
                format!("{rs} has successfully progressed."),
            )
        } else if stalled {
            (
                "False",
                "ProgressDeadlineExceeded",
                format!("{rs} has timed out progressing."),
            )
        } else {
            ("True", "ReplicaSetUpdated", format!("{rs} is progressing."))
        };
        let progressing = Condition {
            type_: "Progressing",
            status,
            reason,
            message: &message,
        };
        let mut status = json!({
            "observedGeneration": meta::generation(d),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": total.max(replicas).saturating_sub(ready),
            "conditions": [
                available.render_with_update_time(old_conditions, false),
                progressing.render_with_update_time(old_conditions, progressed && !complete && !stalled),
            ],
        });
        // Like the real controller, zero counts are omitted.
        if let Some(map) = status.as_object_mut() {
            map.retain(|_, v| v != &json!(0));
        }
        status
    }
}

/// How a Deployment replaces its pods.
struct Strategy {
    recreate: bool,
    max_surge: usize,
    max_unavailable: usize,
}

impl Strategy {
    fn of(spec: &Value, replicas: usize) -> Self {
        if spec.pointer("/strategy/type") == Some(&json!("Recreate")) {
            return Self {
                recreate: true,
                max_surge: 0,
                max_unavailable: 0,
            };
        }
        let max_surge = resolve(
            spec.pointer("/strategy/rollingUpdate/maxSurge"),
            replicas,
            true,
            "25%",
        );
        let mut max_unavailable = resolve(
            spec.pointer("/strategy/rollingUpdate/maxUnavailable"),
            replicas,
            false,
            "25%",
        );
        // Both zero would never make progress; the real controller allows one unavailable.
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Self {
            recreate: false,
            max_surge,
            max_unavailable,
        }
    }
}

impl Rollout {
    /// Makes `hash` the current template; true when it changed. A template that becomes
    /// current gets the next revision, also when it is an old one coming back (a
    /// rollback), as the real controller numbers them.
    fn switch_template(&mut self, hash: &str, template: Option<&Value>) -> bool {
        if self.template_hash == hash {
            return false;
        }
        self.template_hash = hash.to_string();
        let newest = self.revisions.values().copied().max().unwrap_or(0);
        if self.revisions.get(hash) != Some(&newest) || newest == 0 {
            self.revisions.insert(hash.to_string(), newest + 1);
        }
        if let Some(t) = template {
            self.templates.insert(hash.to_string(), t.clone());
        }
        true
    }

    /// One step of the rollout: create and remove pods within the strategy's bounds.
    fn step(
        &mut self,
        strategy: &Strategy,
        replicas: usize,
        new_pod: impl Fn() -> SimPod,
        is_ready: impl Fn(&SimPod) -> bool,
    ) {
        let hash = self.template_hash.clone();
        let old_count = self.pods.iter().filter(|p| p.template_hash != hash).count();
        if strategy.recreate {
            // All old pods go before any new one starts.
            self.pods.retain(|p| p.template_hash == hash);
        } else {
            // Scale the new pods up within the surge budget.
            let new_count = self.pods.len() - old_count;
            let room = (replicas + strategy.max_surge).saturating_sub(self.pods.len());
            for _ in 0..room.min(replicas.saturating_sub(new_count)) {
                self.pods.push(new_pod());
            }
            // Old pods that are not ready hold no availability: drop them first.
            self.pods.retain(|p| p.template_hash == hash || is_ready(p));
            // Then old ready pods, as long as enough pods stay available.
            let min_available = replicas.saturating_sub(strategy.max_unavailable);
            let mut spare = self
                .pods
                .iter()
                .filter(|p| is_ready(p))
                .count()
                .saturating_sub(min_available);
            self.pods.retain(|p| {
                if p.template_hash != hash && spare > 0 {
                    spare -= 1;
                    false
                } else {
                    true
                }
            });
        }
        // Without old pods, follow replicas (scaling down drops unready pods first).
        if self.pods.iter().all(|p| p.template_hash == hash) {
            while self.pods.len() < replicas {
                self.pods.push(new_pod());
            }
            while self.pods.len() > replicas {
                let victim = self
                    .pods
                    .iter()
                    .position(|p| !is_ready(p))
                    .unwrap_or(self.pods.len() - 1);
                self.pods.remove(victim);
            }
        }
    }
}
