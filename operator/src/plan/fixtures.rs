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
use super::observed::{DeploymentState, JobOutcome, JobState, Observed, PodState};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

pub fn template(image: &str) -> crate::api::PodTemplate {
    Box::new(PodTemplateSpec {
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
    })
}

/// `meet`: backend (containers backend + sidecar, only backend targeted) and frontend.
pub fn release(version: &str) -> AppRelease {
    let spec = AppReleaseSpec {
        version: version.into(),
        targets: vec![
            Target {
                containers: Some(vec!["backend".into()]),
                ..Target::deployment("backend")
            },
            Target::deployment("frontend"),
        ],
        backup: None,
        migration: None,
        rollout: RolloutSpec::default(),
        verify: None,
        rollback: RollbackSpec::default(),
        maintenance_windows: Vec::new(),
        suspend: false,
        notifications: None,
        approval: Approval::default(),
        downgrade: DowngradePolicy::default(),
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
        components: Vec::new(),
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
        components: Vec::new(),
        keep_last: 3,
        max_age: None,
        timeout: "30m".into(),
    });
    r
}

/// A backup set of three preset components: `db` (postgres), `cache` (redis) and `uploads`
/// (a volume), restored on rollback.
pub fn with_set(mut r: AppRelease) -> AppRelease {
    let storage = || BackupStorage {
        pvc: "meet-backups".into(),
    };
    let database = |secret: &str| DatabasePreset {
        connection_secret: secret.into(),
        storage: storage(),
        image: None,
        security_context: None,
    };
    let component = |name: &str, preset: BackupPreset| BackupComponent {
        name: name.into(),
        template: None,
        preset: Some(preset),
        restore: None,
    };
    r.spec.backup = Some(BackupSpec {
        template: None,
        preset: None,
        components: vec![
            component("db", BackupPreset::Postgres(database("meet-db"))),
            component("cache", BackupPreset::Redis(database("meet-redis"))),
            component(
                "uploads",
                BackupPreset::Volume(VolumePreset {
                    claim: "meet-uploads".into(),
                    storage: storage(),
                    image: None,
                    security_context: None,
                }),
            ),
        ],
        keep_last: 2,
        max_age: None,
        timeout: "30m".into(),
    });
    r.spec.rollback.database = DatabaseRollback::Restore;
    r
}

/// An on-demand request named `name`, created `minutes` after t0, with no status yet.
pub fn request(kind: RequestKind, name: &str, minutes: i64) -> super::observed::Request {
    super::observed::Request {
        kind,
        name: name.into(),
        uid: format!("uid-{name}"),
        generation: 1,
        created: Some(t0() + chrono::Duration::minutes(minutes)),
        backup: None,
        components: Vec::new(),
        status: RequestStatus::default(),
    }
}

/// A restore request of `backup` (some `components`, or all).
pub fn restore_request(name: &str, backup: &str, components: &[&str]) -> super::observed::Request {
    super::observed::Request {
        backup: Some(backup.into()),
        components: components.iter().map(|c| c.to_string()).collect(),
        ..request(RequestKind::Restore, name, 30)
    }
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

/// A StatefulSet, fully rolled out, running `images`, with its pods `<name>-<ordinal>`.
pub fn stateful_set(name: &str, images: &[(&str, &str)], replicas: i32) -> DeploymentState {
    let list: Vec<&str> = images.iter().map(|(_, i)| *i).collect();
    let revision = format!("rev-{}", list.join(","));
    let mut state = DeploymentState {
        kind: TargetKind::StatefulSet,
        current_revision: revision.clone(),
        update_revision: revision.clone(),
        ready_replicas: replicas,
        ..deployment(images, replicas)
    };
    state.pods = (0..replicas)
        .map(|i| PodState {
            name: format!("{name}-{i}"),
            uid: format!("{name}-{i}-uid-1"),
            revision: revision.clone(),
            ready: true,
        })
        .collect();
    state
}

/// `release` with a third target, the StatefulSet `worker` (every container).
pub fn with_worker(mut r: AppRelease) -> AppRelease {
    r.spec.targets.push(Target::stateful_set("worker"));
    r
}

/// `cluster(version)` plus the StatefulSet `worker` (3 replicas) on `version`.
pub fn cluster_with_worker(version: &str) -> Observed {
    let mut observed = cluster(version);
    observed.deployments.insert(
        "worker".into(),
        stateful_set(
            "worker",
            &[("worker", &format!("ghcr.io/meet/worker:{version}"))],
            3,
        ),
    );
    observed
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
        requests: Vec::new(),
    }
}

/// What the world does with images nobody can run.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Image tags that never become available.
    pub bad_tags: Vec<String>,
    /// Whole images that never become available (one target's new version).
    pub bad_images: Vec<String>,
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
    /// Every version of the AppRelease the API server stored, oldest first, each with its
    /// resourceVersion: one per write, the operator's or anyone else's (see `store`).
    pub stored: Vec<AppRelease>,
}

