//! Builds the Job an upgrade step asked for: the user's pod template, plus what the operator
//! owes it — a derived name, an owner (see below), labels, the upgrade in environment
//! variables, the new version's image where the template leaves it open, and limits.
//!
//! A Job that changes data (migration, down-migration, restore) is created without an
//! owner reference and labelled with the AppRelease's uid instead: a deletion of the
//! AppRelease with foreground propagation (Argo CD's default prune) makes the garbage
//! collector delete its dependents before any finalizer of ours can wait, and a migration
//! cut short is what the operator exists to prevent. Once such a Job has finished, the
//! operator hands it to the AppRelease (`Action::HandOver`) so that it goes with it.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use kube::Resource;
use kube::api::ObjectMeta;

use crate::api::{AppRelease, image};
use crate::plan::JobRequest;

use super::names::JobKind;
use super::presets::{PresetJob, preset_template};

/// Label on every object the operator creates, and on their pods.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "apprelease-operator");
/// Label naming the AppRelease a Job or pod belongs to.
pub const RELEASE_LABEL: &str = "apprelease.io/release";
/// Label naming the kind of Job (backup, migrate, …).
pub const KIND_LABEL: &str = "apprelease.io/job-kind";
/// Label carrying the attempt serial.
pub const ATTEMPT_LABEL: &str = "apprelease.io/attempt";
/// Label naming the backup set component a backup or restore Job serves.
pub const COMPONENT_LABEL: &str = "apprelease.io/backup-component";
/// Label carrying the uid of the AppRelease a Job belongs to, so that a Job without an owner
/// reference is still told from a same-named leftover of a deleted namesake.
pub const RELEASE_UID_LABEL: &str = "apprelease.io/release-uid";

/// Why a Job cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The spec has no template for this kind of Job.
    #[error("spec has no {0} template")]
    NoTemplate(JobKind),
    /// The AppRelease has no uid yet (it was never stored), so nothing can be owned by it.
    #[error("the AppRelease has no uid, so it cannot own a Job")]
    NoOwner,
}

/// The Job for `request`.
pub fn build(release: &AppRelease, request: &JobRequest) -> Result<Job, BuildError> {
    let owner = release
        .controller_owner_ref(&())
        .ok_or(BuildError::NoOwner)?;
    let mut template = template(release, request.kind, request.component.as_deref())?;
    let labels = labels(release, request);

    let pod_meta = template.metadata.get_or_insert_with(Default::default);
    pod_meta
        .labels
        .get_or_insert_with(Default::default)
        .extend(labels.clone());
    if let Some(pod) = template.spec.as_mut() {
        pod.restart_policy.get_or_insert_with(|| "Never".into());
        let env = env(release, request);
        for container in pod
            .containers
            .iter_mut()
            .chain(pod.init_containers.iter_mut().flatten())
        {
            container
                .env
                .get_or_insert_with(Vec::new)
                .extend(env.iter().cloned());
            // A failed Job then explains itself: the last log lines become its message.
            container
                .termination_message_policy
                .get_or_insert_with(|| "FallbackToLogsOnError".into());
        }
        if runs_new_version(request.kind) {
            for container in &mut pod.containers {
                container.image = Some(resolve_image(container.image.as_deref(), request));
            }
        }
    }

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(request.name.clone()),
            namespace: release.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (
                    "apprelease.io/from-version".to_string(),
                    request.from.clone(),
                ),
                ("apprelease.io/to-version".to_string(), request.to.clone()),
            ])),
            owner_references: (!changes_data(request.kind)).then(|| vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // Never retried by Kubernetes: a failed migration must not run twice (invariant 2),
            // and a failed backup or check is a failure to report, not to hide.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(
                i64::try_from(request.timeout.as_secs()).unwrap_or(i64::MAX),
            ),
            template,
            ..Default::default()
        }),
        status: None,
    })
}

