//! Scripted outcomes: how simulated Jobs end, which images never become ready or crash, and
//! which API requests fail, slow down, or have their watches dropped. Rules are plain data
//! (serde), so tests, the `--fault` flag and `POST /sim/faults` all speak the same JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::glob;

/// Which Jobs a rule applies to; every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobMatch {
    /// Glob on the Job name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels the Job (or its pod template) must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Glob on any container image of the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// How a Job's pod ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum JobResult {
    /// Exit 0, optionally with a termination message.
    Succeed {
        /// `state.terminated.message` of the container.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Non-zero exit.
    #[serde(rename_all = "camelCase")]
    Fail {
        /// Exit code (default 1).
        #[serde(default = "default_exit_code")]
        exit_code: i32,
        /// Termination message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Runs until deleted or the Job's deadline passes.
    Hang,
}

fn default_exit_code() -> i32 {
    1
}

/// A rule for Jobs: when it matches, each pod runs `after_seconds` (simulated) and ends
/// with `result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRule {
    /// Which Jobs.
    #[serde(default, rename = "match")]
    pub matcher: JobMatch,
    /// Simulated run time of each pod.
    #[serde(default = "default_run_seconds")]
    pub after_seconds: f64,
    /// How it ends.
    pub result: JobResult,
}

fn default_run_seconds() -> f64 {
    1.0
}

impl JobRule {
    /// Matching Jobs succeed after `after` (simulated) with this termination message.
    pub fn succeed(matcher: JobMatch, after: Duration, message: Option<&str>) -> Self {
        Self {
            matcher,
            after_seconds: after.as_secs_f64(),
            result: JobResult::Succeed {
                message: message.map(str::to_string),
            },
        }
    }

    /// Matching Jobs fail after `after` with this exit code and message.
    pub fn fail(matcher: JobMatch, after: Duration, exit_code: i32, message: Option<&str>) -> Self {
        Self {
            matcher,
            after_seconds: after.as_secs_f64(),
            result: JobResult::Fail {
                exit_code,
                message: message.map(str::to_string),
            },
        }
    }

    /// Matching Jobs never finish on their own.
    pub fn hang(matcher: JobMatch) -> Self {
        Self {
            matcher,
            after_seconds: 0.0,
            result: JobResult::Hang,
        }
    }
}

impl JobMatch {
    /// Jobs whose name matches the glob.
    pub fn name(glob: &str) -> Self {
        Self {
            name: Some(glob.to_string()),
            ..Self::default()
        }
    }

    /// Jobs with this label (on the Job or its pod template).
    pub fn label(key: &str, value: &str) -> Self {
        Self {
            labels: BTreeMap::from([(key.to_string(), value.to_string())]),
            ..Self::default()
        }
    }

    /// Jobs with a container image matching the glob.
    pub fn image(glob: &str) -> Self {
        Self {
            image: Some(glob.to_string()),
            ..Self::default()
        }
    }

    fn matches(&self, job: &Value) -> bool {
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|g| glob::matches(g, crate::meta::name(job)));
        let label = |k: &str| {
            job.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .or_else(|| {
                    job.pointer("/spec/template/metadata/labels")
                        .and_then(|l| l.get(k))
                })
                .and_then(Value::as_str)
        };
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, v)| label(k) == Some(v.as_str()));
        let image_ok = self.image.as_ref().is_none_or(|g| {
            images(job.pointer("/spec/template/spec"))
                .iter()
                .any(|i| glob::matches(g, i))
        });
        name_ok && labels_ok && image_ok
    }
}

/// Container images of a pod spec.
pub fn images(pod_spec: Option<&Value>) -> Vec<String> {
    pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("image").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What a faulty image does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ImageEffect {
    /// Pods start but never become ready (Jobs with it hang).
    NeverReady,
    /// Containers crash (Deployment pods never become ready; Job pods fail with exit 1).
    Crash,
}

/// An image (glob) that misbehaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageFault {
    /// Glob on the full image reference (`ghcr.io/x/app:*-broken`).
    pub image: String,
    /// What happens.
    pub effect: ImageEffect,
}

/// What an API fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ApiEffect {
    /// Answer with this status code (a `Status` body with the usual reason).
    Error {
        /// HTTP status code.
        code: u16,
        /// Message (a default one names the fault).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Delay the answer.
    Latency {
        /// Real milliseconds.
        millis: u64,
    },
    /// End watch streams after this many real milliseconds.
    #[serde(rename_all = "camelCase")]
    DropWatch {
        /// Real milliseconds.
        after_millis: u64,
    },
    /// Answer lists with `410 Expired` and watches with an ERROR 410 event.
    Gone,
}

/// A rule for API requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiFault {
    /// Verbs it applies to (empty: all).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources (`jobs`, `appreleases/status`; empty: all).
    #[serde(default)]
    pub resources: Vec<String>,
    /// The effect.
    pub effect: ApiEffect,
    /// Probability per matching request (default 1).
    #[serde(default = "one")]
    pub rate: f64,
    /// How many more times it may fire (absent: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

fn one() -> f64 {
    1.0
}

/// Any scripted fault, as `POST /sim/faults` and `--fault` take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Fault {
    /// A Job outcome rule.
    Job(JobRule),
    /// A faulty image.
    Image(ImageFault),
    /// An API fault.
    Api(ApiFault),
}

