//! The example application of the scenarios: a backend and a frontend Deployment, and an
//! AppRelease with backup, migration and verification Jobs. Everything is runnable on a
//! real cluster too: the images are public busybox tags, a failing Job really exits 1, and
//! the "bad" version is a tag that does not exist (so it never becomes ready).

use std::time::Duration;

use apprelease_operator::api::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Cluster;

/// The release every scenario upgrades (unless it makes more).
pub const RELEASE: &str = "shop";
/// The version the application starts on.
pub const V1: &str = "1.36.0";
/// A good upgrade.
pub const V2: &str = "1.36.1";
/// A version whose Deployment pods never become ready (a tag that does not exist): on the
/// simulator an image fault, on the control plane a KWOK Stage (ImagePullBackOff). On both,
/// Jobs with its image (the migration) run as scripted. On a cluster with a real kubelet the
/// migration Job could not pull it either, and would fail only at its timeout.
pub const BAD_VERSION: &str = "9.9.9-never-ready";
/// A later good version.
pub const V4: &str = "1.37.0";
/// Image repository of both targets.
pub const REPOSITORY: &str = "busybox";

/// How a scripted Job ends.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Exit 0, with an optional termination message.
    Succeed {
        /// The message (a backup's report).
        report: Option<String>,
    },
    /// Exit 1 with this message.
    Fail {
        /// What the Job says.
        message: String,
    },
    /// Run this long, then succeed.
    RunFor(Duration),
}

/// The backup report a successful backup writes.
pub fn backup_report() -> String {
    json!({"location": "pvc://shop-backups/e2e/shop/backup.dump", "sizeBytes": 4096, "sha256": "5d41402abc4b2a76b9719d911017c592"}).to_string()
}

/// Creates the backend (2 replicas) and frontend (1 replica) Deployments on `V1`.
pub async fn deploy_app(cluster: &Cluster) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for (name, replicas) in [("backend", 2), ("frontend", 1)] {
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                // Short, so that a version that never becomes ready fails fast.
                "progressDeadlineSeconds": 10,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"securityContext": restricted_pod(), "containers": [
                        {"name": name, "image": format!("{REPOSITORY}:{V1}"), "command": ["sleep", "3600"],
                         "securityContext": restricted_container()},
                        {"name": "metrics", "image": "busybox:1.36", "command": ["sleep", "3600"],
                         "securityContext": restricted_container()}
                    ]}
                }
            }
        }))?;
        api.create(&PostParams::default(), &deployment).await?;
    }
    Ok(())
}

/// A Job template whose container ends as `outcome` does, on every backend: its script does
/// it on a cluster with a real kubelet; its `e2e.apprelease.io/*` annotations tell the KWOK
/// Stages of the control plane (testbed/kwok/stages.yaml) how the pod ends; the simulated
/// cluster is scripted to the same outcome (`Cluster::script_jobs`). Without an image the
/// container runs the new version's image of the first target, as migrations do.
pub fn job_template(
    outcome: &Outcome,
    image: Option<&str>,
) -> apprelease_operator::api::PodTemplate {
    let script = match outcome {
        Outcome::Succeed {
            report: Some(report),
        } => format!("printf '%s' '{report}' > /dev/termination-log"),
        Outcome::Succeed { report: None } => "true".to_string(),
        Outcome::Fail { message } => format!("echo '{message}' >&2; exit 1"),
        Outcome::RunFor(duration) => format!("sleep {}", duration.as_secs()),
    };
    serde_json::from_value(json!({
        "metadata": {"annotations": outcome_annotations(outcome)},
        "spec": {"securityContext": restricted_pod(), "containers": [{
            "name": "job", "image": image, "command": ["sh", "-c", script],
            "securityContext": restricted_container()
        }]}
    }))
    .expect("a valid pod template")
}

/// The pod securityContext Pod Security `restricted` asks for, which every scenario
/// namespace enforces (see `Cluster::create_namespace`): busybox as `nobody`.
pub fn restricted_pod() -> serde_json::Value {
    json!({"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
           "seccompProfile": {"type": "RuntimeDefault"}})
}

/// The container securityContext `restricted` asks for.
pub fn restricted_container() -> serde_json::Value {
    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
}

/// The annotations that script a Job pod's end for KWOK (see testbed/kwok/stages.yaml).
pub fn outcome_annotations(outcome: &Outcome) -> serde_json::Map<String, serde_json::Value> {
    let mut annotations = serde_json::Map::new();
    let mut set = |key: &str, value: String| {
        annotations.insert(format!("e2e.apprelease.io/{key}"), value.into());
    };
    match outcome {
        Outcome::Succeed { report } => {
            set("outcome", "succeed".into());
            if let Some(report) = report {
                set("message", report.clone());
            }
        }
        Outcome::Fail { message } => {
            set("outcome", "fail".into());
            set("exit-code", "1".into());
            set("message", message.clone());
        }
        Outcome::RunFor(duration) => {
            set("outcome", "succeed".into());
            set("run-for", format!("{}ms", duration.as_millis()));
        }
    }
    annotations
}

