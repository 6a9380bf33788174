//! Test fixtures: an AppRelease builder and a tiny in-memory world that carries out
//! decisions the way the cluster would, so tests can walk whole upgrades step by step.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use kube::api::ObjectMeta;

use crate::api::*;

use super::decide;
use super::decision::{Action, Decision};
use super::observed::{DeploymentState, JobOutcome, JobState, Observed};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

pub fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "job".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            restart_policy: Some("Never".into()),
            ..Default::default()
        }),
    }
}

/// `meet`: backend (containers backend + sidecar, only backend targeted) and frontend.
pub fn release(version: &str) -> AppRelease {
    let spec = AppReleaseSpec {
        version: version.into(),
        targets: vec![
            Target {
                deployment: "backend".into(),
                containers: Some(vec!["backend".into()]),
                image: None,
            },
            Target {
                deployment: "frontend".into(),
                containers: None,
                image: None,
            },
        ],
        backup: None,
        migration: None,
        rollout: RolloutSpec::default(),
        verify: None,
        rollback: RollbackSpec::default(),
        suspend: false,
        notifications: None,
        approval: Approval::default(),
    };
    let mut release = AppRelease::new("meet", spec);
    release.metadata = ObjectMeta {
        name: Some("meet".into()),
        namespace: Some("meet".into()),
        generation: Some(1),
        uid: Some("uid-meet".into()),
        ..Default::default()
    };
    release
}

pub fn with_backup(mut r: AppRelease) -> AppRelease {
    r.spec.backup = Some(BackupSpec {
        template: Some(template("postgres:16")),
        preset: None,
        keep_last: 3,
        max_age: None,
        timeout: "30m".into(),
    });
    r
}

/// A postgres preset backup instead of a template.
pub fn with_preset(mut r: AppRelease) -> AppRelease {
    r.spec.backup = Some(BackupSpec {
        template: None,
        preset: Some(BackupPreset::Postgres(DatabasePreset {
            connection_secret: "meet-db".into(),
            storage: BackupStorage {
                pvc: "meet-backups".into(),
            },
            image: None,
            security_context: None,
        })),
        keep_last: 3,
        max_age: None,
        timeout: "30m".into(),
    });
    r
}

/// A report as a preset writes it, for backup `id`.
pub fn preset_report(id: &str) -> String {
    format!(
        r#"{{"location":"pvc://meet-backups/meet/meet/{id}.pgdump","sizeBytes":4096,"sha256":"{}"}}"#,
        "ab".repeat(32)
    )
}

pub fn with_migration(mut r: AppRelease, when: MigrationPhase) -> AppRelease {
    r.spec.migration = Some(MigrationSpec {
        template: template(""),
        when,
        timeout: "15m".into(),
    });
    r
}

pub fn with_verify(mut r: AppRelease) -> AppRelease {
    r.spec.verify = Some(VerifySpec {
        template: template("curlimages/curl:8"),
        timeout: "5m".into(),
    });
    r
}

pub fn with_database(mut r: AppRelease, policy: DatabaseRollback) -> AppRelease {
    r.spec.rollback.database = policy;
    let job = JobTemplate {
        template: template(""),
        timeout: "30m".into(),
    };
    match policy {
        DatabaseRollback::Downgrade => r.spec.rollback.downgrade = Some(job),
        DatabaseRollback::Restore => r.spec.rollback.restore = Some(job),
        DatabaseRollback::None => {}
    }
    r
}

/// The offline strategy: stop, back up, migrate, set images, start.
pub fn offline(mut r: AppRelease) -> AppRelease {
    r.spec.rollout.strategy = RolloutStrategy::Offline;
    r
}

pub fn full(version: &str) -> AppRelease {
    with_verify(with_migration(
        with_backup(release(version)),
        MigrationPhase::BeforeRollout,
    ))
}

/// A Deployment, fully rolled out, running `images`.
pub fn deployment(images: &[(&str, &str)], replicas: i32) -> DeploymentState {
    DeploymentState {
        containers: images
            .iter()
            .map(|(c, i)| (c.to_string(), i.to_string()))
            .collect(),
        replicas,
        generation: 1,
        observed_generation: 1,
        status_replicas: replicas,
        updated_replicas: replicas,
        available_replicas: replicas,
        ..Default::default()
    }
}