/// All scripted faults currently in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSet {
    /// Job rules; the most recently added matching rule wins.
    pub jobs: Vec<JobRule>,
    /// Faulty images.
    pub images: Vec<ImageFault>,
    /// API faults.
    pub api: Vec<ApiFault>,
}

/// The fault registry shared by the API server and the controllers.
#[derive(Default)]
pub struct Faults {
    set: Mutex<FaultSet>,
}

/// The outcome chosen for one Job pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodOutcome {
    /// Simulated run time.
    pub after: Duration,
    /// How it ends.
    pub result: JobResult,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, FaultSet> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fault.
    pub fn add(&self, fault: Fault) {
        let mut set = self.lock();
        match fault {
            Fault::Job(r) => set.jobs.push(r),
            Fault::Image(i) => set.images.push(i),
            Fault::Api(a) => set.api.push(a),
        }
    }

    /// Removes every fault.
    pub fn clear(&self) {
        *self.lock() = FaultSet::default();
    }

    /// The faults in force.
    pub fn snapshot(&self) -> FaultSet {
        self.lock().clone()
    }

    /// The effect configured for an image, if any (the last added rule wins).
    pub fn image_effect(&self, image: &str) -> Option<ImageEffect> {
        self.lock()
            .images
            .iter()
            .rev()
            .find(|f| glob::matches(&f.image, image))
            .map(|f| f.effect)
    }

    /// How a new pod of this Job should run: the newest matching Job rule, else an image
    /// fault, else success after `default_run`.
    pub fn job_outcome(&self, job: &Value, default_run: Duration) -> PodOutcome {
        if let Some(rule) = self
            .lock()
            .jobs
            .iter()
            .rev()
            .find(|r| r.matcher.matches(job))
        {
            return PodOutcome {
                after: Duration::from_secs_f64(rule.after_seconds.max(0.0)),
                result: rule.result.clone(),
            };
        }
        let effects: Vec<ImageEffect> = images(job.pointer("/spec/template/spec"))
            .iter()
            .filter_map(|i| self.image_effect(i))
            .collect();
        let result = if effects.contains(&ImageEffect::Crash) {
            JobResult::Fail {
                exit_code: 1,
                message: Some("container crashed (simulated image fault)".into()),
            }
        } else if effects.contains(&ImageEffect::NeverReady) {
            JobResult::Hang
        } else {
            JobResult::Succeed { message: None }
        };
        PodOutcome {
            after: default_run,
            result,
        }
    }

    /// The API effects that fire for this request (consuming their counts).
    pub fn api_effects(&self, verb: &str, resource: &str) -> Vec<ApiEffect> {
        let mut set = self.lock();
        let mut fired = Vec::new();
        for fault in set.api.iter_mut() {
            let verb_ok = fault.verbs.is_empty() || fault.verbs.iter().any(|v| v == verb);
            let base = resource.split('/').next().unwrap_or(resource);
            let res_ok = fault.resources.is_empty()
                || fault.resources.iter().any(|r| r == resource || r == base);
            if !verb_ok || !res_ok || fault.count == Some(0) {
                continue;
            }
            if fault.rate < 1.0 && crate::rand::unit() >= fault.rate {
                continue;
            }
            if let Some(c) = fault.count.as_mut() {
                *c -= 1;
            }
            fired.push(fault.effect.clone());
        }
        set.api.retain(|f| f.count != Some(0));
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str, image: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn newest_matching_job_rule_wins_and_unmatched_jobs_succeed() {
        let faults = Faults::default();
        let d = Duration::from_secs(2);
        faults.add(Fault::Job(JobRule::fail(
            JobMatch::name("*-migrate"),
            d,
            3,
            None,
        )));
        faults.add(Fault::Job(JobRule::succeed(
            JobMatch::label("role", "backup"),
            d,
            Some("{\"size\":1}"),
        )));
        let backup = job("x-backup", "pg:16", json!({"role": "backup"}));
        assert_eq!(
            faults.job_outcome(&backup, d).result,
            JobResult::Succeed {
                message: Some("{\"size\":1}".into())
            }
        );
        let migrate = job("x-migrate", "app:2", json!({}));
        assert!(matches!(
            faults.job_outcome(&migrate, d).result,
            JobResult::Fail { exit_code: 3, .. }
        ));
        let other = job("other", "app:2", json!({}));
        assert_eq!(
            faults.job_outcome(&other, d).result,
            JobResult::Succeed { message: None }
        );
        faults.add(Fault::Image(ImageFault {
            image: "app:*".into(),
            effect: ImageEffect::NeverReady,
        }));
        assert_eq!(faults.job_outcome(&other, d).result, JobResult::Hang);
    }

    #[test]
    fn api_faults_match_verb_and_resource_and_run_out() {
        let faults = Faults::default();
        let fault: Fault = serde_json::from_value(json!({"kind": "api", "verbs": ["create"],
            "resources": ["jobs"], "effect": {"type": "error", "code": 500}, "count": 1}))
        .unwrap();
        faults.add(fault);
        assert!(faults.api_effects("get", "jobs").is_empty());
        assert!(faults.api_effects("create", "deployments").is_empty());
        assert_eq!(faults.api_effects("create", "jobs").len(), 1);
        assert!(faults.api_effects("create", "jobs").is_empty());
    }
}
