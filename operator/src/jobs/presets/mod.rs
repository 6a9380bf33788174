//! The Jobs of backup presets: one POSIX `sh` script per preset for the backup and one for the
//! restore, run as `/bin/sh -c <script>` in the preset's image.
//!
//! Contract of every script (see `common.sh`):
//! - it stops at the first error and exits non-zero without writing a report: a failed dump,
//!   a wrong password, an unreachable host, an unwritable or full claim, an empty or
//!   unreadable dump never count as a backup;
//! - a backup is written to a temporary file next to its final place, checked (non-empty,
//!   readable by the matching tool), checksummed, and renamed into
//!   `/backups/<namespace>/<release>/<backup-id>.<ext>` with `<file>.sha256` beside it;
//! - only then are the backups named in `APPRELEASE_PRUNE_BACKUPS` deleted (files of this
//!   release's directory only), and `{"location","sizeBytes","sha256"}` is written to the
//!   termination log;
//! - a restore verifies the backup's checksum (the inventory's `APPRELEASE_BACKUP_SHA256`, else
//!   the `.sha256` file) before it touches anything; with `APPRELEASE_RESTORE_CHECK=1` it stops
//!   there, touching nothing, and reports `{"verified","sha256"}` (the check Job an on-demand
//!   restore runs before it scales anything down).
//!
//! Tests (and anyone running a script by hand) may move the claim with
//! `APPRELEASE_BACKUP_ROOT` (default `/backups`), the archived volume with
//! `APPRELEASE_VOLUME_ROOT` (default `/data`) and the report with
//! `APPRELEASE_TERMINATION_LOG` (default `/dev/termination-log`).

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvFromSource, EnvVar, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretEnvSource, SecurityContext,
    Volume, VolumeMount,
};

use crate::api::{BackupPreset, PresetKind};

/// Where the storage claim is mounted.
pub const BACKUP_MOUNT: &str = "/backups";
/// Where the volume preset's archived claim is mounted.
pub const DATA_MOUNT: &str = "/data";
/// Name of the Job's container.
pub const CONTAINER: &str = "preset";

const COMMON: &str = include_str!("common.sh");

/// Which of a preset's two Jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresetJob {
    /// Take a backup.
    Backup,
    /// Restore one.
    Restore,
}

impl PresetJob {
    fn as_str(self) -> &'static str {
        match self {
            PresetJob::Backup => "backup",
            PresetJob::Restore => "restore",
        }
    }
}

/// The preset-specific part of a script.
fn body(kind: PresetKind, job: PresetJob) -> &'static str {
    use PresetJob::*;
    use PresetKind::*;
    match (kind, job) {
        (Postgres, Backup) => include_str!("postgres_backup.sh"),
        (Postgres, Restore) => include_str!("postgres_restore.sh"),
        (Mysql, Backup) => include_str!("mysql_backup.sh"),
        (Mysql, Restore) => include_str!("mysql_restore.sh"),
        (Redis, Backup) => include_str!("redis_backup.sh"),
        (Redis, Restore) => include_str!("redis_restore.sh"),
        (Mongodb, Backup) => include_str!("mongodb_backup.sh"),
        (Mongodb, Restore) => include_str!("mongodb_restore.sh"),
        (Volume, Backup) => include_str!("volume_backup.sh"),
        (Volume, Restore) => include_str!("volume_restore.sh"),
    }
}

/// The complete script a preset's Job runs with `/bin/sh -c`.
pub fn script(kind: PresetKind, job: PresetJob) -> String {
    format!(
        "PRESET={}\nMODE={}\nEXT={}\n{COMMON}{}",
        kind.as_str(),
        job.as_str(),
        kind.extension(),
        body(kind, job)
    )
}

/// The pod template of a preset's backup or restore Job: the preset's image running its
/// script, the storage claim at `/backups`, the connection Secret as environment, and for the
/// volume preset the archived claim at `/data` (read-only while backing up). The Job builder
/// adds the upgrade's APPRELEASE_* variables, labels and limits as for any template.
pub fn preset_template(preset: &BackupPreset, job: PresetJob) -> PodTemplateSpec {
    let kind = preset.kind();
    let storage = &preset.storage().pvc;
    let mut volumes = vec![claim_volume("backups", storage, false)];
    let mut mounts = vec![mount("backups", BACKUP_MOUNT, false)];
    if let BackupPreset::Volume(volume) = preset {
        let read_only = job == PresetJob::Backup;
        volumes.push(claim_volume("data", &volume.claim, read_only));
        mounts.push(mount("data", DATA_MOUNT, read_only));
    }
    let env_from = preset.connection_secret().map(|secret| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret.to_string(),
                optional: Some(false),
            }),
            ..Default::default()
        }]
    });
    let container = Container {
        name: CONTAINER.into(),
        image: Some(preset.image()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), script(kind, job)]),
        env: Some(vec![EnvVar {
            name: "APPRELEASE_BACKUP_CLAIM".into(),
            value: Some(storage.clone()),
            value_from: None,
        }]),
        env_from,
        volume_mounts: Some(mounts),
        security_context: Some(restricted_container()),
        ..Default::default()
    };
    let pod_security = preset
        .security_context()
        .cloned()
        .unwrap_or_else(|| default_pod_security(kind));
    PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            security_context: Some(pod_security),
            ..Default::default()
        }),
    }
}

/// What Pod Security `restricted` asks of the pod, as the preset's image's own user; the
/// claims are made group-writable for it through `fsGroup`.
fn default_pod_security(kind: PresetKind) -> PodSecurityContext {
    let user = kind.default_user();
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What `restricted` asks of every container; no preset needs a capability or privilege.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
