//! What the operator saw in the cluster, as plain data: the input of the planner besides the
//! AppRelease itself. The `k8s` module fills it from its caches.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A snapshot of the objects one AppRelease depends on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The time of the snapshot; deadlines are measured against it.
    pub now: DateTime<Utc>,
    /// The target Deployments that exist, by name.
    pub deployments: BTreeMap<String, DeploymentState>,
    /// The Jobs the AppRelease owns, by name.
    pub jobs: BTreeMap<String, JobState>,
    /// The other AppReleases of the namespace, for the claims on target Deployments.
    pub peers: Vec<Peer>,
}

/// Another AppRelease of the same namespace: which Deployments it targets, and since when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its name.
    pub name: String,
    /// Its `metadata.creationTimestamp`.
    pub created: Option<DateTime<Utc>>,
    /// The Deployments it lists in `spec.targets`.
    pub deployments: Vec<String>,
}

/// What matters of a Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentState {
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
    /// The Progressing condition says ProgressDeadlineExceeded.
    pub deadline_exceeded: bool,
    /// `spec.paused`: the Deployment controller rolls nothing out until it is unpaused.
    pub paused: bool,
    /// Per container, the field managers other than the operator that own its image field
    /// (from `metadata.managedFields`), most recent first: who changed an image.
    pub image_managers: BTreeMap<String, Vec<String>>,
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

    /// Fully rolled out, the way `kubectl rollout status` decides it: the controller has seen
    /// the current template, every replica runs it, no old pod is left, and all are available.
    pub fn is_rolled_out(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated_replicas >= self.replicas
            && self.status_replicas <= self.updated_replicas
            && self.available_replicas >= self.replicas
    }

    /// No pod is left (after a scale to zero).
    pub fn is_scaled_down(&self) -> bool {
        self.observed_generation >= self.generation && self.status_replicas == 0
    }

    /// A short account for messages: "1/3 updated, 0/3 available".
    pub fn progress(&self) -> String {
        format!(
            "{}/{} updated, {}/{} available",
            self.updated_replicas, self.replicas, self.available_replicas, self.replicas
        )
    }
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
