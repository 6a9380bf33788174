//! The Job controller, simulated: one Pod per attempt (labelled and owned like real Job
//! pods), running for a scripted (simulated) duration and ending as scripted, with
//! `backoffLimit` (exponential retry delay), `activeDeadlineSeconds`, `parallelism`,
//! `completions`, the Complete/Failed conditions, and the container's termination message
//! carried in the Pod status where clients read it. Finished Jobs with
//! `ttlSecondsAfterFinished` are deleted when it passes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::conditions::Condition;
use crate::cluster::Cluster;
use crate::faults::{JobResult, PodOutcome};
use crate::meta;
use crate::registry::{self, ResourceType};
use crate::store::{DeleteOptions, Target};

/// First retry delay after a failed pod; doubles per failure up to `MAX_BACKOFF` (simulated).
const BASE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

struct Attempt {
    pod: String,
    started: Instant,
    outcome: PodOutcome,
    finished: Option<bool>,
    finished_at: Option<Instant>,
}

struct Run {
    /// When the Job started (or was last resumed), for activeDeadlineSeconds.
    started: Instant,
    attempts: Vec<Attempt>,
    suspended: bool,
}

/// The controller's memory of each Job, by uid.
#[derive(Default)]
pub struct JobController {
    runs: HashMap<String, Run>,
}

/// The Complete or Failed condition, once the Job has one.
fn finish_condition(job: &Value) -> Option<&Value> {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

/// Whether a finished Job's `ttlSecondsAfterFinished` (simulated) has passed.
fn expired(cluster: &Cluster, job: &Value) -> bool {
    let Some(ttl) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_u64)
    else {
        return false;
    };
    let finished_at = finish_condition(job)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    finished_at.is_some_and(|t| {
        let real = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default();
        cluster.clock.simulated(real) >= Duration::from_secs(ttl)
    })
}

impl JobController {
    /// One pass over every Job.
    pub fn reconcile_all(&mut self, cluster: &Cluster) {
        let jobs_rt = registry::builtin("Job");
        let pods_rt = registry::builtin("Pod");
        let (jobs, _) = cluster.store.list(&jobs_rt.key(), None);
        // A set, not a scan of the list per entry: a pass stays linear in the objects.
        let live: std::collections::HashSet<&str> = jobs.iter().map(meta::uid).collect();
        self.runs.retain(|uid, _| live.contains(uid.as_str()));
        for job in jobs {
            if finish_condition(&job).is_some() && expired(cluster, &job) {
                // The TTL controller's job: finished Jobs go, with their pods.
                let _ = cluster.store.delete(
                    &jobs_rt,
                    meta::namespace(&job),
                    meta::name(&job),
                    &DeleteOptions::default(),
                );
                continue;
            }
            if job.pointer("/metadata/deletionTimestamp").is_some()
                || finish_condition(&job).is_some()
            {
                continue;
            }
            let status = self.reconcile(cluster, &pods_rt, &job);
            if Some(&status) != job.get("status") {
                let mut updated = job.clone();
                updated["status"] = status;
                // A conflict means someone wrote meanwhile; the next pass catches up.
                let _ = cluster.store.update(&jobs_rt, updated, Target::Status);
            }
        }
    }

