//! On-demand backups and restores: `AppReleaseBackup` asks for a backup of an AppRelease now,
//! `AppReleaseRestore` for the restore of one backup of its inventory, as CloudNativePG's
//! `Backup` and Velero's `Restore` do. The AppRelease's own controller carries them out, one
//! at a time and never during an upgrade, and writes their status.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// A backup of an AppRelease, taken now (when no upgrade runs) with the AppRelease's own
/// `spec.backup`, kept in its inventory and pruned by its retention like any other.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apprelease.io",
    version = "v1alpha1",
    kind = "AppReleaseBackup",
    doc = "A request to back up an AppRelease now, with its spec.backup. The backup joins the AppRelease's inventory (status.backups) and obeys its retention.",
    namespaced,
    status = "RequestStatus",
    shortname = "aprbackup",
    category = "releases",
    printcolumn(name = "Release", type_ = "string", json_path = ".spec.release"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".status.backup"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1),
    validation = Rule::new("self.spec == oldSelf.spec").message("a request is not edited: create a new one")
)]
#[serde(rename_all = "camelCase")]
pub struct AppReleaseBackupSpec {
    /// The AppRelease to back up, in this namespace.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')")
        .message("release must be an AppRelease name"))]
    #[schemars(length(max = 253))]
    pub release: String,
}

/// The restore of one backup of an AppRelease's inventory: the targets are scaled to zero,
/// the backup (every component, or those listed) is restored, and the targets come back with
/// their replica counts and the images recorded with the backup.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apprelease.io",
    version = "v1alpha1",
    kind = "AppReleaseRestore",
    doc = "A request to restore one backup of an AppRelease's inventory: scale the targets to zero, restore, bring back the replicas and the images recorded with that backup.",
    namespaced,
    status = "RequestStatus",
    shortname = "aprrestore",
    category = "releases",
    printcolumn(name = "Release", type_ = "string", json_path = ".spec.release"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backup"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1),
    validation = Rule::new("self.spec == oldSelf.spec").message("a request is not edited: create a new one")
)]
#[serde(rename_all = "camelCase")]
pub struct AppReleaseRestoreSpec {
    /// The AppRelease whose backup is restored, in this namespace.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')")
        .message("release must be an AppRelease name"))]
    #[schemars(length(max = 253))]
    pub release: String,

    /// The backup's id, as in the AppRelease's `status.backups`.
    #[schemars(length(min = 1, max = 253))]
    pub backup: String,

    /// The components of a backup set to restore, in the set's order whatever the order
    /// here. Empty (the default): all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub components: Vec<String>,
}

/// Where a request is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RequestPhase {
    /// Waiting: an upgrade or another request runs first.
    Pending,
    /// Being carried out.
    Running,
    /// Done.
    Succeeded,
    /// Refused or failed; see the Ready condition. A finished request is never run again.
    Failed,
}

impl RequestPhase {
    /// Whether the request is over.
    pub fn is_final(self) -> bool {
        matches!(self, RequestPhase::Succeeded | RequestPhase::Failed)
    }
}

/// Observed state of an on-demand backup or restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RequestPhase>,
    /// The backup taken (AppReleaseBackup) or restored (AppReleaseRestore), by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The version the backup holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The AppRelease's attempt serial that carried the request out (it names its Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, as on AppRelease (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What the two request kinds share, for the code that treats them alike.
pub trait ReleaseRequest {
    /// The AppRelease it names.
    fn release(&self) -> &str;
    /// Its status, if written.
    fn request_status(&self) -> Option<&RequestStatus>;
}

impl ReleaseRequest for AppReleaseBackup {
    fn release(&self) -> &str {
        &self.spec.release
    }
    fn request_status(&self) -> Option<&RequestStatus> {
        self.status.as_ref()
    }
}

impl ReleaseRequest for AppReleaseRestore {
    fn release(&self) -> &str {
        &self.spec.release
    }
    fn request_status(&self) -> Option<&RequestStatus> {
        self.status.as_ref()
    }
}