/// What became of a decision made from a copy of the AppRelease (see `World::reconcile_from`).
#[derive(Clone, Debug, PartialEq)]
pub enum Carried {
    /// Its writes were refused: the copy was not the stored version.
    Refused,
    /// It was carried out as the executor does.
    Done(Box<Decision>),
}

impl World {
    pub fn new(release: AppRelease, cluster: Observed) -> Self {
        Self {
            release,
            cluster,
            faults: Faults::default(),
            creates: BTreeMap::new(),
            log: Vec::new(),
            stored: Vec::new(),
        }
    }

    /// Numbers the AppRelease as the API server does: a new resourceVersion whenever it
    /// changed since the last one stored (a write by the operator, or by a person or a GitOps
    /// tool: the events of a test edit `release` directly), and returns it.
    pub fn store(&mut self) -> String {
        let unchanged = self.stored.last().is_some_and(|last| {
            last.metadata
                == ObjectMeta {
                    resource_version: last.metadata.resource_version.clone(),
                    ..self.release.metadata.clone()
                }
                && last.spec == self.release.spec
                && last.status == self.release.status
        });
        if !unchanged {
            self.release.metadata.resource_version = Some((self.stored.len() + 1).to_string());
            self.stored.push(self.release.clone());
        }
        self.release
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default()
    }

    /// The version stored `age` writes ago (0: the current one), as a lagging cache shows it.
    pub fn stored_ago(&mut self, age: usize) -> AppRelease {
        self.store();
        let index = self.stored.len().saturating_sub(1 + age);
        self.stored[index].clone()
    }

    /// One reconcile that decided from `read` — a copy of the AppRelease as a cache showed
    /// it, maybe older than the stored one — against the cluster as it is now (the operator
    /// reads it fresh), carried out as `k8s::Executor` does. Its writes test the
    /// resourceVersion decided from, as the API server evaluates them: the finalizer's and
    /// the status's, or, for a decision that changes no status but does something, a patch
    /// that only tests it.
    pub fn reconcile_from(&mut self, read: &AppRelease) -> Carried {
        let current = self.store();
        let decision = if read.metadata.deletion_timestamp.is_some() {
            super::decide_deletion(read, &self.cluster)
        } else {
            decide(read, &self.cluster)
        };
        let mut version = read.metadata.resource_version.clone().unwrap_or_default();
        let holds = |r: &AppRelease| {
            r.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        };
        if decision.finalizer && !holds(read) {
            if version == current {
                self.release.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
                version = self.store();
            } else if !holds(&self.release) {
                // The patch's test fails and the stored copy lacks it too: an error.
                return Carried::Refused;
            }
        }
        let changed = read.status.as_ref() != Some(&decision.status);
        let acts = !(decision.actions.is_empty()
            && decision.requests.is_empty()
            && decision.notes.is_empty()
            && decision.milestones.is_empty())
            || (holds(read) && !decision.finalizer);
        if changed || acts {
            if version != self.store() {
                return Carried::Refused;
            }
            if changed {
                self.release.status = Some(decision.status.clone());
                self.store();
            }
        }
        for update in &decision.requests {
            if let Some(r) = self
                .cluster
                .requests
                .iter_mut()
                .find(|r| r.kind == update.kind && r.name == update.name)
            {
                r.status = update.status.clone();
            }
        }
        for action in &decision.actions {
            self.apply(action);
        }
        // The removal tests only that the finalizer is still there.
        if !decision.finalizer && holds(read) && holds(&self.release) {
            self.release.metadata.finalizers = None;
            self.store();
        }
        self.log.push(decision.clone());
        Carried::Done(Box::new(decision))
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
        // The request statuses are written with the release's.
        for update in &decision.requests {
            if let Some(r) = self
                .cluster
                .requests
                .iter_mut()
                .find(|r| r.kind == update.kind && r.name == update.name)
            {
                r.status = update.status.clone();
            }
        }
        self.release.status = Some(decision.status.clone());
        self.release.metadata.finalizers = decision.finalizer.then(|| vec![FINALIZER.to_string()]);
        self.log.push(decision.clone());
        decision
    }

    pub fn status(&self) -> &AppReleaseStatus {
        self.release.status.as_ref().expect("status written")
    }

    /// The status as last written, or an empty one before the first decision.
    pub fn status_or_default(&self) -> AppReleaseStatus {
        self.release.status.clone().unwrap_or_default()
    }

