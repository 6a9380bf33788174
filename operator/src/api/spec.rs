//! `AppRelease.spec`: what the user declares. The operator never writes it (invariant 4).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, json_schema};
use serde::{Deserialize, Serialize};

use super::notifications::NotificationsSpec;
use super::presets::BackupPreset;
use super::status::AppReleaseStatus;

/// An application release: the version that should run in a set of Deployments and
/// StatefulSets, and how to get there safely (backup, migrations, rollout, verification,
/// rollback).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apprelease.io",
    version = "v1alpha1",
    kind = "AppRelease",
    doc = "An AppRelease declares the version a set of Deployments and StatefulSets should run and how to get there safely: backup, migrations, rollout, verification, and automatic rollback.",
    namespaced,
    status = "AppReleaseStatus",
    shortname = "apr",
    category = "releases",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.version", description = "The version that should run"),
    printcolumn(name = "Current", type_ = "string", json_path = ".status.currentVersion", description = "The last version that became ready"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    // A string, not a date: a date column shows the age of a time in the past and
    // `<invalid>` for one in the future.
    printcolumn(name = "Next Window", type_ = "string", json_path = ".status.nextWindow", description = "When the next maintenance window opens, while an upgrade waits for one"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1),
    printcolumn(name = "Last Backup", type_ = "date", json_path = ".status.backups[0].takenAt", priority = 1),
    validation = Rule::new("self.spec.rollback.database != 'Downgrade' || has(self.spec.rollback.downgrade)")
        .message("rollback.database Downgrade needs rollback.downgrade.template"),
    validation = Rule::new("self.spec.rollback.database != 'Restore' || has(self.spec.backup)")
        .message("rollback.database Restore needs a backup to restore from"),
    validation = Rule::new("self.spec.rollback.database != 'Restore' || has(self.spec.rollback.restore) || (has(self.spec.backup) && (has(self.spec.backup.preset) || has(self.spec.backup.components)))")
        .message("rollback.database Restore needs rollback.restore.template, unless the backup is a preset (which knows how to restore)"),
    validation = Rule::new("self.spec.rollback.database != 'Restore' || !has(self.spec.backup) || !has(self.spec.backup.components) || self.spec.backup.components.all(c, has(c.preset) || has(c.restore))")
        .message("rollback.database Restore needs a restore template in every template component of the backup set"),
    validation = Rule::new("!has(self.spec.rollback.restore) || !has(self.spec.backup) || !has(self.spec.backup.components)")
        .message("rollback.restore is for a single backup: in a backup set, each template component has its own restore")
)]
#[serde(rename_all = "camelCase")]
pub struct AppReleaseSpec {
    /// The version that should run. It becomes the image tag of every target container, so it
    /// follows the container-tag grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[x_kube(validation = version_rule())]
    #[schemars(length(max = 128))]
    pub version: String,

