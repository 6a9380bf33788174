//! Fixed data for the formatting tests: an AppRelease `shop` that went through three
//! attempts and holds three backups, one of them a set.

use apprelease_operator::api::{AppRelease, RequestRef, Step, Upgrade};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

/// `minute` minutes after the epoch.
pub fn at(minute: u32) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::minutes(minute.into())
}

/// `shop` in `prod` at 1.1.0, keepLast 3. Backups, newest first: shop-backup-3 (1.1.0,
/// 4 KiB, on demand), shop-backup-2 (1.0.0, a set of db and uploads), shop-backup-1 (1.0.0,
/// no size reported).
pub fn release() -> AppRelease {
    serde_json::from_value(json!({
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": "shop", "namespace": "prod", "generation": 2},
        "spec": {
            "version": "1.1.0",
            "targets": [{"deployment": "backend"}, {"statefulSet": "worker"}],
            "backup": {"template": {"spec": {"containers": [{"name": "dump"}]}}, "keepLast": 3}
        },
        "status": {
            "currentVersion": "1.1.0",
            "attempts": 3,
            "backups": [
                {"id": "shop-backup-3", "version": "1.1.0", "takenAt": "1970-01-01T00:30:45Z",
                 "job": "shop-backup-3", "sizeBytes": 4096,
                 "images": [
                     {"deployment": "backend", "container": "backend", "image": "busybox:1.1.0"},
                     {"deployment": "worker", "container": "worker", "image": "busybox:1.1.0"}]},
                {"id": "shop-backup-2", "version": "1.0.0", "takenAt": "1970-01-01T00:21:00Z",
                 "sizeBytes": 1_610_612_736,
                 "components": [
                     {"name": "db", "job": "shop-backup-2-db", "sizeBytes": 1_073_741_824},
                     {"name": "uploads", "job": "shop-backup-2-uploads", "sizeBytes": 536_870_912}]},
                {"id": "shop-backup-1", "version": "1.0.0", "takenAt": "1970-01-01T00:11:00Z",
                 "job": "shop-backup-1"}
            ],
            "history": [
                {"from": "1.1.0", "to": "1.1.0", "attempt": 3, "startedAt": "1970-01-01T00:30:00Z",
                 "finishedAt": "1970-01-01T00:30:45Z", "result": "Succeeded", "reason": "Succeeded",
                 "message": "backed up", "backup": "shop-backup-3",
                 "request": {"kind": "Backup", "name": "shop-nightly-q2x", "uid": "u3"}},
                {"from": "1.0.0", "to": "1.1.0", "attempt": 2, "startedAt": "1970-01-01T00:20:00Z",
                 "finishedAt": "1970-01-01T00:22:30Z", "result": "Succeeded", "reason": "Succeeded",
                 "message": "1.1.0 runs", "backup": "shop-backup-2"},
                {"from": "1.0.0", "to": "1.2.0", "attempt": 1, "startedAt": "1970-01-01T00:10:00Z",
                 "finishedAt": "1970-01-01T00:13:00Z", "result": "RolledBack",
                 "reason": "RolloutFailed", "message": "never ready", "backup": "shop-backup-1"}
            ]
        }
    }))
    .expect("a valid AppRelease")
}

/// An upgrade (attempt 4) at `step` since minute 58, started at minute 55, with
/// shop-backup-3.
pub fn upgrade(step: Step, request: Option<RequestRef>) -> Upgrade {
    Upgrade {
        from: "1.0.0".into(),
        to: "1.1.0".into(),
        attempt: 4,
        step,
        started_at: at(55),
        step_started_at: at(58),
        targets_done: 0,
        backup: Some("shop-backup-3".into()),
        previous_images: Vec::new(),
        previous_replicas: Vec::new(),
        jobs_seen: Vec::new(),
        prune: Vec::new(),
        migration_started: false,
        restored_components: Vec::new(),
        failure: None,
        request,
    }
}