    /// The status of the request `name`, as last written.
    pub fn request_status(&self, name: &str) -> &RequestStatus {
        &self
            .cluster
            .requests
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no request {name}"))
            .status
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
            Action::SetImages {
                deployment, images, ..
            } => {
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
                    template_changed(d);
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
                ..
            } => {
                if let Some(d) = self.cluster.deployments.get_mut(deployment) {
                    d.replicas = *replicas;
                    d.generation += 1;
                }
            }
            Action::DeletePod { pod, uid } => {
                for d in self.cluster.deployments.values_mut() {
                    d.pods.retain(|p| !(p.name == *pod && p.uid == *uid));
                }
            }
        }
    }

    /// Someone else sets the image of container `index` of a target (a person, a GitOps tool).
    pub fn set_image(&mut self, target: &str, index: usize, image: &str) {
        let d = self.cluster.deployments.get_mut(target).unwrap();
        d.containers[index].1 = image.into();
        template_changed(d);
    }

    /// Lets the workload controllers catch up: good images become available, bad ones stall
    /// (Deployments with ProgressDeadlineExceeded; StatefulSets as `settle_stateful_set` says).
    pub fn settle_deployments(&mut self) {
        for d in self.cluster.deployments.values_mut() {
            d.observed_generation = d.generation;
            let bad = d.containers.iter().any(|(_, image)| {
                self.faults.bad_images.contains(image)
                    || self
                        .faults
                        .bad_tags
                        .iter()
                        .any(|t| crate::api::image::tag(image) == Some(t.as_str()))
            });
            if d.kind == TargetKind::StatefulSet {
                settle_stateful_set(d, bad);
            } else if bad {
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
        self.let_the_pods_go();
        assert_eq!(self.run(5).as_deref(), Some("meet-restore-1"));
    }

    /// The targets' controllers catch up with a scale to zero: no pod of any target is left.
    pub fn let_the_pods_go(&mut self) {
        self.settle_deployments();
        self.cluster
            .deployments
            .values_mut()
            .for_each(|d| d.status_replicas = 0);
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

    /// Runs the upgrade to rest with the cluster always catching up: each Job that waits ends
    /// as the next of `outcomes` says (true: succeeded; past the end: succeeded; a backup
    /// reports what it wrote). At most 12 Jobs, `limit` steps before each.
    pub fn finish_every_job(&mut self, outcomes: Vec<bool>, limit: usize) {
        let mut outcomes = outcomes.into_iter();
        for _ in 0..12 {
            let Some(job) = self.run(limit) else {
                return;
            };
            let outcome = if outcomes.next().unwrap_or(true) {
                JobOutcome::Succeeded
            } else {
                JobOutcome::Failed("x".into())
            };
            let report = job.contains("-backup-").then(|| preset_report(&job));
            self.finish_job(&job, outcome, report.as_deref());
        }
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

/// A template change, as the API server and the workload's controller record it.
fn template_changed(d: &mut DeploymentState) {
    d.generation += 1;
    d.updated_replicas = 0;
    d.deadline_exceeded = false;
    if d.kind == TargetKind::StatefulSet {
        // The revision names the template, as a ControllerRevision does: going back to an
        // earlier template gives back its revision.
        let images: Vec<&str> = d.containers.iter().map(|(_, i)| i.as_str()).collect();
        d.update_revision = format!("rev-{}", images.join(","));
        d.updated_replicas = d
            .pods
            .iter()
            .filter(|p| p.revision == d.update_revision)
            .count() as i32;
    }
}

/// The StatefulSet controller with OrderedReady pod management, as far as the planner can
/// tell: a pod that is not ready and not on the update revision blocks everything until it
/// is deleted (the controller waits for it forever); otherwise pods are replaced from the
/// highest ordinal down, and a pod of a bad template never becomes ready, which blocks the
/// ones below it. The current revision catches up once every replica is updated and ready.
/// A scale to zero removes every pod, stuck or not (the first unhealthy one may go).
fn settle_stateful_set(d: &mut DeploymentState, bad: bool) {
    let name = d
        .pods
        .first()
        .and_then(|p| p.name.rsplit_once('-'))
        .map_or("pod".to_string(), |(n, _)| n.to_string());
    let replicas = usize::try_from(d.replicas).unwrap_or(0);
    let blocked = d
        .pods
        .iter()
        .any(|p| !p.ready && p.revision != d.update_revision);
    if replicas == 0 {
        d.pods.clear();
    } else if !blocked {
        let generation = d.generation;
        let pod = |i: usize, revision: &str, ready: bool| PodState {
            name: format!("{name}-{i}"),
            uid: format!("{name}-{i}-uid-{generation}"),
            revision: revision.to_string(),
            ready,
        };
        let mut pods: Vec<PodState> = (0..replicas)
            .map(|i| {
                d.pods
                    .iter()
                    .find(|p| p.name == format!("{name}-{i}"))
                    .cloned()
                    .unwrap_or_else(|| pod(i, &d.update_revision, !bad))
            })
            .collect();
        // From the highest ordinal down, each old pod is replaced; a new one that does not
        // become ready stops the update there.
        for i in (0..replicas).rev() {
            if pods[i].revision != d.update_revision {
                pods[i] = pod(i, &d.update_revision, !bad);
            }
            if !pods[i].ready {
                break;
            }
        }
        d.pods = pods;
    }
    let count = |f: &dyn Fn(&PodState) -> bool| d.pods.iter().filter(|p| f(p)).count() as i32;
    d.status_replicas = d.pods.len() as i32;
    d.updated_replicas = count(&|p| p.revision == d.update_revision);
    d.ready_replicas = count(&|p| p.ready);
    d.available_replicas = d.ready_replicas;
    if d.updated_replicas == d.replicas
        && d.ready_replicas == d.replicas
        && d.status_replicas == d.replicas
    {
        d.current_revision = d.update_revision.clone();
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
