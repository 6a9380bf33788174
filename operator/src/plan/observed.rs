//! What the operator saw in the cluster, as plain data: the input of the planner besides the
//! AppRelease itself. The `k8s` module fills it from its caches.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::{RequestKind, RequestRef, RequestStatus, TargetKind};

/// A snapshot of the objects one AppRelease depends on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The time of the snapshot; deadlines are measured against it.
    pub now: DateTime<Utc>,
    /// The target workloads (Deployments and StatefulSets) that exist, by target name:
    /// validation keeps target names unique across kinds. Each is read as the kind its
    /// target names, so a StatefulSet stands here only for a `statefulSet` target.
    pub deployments: BTreeMap<String, DeploymentState>,
    /// The Jobs the AppRelease owns, by name.
    pub jobs: BTreeMap<String, JobState>,
    /// The other AppReleases of the namespace, for the claims on target Deployments.
    pub peers: Vec<Peer>,
    /// The on-demand backups and restores (`AppReleaseBackup`, `AppReleaseRestore`) that
    /// name this AppRelease.
    pub requests: Vec<Request>,
}

/// An on-demand backup or restore naming the AppRelease.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Backup or Restore.
    pub kind: RequestKind,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its `metadata.generation`.
    pub generation: i64,
    /// Its `metadata.creationTimestamp`: requests run oldest first.
    pub created: Option<DateTime<Utc>>,
    /// Restore: the backup id to restore.
    pub backup: Option<String>,
    /// Restore: the components to restore (empty: all).
    pub components: Vec<String>,
    /// Its status as last written.
    pub status: RequestStatus,
}

impl Request {
    /// How the AppRelease's status refers to it.
    pub fn reference(&self) -> RequestRef {
        RequestRef {
            kind: self.kind,
            name: self.name.clone(),
            uid: self.uid.clone(),
            components: self.components.clone(),
        }
    }

    /// Whether it is over (its status says Succeeded or Failed).
    pub fn is_final(&self) -> bool {
        self.status.phase.is_some_and(|p| p.is_final())
    }
}

/// Another AppRelease of the same namespace: which workloads it targets, and since when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its name.
    pub name: String,
    /// Its `metadata.creationTimestamp`.
    pub created: Option<DateTime<Utc>>,
    /// The workloads it lists in `spec.targets`: (kind, name).
    pub targets: Vec<(TargetKind, String)>,
}

/// What matters of a target workload: a Deployment, or a StatefulSet (`kind`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentState {
    /// Which kind of workload this is; readiness is decided by its kind's rule.
    pub kind: TargetKind,
    /// Containers of the pod template (not init containers), in order: (name, image).
    pub containers: Vec<(String, String)>,
    /// `spec.replicas` (1 when unset, as the API server defaults it).
    pub replicas: i32,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `status.replicas`: pods of any template.
    pub status_replicas: i32,
    /// `status.updatedReplicas`: pods of the current template.
    pub updated_replicas: i32,
    /// `status.availableReplicas`.
    pub available_replicas: i32,
    /// `status.readyReplicas` (read for StatefulSets).
    pub ready_replicas: i32,
    /// StatefulSet `status.currentRevision`: the revision the pods ran before the update
    /// (empty for a Deployment).
    pub current_revision: String,
    /// StatefulSet `status.updateRevision`: the revision of the current pod template.
    pub update_revision: String,
    /// StatefulSet `spec.updateStrategy.type` is `OnDelete`: the controller never replaces
    /// a pod for a new template.
    pub on_delete: bool,
    /// StatefulSet `spec.updateStrategy.rollingUpdate.partition`: pods with a lower ordinal
    /// keep the old template.
    pub partition: i32,
    /// The pods of a StatefulSet (empty for a Deployment): a rollback needs to replace the
    /// ones its controller waits for forever (see `rollback`).
    pub pods: Vec<PodState>,
    /// The Progressing condition says ProgressDeadlineExceeded.
    pub deadline_exceeded: bool,
    /// `spec.paused`: the Deployment controller rolls nothing out until it is unpaused.
    pub paused: bool,
    /// Per container, the field managers other than the operator that own its image field
    /// (from `metadata.managedFields`), most recent first: who changed an image.
    pub image_managers: BTreeMap<String, Vec<String>>,
    /// Per container, when a field manager other than the operator last wrote its image
    /// field (the API server's managedFields time, in whole seconds), when known.
    pub image_changed: BTreeMap<String, DateTime<Utc>>,
    /// The container the pod template's `kubectl.kubernetes.io/default-container`
    /// annotation names, if any.
    pub default_container: Option<String>,
    /// The HorizontalPodAutoscaler whose `scaleTargetRef` names this Deployment, if any
    /// (read only for releases that scale their targets: `Offline`).
    pub autoscaler: Option<String>,
}

