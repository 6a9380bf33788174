//! `backup` and `restore`: the checks made before anything is created, what a restore will
//! do, the confirmation, the request objects, and how a finished request reads.

use apprelease_operator::api::conditions::{self, READY};
use apprelease_operator::api::{
    AppRelease, AppReleaseBackup, AppReleaseBackupSpec, AppReleaseRestore, AppReleaseRestoreSpec,
    BackupRecord, RequestPhase, RequestStatus,
};
use chrono::{DateTime, Utc};
use kube::api::ObjectMeta;

use crate::format;

/// Refuses an on-demand backup of a release that has nothing to take one with.
pub fn check_backup(release: &AppRelease) -> Result<(), String> {
    if release.spec.backup.is_some() {
        return Ok(());
    }
    Err(format!(
        "AppRelease {} has no spec.backup, so there is nothing to take a backup with: add \
         spec.backup (a template, a preset or components) first",
        name(release)
    ))
}

/// The `AppReleaseBackup` to create: `generateName: NAME-`.
pub fn backup_request(release: &str) -> AppReleaseBackup {
    let mut request = AppReleaseBackup::new(
        "",
        AppReleaseBackupSpec {
            release: release.into(),
        },
    );
    request.metadata = ObjectMeta {
        generate_name: Some(format!("{release}-")),
        ..Default::default()
    };
    request
}

/// A restore that passed its checks.
#[derive(Debug, PartialEq)]
pub struct RestorePlan {
    /// The backup, as in the inventory.
    pub backup: BackupRecord,
    /// The components asked for, in the set's order (empty: all of them).
    pub components: Vec<String>,
}