/// The pod template of a Job kind: the user's, or the backup preset's for its backup and (when
/// no restore template is given) its restore. Backups and restores are those of `component`
/// (None: the single backup).
fn template(
    release: &AppRelease,
    kind: JobKind,
    component: Option<&str>,
) -> Result<PodTemplateSpec, BuildError> {
    let spec = &release.spec;
    let part = spec.backup_component(component);
    let template = match kind {
        JobKind::Backup => part.and_then(|p| {
            p.template
                .cloned()
                .or_else(|| p.preset.map(|p| preset_template(p, PresetJob::Backup)))
        }),
        JobKind::Migration => spec.migration.as_ref().map(|m| (*m.template).clone()),
        JobKind::Verify => spec.verify.as_ref().map(|v| (*v.template).clone()),
        JobKind::Downgrade => spec
            .rollback
            .downgrade
            .as_ref()
            .map(|d| (*d.template).clone()),
        // Only presets know a check mode; a template restore is not run halfway.
        JobKind::Check => part
            .and_then(|p| p.preset)
            .map(|p| preset_template(p, PresetJob::Restore)),
        JobKind::Restore => part.and_then(|p| {
            p.restore
                .map(|r| (*r.template).clone())
                .or_else(|| p.preset.map(|p| preset_template(p, PresetJob::Restore)))
        }),
    };
    template.ok_or(BuildError::NoTemplate(kind))
}

/// Jobs that change the application's data; they are never cut short by a deletion.
pub fn changes_data(kind: JobKind) -> bool {
    matches!(
        kind,
        JobKind::Migration | JobKind::Downgrade | JobKind::Restore
    )
}

/// Migration, verification and down-migration run the application's own image.
fn runs_new_version(kind: JobKind) -> bool {
    matches!(
        kind,
        JobKind::Migration | JobKind::Verify | JobKind::Downgrade
    )
}

/// No image: the new version's image of the first target. An image without tag or digest:
/// that repository at the new version. Anything else is kept (a pinned helper image).
fn resolve_image(template_image: Option<&str>, request: &JobRequest) -> String {
    match template_image {
        None | Some("") => request.app_image.clone(),
        Some(given) if !image::is_pinned(given) => image::with_tag(given, &request.to),
        Some(given) => given.to_string(),
    }
}

fn labels(release: &AppRelease, request: &JobRequest) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (
            RELEASE_LABEL.to_string(),
            release.metadata.name.clone().unwrap_or_default(),
        ),
        (KIND_LABEL.to_string(), request.kind.as_str().to_string()),
        (ATTEMPT_LABEL.to_string(), request.attempt.to_string()),
        (
            RELEASE_UID_LABEL.to_string(),
            release.metadata.uid.clone().unwrap_or_default(),
        ),
    ]);
    if let Some(component) = &request.component {
        labels.insert(COMPONENT_LABEL.to_string(), component.clone());
    }
    labels
}

