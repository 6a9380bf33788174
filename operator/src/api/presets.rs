//! Backup presets: ready-made backup (and restore) Jobs for common databases and for volumes,
//! an alternative to a hand-written backup pod template.
//!
//! Every preset writes its backups into a PersistentVolumeClaim under
//! `<namespace>/<release>/<backup-id>.<ext>` (mounted at `/backups` in the Job), with a
//! `<file>.sha256` next to it, and reports `{"location", "sizeBytes", "sha256"}` in its
//! termination message. Credentials come only from a Secret, by reference: its keys become the
//! container's environment (`envFrom`). The scripts themselves live in `jobs::presets`.

use k8s_openapi::api::core::v1::PodSecurityContext;
use kube::KubeSchema;
use schemars::{JsonSchema, json_schema};
use serde::{Deserialize, Serialize};

/// A ready-made backup Job. Exactly one kind is given.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum BackupPreset {
    /// PostgreSQL: `pg_dump --format=custom` (compressed) of one database; restored with
    /// `pg_restore` in a single transaction. The Secret holds the libpq variables PGHOST,
    /// PGPORT (default 5432), PGUSER, PGPASSWORD and PGDATABASE. Default image
    /// `postgres:16-alpine` (its pg_dump reads servers up to 16).
    Postgres(DatabasePreset),
    /// MySQL or MariaDB: `mysqldump --single-transaction` of one database, gzip-compressed;
    /// restored with the `mysql` client. The Secret holds MYSQL_HOST, MYSQL_TCP_PORT (default
    /// 3306), MYSQL_USER, MYSQL_PWD and MYSQL_DATABASE. Default image `mariadb:11`.
    Mysql(DatabasePreset),
    /// Redis: an RDB snapshot fetched with `redis-cli --rdb` (every logical database).
    /// Restored by loading it into a private redis-server inside the Job and copying every key
    /// into the emptied server with MIGRATE (TTLs kept). The Secret holds REDIS_HOST,
    /// REDIS_PORT (default 6379), REDISCLI_AUTH (the password; optional) and REDIS_USERNAME
    /// (an ACL user; optional). Default image `redis:7-alpine`.
    Redis(DatabasePreset),
    /// MongoDB: `mongodump --archive --gzip`; restored with `mongorestore --drop`. The Secret
    /// holds MONGODB_URI. Default image `mongo:7`.
    Mongodb(DatabasePreset),
    /// A tar.gz archive of a PersistentVolumeClaim's content (uploads, media); restoring
    /// replaces the claim's content with the archive's.
    Volume(VolumePreset),
}

/// A database preset: where the backups go, how to reach the database, and the image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabasePreset {
    /// Name of a Secret in the AppRelease's namespace whose keys become the Job's environment
    /// (the standard variables of the preset's tools, listed with each preset). Credentials
    /// are never written in the AppRelease itself.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$') && size(self) <= 253")
        .message("connectionSecret must be a Secret name"))]
    #[schemars(length(max = 253))]
    pub connection_secret: String,

    /// Where the backups are written.
    pub storage: BackupStorage,

    /// The image whose tools run the backup and the restore. Default: the preset's public image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The pod's securityContext, replacing the default one: run as the image's own non-root
    /// user (see operator/PRESETS.md), with the claims group-writable through `fsGroup`
    /// and the RuntimeDefault seccomp profile, as Pod Security `restricted` asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "security_context_schema")]
    pub security_context: Option<PodSecurityContext>,
}

/// The volume preset: which claim to archive, where the archives go, and the image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.claim != self.storage.pvc")
    .message("the archived claim and the storage claim must differ: a restore replaces the archived claim's whole content"))]
pub struct VolumePreset {
    /// The PersistentVolumeClaim whose content is archived (mounted read-only at `/data` by the
    /// backup, read-write by the restore). It must not be the storage claim: a restore replaces
    /// its whole content.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$') && size(self) <= 253")
        .message("claim must be a PersistentVolumeClaim name"))]
    #[schemars(length(max = 253))]
    pub claim: String,

    /// Where the archives are written.
    pub storage: BackupStorage,

    /// The image that runs tar. Default: `alpine:3.20`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The pod's securityContext, replacing the default one. Files restored
    /// belong to its `runAsUser`: set it to the application's user. By default: run as the image's own non-root
    /// user (see operator/PRESETS.md), with the claims group-writable through `fsGroup`
    /// and the RuntimeDefault seccomp profile, as Pod Security `restricted` asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "security_context_schema")]
    pub security_context: Option<PodSecurityContext>,
}