    /// The workloads (Deployments or StatefulSets) that carry the version, updated in this
    /// order. If one fails, all go back together.
    /// At most 64: the bounds (and those of the strings below) keep the estimated cost of the
    /// CEL rules inside the API server's budget, which refuses the whole CRD otherwise.
    #[x_kube(validation = Rule::new("size(self) > 0").message("at least one target is needed"))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, (has(b.deployment) ? b.deployment : b.statefulSet) == (has(a.deployment) ? a.deployment : a.statefulSet)))")
        .message("each target name may be listed once, whatever its kind"))]
    #[schemars(length(max = 64))]
    pub targets: Vec<Target>,

    /// A backup taken before anything is changed. Without it, upgrades run without a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// A migration Job, run once per upgrade with the new version's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSpec>,

    /// How the new images are rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// An optional smoke-test Job run after the rollout; its failure rolls the upgrade back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,

    /// What happens when an upgrade fails after something was changed.
    #[serde(default)]
    pub rollback: RollbackSpec,

    /// When upgrades may start. Empty (the default): at any time. Otherwise a new upgrade
    /// starts only while one of these windows is open; until then Ready is False with reason
    /// AwaitingWindow, saying when the next one opens (also in status.nextWindow). An upgrade
    /// still running when its window closes is never stopped halfway: it finishes or rolls
    /// back. Repairs of drifted images are not upgrades and do not wait. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub maintenance_windows: Vec<MaintenanceWindow>,

    /// When true, no new upgrade starts. An upgrade already in flight is finished or rolled
    /// back first, because stopping halfway would leave the targets on mixed versions.
    #[serde(default)]
    pub suspend: bool,

    /// Who hears about upgrades: a webhook that receives a JSON message when an upgrade
    /// starts, succeeds, fails, is rolled back, or its rollback fails. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,
    /// `Automatic` (the default): an upgrade starts as soon as `version` changes. `Manual`:
    /// the upgrade to a version waits (Ready=False, reason `AwaitingApproval`) until the
    /// annotation `apprelease.io/approve` names that version; an approval of another version
    /// approves nothing. Going back to the version that runs needs no approval.
    #[serde(default)]
    pub approval: Approval,

    /// What a `version` older than the one that runs means. `Refuse` (the default): nothing
    /// is changed and the release is Stalled with reason `DowngradeRefused`, because the
    /// older version's migrations run forward against a schema they do not know. `Allow`: it
    /// is installed like an upgrade (backup, the older image's migration, rollout), for
    /// applications whose older versions run on the newer schema. Versions that cannot be
    /// ordered (not dotted numbers) are never taken for downgrades. The automatic rollback
    /// of a failed upgrade is not a downgrade and is never refused.
    #[serde(default)]
    pub downgrade: DowngradePolicy,
}

/// Whether `spec.version` may go back to an older version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DowngradePolicy {
    /// A downgrade by spec changes nothing and says why.
    #[default]
    Refuse,
    /// A downgrade by spec is installed like an upgrade.
    Allow,
}

/// Who lets an upgrade start.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Approval {
    /// The operator, as soon as `spec.version` changes.
    #[default]
    Automatic,
    /// A human, by annotating the AppRelease with the version to install.
    Manual,
}

/// A maintenance window: it opens each time `schedule` fires, read in `timeZone`, and stays
/// open for `duration`. Example: `{schedule: "0 4 * * *", duration: 2h, timeZone:
/// Europe/Berlin}` is 04:00 to 06:00 Berlin time, every day.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// When the window opens: a cron schedule of five fields, minute hour day-of-month month
    /// day-of-week, e.g. `0 4 * * *` (04:00 every day) or `30 22 * * FRI` (Fridays at
    /// 22:30); `@daily` and `@weekly` work too. When both the day of month and the day of
    /// week are restricted, a day that matches either counts, as in cron. Across
    /// daylight-saving changes it behaves like cron: a time the clock skips opens the window
    /// at the first moment after the jump (02:30 on the spring-forward night opens at 03:00),
    /// and a time the clock repeats opens it once, the first time.
    #[schemars(length(max = 128))]
    pub schedule: String,

    /// How long the window stays open, e.g. `2h` or `45m`. This is elapsed time: a window
    /// that spans a daylight-saving change closes exactly this long after it opened.
    #[x_kube(validation = duration_rule())]
    #[schemars(length(max = 32))]
    pub duration: String,

    /// The time zone the schedule is read in, by its IANA name, e.g. `Europe/Berlin` or
    /// `America/New_York`. Default: `UTC`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(max = 64))]
    pub time_zone: String,
}

/// A workload that carries the release's version: a Deployment or a StatefulSet, named by
/// exactly one of `deployment` and `statefulSet`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.deployment) != has(self.statefulSet)")
    .message("a target names exactly one of deployment and statefulSet"))]
