//! `AppRelease.status`: everything the operator knows and did, written only through the
//! status subresource.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// Observed state of an AppRelease.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppReleaseStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The last version that became ready in every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,

    /// The version of the most recent upgrade attempt, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_version: Option<String>,

    /// How many upgrades this AppRelease has started; numbers the next one and names its Jobs.
    #[serde(default)]
    pub attempts: i64,

    /// The upgrade (or on-demand backup or restore, see `request`) in flight. It is written
    /// before each action it describes, so that an operator restarted at any point knows what
    /// it was doing. Absent when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,

    /// A version that failed and will not be tried again until the spec changes or the retry
    /// annotation gets a new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedVersion>,

    /// Successful backups, newest first, at most `spec.backup.keepLast` (plus any that an
    /// upgrade still depends on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupRecord>,

    /// Component backups of backup sets that failed (another component failed): not
    /// backups, since a set counts only whole, but files on the claims. The next set that
    /// succeeds prunes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete_backups: Vec<String>,

    /// Finished upgrades, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,

    /// Containers of targets without an explicit `containers` list that do not carry the
    /// release's version (sidecars, proxies, exporters): the operator leaves them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untouched_containers: Vec<ContainerImage>,

    /// Images someone else changed while the release was at rest, and what the operator did
    /// about it. Absent when nothing drifted recently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,

    /// While a new upgrade waits for a maintenance window (Ready reason AwaitingWindow):
    /// when the next window opens (RFC 3339, UTC). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<DateTime<Utc>>,

    /// Ready, Reconciling and Stalled, following the Kubernetes API conventions (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The upgrade in flight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    /// The version running before this upgrade (empty when it could not be told).
    pub from: String,
    /// The version being installed.
    pub to: String,
    /// Serial number of this attempt among all the AppRelease's upgrades.
    pub attempt: i64,
    /// What the operator is doing now.
    pub step: Step,
    /// When the upgrade started.
    pub started_at: DateTime<Utc>,
    /// When the current step (or the current target of a rollout) started; deadlines count
    /// from here.
    pub step_started_at: DateTime<Utc>,
    /// During RollingOut: how many targets, in spec order, are already updated and available.
    #[serde(default)]
    pub targets_done: i32,
    /// The backup this upgrade depends on (its id), once taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Every image this upgrade changes, as it was before. A rollback puts back exactly these.
    #[serde(default)]
    pub previous_images: Vec<ContainerImage>,
    /// Replica counts recorded before scaling the targets (Deployments and StatefulSets) to
    /// zero (an offline upgrade, or a restore); they come back with exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_replicas: Vec<DeploymentReplicas>,
    /// Jobs of this upgrade that the operator has seen exist. A Job listed here is never
    /// created again, even if it disappears.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs_seen: Vec<String>,
    /// Backup files (by id: a single backup's id, or a set component's Job) this upgrade's
    /// backup Jobs were told to prune after their own success.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prune: Vec<String>,
    /// Whether a migration of this upgrade (or of the one it continues after `spec.version`
    /// moved on) may have run: set before its Job is created. A down-migration runs only
    /// then. Absent in a status written by an older operator, so read as true there.
    #[serde(default = "may_have_migrated")]
    pub migration_started: bool,
    /// Components of a backup set already restored during this rollback, in the order they
    /// ran: a restore that succeeded is never run again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored_components: Vec<String>,
    /// Why the upgrade is being rolled back, once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Set when this is not an upgrade but an on-demand backup or restore
    /// (`AppReleaseBackup`, `AppReleaseRestore`): which request it carries out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRef>,
}

/// An on-demand backup or restore, as the AppRelease's status refers to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestRef {
    /// Backup or Restore.
    pub kind: RequestKind,
    /// The request's name, in the AppRelease's namespace.
    pub name: String,
    /// Its uid: a request deleted and created again under the same name is another one.
    pub uid: String,
    /// Restore: the components to restore (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
}

/// The kinds of on-demand request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RequestKind {
    /// An `AppReleaseBackup`.
    Backup,
    /// An `AppReleaseRestore`.
    Restore,
}

fn may_have_migrated() -> bool {
    true
}

/// The steps of an upgrade, in the order they can happen.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Step {
    /// Offline upgrade: the targets are scaled to zero; nothing runs before the backup.
    Stopping,
    /// The backup Job runs.
    BackingUp,
    /// The migration Job runs.
    Migrating,
    /// The targets get the new images, one after the other.
    RollingOut,
    /// Offline upgrade: the targets, on the new images, come back with their recorded
    /// replica counts and must become available.
    Starting,
    /// The verification Job runs.
    Verifying,
    /// The down-migration Job runs (rollback with `database: Downgrade`).
    Downgrading,
    /// On-demand restore: check Jobs verify that the backup's files are there and intact,
    /// before anything is changed.
    Checking,
    /// The targets are scaled to zero before a restore (and, in an offline upgrade, before a
    /// down-migration).
    ScalingDown,
    /// The restore Job runs (rollback with `database: Restore`).
    Restoring,
    /// The previous images (and replica counts) are put back.
    RollingBack,
}

