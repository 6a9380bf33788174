//! `backups NAME`: the inventory `status.backups`, and why retention keeps each one
//! (`plan::protection`, the operator's own rule).

use apprelease_operator::api::{AppRelease, AppReleaseRestore, duration};
use apprelease_operator::plan::protection::{self, Protection};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::format;

/// One backup as `backups` shows it (also its `-o json`).
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    pub id: String,
    pub version: String,
    pub taken_at: DateTime<Utc>,
    pub size_bytes: Option<i64>,
    /// A backup set's components, in spec order; empty for a single backup.
    pub components: Vec<String>,
    pub location: Option<String>,
    pub sha256: Option<String>,
    pub protected_by: ProtectedBy,
}

/// Why the next backup's retention keeps it; nothing set: it prunes it.
#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedBy {
    pub upgrade_in_flight: bool,
    pub last_upgrade: bool,
    /// Pending AppReleaseRestores that name it.
    pub restores: Vec<String>,
    pub keep_last: bool,
    /// With `maxAge`: when `keepLast` stops keeping it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A restore that is still to run (`status.phase` not Succeeded nor Failed) for
/// `release`: `(its name, the backup it names)`.
pub fn pending_restores(restores: &[AppReleaseRestore], release: &str) -> Vec<(String, String)> {
    restores
        .iter()
        .filter(|r| r.spec.release == release)
        .filter(|r| {
            !r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_final())
        })
        .map(|r| {
            (
                r.metadata.name.clone().unwrap_or_default(),
                r.spec.backup.clone(),
            )
        })
        .collect()
}

/// The inventory of `release` at `now`, in `status.backups` order (newest first).
pub fn views(
    release: &AppRelease,
    pending: &[(String, String)],
    now: DateTime<Utc>,
) -> Vec<BackupView> {
    let status = release.status.clone().unwrap_or_default();
    let spec = release.spec.backup.as_ref();
    // Without spec.backup no backup is taken, so no retention runs: only the pins count.
    let keep_last = spec.map_or(1, |b| b.keep_last);
    // An age the operator cannot read is ignored by it too.
    let max_age = spec
        .and_then(|b| b.max_age.as_deref())
        .and_then(|a| duration::parse_age(a).ok());
    let pending_ids: Vec<&str> = pending.iter().map(|(_, b)| b.as_str()).collect();
    let protections = protection::protections(&status, keep_last, max_age, &pending_ids, now);
    status
        .backups
        .iter()
        .zip(protections)
        .map(|(b, p)| BackupView {
            id: b.id.clone(),
            version: b.version.clone(),
            taken_at: b.taken_at,
            size_bytes: b.size_bytes,
            components: b.components.iter().map(|c| c.name.clone()).collect(),
            location: b.location.clone(),
            sha256: b.sha256.clone(),
            protected_by: protected_by(&p, &b.id, pending),
        })
        .collect()
}

fn protected_by(p: &Protection, id: &str, pending: &[(String, String)]) -> ProtectedBy {
    ProtectedBy {
        upgrade_in_flight: p.in_flight,
        last_upgrade: p.last_upgrade,
        restores: pending
            .iter()
            .filter(|(_, b)| b == id)
            .map(|(name, _)| name.clone())
            .collect(),
        keep_last: p.keep_last.is_some(),
        expires_at: p.keep_last.and_then(|k| k.expires),
    }
}

/// The table.
pub fn render(views: &[BackupView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.version.clone(),
                format::age(v.taken_at, now),
                v.size_bytes.map(format::size).unwrap_or_default(),
                v.components.join(","),
                reasons(&v.protected_by, now).join(", "),
            ]
        })
        .collect();
    format::table(
        &["ID", "VERSION", "AGE", "SIZE", "COMPONENTS", "PROTECTED BY"],
        &rows,
    )
}