/// The cluster with both targets on `version`.
pub fn cluster(version: &str) -> Observed {
    let mut deployments = BTreeMap::new();
    deployments.insert(
        "backend".into(),
        deployment(
            &[
                ("backend", &format!("ghcr.io/meet/backend:{version}")),
                ("sidecar", "envoy:1.30"),
            ],
            3,
        ),
    );
    deployments.insert(
        "frontend".into(),
        deployment(&[("web", &format!("ghcr.io/meet/web:{version}"))], 2),
    );
    Observed {
        now: t0(),
        deployments,
        jobs: BTreeMap::new(),
        peers: Vec::new(),
    }
}

/// What the world does with images nobody can run.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Image tags that never become available.
    pub bad_tags: Vec<String>,
}

/// A release and the cluster it lives in, advanced by decisions and by simulated time.
#[derive(Clone, Debug)]
pub struct World {
    pub release: AppRelease,
    pub cluster: Observed,
    pub faults: Faults,
    /// Every Job ever created, by name, with how many times it was created.
    pub creates: BTreeMap<String, u32>,
    /// Every decision taken, in order.
    pub log: Vec<Decision>,
}

impl World {
    pub fn new(release: AppRelease, cluster: Observed) -> Self {
        Self {
            release,
            cluster,
            faults: Faults::default(),
            creates: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    /// One reconcile: decide, write status, carry out the actions.
    pub fn step(&mut self) -> Decision {
        let decision = self.decide_and_record();
        for action in &decision.actions {
            self.apply(action);
        }
        decision
    }

    /// A reconcile whose operator dies right after the status write.
    pub fn step_and_crash(&mut self) -> Decision {
        self.decide_and_record()
    }

    fn decide_and_record(&mut self) -> Decision {
        let decision = if self.release.metadata.deletion_timestamp.is_some() {
            super::decide_deletion(&self.release, &self.cluster)
        } else {
            decide(&self.release, &self.cluster)
        };
        self.release.status = Some(decision.status.clone());
        self.release.metadata.finalizers = decision.finalizer.then(|| vec![FINALIZER.to_string()]);
        self.log.push(decision.clone());
        decision
    }

    pub fn status(&self) -> &AppReleaseStatus {
        self.release.status.as_ref().expect("status written")
    }

    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::CreateJob(request) => {
                if !self.cluster.jobs.contains_key(&request.name) {
                    *self.creates.entry(request.name.clone()).or_default() += 1;
                    self.cluster.jobs.insert(
                        request.name.clone(),
                        JobState {
                            outcome: JobOutcome::Running,
                            termination_message: None,
                            finished_at: None,
                            owned: !crate::jobs::build::changes_data(request.kind),
                        },
                    );
                }
            }
            Action::SetImages { deployment, images } => {
                let Some(d) = self.cluster.deployments.get_mut(deployment) else {
                    return;
                };
                let mut changed = false;
                for (container, image) in images {
                    if let Some(slot) = d.containers.iter_mut().find(|(c, _)| c == container) {
                        changed |= slot.1 != *image;
                        slot.1 = image.clone();
                    }
                }
                if changed {
                    d.generation += 1;
                    d.updated_replicas = 0;
                    d.deadline_exceeded = false;
                }
            }
            Action::HandOver { job } => {
                let job = self
                    .cluster
                    .jobs
                    .get_mut(job)
                    .expect("only seen Jobs are handed over");
                assert!(!job.owned, "handed over once");
                job.owned = true;
            }
            Action::Scale {
                deployment,
                replicas,
            } => {
                if let Some(d) = self.cluster.deployments.get_mut(deployment) {
                    d.replicas = *replicas;
                    d.generation += 1;
                }
            }
        }
    }