/// Scripted outcomes of the release's Jobs.
#[derive(Clone, Debug)]
pub struct Jobs {
    /// Backup.
    pub backup: Outcome,
    /// Migration.
    pub migration: Outcome,
    /// Verification.
    pub verify: Outcome,
    /// Down-migration.
    pub downgrade: Outcome,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            backup: Outcome::Succeed {
                report: Some(backup_report()),
            },
            migration: Outcome::Succeed { report: None },
            verify: Outcome::Succeed { report: None },
            downgrade: Outcome::Succeed { report: None },
        }
    }
}

/// The AppRelease of the example app at `version`, with every step configured.
pub fn release(cluster: &Cluster, name: &str, version: &str, jobs: &Jobs) -> AppRelease {
    for (kind, outcome) in [
        ("backup", &jobs.backup),
        ("migrate", &jobs.migration),
        ("verify", &jobs.verify),
        ("downgrade", &jobs.downgrade),
    ] {
        cluster.script_jobs(name, kind, outcome);
    }
    let spec = AppReleaseSpec {
        version: version.into(),
        targets: vec![
            Target {
                containers: Some(vec!["backend".into()]),
                ..Target::deployment("backend")
            },
            Target {
                containers: Some(vec!["frontend".into()]),
                ..Target::deployment("frontend")
            },
        ],
        backup: Some(BackupSpec {
            template: Some(job_template(&jobs.backup, Some("busybox:1.36"))),
            preset: None,
            components: Vec::new(),
            keep_last: 3,
            max_age: None,
            timeout: "5m".into(),
        }),
        migration: Some(MigrationSpec {
            template: job_template(&jobs.migration, None),
            when: MigrationPhase::BeforeRollout,
            timeout: "5m".into(),
        }),
        rollout: RolloutSpec {
            timeout: "60s".into(),
            ..RolloutSpec::default()
        },
        verify: Some(VerifySpec {
            template: job_template(&jobs.verify, None),
            timeout: "5m".into(),
        }),
        rollback: RollbackSpec::default(),
        maintenance_windows: Vec::new(),
        suspend: false,
        notifications: None,
        approval: Approval::default(),
        downgrade: DowngradePolicy::default(),
    };
    let mut release = AppRelease::new(name, spec);
    release.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(cluster.namespace.clone()),
        ..Default::default()
    };
    release
}

/// A down-migration Job for `database: Downgrade`.
pub fn downgrade(jobs: &Jobs) -> JobTemplate {
    JobTemplate {
        template: job_template(&jobs.downgrade, None),
        timeout: "5m".into(),
    }
}

/// A Deployment `name` of one container at `version`, and an AppRelease that targets it
/// alone (with `jobs`' backup, no migration or verification), both applied: one of the many
/// small apps of the scale scenario and bench.
pub async fn deploy_single_app(
    cluster: &Cluster,
    name: &str,
    version: &str,
    jobs: &Jobs,
    edit: impl FnOnce(&mut AppRelease),
) -> anyhow::Result<()> {
    let mut release = release(cluster, name, version, jobs);
    release.spec.targets.truncate(1);
    release.spec.targets[0].deployment = Some(name.to_string());
    release.spec.targets[0].containers = None;
    release.spec.migration = None;
    release.spec.verify = None;
    edit(&mut release);
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"securityContext": restricted_pod(), "containers": [{
                    "name": "app", "image": format!("{REPOSITORY}:{version}"),
                    "securityContext": restricted_container()}]}}}
    });
    Api::<Deployment>::namespaced(cluster.client.clone(), &namespace(cluster, &release))
        .patch(name, &PatchParams::apply("e2e-user"), &Patch::Apply(body))
        .await?;
    apply(cluster, &release).await
}

/// Creates or updates the AppRelease as a user would (`kubectl apply --server-side`).
/// In the release's namespace if it names one, else the scenario's.
pub async fn apply(cluster: &Cluster, release: &AppRelease) -> anyhow::Result<()> {
    let api: Api<AppRelease> =
        Api::namespaced(cluster.client.clone(), &namespace(cluster, release));
    let body = json!({
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": release.metadata.name, "annotations": release.metadata.annotations},
        "spec": release.spec,
    });
    let name = release.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply("e2e-user").force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// The release's namespace, or the scenario's when it names none.
fn namespace(cluster: &Cluster, release: &AppRelease) -> String {
    release
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.namespace.clone())
}

/// Changes `spec.version`, as `kubectl patch` would.
pub async fn set_version(cluster: &Cluster, name: &str, version: &str) -> anyhow::Result<()> {
    let api: Api<AppRelease> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"version": version}})),
    )
    .await?;
    Ok(())
}

/// Sets the retry annotation.
pub async fn retry(cluster: &Cluster, name: &str, value: &str) -> anyhow::Result<()> {
    let api: Api<AppRelease> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut annotations = serde_json::Map::new();
    annotations.insert(RETRY_ANNOTATION.into(), value.into());
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}
