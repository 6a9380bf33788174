//! The watch caches a reconcile reads from instead of the API server: the target workloads,
//! the operator's Jobs and their pods, the on-demand requests, and the AppReleases' names by
//! target (the AppRelease objects themselves are in kube-runtime's store,
//! which the controller needs). Objects are kept trimmed (`trim`), and indexed (`index`).
//!
//! Why a cached read cannot make the operator act twice:
//! - every decision that acts is conditioned on the resourceVersion of the AppRelease it was
//!   taken from (`k8s::act`): a decision from a stale copy of the AppRelease, or one taken
//!   twice from the same copy, is refused by the API server before it does anything;
//! - a decision from caches that do not show the operator's own writes yet (a Job it just
//!   created, an image it just applied) is not taken at all (`expectations`);
//! - and what is left is idempotent: Jobs have derived names and are adopted when they exist
//!   already, images are server-side applied, pods are deleted by uid.
//!
//! A cache that lags something else (a person's change, a controller's status) only delays a
//! decision the watch event will bring, as a fresh read a moment earlier would have.

pub mod expectations;
pub mod index;
pub mod trim;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::api::{AppRelease, AppReleaseBackup, AppReleaseRestore, TargetKind};
use crate::jobs::build::RELEASE_LABEL;

pub use expectations::{Expectations, Expected};
pub use index::Index;

/// An AppRelease as the watch delivers it (see `controller::Guarded`).
type Guarded = kube::core::error_boundary::DeserializeGuard<AppRelease>;

/// Every cache the reconciles read.
pub struct Caches {
    /// Deployments, trimmed.
    pub deployments: Index<Deployment>,
    /// StatefulSets, trimmed.
    pub stateful_sets: Index<StatefulSet>,
    /// The operator's Jobs, trimmed, by the release label.
    pub jobs: Index<Job>,
    /// The pods of the operator's Jobs, trimmed, by the release label.
    pub pods: Index<Pod>,
    /// On-demand backups, by the release they name.
    pub backups: Index<AppReleaseBackup>,
    /// On-demand restores, by the release they name.
    pub restores: Index<AppReleaseRestore>,
    /// The AppReleases' names, by target.
    pub releases: Index<Guarded>,
    /// The operator's writes the caches do not show yet.
    pub expectations: Expectations,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            deployments: Index::new(|_| Vec::new()),
            stateful_sets: Index::new(|_| Vec::new()),
            jobs: Index::new(release_label),
            pods: Index::new(release_label),
            backups: Index::new(|b: &AppReleaseBackup| vec![b.spec.release.clone()]),
            restores: Index::new(|r: &AppReleaseRestore| vec![r.spec.release.clone()]),
            releases: Index::names_only(release_keys),
            expectations: Expectations::default(),
        }
    }
}

impl Caches {
    /// Returns once every cache but the AppReleases' has its first list: before that, a
    /// reconcile would take a missing workload or Job for one that does not exist.
    pub async fn wait_synced(&self) {
        self.deployments.wait_synced().await;
        self.stateful_sets.wait_synced().await;
        self.jobs.wait_synced().await;
        self.pods.wait_synced().await;
        self.backups.wait_synced().await;
        self.restores.wait_synced().await;
    }

    /// Whether the caches of `namespace` show the write `what`.
    pub fn shows(&self, namespace: &str, what: &Expected) -> bool {
        match what {
            Expected::Job { name } => self.jobs.get(namespace, name).is_some(),
            Expected::Generation {
                kind,
                name,
                generation,
            } => {
                let seen = match kind {
                    TargetKind::Deployment => self
                        .deployments
                        .get(namespace, name)
                        .and_then(|d| d.metadata.generation),
                    TargetKind::StatefulSet => self
                        .stateful_sets
                        .get(namespace, name)
                        .and_then(|s| s.metadata.generation),
                };
                // Gone meanwhile: nothing left to wait for.
                seen.is_none_or(|seen| seen >= *generation)
            }
        }
    }

    /// The names of the AppReleases of `namespace` that list the workload among their targets.
    pub fn releases_targeting(&self, namespace: &str, kind: TargetKind, name: &str) -> Vec<String> {
        self.releases.names(namespace, &target_key(kind, name))
    }
}

fn release_label<K: ResourceExt>(object: &K) -> Vec<String> {
    object
        .labels()
        .get(RELEASE_LABEL)
        .cloned()
        .into_iter()
        .collect()
}

/// A valid AppRelease under each of its targets.
fn release_keys(guarded: &Guarded) -> Vec<String> {
    let targets = guarded.0.as_ref().map(|r| r.spec.targets.as_slice());
    targets
        .unwrap_or_default()
        .iter()
        .map(|t| target_key(t.kind(), t.name()))
        .collect()
}

fn target_key(kind: TargetKind, name: &str) -> String {
    format!("{kind}/{name}")
}