impl Step {
    /// The name used in conditions and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Stopping => "Stopping",
            Step::BackingUp => "BackingUp",
            Step::Migrating => "Migrating",
            Step::RollingOut => "RollingOut",
            Step::Starting => "Starting",
            Step::Verifying => "Verifying",
            Step::Downgrading => "Downgrading",
            Step::Checking => "Checking",
            Step::ScalingDown => "ScalingDown",
            Step::Restoring => "Restoring",
            Step::RollingBack => "RollingBack",
        }
    }
}

/// Target images changed by someone else at the current version. The operator puts them
/// back a few times, with growing pauses, then stops and reports it instead of fighting.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// When the operator put drifted images back, newest first (recent ones only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<DateTime<Utc>>,
    /// The drifted images as last found, and who set them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DriftedImage>,
    /// True once the operator stopped putting images back: a human or the GitOps setup must
    /// settle who owns them (see the Ready condition's message).
    #[serde(default)]
    pub stopped: bool,
    /// The generation the repairs were counted for; a new spec starts the count again.
    pub generation: i64,
    /// The retry annotation's value at the time; a new value starts the count again.
    #[serde(default)]
    pub retry: String,
}

/// One image found changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftedImage {
    /// Target name: the Deployment's or the StatefulSet's (target names are unique across
    /// kinds; the field keeps its name for compatibility).
    pub deployment: String,
    /// Container name.
    pub container: String,
    /// The image it ran.
    pub found: String,
    /// The image the release wants there.
    pub wanted: String,
    /// The field manager that owns the image field (from managedFields), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
}

/// One container's image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    /// Target name: the Deployment's or the StatefulSet's (target names are unique across
    /// kinds; the field keeps its name for compatibility).
    pub deployment: String,
    /// Container name.
    pub container: String,
    /// Full image reference.
    pub image: String,
}

/// One target's replica count.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentReplicas {
    /// Target name: the Deployment's or the StatefulSet's (target names are unique across
    /// kinds; the field keeps its name for compatibility).
    pub deployment: String,
    /// `spec.replicas` before the restore.
    pub replicas: i32,
}

/// Why an upgrade failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Machine-readable cause, e.g. MigrationFailed.
    pub reason: String,
    /// What happened, for a human.
    pub message: String,
}

/// A version that is not retried automatically.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedVersion {
    /// The version that failed.
    pub version: String,
    /// The generation whose spec asked for it.
    pub generation: i64,
    /// The retry annotation's value at the time (empty when absent).
    #[serde(default)]
    pub retry: String,
    /// Why it failed: BackupFailed, RolledBack, RollbackFailed, …
    pub reason: String,
    /// What happened and what a human can do.
    pub message: String,
}

/// A successful backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// Backup id, also the backup Job's name.
    pub id: String,
    /// The version that was running when it was taken (the data's version).
    pub version: String,
    /// When the backup Job finished.
    pub taken_at: DateTime<Utc>,
    /// The Job that took it (empty for a backup set: each component has its own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    /// Where the Job says it wrote the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Size in bytes, as reported by the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SHA-256 of the backup, as reported by the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A backup set's components, in spec order, each with its Job's report. Empty for a
    /// single backup. `sizeBytes` above is then their total.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentBackup>,
    /// The images the targets ran when it was taken (the images of `version`): an on-demand
    /// restore of this backup brings them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ContainerImage>,
}

/// One component of a backup set, as its Job reported it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentBackup {
    /// The component's name in `spec.backup.components`.
    pub name: String,
    /// The Job that took it; also the id of its files.
    pub job: String,
    /// Where the Job says it wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Size in bytes, as reported by the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SHA-256, as reported by the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A finished upgrade.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Version before.
    pub from: String,
    /// Version attempted.
    pub to: String,
    /// Serial number of the attempt.
    pub attempt: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub result: UpgradeResult,
    /// Machine-readable cause (Succeeded, BackupFailed, MigrationFailed, …).
    pub reason: String,
    /// What happened, for a human.
    pub message: String,
    /// The backup the upgrade took (or an on-demand request took or restored), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The on-demand backup or restore this entry was, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRef>,
}

/// How an upgrade ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpgradeResult {
    /// The new version runs and is ready.
    Succeeded,
    /// Failed before anything was changed (e.g. the backup failed); nothing to undo.
    Aborted,
    /// Failed and was rolled back; the previous version runs.
    RolledBack,
    /// Failed and the rollback failed too, or automatic rollback is off: a human must act.
    Failed,
    /// Replaced by a newer spec.version before it finished.
    Superseded,
    /// The AppRelease was deleted before it finished.
    Cancelled,
}