impl DeploymentState {
    /// The image of a container, if the template has that container.
    pub fn image(&self, container: &str) -> Option<&str> {
        self.containers
            .iter()
            .find(|(name, _)| name == container)
            .map(|(_, image)| image.as_str())
    }

    /// Fully rolled out. A Deployment the way `kubectl rollout status` decides it: the
    /// controller has seen the current template, every replica runs it, no old pod is left,
    /// and all are available. A StatefulSet: the controller has seen the current template,
    /// finished the update (`updateRevision == currentRevision`: it sets the current
    /// revision only once every replica is updated and ready), and every replica runs the
    /// update revision and is ready.
    pub fn is_rolled_out(&self) -> bool {
        match self.kind {
            TargetKind::Deployment => {
                self.observed_generation >= self.generation
                    && self.updated_replicas >= self.replicas
                    && self.status_replicas <= self.updated_replicas
                    && self.available_replicas >= self.replicas
            }
            TargetKind::StatefulSet => {
                self.observed_generation >= self.generation
                    && !self.update_revision.is_empty()
                    && self.update_revision == self.current_revision
                    && self.updated_replicas == self.replicas
                    && self.ready_replicas == self.replicas
                    && self.status_replicas == self.replicas
            }
        }
    }

    /// Why a rollout of a new template would never finish, for a StatefulSet whose update
    /// strategy leaves pods on the old template: `OnDelete`, or a partition above zero.
    pub fn unsupported_strategy(&self) -> Option<String> {
        if self.kind != TargetKind::StatefulSet {
            return None;
        }
        if self.on_delete {
            return Some(
                "its updateStrategy is OnDelete: the StatefulSet controller replaces no pod for a new template, so the rollout would never finish".into(),
            );
        }
        (self.partition > 0).then(|| {
            format!(
                "its updateStrategy.rollingUpdate.partition is {}: pods with a lower ordinal keep the old template, so the rollout would never finish",
                self.partition
            )
        })
    }

    /// The StatefulSet pods its controller would wait for forever after a template change:
    /// not ready and not on the update revision. With the default OrderedReady pod
    /// management the controller neither goes on nor replaces such a pod, so rolling back
    /// a failed update needs them deleted (the StatefulSet documentation's "forced
    /// rollback"); the controller then recreates them from the reverted template.
    pub fn stuck_pods(&self) -> Vec<&PodState> {
        if self.kind != TargetKind::StatefulSet
            || self.observed_generation < self.generation
            || self.update_revision.is_empty()
        {
            return Vec::new();
        }
        self.pods
            .iter()
            .filter(|p| !p.ready && p.revision != self.update_revision)
            .collect()
    }

    /// No pod is left (after a scale to zero).
    pub fn is_scaled_down(&self) -> bool {
        self.observed_generation >= self.generation && self.status_replicas == 0
    }

    /// A short account for messages: "1/3 updated, 0/3 available" (for a StatefulSet
    /// "1/3 updated, 2/3 ready, currentRevision worker-7c9b2, updateRevision worker-5d4f8").
    pub fn progress(&self) -> String {
        match self.kind {
            TargetKind::Deployment => format!(
                "{}/{} updated, {}/{} available",
                self.updated_replicas, self.replicas, self.available_replicas, self.replicas
            ),
            TargetKind::StatefulSet => format!(
                "{}/{} updated, {}/{} ready, currentRevision {}, updateRevision {}",
                self.updated_replicas,
                self.replicas,
                self.ready_replicas,
                self.replicas,
                self.current_revision,
                self.update_revision
            ),
        }
    }
}

/// A pod of a StatefulSet target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    /// Its name.
    pub name: String,
    /// Its uid: a deletion names it, so that the pod the controller recreates under the
    /// same name is never deleted by mistake.
    pub uid: String,
    /// Its `controller-revision-hash` label: the StatefulSet revision it runs.
    pub revision: String,
    /// Running with the Ready condition true.
    pub ready: bool,
}

/// What matters of a Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// Where the Job is.
    pub outcome: JobOutcome,
    /// The termination message of its (last) pod's first container, if any.
    pub termination_message: Option<String>,
    /// When it finished, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// It carries the AppRelease's owner reference (data Jobs get it once finished).
    pub owned: bool,
}

/// Where a Job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Pending or running.
    Running,
    /// Complete.
    Succeeded,
    /// Failed, with the Job condition's reason and message.
    Failed(String),
}