pub struct Target {
    /// Name of the Deployment, in the AppRelease's namespace. Readiness: every replica runs
    /// the new template and is available, as `kubectl rollout status` decides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$') && size(self) <= 253")
        .message("deployment must be a Kubernetes object name"))]
    #[schemars(length(max = 253))]
    pub deployment: Option<String>,

    /// Name of the StatefulSet, in the AppRelease's namespace, instead of a Deployment.
    /// Readiness: `status.updateRevision == status.currentRevision`, every replica updated
    /// and ready, `observedGeneration` caught up. It must use the RollingUpdate strategy
    /// without a partition: with `OnDelete` (or a partition above zero) the StatefulSet
    /// controller never replaces the pods, so the operator refuses to upgrade it
    /// (`UnsupportedUpdateStrategy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$') && size(self) <= 253")
        .message("statefulSet must be a Kubernetes object name"))]
    #[schemars(length(max = 253))]
    pub stateful_set: Option<String>,

    /// Containers of the pod template whose image carries the version. Default: all of them
    /// (init containers are never changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<String>>,

    /// Image repository, without tag or digest, for the selected containers. Default: the
    /// repository each container runs now. The tag is always `spec.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.contains('@') && !self.substring(self.lastIndexOf('/') + 1).contains(':')")
        .message("image is a repository: leave out the tag and the digest, the tag is spec.version"))]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
}

/// The kind of workload a target names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// An apps/v1 Deployment.
    #[default]
    Deployment,
    /// An apps/v1 StatefulSet.
    StatefulSet,
}

impl TargetKind {
    /// The `kind` of the object, as in its manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Target {
    /// A target naming a Deployment, every container selected by default.
    pub fn deployment(name: impl Into<String>) -> Self {
        Self {
            deployment: Some(name.into()),
            ..Self::default()
        }
    }

    /// A target naming a StatefulSet, every container selected by default.
    pub fn stateful_set(name: impl Into<String>) -> Self {
        Self {
            stateful_set: Some(name.into()),
            ..Self::default()
        }
    }

    /// The workload's name (the Deployment's, else the StatefulSet's; validation makes sure
    /// exactly one is given).
    pub fn name(&self) -> &str {
        self.deployment
            .as_deref()
            .or(self.stateful_set.as_deref())
            .unwrap_or_default()
    }

    /// The workload's kind.
    pub fn kind(&self) -> TargetKind {
        if self.deployment.is_none() && self.stateful_set.is_some() {
            TargetKind::StatefulSet
        } else {
            TargetKind::Deployment
        }
    }
}

/// The backup taken before an upgrade changes anything: a hand-written pod template, a
/// preset, or a set of named components (each a template or a preset), exactly one of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.template) ? 1 : 0) + (has(self.preset) ? 1 : 0) + (has(self.components) ? 1 : 0) == 1")
    .message("backup needs exactly one of template, preset and components"))]
pub struct BackupSpec {
    /// Pod template of the backup Job. Its containers receive the upgrade in environment
    /// variables (APPRELEASE_BACKUP_ID, APPRELEASE_FROM_VERSION, …) and report what they
    /// wrote as JSON in their termination message: `{"location", "sizeBytes", "sha256"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub template: Option<PodTemplate>,

    /// A ready-made backup (and restore) Job instead of a template: `postgres`, `mysql`,
    /// `redis`, `mongodb` or `volume`. A preset backup counts only when its Job reports
    /// location, size and checksum; with `rollback.database: Restore` the same preset restores
    /// it, so no restore template is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<BackupPreset>,

    /// A backup set: several components backed up together (the database, the cache, the
    /// uploads volume, …), each by its own Job, all started at once. The set counts only when
    /// every component's Job succeeded and reported location, size and checksum; if one
    /// fails, the set fails and what the others wrote is pruned by the next set that
    /// succeeds. A rollback with `database: Restore` restores every component, in this
    /// order, one after the other. At most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("components needs at least one component"))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))")
        .message("each component name may be listed once"))]
    #[schemars(length(max = 8))]
    pub components: Vec<BackupComponent>,

    /// How many successful backups to keep. Older ones are pruned, except one that an upgrade
    /// depends on.
    #[serde(default = "default_keep_last")]
    #[x_kube(validation = Rule::new("self >= 1").message("keepLast must be at least 1"))]
    pub keep_last: i32,

    /// Backups older than this are pruned as well, e.g. `720h` or `30d` (days, hours,
    /// minutes, seconds). Optional; a backup an upgrade depends on is never pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = age_rule())]
    #[schemars(length(max = 64))]
    pub max_age: Option<String>,

    /// How long the backup Job may run, e.g. `30m`. A preset's restore Job gets the same time.
    #[serde(default = "default_backup_timeout")]
    #[x_kube(validation = duration_rule())]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// One component of a backup set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.template) != has(self.preset)")
    .message("a backup component needs exactly one of template and preset"))]