    fn reconcile(&mut self, cluster: &Cluster, pods_rt: &ResourceType, job: &Value) -> Value {
        let now = Instant::now();
        let spec = &job["spec"];
        let run = self.runs.entry(meta::uid(job).to_string()).or_insert(Run {
            started: now,
            attempts: Vec::new(),
            suspended: false,
        });
        let mut status = job
            .get("status")
            .filter(|s| s.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        let conditions = job.pointer("/status/conditions");
        if spec["suspend"] == json!(true) {
            // Suspending deletes the running pods (they do not count as failed) and clears
            // startTime, so the active deadline starts again on resume.
            run.stop_active(cluster, pods_rt, job);
            run.suspended = true;
            if let Some(map) = status.as_object_mut() {
                map.remove("startTime");
                map.remove("active");
            }
            set_condition(&mut status, SUSPENDED.render(conditions));
            return status;
        }
        if run.suspended {
            run.suspended = false;
            run.started = now;
            set_condition(&mut status, RESUMED.render(conditions));
        }
        if status.get("startTime").is_none() {
            status["startTime"] = json!(meta::now());
        }
        run.finish_due(cluster, pods_rt, job, now);

        let completions = spec["completions"].as_u64().unwrap_or(1) as usize;
        let parallelism = spec["parallelism"].as_u64().unwrap_or(1) as usize;
        let backoff_limit = spec["backoffLimit"].as_u64().unwrap_or(6) as usize;
        let deadline = spec["activeDeadlineSeconds"]
            .as_u64()
            .map(Duration::from_secs);
        let (succeeded, failed) = (run.count(Some(true)), run.count(Some(false)));
        let end = if succeeded >= completions {
            Some(COMPLETE)
        } else if failed > backoff_limit {
            Some(BACKOFF_LIMIT)
        } else if deadline.is_some_and(|d| cluster.clock.since(run.started) >= d) {
            Some(DEADLINE)
        } else {
            None
        };
        match end {
            Some(end) => {
                if end.type_ == "Failed" {
                    run.kill_active(cluster, pods_rt, job, end.reason);
                } else {
                    status["completionTime"] = json!(meta::now());
                }
                set_condition(&mut status, end.render(conditions));
            }
            None => {
                let wanted = parallelism.min(completions.saturating_sub(succeeded));
                if run.backoff_passed(cluster) {
                    run.start_attempts(cluster, pods_rt, job, wanted, now);
                }
            }
        }
        let active = run.count(None);
        for (field, value) in [
            ("active", active),
            ("ready", active),
            ("succeeded", succeeded),
            ("failed", run.count(Some(false))),
            ("terminating", 0),
        ] {
            status[field] = json!(value);
        }
        if let Some(map) = status.as_object_mut() {
            // Zero counts are omitted, as the real controller does (ready/terminating stay).
            for field in ["active", "succeeded", "failed"] {
                if map.get(field) == Some(&json!(0)) {
                    map.remove(field);
                }
            }
        }
        status
    }
}

/// Puts a condition into `status.conditions`, replacing one of the same type.
fn set_condition(status: &mut Value, condition: Value) {
    let mut list: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match list.iter_mut().find(|c| c["type"] == condition["type"]) {
        Some(existing) => *existing = condition,
        None => list.push(condition),
    }
    meta::set(status, &["conditions"], json!(list));
}

const SUSPENDED: Condition<'static> = Condition {
    type_: "Suspended",
    status: "True",
    reason: "JobSuspended",
    message: "Job suspended",
};
const RESUMED: Condition<'static> = Condition {
    type_: "Suspended",
    status: "False",
    reason: "JobResumed",
    message: "Job resumed",
};
const COMPLETE: Condition<'static> = Condition {
    type_: "Complete",
    status: "True",
    reason: "CompletionsReached",
    message: "Reached expected number of succeeded pods",
};
const BACKOFF_LIMIT: Condition<'static> = Condition {
    type_: "Failed",
    status: "True",
    reason: "BackoffLimitExceeded",
    message: "Job has reached the specified backoff limit",
};
const DEADLINE: Condition<'static> = Condition {
    type_: "Failed",
    status: "True",
    reason: "DeadlineExceeded",
    message: "Job was active longer than specified deadline",
};