/// The upgrade, told to the Job's containers.
fn env(release: &AppRelease, request: &JobRequest) -> Vec<EnvVar> {
    let var = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    };
    let mut env = vec![
        var(
            "APPRELEASE_NAME",
            release.metadata.name.clone().unwrap_or_default(),
        ),
        var(
            "APPRELEASE_NAMESPACE",
            release.metadata.namespace.clone().unwrap_or_default(),
        ),
        var("APPRELEASE_JOB_KIND", request.kind.as_str().into()),
        var("APPRELEASE_FROM_VERSION", request.from.clone()),
        var("APPRELEASE_TO_VERSION", request.to.clone()),
        var("APPRELEASE_ATTEMPT", request.attempt.to_string()),
    ];
    if let Some(component) = &request.component {
        env.push(var("APPRELEASE_BACKUP_COMPONENT", component.clone()));
    }
    if request.kind == JobKind::Check {
        env.push(var("APPRELEASE_RESTORE_CHECK", "1".into()));
    }
    if let Some(id) = &request.backup_id {
        env.push(var("APPRELEASE_BACKUP_ID", id.clone()));
    }
    if let Some(location) = &request.backup_location {
        env.push(var("APPRELEASE_BACKUP_LOCATION", location.clone()));
    }
    if let Some(sha256) = &request.backup_sha256 {
        env.push(var("APPRELEASE_BACKUP_SHA256", sha256.clone()));
    }
    if !request.prune.is_empty() {
        env.push(var("APPRELEASE_PRUNE_BACKUPS", request.prune.join(",")));
    }
    env
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;
    use crate::api::{
        AppReleaseSpec, MigrationPhase, MigrationSpec, RollbackSpec, RolloutSpec, Target,
    };

    fn release() -> AppRelease {
        let pod = PodSpec {
            containers: vec![
                Container {
                    name: "migrate".into(),
                    command: Some(vec!["./migrate".into()]),
                    ..Default::default()
                },
                Container {
                    name: "tool".into(),
                    image: Some("ghcr.io/meet/tools".into()),
                    ..Default::default()
                },
                Container {
                    name: "pinned".into(),
                    image: Some("busybox:1.36".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let spec = AppReleaseSpec {
            version: "2.0".into(),
            targets: vec![Target::deployment("backend")],
            backup: None,
            migration: Some(MigrationSpec {
                template: Box::new(PodTemplateSpec {
                    metadata: None,
                    spec: Some(pod),
                }),
                when: MigrationPhase::BeforeRollout,
                timeout: "15m".into(),
            }),
            rollout: RolloutSpec::default(),
            verify: None,
            rollback: RollbackSpec::default(),
            maintenance_windows: Vec::new(),
            suspend: false,
            notifications: None,
            approval: crate::api::Approval::default(),
            downgrade: crate::api::DowngradePolicy::default(),
        };
        let mut r = AppRelease::new("meet", spec);
        r.metadata.namespace = Some("apps".into());
        r.metadata.uid = Some("uid-1".into());
        r
    }

    fn request(kind: JobKind) -> JobRequest {
        JobRequest {
            kind,
            component: None,
            name: "meet-migrate-4".into(),
            from: "1.0".into(),
            to: "2.0".into(),
            attempt: 4,
            app_image: "ghcr.io/meet/backend:2.0".into(),
            backup_id: Some("meet-backup-4".into()),
            backup_location: None,
            backup_sha256: None,
            prune: vec![],
            timeout: Duration::from_secs(900),
        }
    }

    #[test]
    fn migration_job_runs_the_new_image_once_with_a_deadline() {
        let job = build(&release(), &request(JobKind::Migration)).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("meet-migrate-4"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(
            job.metadata.owner_references, None,
            "a running migration is not a dependent the garbage collector may delete"
        );
        let job_labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(job_labels[RELEASE_UID_LABEL], "uid-1");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(900));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let images: Vec<_> = pod
            .containers
            .iter()
            .map(|c| c.image.clone().unwrap())
            .collect();
        assert_eq!(
            images,
            [
                "ghcr.io/meet/backend:2.0",
                "ghcr.io/meet/tools:2.0",
                "busybox:1.36"
            ]
        );
        let env = pod.containers[0].env.as_ref().unwrap();
        let get = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(get("APPRELEASE_FROM_VERSION").as_deref(), Some("1.0"));
        assert_eq!(get("APPRELEASE_TO_VERSION").as_deref(), Some("2.0"));
        assert_eq!(
            get("APPRELEASE_BACKUP_ID").as_deref(),
            Some("meet-backup-4")
        );
        assert_eq!(get("APPRELEASE_NAME").as_deref(), Some("meet"));
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get(RELEASE_LABEL).map(String::as_str), Some("meet"));
        assert_eq!(labels.get(KIND_LABEL).map(String::as_str), Some("migrate"));
    }

    #[test]
    fn only_jobs_that_change_no_data_are_owned_from_the_start() {
        let mut r = release();
        r.spec.verify = Some(crate::api::VerifySpec {
            template: r.spec.migration.as_ref().unwrap().template.clone(),
            timeout: "5m".into(),
        });
        let job = build(&r, &request(JobKind::Verify)).unwrap();
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("AppRelease", "meet", "uid-1")
        );
        assert_eq!(owner.controller, Some(true));
        for kind in [JobKind::Migration, JobKind::Downgrade, JobKind::Restore] {
            assert!(changes_data(kind));
        }
        assert!(!changes_data(JobKind::Backup) && !changes_data(JobKind::Verify));
    }

    #[test]
    fn missing_template_or_owner_is_an_error() {
        assert_eq!(
            build(&release(), &request(JobKind::Backup)).unwrap_err(),
            BuildError::NoTemplate(JobKind::Backup)
        );
        let mut r = release();
        r.metadata.uid = None;
        assert_eq!(
            build(&r, &request(JobKind::Migration)).unwrap_err(),
            BuildError::NoOwner
        );
    }
}