#[x_kube(validation = Rule::new("!has(self.restore) || has(self.template)")
    .message("restore is for a template component: a preset restores its own backups"))]
pub struct BackupComponent {
    /// The component's name, e.g. `db`, `cache` or `uploads`: a DNS label of at most 20
    /// characters. It names the component's Jobs (`<release>-backup-<attempt>-<name>`) and
    /// its files.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self) <= 20")
        .message("name must be a DNS label of at most 20 characters: lower-case letters, digits and '-'"))]
    #[schemars(length(min = 1, max = 20))]
    pub name: String,

    /// Pod template of this component's backup Job (the same contract as `backup.template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub template: Option<PodTemplate>,

    /// A ready-made backup and restore Job for this component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<BackupPreset>,

    /// The restore Job of a template component (the same contract as `rollback.restore`).
    /// Needed for `rollback.database: Restore` and for on-demand restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<JobTemplate>,
}

/// One component of the backup, as the planner and the Job builder see it: a component of a
/// set (named), or the single backup of `backup.template` / `backup.preset` (no name).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComponentRef<'a> {
    /// The component's name; None for the single backup.
    pub name: Option<&'a str>,
    /// Its backup template, if it is not a preset.
    pub template: Option<&'a PodTemplateSpec>,
    /// Its preset, if it is one.
    pub preset: Option<&'a BackupPreset>,
    /// Its restore template: the component's own, or `rollback.restore` for the single backup.
    pub restore: Option<&'a JobTemplate>,
}

impl AppReleaseSpec {
    /// The components every backup takes, in spec order: the set's, or the single backup.
    /// Empty without `spec.backup`.
    pub fn backup_components(&self) -> Vec<ComponentRef<'_>> {
        let Some(backup) = &self.backup else {
            return Vec::new();
        };
        if backup.components.is_empty() {
            return vec![ComponentRef {
                name: None,
                template: backup.template.as_deref(),
                preset: backup.preset.as_ref(),
                restore: self.rollback.restore.as_ref(),
            }];
        }
        backup
            .components
            .iter()
            .map(|c| ComponentRef {
                name: Some(&c.name),
                template: c.template.as_deref(),
                preset: c.preset.as_ref(),
                restore: c.restore.as_ref(),
            })
            .collect()
    }

    /// The component named `name` (None: the single backup), if the spec has it.
    pub fn backup_component(&self, name: Option<&str>) -> Option<ComponentRef<'_>> {
        self.backup_components()
            .into_iter()
            .find(|c| c.name == name)
    }
}

/// The migration Job of an upgrade.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Pod template of the migration Job. Containers without an image run the new version's
    /// image of the first target; an image written without a tag gets `spec.version` as tag.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplate,

    /// Whether the migration runs before the new images roll out or after.
    #[serde(default)]
    pub when: MigrationPhase,

    /// How long the migration Job may run, e.g. `15m`. It is never interrupted otherwise.
    #[serde(default = "default_migration_timeout")]
    #[x_kube(validation = duration_rule())]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// When the migration runs relative to the rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrationPhase {
    /// Before any target gets the new image (the usual case: new code needs the new schema).
    #[default]
    BeforeRollout,
    /// After every target runs the new image and is ready.
    AfterRollout,
}

/// Rollout settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// How long each target may take to become fully updated and available, e.g. `10m`. In
    /// `Offline` mode also how long the targets may take to stop.
    #[serde(default = "default_rollout_timeout")]
    #[x_kube(validation = duration_rule())]
    #[schemars(length(max = 32))]
    pub timeout: String,

    /// `Rolling` (the default): the backup and a before-rollout migration run while the old
    /// version keeps serving, then each target rolls over to the new images. `Offline`: every
    /// target is scaled to zero first, so that nothing writes while the database is backed up
    /// and migrated; then the new images are set, the targets come back with the replica
    /// counts recorded in `status.upgrade.previousReplicas`, and an after-rollout migration and
    /// the verification run.
    #[serde(default)]
    pub strategy: RolloutStrategy,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            timeout: default_rollout_timeout(),
            strategy: RolloutStrategy::default(),
        }
    }
}