impl Run {
    /// Attempts that succeeded (`Some(true)`), failed (`Some(false)`) or still run (`None`).
    fn count(&self, finished: Option<bool>) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.finished == finished)
            .count()
    }

    /// Running pods whose time has come end as scripted; a pod someone deleted counts as
    /// failed, as on a real cluster.
    fn finish_due(&mut self, cluster: &Cluster, pods_rt: &ResourceType, job: &Value, now: Instant) {
        for a in self.attempts.iter_mut().filter(|a| a.finished.is_none()) {
            if !cluster
                .store
                .contains(&pods_rt.key(), meta::namespace(job), &a.pod)
            {
                a.finished = Some(false);
                a.finished_at = Some(now);
                continue;
            }
            if cluster.clock.since(a.started) < a.outcome.after {
                continue;
            }
            let (code, reason, message) = match &a.outcome.result {
                JobResult::Hang => continue,
                JobResult::Succeed { message } => (0, "Completed", message.as_deref()),
                JobResult::Fail { exit_code, message } => (*exit_code, "Error", message.as_deref()),
            };
            finish_pod(cluster, pods_rt, job, &a.pod, code, reason, message);
            a.finished = Some(code == 0);
            a.finished_at = Some(now);
        }
    }

    /// Deletes the running pods and forgets their attempts.
    fn stop_active(&mut self, cluster: &Cluster, pods_rt: &ResourceType, job: &Value) {
        for a in self.attempts.iter().filter(|a| a.finished.is_none()) {
            // Already gone is fine.
            let _ = cluster.store.delete(
                pods_rt,
                meta::namespace(job),
                &a.pod,
                &DeleteOptions::default(),
            );
        }
        self.attempts.retain(|a| a.finished.is_some());
    }

    /// A failing Job kills what still runs; those pods count as failed.
    fn kill_active(
        &mut self,
        cluster: &Cluster,
        pods_rt: &ResourceType,
        job: &Value,
        reason: &str,
    ) {
        for a in self.attempts.iter_mut().filter(|a| a.finished.is_none()) {
            finish_pod(cluster, pods_rt, job, &a.pod, 137, reason, None);
            a.finished = Some(false);
        }
    }

    /// Whether the retry delay after the last failure (10 s, doubling, simulated) is over.
    fn backoff_passed(&self, cluster: &Cluster) -> bool {
        let failed = self.count(Some(false));
        if failed == 0 {
            return true;
        }
        let backoff = BASE_BACKOFF
            .saturating_mul(1 << (failed - 1).min(10))
            .min(MAX_BACKOFF);
        self.attempts
            .iter()
            .filter_map(|a| a.finished_at.filter(|_| a.finished == Some(false)))
            .max()
            .is_none_or(|t| cluster.clock.since(t) >= backoff)
    }

    /// Starts pods until `wanted` run, each with the outcome the faults script for it.
    fn start_attempts(
        &mut self,
        cluster: &Cluster,
        pods_rt: &ResourceType,
        job: &Value,
        wanted: usize,
        now: Instant,
    ) {
        while self.count(None) < wanted {
            let outcome = cluster.faults.job_outcome(job, cluster.default_job_run);
            let Some(pod) = create_pod(cluster, pods_rt, job) else {
                break;
            };
            self.attempts.push(Attempt {
                pod,
                started: now,
                outcome,
                finished: None,
                finished_at: None,
            });
        }
    }
}

fn container_names(job: &Value) -> Vec<(String, String)> {
    job.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_string(),
                        c["image"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Creates a running Pod for a new attempt; returns its name.
fn create_pod(cluster: &Cluster, pods_rt: &ResourceType, job: &Value) -> Option<String> {
    let name = meta::name(job);
    let now = meta::now();
    let statuses: Vec<Value> = container_names(job)
        .into_iter()
        .map(|(n, image)| {
            json!({"name": n, "image": image, "imageID": "", "ready": true, "started": true,
                   "restartCount": 0, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let mut spec = job
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    meta::set(&mut spec, &["nodeName"], json!("sim-node"));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-"),
            "namespace": meta::namespace(job),
            "labels": job.pointer("/spec/template/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            "annotations": job.pointer("/spec/template/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": meta::uid(job), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": {"phase": "Running", "startTime": now, "podIP": "10.244.0.10",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                   "containerStatuses": statuses},
    });
    match cluster.store.create(pods_rt, pod) {
        Ok(created) => Some(meta::name(&created).to_string()),
        Err(e) => {
            tracing::warn!(job = name, error = %e, "could not create a simulated Job pod");
            None
        }
    }
}

/// Marks a Job pod terminated: the first container carries the exit code, reason and
/// termination message; the others exit cleanly.
fn finish_pod(
    cluster: &Cluster,
    pods_rt: &ResourceType,
    job: &Value,
    pod: &str,
    exit_code: i32,
    reason: &str,
    message: Option<&str>,
) {
    let Some(mut obj) = cluster.store.get(&pods_rt.key(), meta::namespace(job), pod) else {
        return;
    };
    let now = meta::now();
    let started = obj
        .pointer("/status/startTime")
        .cloned()
        .unwrap_or(json!(now));
    let statuses: Vec<Value> = container_names(job)
        .into_iter()
        .enumerate()
        .map(|(i, (n, image))| {
            let mut terminated = json!({"exitCode": 0, "reason": "Completed",
                                        "startedAt": started, "finishedAt": now});
            if i == 0 {
                terminated["exitCode"] = json!(exit_code);
                terminated["reason"] = json!(reason);
                if let Some(m) = message {
                    terminated["message"] = json!(m);
                }
            }
            json!({"name": n, "image": image, "imageID": "", "ready": false, "started": false,
                   "restartCount": 0, "state": {"terminated": terminated}})
        })
        .collect();
    meta::set(
        &mut obj,
        &["status", "phase"],
        json!(if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        }),
    );
    meta::set(&mut obj, &["status", "containerStatuses"], json!(statuses));
    meta::set(
        &mut obj,
        &["status", "conditions"],
        json!([{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}]),
    );
    // The pod may be gone already (deleted with its Job); nothing to record then.
    let _ = cluster.store.update(pods_rt, obj, Target::Status);
}