    /// Lets the deployment controller catch up: good images become available, bad ones stall
    /// with ProgressDeadlineExceeded.
    pub fn settle_deployments(&mut self) {
        for d in self.cluster.deployments.values_mut() {
            d.observed_generation = d.generation;
            let bad = d.containers.iter().any(|(_, image)| {
                self.faults
                    .bad_tags
                    .iter()
                    .any(|t| crate::api::image::tag(image) == Some(t.as_str()))
            });
            if bad {
                d.updated_replicas = d.replicas.min(1);
                d.available_replicas = (d.replicas - 1).max(0);
                d.status_replicas = d.replicas + d.updated_replicas;
                d.deadline_exceeded = true;
            } else {
                d.updated_replicas = d.replicas;
                d.available_replicas = d.replicas;
                d.status_replicas = d.replicas;
                d.deadline_exceeded = false;
            }
        }
    }

    /// Finishes the Job whose name contains `part`.
    pub fn finish_job(&mut self, part: &str, outcome: JobOutcome, message: Option<&str>) {
        let now = self.cluster.now;
        let (_, job) = self
            .cluster
            .jobs
            .iter_mut()
            .find(|(name, j)| name.contains(part) && j.outcome == JobOutcome::Running)
            .unwrap_or_else(|| panic!("no running Job named like {part}"));
        job.outcome = outcome;
        job.termination_message = message.map(String::from);
        job.finished_at = Some(now);
    }

    pub fn advance(&mut self, by: Duration) {
        self.cluster.now += chrono::Duration::from_std(by).unwrap();
    }

    /// From a failed verification of a release with `database: Restore`: records the scale
    /// down, lets the pods go, and runs until the restore Job of attempt 1 is created.
    pub fn fail_verify_and_reach_the_restore(&mut self) {
        self.finish_job(
            "verify",
            JobOutcome::Failed("smoke test failed".into()),
            None,
        );
        self.step();
        assert_eq!(
            self.status().upgrade.as_ref().map(|u| u.step),
            Some(Step::ScalingDown)
        );
        self.settle_deployments();
        self.cluster
            .deployments
            .values_mut()
            .for_each(|d| d.status_replicas = 0);
        assert_eq!(self.run(5).as_deref(), Some("meet-restore-1"));
    }

    /// The replica counts of backend and frontend.
    pub fn replicas(&self) -> (i32, i32) {
        let count = |name: &str| self.cluster.deployments[name].replicas;
        (count("backend"), count("frontend"))
    }

    /// Whether any pod of a target runs.
    pub fn pods_run(&self) -> bool {
        self.cluster
            .deployments
            .values()
            .any(|d| d.status_replicas > 0)
    }

    pub fn images(&self, deployment: &str) -> Vec<(String, String)> {
        self.cluster.deployments[deployment].containers.clone()
    }

    pub fn set_version(&mut self, version: &str) {
        self.release.spec.version = version.into();
        self.bump_generation();
    }

    pub fn bump_generation(&mut self) {
        let g = self.release.metadata.generation.unwrap_or(0);
        self.release.metadata.generation = Some(g + 1);
    }

    /// Steps, settling deployments between steps, until the status has no upgrade or a Job
    /// waits (returns its name) — at most `limit` steps.
    pub fn run(&mut self, limit: usize) -> Option<String> {
        for _ in 0..limit {
            self.step();
            self.settle_deployments();
            if let Some((name, _)) = self
                .cluster
                .jobs
                .iter()
                .find(|(_, j)| j.outcome == JobOutcome::Running)
            {
                return Some(name.clone());
            }
            self.status().upgrade.as_ref()?;
            self.advance(Duration::from_secs(10));
        }
        panic!("no rest after {limit} steps: {:#?}", self.status());
    }
}

/// Shorthand for the Ready condition's (status, reason).
pub fn ready(status: &AppReleaseStatus) -> (conditions::ConditionStatus, String) {
    let c = conditions::get(&status.conditions, conditions::READY).expect("Ready is always set");
    (c.status, c.reason.clone())
}

pub fn has(status: &AppReleaseStatus, type_: &str) -> bool {
    conditions::get(&status.conditions, type_)
        .is_some_and(|c| c.status == conditions::ConditionStatus::True)
}