/// Checks that `backup` is in the inventory of `release` and that it has every one of
/// `components`, before anything is created.
pub fn plan_restore(
    release: &AppRelease,
    backup: &str,
    components: &[String],
) -> Result<RestorePlan, String> {
    let inventory = release
        .status
        .as_ref()
        .map(|s| s.backups.as_slice())
        .unwrap_or_default();
    let Some(record) = inventory.iter().find(|b| b.id == backup) else {
        let known: Vec<&str> = inventory.iter().map(|b| b.id.as_str()).collect();
        let have = if known.is_empty() {
            "it has none yet".to_string()
        } else {
            format!("it has {}", known.join(", "))
        };
        return Err(format!(
            "backup {backup:?} is not in the inventory of AppRelease {} (status.backups; {have}): \
             nothing was created. `kubectl apprelease backups {}` lists them",
            name(release),
            name(release)
        ));
    };
    if !components.is_empty() && record.components.is_empty() {
        return Err(format!(
            "backup {backup} is a single backup, not a set: it has no components to choose \
             from; leave out --component to restore it"
        ));
    }
    let unknown: Vec<&str> = components
        .iter()
        .filter(|c| !record.components.iter().any(|k| &k.name == *c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = record.components.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "backup {backup} has no component {}: its components are {}; nothing was created",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    let chosen = record
        .components
        .iter()
        .filter(|c| components.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    Ok(RestorePlan {
        backup: record.clone(),
        components: chosen,
    })
}

/// What the restore will do, for the human who confirms it.
pub fn describe_restore(release: &AppRelease, plan: &RestorePlan, now: DateTime<Utc>) -> String {
    let b = &plan.backup;
    let mut facts = vec![
        format!("version {}", b.version),
        format!("taken {} ago", format::age(b.taken_at, now)),
    ];
    facts.extend(b.size_bytes.map(format::size));
    let mut out = format!(
        "Restore backup {} ({}) of AppRelease {} in namespace {}:\n",
        b.id,
        facts.join(", "),
        name(release),
        release.metadata.namespace.as_deref().unwrap_or_default()
    );
    let all: Vec<String> = b.components.iter().map(|c| c.name.clone()).collect();
    match (all.is_empty(), plan.components.is_empty()) {
        (true, _) => {}
        (false, true) => out.push_str(&format!("  components: all ({})\n", all.join(", "))),
        (false, false) => out.push_str(&format!(
            "  components: {} (of {})\n",
            plan.components.join(", "),
            all.join(", ")
        )),
    }
    let targets: Vec<String> = release
        .spec
        .targets
        .iter()
        .map(|t| format!("{} {}", t.kind(), t.name()))
        .collect();
    out.push_str(&format!(
        "  1. {} scaled to zero.\n",
        match targets.as_slice() {
            [one] => format!("{one} is"),
            _ => format!("{} are", format::and_list(&targets)),
        }
    ));
    out.push_str("  2. The backup is restored.\n");
    if b.images.is_empty() {
        out.push_str(&format!(
            "  3. They come back with their replica counts and the images of {}.\n",
            b.version
        ));
    } else {
        out.push_str(&format!(
            "  3. They come back with their replica counts and the images of {}:\n",
            b.version
        ));
        for i in &b.images {
            out.push_str(&format!(
                "       {}/{}: {}\n",
                i.deployment, i.container, i.image
            ));
        }
    }
    out.push_str("  What was written since the backup was taken is lost.\n");
    out
}

/// The `AppReleaseRestore` to create: `generateName: NAME-restore-`.
pub fn restore_request(release: &str, plan: &RestorePlan) -> AppReleaseRestore {
    let mut request = AppReleaseRestore::new(
        "",
        AppReleaseRestoreSpec {
            release: release.into(),
            backup: plan.backup.id.clone(),
            components: plan.components.clone(),
        },
    );
    request.metadata = ObjectMeta {
        generate_name: Some(format!("{release}-restore-")),
        ..Default::default()
    };
    request
}

/// How a restore is confirmed.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirm {
    /// `--yes`.
    Given,
    /// Ask on the terminal.
    Ask,
    /// Neither `--yes` nor a terminal to ask on.
    Refuse,
}

/// `--yes` confirms; otherwise a terminal is asked; otherwise nobody can answer.
pub fn confirmation(yes: bool, stdin_is_terminal: bool) -> Confirm {
    match (yes, stdin_is_terminal) {
        (true, _) => Confirm::Given,
        (false, true) => Confirm::Ask,
        (false, false) => Confirm::Refuse,
    }
}

/// The refusal when nobody can confirm.
pub const NO_TERMINAL: &str = "not restoring: a restore replaces the data and needs a \
    confirmation, and stdin is not a terminal to ask on; run it again with --yes to confirm";

/// The question asked.
pub const QUESTION: &str = "Restore? [y/N] ";

/// Whether the answer to [`QUESTION`] is yes (`y` or `yes`, any case); anything else is no.
pub fn accepted(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// A request's end, once it has one: `Ok(line)` when it succeeded, `Err(line)` when it
/// failed; None while it is still to run.
pub fn outcome(
    kind: &str,
    name: &str,
    status: Option<&RequestStatus>,
) -> Option<Result<String, String>> {
    let status = status?;
    let phase = status.phase.filter(|p| p.is_final())?;
    let message = conditions::get(&status.conditions, READY)
        .map(|c| format!(": {}", c.message))
        .unwrap_or_default();
    let backup = status
        .backup
        .as_ref()
        .map(|b| match &status.version {
            Some(v) => format!(" (backup {b}, version {v})"),
            None => format!(" (backup {b})"),
        })
        .unwrap_or_default();
    let line = format!("{kind}/{name} {phase:?}{backup}{message}");
    Some(if phase == RequestPhase::Succeeded {
        Ok(line)
    } else {
        Err(line)
    })
}

fn name(release: &AppRelease) -> &str {
    release.metadata.name.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{at, release};
    use apprelease_operator::api::conditions::{Condition, ConditionStatus};
    use serde_json::json;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_backup_needs_spec_backup() {
        assert_eq!(check_backup(&release()), Ok(()));
        let mut r = release();
        r.spec.backup = None;
        assert!(check_backup(&r).unwrap_err().contains("has no spec.backup"));
        assert_eq!(
            serde_json::to_value(backup_request("shop")).unwrap(),
            json!({"apiVersion": "apprelease.io/v1alpha1", "kind": "AppReleaseBackup",
                   "metadata": {"generateName": "shop-"}, "spec": {"release": "shop"}})
        );
    }

    #[test]
    fn restores_are_checked_against_the_inventory() {
        let r = release();
        for (backup, components, want) in [
            (
                "nope",
                &[][..],
                "backup \"nope\" is not in the inventory of AppRelease shop (status.backups; it has shop-backup-3, shop-backup-2, shop-backup-1): nothing was created. `kubectl apprelease backups shop` lists them",
            ),
            (
                "shop-backup-3",
                &["db"][..],
                "backup shop-backup-3 is a single backup, not a set: it has no components to choose from; leave out --component to restore it",
            ),
            (
                "shop-backup-2",
                &["db", "cache", "redis"][..],
                "backup shop-backup-2 has no component cache, redis: its components are db, uploads; nothing was created",
            ),
        ] {
            assert_eq!(
                plan_restore(&r, backup, &strings(components)).unwrap_err(),
                want
            );
        }
        let mut empty = release();
        empty.status = None;
        assert!(
            plan_restore(&empty, "x", &[])
                .unwrap_err()
                .contains("it has none yet")
        );

        // Components come in the set's order, once each.
        let plan =
            plan_restore(&r, "shop-backup-2", &strings(&["uploads", "db", "uploads"])).unwrap();
        assert_eq!(plan.components, ["db", "uploads"]);
        assert_eq!(
            serde_json::to_value(restore_request("shop", &plan)).unwrap(),
            json!({"apiVersion": "apprelease.io/v1alpha1", "kind": "AppReleaseRestore",
                   "metadata": {"generateName": "shop-restore-"},
                   "spec": {"release": "shop", "backup": "shop-backup-2", "components": ["db", "uploads"]}})
        );
        let whole = plan_restore(&r, "shop-backup-3", &[]).unwrap();
        assert_eq!(
            serde_json::to_value(restore_request("shop", &whole)).unwrap()["spec"],
            json!({"release": "shop", "backup": "shop-backup-3"})
        );
    }

    #[test]
    fn what_a_restore_does() {
        let r = release();
        let plan = plan_restore(&r, "shop-backup-3", &[]).unwrap();
        assert_eq!(
            describe_restore(&r, &plan, at(60)),
            "\
Restore backup shop-backup-3 (version 1.1.0, taken 29m ago, 4.0 KiB) of AppRelease shop in namespace prod:
  1. Deployment backend and StatefulSet worker are scaled to zero.
  2. The backup is restored.
  3. They come back with their replica counts and the images of 1.1.0:
       backend/backend: busybox:1.1.0
       worker/worker: busybox:1.1.0
  What was written since the backup was taken is lost.
"
        );
        let plan = plan_restore(&r, "shop-backup-2", &strings(&["db"])).unwrap();
        let mut one = release();
        one.spec.targets.truncate(1);
        assert_eq!(
            describe_restore(&one, &plan, at(60)),
            "\
Restore backup shop-backup-2 (version 1.0.0, taken 39m ago, 1.5 GiB) of AppRelease shop in namespace prod:
  components: db (of db, uploads)
  1. Deployment backend is scaled to zero.
  2. The backup is restored.
  3. They come back with their replica counts and the images of 1.0.0.
  What was written since the backup was taken is lost.
"
        );
        let plan = plan_restore(&r, "shop-backup-2", &[]).unwrap();
        assert!(describe_restore(&r, &plan, at(60)).contains("  components: all (db, uploads)\n"));
    }

    #[test]
    fn confirmation_needs_yes_or_a_terminal() {
        assert_eq!(confirmation(true, false), Confirm::Given);
        assert_eq!(confirmation(true, true), Confirm::Given);
        assert_eq!(confirmation(false, true), Confirm::Ask);
        assert_eq!(confirmation(false, false), Confirm::Refuse);
        for yes in ["y", "Y", "yes", " YES\n"] {
            assert!(accepted(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y es"] {
            assert!(!accepted(no), "{no:?}");
        }
    }

    #[test]
    fn a_finished_request_reads_as_one_line() {
        let status = |phase: Option<RequestPhase>, message: Option<&str>| RequestStatus {
            phase,
            backup: Some("shop-backup-4".into()),
            version: Some("1.1.0".into()),
            conditions: message
                .map(|m| Condition {
                    type_: "Ready".into(),
                    status: ConditionStatus::True,
                    reason: "Succeeded".into(),
                    message: m.into(),
                    last_transition_time: at(1),
                    observed_generation: 1,
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let kind = "appreleasebackup.apprelease.io";
        assert_eq!(outcome(kind, "shop-x", None), None);
        assert_eq!(outcome(kind, "shop-x", Some(&status(None, None))), None);
        assert_eq!(
            outcome(
                kind,
                "shop-x",
                Some(&status(Some(RequestPhase::Running), None))
            ),
            None
        );
        assert_eq!(
            outcome(kind, "shop-x", Some(&status(Some(RequestPhase::Succeeded), Some("backed up")))),
            Some(Ok("appreleasebackup.apprelease.io/shop-x Succeeded (backup shop-backup-4, version 1.1.0): backed up".into()))
        );
        assert_eq!(
            outcome(kind, "shop-x", Some(&status(Some(RequestPhase::Failed), Some("exit 1")))),
            Some(Err("appreleasebackup.apprelease.io/shop-x Failed (backup shop-backup-4, version 1.1.0): exit 1".into()))
        );
    }
}