/// The PROTECTED BY words.
fn reasons(p: &ProtectedBy, now: DateTime<Utc>) -> Vec<String> {
    let mut words = Vec::new();
    if p.upgrade_in_flight {
        words.push("upgrade in flight".to_string());
    }
    if p.last_upgrade {
        words.push("last upgrade".into());
    }
    words.extend(p.restores.iter().map(|r| format!("restore {r}")));
    if p.keep_last {
        words.push(match p.expires_at {
            Some(at) => format!("keepLast (maxAge: expires in {})", format::age(now, at)),
            None => "keepLast".into(),
        });
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{at, release, upgrade};
    use apprelease_operator::api::{RequestPhase, RequestStatus, Step};
    use serde_json::json;

    #[test]
    fn keep_last_and_the_last_upgrade() {
        // keepLast 3 keeps the two newest with the next backup; the last upgrade's backup
        // is shop-backup-3 (the on-demand backup is the newest history entry with one).
        let r = release();
        assert_eq!(
            render(&views(&r, &[], at(60)), at(60)),
            "\
ID              VERSION   AGE   SIZE      COMPONENTS   PROTECTED BY
shop-backup-3   1.1.0     29m   4.0 KiB   <none>       last upgrade, keepLast
shop-backup-2   1.0.0     39m   1.5 GiB   db,uploads   keepLast
shop-backup-1   1.0.0     49m   <none>    <none>       <none>
"
        );
    }

    #[test]
    fn in_flight_restores_and_max_age() {
        let mut r = release();
        r.spec.backup.as_mut().unwrap().max_age = Some("35m".into());
        r.status.as_mut().unwrap().upgrade = Some(upgrade(Step::Migrating, None));
        r.status.as_mut().unwrap().upgrade.as_mut().unwrap().backup = Some("shop-backup-1".into());
        let pending = vec![
            ("shop-restore-a".to_string(), "shop-backup-1".to_string()),
            ("shop-restore-b".to_string(), "shop-backup-1".to_string()),
        ];
        let v = views(&r, &pending, at(60));
        assert_eq!(
            render(&v, at(60)),
            "\
ID              VERSION   AGE   SIZE      COMPONENTS   PROTECTED BY
shop-backup-3   1.1.0     29m   4.0 KiB   <none>       last upgrade, keepLast (maxAge: expires in 5m45s)
shop-backup-2   1.0.0     39m   1.5 GiB   db,uploads   <none>
shop-backup-1   1.0.0     49m   <none>    <none>       upgrade in flight, restore shop-restore-a, restore shop-restore-b
"
        );
        assert_eq!(
            serde_json::to_value(&v[0]).unwrap(),
            json!({"id": "shop-backup-3", "version": "1.1.0", "takenAt": "1970-01-01T00:30:45Z",
                   "sizeBytes": 4096, "components": [], "location": null, "sha256": null,
                   "protectedBy": {"upgradeInFlight": false, "lastUpgrade": true, "restores": [],
                                   "keepLast": true, "expiresAt": "1970-01-01T01:05:45Z"}})
        );
    }

    #[test]
    fn without_spec_backup_only_pins_count() {
        let mut r = release();
        r.spec.backup = None;
        let v = views(&r, &[], at(60));
        let kept: Vec<bool> = v.iter().map(|b| b.protected_by.keep_last).collect();
        assert_eq!(kept, [false, false, false]);
        assert!(v[0].protected_by.last_upgrade);
    }

    #[test]
    fn pending_restores_are_this_releases_unfinished_ones() {
        let restore = |name: &str, release: &str, phase: Option<RequestPhase>| {
            let mut r: AppReleaseRestore = serde_json::from_value(json!({
                "apiVersion": "apprelease.io/v1alpha1", "kind": "AppReleaseRestore",
                "metadata": {"name": name},
                "spec": {"release": release, "backup": format!("{name}-backup")}
            }))
            .unwrap();
            r.status = phase.map(|phase| RequestStatus {
                phase: Some(phase),
                ..Default::default()
            });
            r
        };
        let all = [
            restore("new", "shop", None),
            restore("waiting", "shop", Some(RequestPhase::Pending)),
            restore("running", "shop", Some(RequestPhase::Running)),
            restore("done", "shop", Some(RequestPhase::Succeeded)),
            restore("failed", "shop", Some(RequestPhase::Failed)),
            restore("other", "meet", None),
        ];
        let names: Vec<String> = pending_restores(&all, "shop")
            .into_iter()
            .map(|(n, b)| format!("{n}:{b}"))
            .collect();
        assert_eq!(
            names,
            [
                "new:new-backup",
                "waiting:waiting-backup",
                "running:running-backup"
            ]
        );
    }
}