/// Where backups are kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorage {
    /// A PersistentVolumeClaim in the AppRelease's namespace, mounted at `/backups`. Backups
    /// go to `<namespace>/<release>/<backup-id>.<ext>` inside it. The operator never deletes
    /// the claim; pruning deletes only this release's backup files.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$') && size(self) <= 253")
        .message("pvc must be a PersistentVolumeClaim name"))]
    #[schemars(length(max = 253))]
    pub pvc: String,
}

/// The kinds of preset, for names and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresetKind {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
    /// Redis.
    Redis,
    /// MongoDB.
    Mongodb,
    /// A volume's files.
    Volume,
}

impl PresetKind {
    /// The name used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            PresetKind::Postgres => "postgres",
            PresetKind::Mysql => "mysql",
            PresetKind::Redis => "redis",
            PresetKind::Mongodb => "mongodb",
            PresetKind::Volume => "volume",
        }
    }

    /// The public image used when the preset names none.
    pub fn default_image(self) -> &'static str {
        match self {
            PresetKind::Postgres => "postgres:16-alpine",
            PresetKind::Mysql => "mariadb:11",
            PresetKind::Redis => "redis:7-alpine",
            PresetKind::Mongodb => "mongo:7",
            PresetKind::Volume => "alpine:3.20",
        }
    }

    /// The non-root user the preset's default image has for its tools (the `postgres`,
    /// `mysql`, `redis` and `mongodb` users of the official images; `nobody` for alpine).
    pub fn default_user(self) -> i64 {
        match self {
            PresetKind::Postgres => 70,
            PresetKind::Mysql | PresetKind::Redis | PresetKind::Mongodb => 999,
            PresetKind::Volume => 65534,
        }
    }

    /// File name extension of the backups.
    pub fn extension(self) -> &'static str {
        match self {
            PresetKind::Postgres => "pgdump",
            PresetKind::Mysql => "sql.gz",
            PresetKind::Redis => "rdb",
            PresetKind::Mongodb => "archive.gz",
            PresetKind::Volume => "tar.gz",
        }
    }
}

impl BackupPreset {
    /// Which preset this is.
    pub fn kind(&self) -> PresetKind {
        match self {
            BackupPreset::Postgres(_) => PresetKind::Postgres,
            BackupPreset::Mysql(_) => PresetKind::Mysql,
            BackupPreset::Redis(_) => PresetKind::Redis,
            BackupPreset::Mongodb(_) => PresetKind::Mongodb,
            BackupPreset::Volume(_) => PresetKind::Volume,
        }
    }

    /// The claim the backups are written to.
    pub fn storage(&self) -> &BackupStorage {
        match self {
            BackupPreset::Postgres(p)
            | BackupPreset::Mysql(p)
            | BackupPreset::Redis(p)
            | BackupPreset::Mongodb(p) => &p.storage,
            BackupPreset::Volume(v) => &v.storage,
        }
    }

    /// The Secret with the connection settings (not for volumes).
    pub fn connection_secret(&self) -> Option<&str> {
        match self {
            BackupPreset::Postgres(p)
            | BackupPreset::Mysql(p)
            | BackupPreset::Redis(p)
            | BackupPreset::Mongodb(p) => Some(&p.connection_secret),
            BackupPreset::Volume(_) => None,
        }
    }

    /// The pod securityContext the spec gives, if any.
    pub fn security_context(&self) -> Option<&PodSecurityContext> {
        match self {
            BackupPreset::Postgres(p)
            | BackupPreset::Mysql(p)
            | BackupPreset::Redis(p)
            | BackupPreset::Mongodb(p) => p.security_context.as_ref(),
            BackupPreset::Volume(v) => v.security_context.as_ref(),
        }
    }

    /// The image the Jobs run: the one given, else the preset's default.
    pub fn image(&self) -> String {
        let given = match self {
            BackupPreset::Postgres(p)
            | BackupPreset::Mysql(p)
            | BackupPreset::Redis(p)
            | BackupPreset::Mongodb(p) => p.image.as_deref(),
            BackupPreset::Volume(v) => v.image.as_deref(),
        };
        given
            .filter(|i| !i.is_empty())
            .unwrap_or(self.kind().default_image())
            .to_string()
    }
}

fn security_context_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({
        "type": "object",
        "description": "A Pod securityContext (runAsUser, runAsGroup, fsGroup, seccompProfile, ...).",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