/// How an upgrade treats the running application.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutStrategy {
    /// The old version serves until each target rolls over.
    #[default]
    Rolling,
    /// The application is stopped for the backup and the migration, and started again with
    /// the new version.
    Offline,
}

/// A smoke test run after the rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// Pod template of the verification Job; images follow the migration template's rules.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplate,

    /// How long the verification Job may run, e.g. `5m`.
    #[serde(default = "default_verify_timeout")]
    #[x_kube(validation = duration_rule())]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// What to do when an upgrade fails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Roll back by itself when a step fails. When false the operator stops where the
    /// failure happened and leaves the decision to a human.
    #[serde(default = "default_true")]
    pub automatic: bool,

    /// What happens to the database on rollback.
    #[serde(default)]
    pub database: DatabaseRollback,

    /// The down-migration Job for `database: Downgrade`, run with the NEW version's image
    /// (only it knows its migrations) before the old images come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<JobTemplate>,

    /// The restore Job for `database: Restore`, run from this upgrade's backup while the
    /// targets are scaled to zero. APPRELEASE_BACKUP_ID, APPRELEASE_BACKUP_LOCATION and
    /// APPRELEASE_BACKUP_SHA256 tell it which backup to restore. Not needed when the backup is
    /// a preset: the preset restores its own backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<JobTemplate>,
}

impl Default for RollbackSpec {
    fn default() -> Self {
        Self {
            automatic: true,
            database: DatabaseRollback::None,
            downgrade: None,
            restore: None,
        }
    }
}

/// The database policy of a rollback.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DatabaseRollback {
    /// Only the images go back; the database stays as the failed version left it.
    #[default]
    None,
    /// Scale the targets to zero, restore this upgrade's backup, then bring the old version back.
    Restore,
    /// Run the down-migration Job with the new version's image, then bring the old images back.
    Downgrade,
}

/// A Job of the rollback (restore or down-migration).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplate {
    /// Pod template of the Job.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplate,

    /// How long the Job may run, e.g. `30m`.
    #[serde(default = "default_backup_timeout")]
    #[x_kube(validation = duration_rule())]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

fn version_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("self.matches('{}')", super::version::TAG_PATTERN)).message(
        "version must be a container image tag: letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-'",
    )
}

fn duration_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "self != '' && self.matches('{}') && duration(self) > duration('0s')",
        super::duration::DURATION_PATTERN
    ))
    .message("must be a duration such as 90s, 15m or 1h30m, longer than zero")
}

fn age_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "self.matches('{}') && self.matches('[1-9]')",
        super::duration::AGE_PATTERN
    ))
    .message("must be an age such as 30d, 720h or 7d12h, longer than zero")
}

/// A pod template of the spec, boxed: a PodTemplateSpec is 1.8 KB inline, and with five of
/// them in place an AppRelease was 11 KB before holding any data, in the operator's cache for
/// every release whether it uses a Job or not. Boxed, an absent one costs a pointer.
pub type PodTemplate = Box<PodTemplateSpec>;

/// Pod templates are kept out of the CRD's schema: the full PodTemplateSpec schema, inlined
/// once per template, would make the CRD several megabytes, past etcd's object limit and far
/// past the 256 KiB that client-side `kubectl apply` can annotate. The operator checks the
/// template itself and reports a malformed one as InvalidSpec.
fn pod_template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({
        "type": "object",
        "description": "A Pod template (metadata and spec), as in a Job's spec.template.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn default_keep_last() -> i32 {
    10
}
fn default_backup_timeout() -> String {
    "30m".into()
}
fn default_migration_timeout() -> String {
    "15m".into()
}
fn default_rollout_timeout() -> String {
    "10m".into()
}
fn default_verify_timeout() -> String {
    "5m".into()
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_true() -> bool {
    true
}
