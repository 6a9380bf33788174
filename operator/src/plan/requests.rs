//! On-demand backups and restores (`AppReleaseBackup`, `AppReleaseRestore`). Each runs as
//! an operation in `status.upgrade` (with `request` set), so it has everything an upgrade
//! has: write-ahead intent, Jobs created once, the finalizer, a history entry. One runs at a
//! time, oldest first, only while no upgrade is in flight, and an upgrade never starts while
//! one runs.
//!
//! - A backup runs `spec.backup` (every component of a set) and joins the inventory, where
//!   retention treats it like any other.
//! - A restore is refused, changing nothing, while an upgrade is in flight, when the backup is
//!   not in the inventory, when a component is unknown or cannot be restored, or when a
//!   preset's check Job finds the file missing or its checksum wrong. Otherwise the targets
//!   are scaled to zero, the components restored in the set's order, and the targets come
//!   back with their replica counts and the images recorded with the backup. The release
//!   then runs the backup's version; when `spec.version` says another, that version waits
//!   (Ready says why) until the spec or the retry annotation changes, since installing it
//!   would undo the restore.
//!
//! The request objects' status is derived here from the AppRelease's own status (the
//! operation in flight, the history) and written after it.

use crate::api::conditions::{self, ConditionStatus, Desired};
use crate::api::{
    FailedVersion, RequestKind, RequestPhase, RequestRef, RequestStatus, Step, Upgrade,
    UpgradeResult,
};
use crate::jobs::names::JobKind;

use super::decision::{NoteType, Planner, RequestUpdate};
use super::job_progress::{JobProgress, run_component_job};
use super::observed::{Observed, Request};
use super::outcome;
use super::text::display;
use super::transition::{End, Transition};
use super::{start, targets};

/// A request refused this decision: it changes nothing and is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The request's uid.
    pub uid: String,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For a human.
    pub message: String,
}

/// The requests still to run, oldest first: not over, not in flight, not in the history.
fn pending<'a>(plan: &'a Planner) -> Vec<&'a Request> {
    let mut pending: Vec<&Request> = plan
        .observed
        .requests
        .iter()
        .filter(|r| !r.is_final() && !is_recorded(plan, &r.uid))
        .collect();
    pending.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    pending
}

fn is_recorded(plan: &Planner, uid: &str) -> bool {
    let current = plan
        .status
        .upgrade
        .as_ref()
        .and_then(|u| u.request.as_ref());
    current.is_some_and(|r| r.uid == uid)
        || plan
            .status
            .history
            .iter()
            .any(|h| h.request.as_ref().is_some_and(|r| r.uid == uid))
}

/// Starts the oldest pending request that can start, refusing those that cannot; true when
/// one was started. Called only with no operation in flight.
pub fn begin(plan: &mut Planner) -> bool {
    let candidates: Vec<Request> = pending(plan).into_iter().cloned().collect();
    for request in candidates {
        let started = match request.kind {
            RequestKind::Backup => begin_backup(plan, &request),
            RequestKind::Restore => begin_restore(plan, &request),
        };
        match started {
            Ok(()) => return true,
            Err((reason, message)) => {
                plan.note(
                    NoteType::Warning,
                    reason,
                    format!("{}: {message}", describe(&request)),
                );
                plan.refused.push(Refusal {
                    uid: request.uid.clone(),
                    reason,
                    message,
                });
            }
        }
    }
    false
}

fn describe(request: &Request) -> String {
    match request.kind {
        RequestKind::Backup => format!("AppReleaseBackup {}", request.name),
        RequestKind::Restore => format!("AppReleaseRestore {}", request.name),
    }
}

type Refused = (&'static str, String);

fn begin_backup(plan: &mut Planner, request: &Request) -> Result<(), Refused> {
    if plan.spec.backup.is_none() {
        return Err((
            "NoBackupSpec",
            format!(
                "AppRelease {} has no spec.backup, so there is nothing to back up with; nothing was done",
                plan.name
            ),
        ));
    }
    let version = running_version(plan);
    let images = current_images(plan);
    let reference = request.reference();
    record(
        plan,
        reference,
        version.clone(),
        version.clone(),
        Step::BackingUp,
        None,
        images,
    );
    start::plan_prune(plan);
    plan.note(
        NoteType::Normal,
        "BackupRequested",
        format!(
            "{}: backing up version {}",
            describe(request),
            display(&version)
        ),
    );
    Ok(())
}

fn begin_restore(plan: &mut Planner, request: &Request) -> Result<(), Refused> {
    let id = request.backup.clone().unwrap_or_default();
    let Some(backup) = plan.status.backups.iter().find(|b| b.id == id).cloned() else {
        let known: Vec<&str> = plan.status.backups.iter().map(|b| b.id.as_str()).collect();
        return Err((
            "BackupNotFound",
            format!(
                "backup {id:?} is not in the inventory of AppRelease {} ({}); nothing was changed",
                plan.name,
                if known.is_empty() {
                    "it has no backups".to_string()
                } else {
                    format!("it has {}", known.join(", "))
                }
            ),
        ));
    };
    let recorded: Vec<String> = backup.components.iter().map(|c| c.name.clone()).collect();
    let selected: Vec<String> = if request.components.is_empty() {
        recorded.clone()
    } else if recorded.is_empty() {
        return Err((
            "ComponentNotFound",
            format!(
                "backup {id} is a single backup, not a set: leave components empty; nothing was changed"
            ),
        ));
    } else {
        if let Some(unknown) = request.components.iter().find(|c| !recorded.contains(c)) {
            return Err((
                "ComponentNotFound",
                format!(
                    "backup set {id} has no component {unknown} (it has {}); nothing was changed",
                    recorded.join(", ")
                ),
            ));
        }
        // The set's order, whatever the order asked.
        recorded
            .iter()
            .filter(|c| request.components.contains(c))
            .cloned()
            .collect()
    };
    let parts: Vec<Option<String>> = if selected.is_empty() {
        vec![None]
    } else {
        selected.iter().cloned().map(Some).collect()
    };
    for part in &parts {
        let restorable = plan
            .spec
            .backup_component(part.as_deref())
            .is_some_and(|c| c.preset.is_some() || c.restore.is_some());
        if !restorable {
            let what = part
                .as_ref()
                .map(|c| format!("component {c}"))
                .unwrap_or_else(|| "the backup".into());
            return Err((
                "NoRestoreJob",
                format!(
                    "spec.backup gives no way to restore {what} of backup {id} (a preset, or a template with its restore template); nothing was changed"
                ),
            ));
        }
    }
    if let Some(claim) = plan.claim.clone() {
        return Err(("TargetClaimed", claim));
    }
    let images = if backup.images.is_empty() {
        // Recorded by an older operator: the targets' repositories at the backup's version.
        let carried = plan.status.current_version.clone();
        targets::desired_images(
            plan.spec,
            plan.observed,
            &backup.version,
            carried.as_deref(),
        )
        .map_err(|e| (e.reason, format!("{}; nothing was changed", e.message)))?
    } else {
        backup.images.clone()
    };
    if let Some(missing) = images
        .iter()
        .find(|i| !plan.observed.deployments.contains_key(&i.deployment))
    {
        return Err((
            "TargetNotFound",
            format!(
                "target {} of backup {id} does not exist, so its images cannot be brought back; nothing was changed",
                missing.deployment
            ),
        ));
    }
    let checks = parts.iter().any(|part| {
        plan.spec
            .backup_component(part.as_deref())
            .is_some_and(|c| c.preset.is_some())
    });
    let first = if checks {
        Step::Checking
    } else {
        Step::ScalingDown
    };
    let from = running_version(plan);
    let mut reference = request.reference();
    reference.components = selected;
    record(
        plan,
        reference,
        from.clone(),
        backup.version.clone(),
        first,
        Some(id.clone()),
        images,
    );
    plan.note(
        NoteType::Normal,
        "RestoreStarted",
        format!(
            "{}: restoring backup {id} of version {} (the release runs {})",
            describe(request),
            backup.version,
            display(&from)
        ),
    );
    Ok(())
}

/// The version the targets run, as far as it is known.
fn running_version(plan: &Planner) -> String {
    plan.status.current_version.clone().unwrap_or_else(|| {
        current_images(plan)
            .first()
            .and_then(|p| crate::api::image::tag(&p.image))
            .unwrap_or_default()
            .to_string()
    })
}

/// What the selected containers of the targets run now (empty when a target is missing).
fn current_images(plan: &Planner) -> Vec<crate::api::ContainerImage> {
    let carried = plan.status.current_version.clone();
    targets::desired_images(
        plan.spec,
        plan.observed,
        &plan.spec.version,
        carried.as_deref(),
    )
    .map(|wanted| targets::current_images(&wanted, plan.observed))
    .unwrap_or_default()
}

/// Records the operation in flight (write-ahead).
fn record(
    plan: &mut Planner,
    request: RequestRef,
    from: String,
    to: String,
    step: Step,
    backup: Option<String>,
    previous_images: Vec<crate::api::ContainerImage>,
) {
    plan.status.attempts += 1;
    let now = plan.now();
    plan.status.upgrade = Some(Upgrade {
        from,
        to,
        attempt: plan.status.attempts,
        step,
        started_at: now,
        step_started_at: now,
        targets_done: 0,
        backup,
        previous_images,
        previous_replicas: Vec::new(),
        jobs_seen: Vec::new(),
        prune: Vec::new(),
        migration_started: false,
        restored_components: Vec::new(),
        failure: None,
        request: Some(request),
    });
}

/// Before an on-demand restore changes anything: a preset's check Job per component
/// verifies that its file is there and its checksum matches. All run at once.
pub fn checking(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    let parts = restore_parts(upgrade);
    let (mut running, mut failures) = (Vec::new(), Vec::new());
    for part in parts {
        let preset = plan
            .spec
            .backup_component(part.as_deref())
            .is_some_and(|c| c.preset.is_some());
        if !preset {
            continue;
        }
        match run_component_job(plan, upgrade, JobKind::Check, part.as_deref()) {
            JobProgress::Waiting(message) => running.push(message),
            JobProgress::Failed(message) => failures.push(message),
            JobProgress::Succeeded { .. } => {}
        }
    }
    if !running.is_empty() {
        return Transition::Wait(running.join("; "));
    }
    if !failures.is_empty() {
        return Transition::Finish(End::Aborted {
            reason: "BackupCheckFailed",
            message: format!(
                "backup {} cannot be restored: {}; nothing was changed",
                upgrade.backup.as_deref().unwrap_or_default(),
                failures.join("; ")
            ),
        });
    }
    Transition::Enter(Step::ScalingDown)
}

/// The components an on-demand restore restores, in the set's order; `[None]` for a single
/// backup.
pub fn restore_parts(upgrade: &Upgrade) -> Vec<Option<String>> {
    match upgrade.request.as_ref() {
        Some(r) if !r.components.is_empty() => r.components.iter().cloned().map(Some).collect(),
        _ => vec![None],
    }
}

/// How a request ends: its history entry and Event, and for a restore what the release runs
/// afterwards. A failed backup or a refused restore holds nothing back.
pub fn finish(plan: &mut Planner, upgrade: &Upgrade, end: End) {
    let name = upgrade
        .request
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let backup = upgrade.backup.clone().unwrap_or_default();
    let (result, reason, message, type_) = match (upgrade.request.as_ref().map(|r| r.kind), end) {
        (Some(RequestKind::Backup), End::Succeeded) => (
            UpgradeResult::Succeeded,
            "BackupTaken",
            format!(
                "backup {backup} of version {} taken on request {name}",
                display(&upgrade.from)
            ),
            NoteType::Normal,
        ),
        (Some(RequestKind::Restore), End::RolledBack) => {
            let message = format!(
                "backup {backup} of version {} restored on request {name}; the targets run {} again",
                upgrade.to, upgrade.to
            );
            restored(plan, upgrade, &message);
            (
                UpgradeResult::Succeeded,
                "Restored",
                message,
                NoteType::Normal,
            )
        }
        (_, End::Aborted { reason, message }) => {
            (UpgradeResult::Aborted, reason, message, NoteType::Warning)
        }
        (_, End::RollbackFailed(message)) => {
            let message =
                format!("the restore of backup {backup} on request {name} failed: {message}");
            hold(plan, "RestoreFailed", &message);
            (
                UpgradeResult::Failed,
                "RestoreFailed",
                message,
                NoteType::Warning,
            )
        }
        (_, other) => (
            UpgradeResult::Failed,
            "RequestFailed",
            format!("request {name} ended unexpectedly: {other:?}"),
            NoteType::Warning,
        ),
    };
    outcome::end(plan, upgrade, result, reason, &message);
    plan.note(type_, reason, message);
}

/// After a restore the release runs the backup's version. A `spec.version` that says another
/// waits, or the next decision would upgrade the restored data away.
fn restored(plan: &mut Planner, upgrade: &Upgrade, message: &str) {
    plan.status.current_version = Some(upgrade.to.clone());
    if plan.spec.version == upgrade.to {
        plan.status.failed = None;
    } else {
        let message = format!(
            "{message}, while spec.version says {}: installing it would upgrade the restored data away",
            plan.spec.version
        );
        hold(plan, "Restored", &message);
    }
}

/// Holds `spec.version` back until the spec or the retry annotation changes.
fn hold(plan: &mut Planner, reason: &str, message: &str) {
    plan.status.failed = Some(FailedVersion {
        version: plan.spec.version.clone(),
        generation: plan.generation,
        retry: plan.retry.clone(),
        reason: reason.to_string(),
        message: message.to_string(),
    });
}

/// The status each request not yet over should now have, for those whose status changes.
pub fn updates(
    status: &crate::api::AppReleaseStatus,
    observed: &Observed,
    refused: &[Refusal],
) -> Vec<RequestUpdate> {
    observed
        .requests
        .iter()
        .filter(|r| !r.is_final())
        .filter_map(|r| {
            let wanted = wanted_status(status, observed, refused, r);
            (wanted != r.status).then(|| RequestUpdate {
                kind: r.kind,
                name: r.name.clone(),
                status: wanted,
            })
        })
        .collect()
}

fn wanted_status(
    status: &crate::api::AppReleaseStatus,
    observed: &Observed,
    refused: &[Refusal],
    request: &Request,
) -> RequestStatus {
    let mut out = request.status.clone();
    out.observed_generation = Some(request.generation);
    let now = observed.now;
    let set = |out: &mut RequestStatus,
               ready: Desired,
               reconciling: Option<Desired>,
               stalled: Option<Desired>| {
        let list = &mut out.conditions;
        conditions::set(
            list,
            conditions::READY,
            Some(ready),
            request.generation,
            now,
        );
        conditions::set(
            list,
            conditions::RECONCILING,
            reconciling,
            request.generation,
            now,
        );
        conditions::set(list, conditions::STALLED, stalled, request.generation, now);
    };
    let in_flight = status.upgrade.as_ref();
    if let Some(upgrade) =
        in_flight.filter(|u| u.request.as_ref().is_some_and(|r| r.uid == request.uid))
    {
        out.phase = Some(RequestPhase::Running);
        out.attempt = Some(upgrade.attempt);
        out.started_at = Some(upgrade.started_at);
        (out.backup, out.version) = match request.kind {
            RequestKind::Backup => (upgrade.backup.clone(), Some(upgrade.from.clone())),
            RequestKind::Restore => (upgrade.backup.clone(), Some(upgrade.to.clone())),
        };
        let message = conditions::get(&status.conditions, conditions::RECONCILING)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| upgrade.step.as_str().to_string());
        set(
            &mut out,
            Desired::new(ConditionStatus::Unknown, "Running", message.clone()),
            Some(Desired::new(
                ConditionStatus::True,
                upgrade.step.as_str(),
                message,
            )),
            None,
        );
        return out;
    }
    if let Some(entry) = status
        .history
        .iter()
        .find(|h| h.request.as_ref().is_some_and(|r| r.uid == request.uid))
    {
        let ok = entry.result == UpgradeResult::Succeeded;
        out.phase = Some(if ok {
            RequestPhase::Succeeded
        } else {
            RequestPhase::Failed
        });
        out.attempt = Some(entry.attempt);
        out.started_at = Some(entry.started_at);
        out.finished_at = Some(entry.finished_at);
        out.backup = entry.backup.clone();
        out.version = Some(match request.kind {
            RequestKind::Backup => entry.from.clone(),
            RequestKind::Restore => entry.to.clone(),
        });
        let status = if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let stalled =
            (!ok).then(|| Desired::new(ConditionStatus::True, &entry.reason, &entry.message));
        set(
            &mut out,
            Desired::new(status, &entry.reason, &entry.message),
            None,
            stalled,
        );
        return out;
    }
    let refusal = refused
        .iter()
        .find(|f| f.uid == request.uid)
        .map(|f| (f.reason, f.message.clone()))
        .or_else(|| refused_by_upgrade(in_flight, request));
    if let Some((reason, message)) = refusal {
        out.phase = Some(RequestPhase::Failed);
        out.finished_at = Some(now);
        set(
            &mut out,
            Desired::new(ConditionStatus::False, reason, &message),
            None,
            Some(Desired::new(ConditionStatus::True, reason, &message)),
        );
        return out;
    }
    let message = match in_flight {
        Some(u) => match &u.request {
            Some(other) => format!("waits for {:?} request {} to end", other.kind, other.name),
            None => format!(
                "waits for the upgrade from {} to {} to end",
                display(&u.from),
                u.to
            ),
        },
        None => "waits until the AppRelease can act (see its Ready condition)".into(),
    };
    out.phase = Some(RequestPhase::Pending);
    set(
        &mut out,
        Desired::new(ConditionStatus::False, "Pending", &message),
        Some(Desired::new(ConditionStatus::True, "Pending", &message)),
        None,
    );
    out
}

/// A restore is refused while an upgrade is in flight: it would fight the upgrade, and
/// waiting would restore old data over an upgrade that just succeeded.
fn refused_by_upgrade(
    in_flight: Option<&Upgrade>,
    request: &Request,
) -> Option<(&'static str, String)> {
    let upgrade = in_flight.filter(|u| u.request.is_none())?;
    (request.kind == RequestKind::Restore).then(|| {
        (
            "UpgradeInProgress",
            format!(
                "the upgrade from {} to {} is in flight, so nothing was restored; create the AppReleaseRestore again once it has ended",
                display(&upgrade.from),
                upgrade.to
            ),
        )
    })
}
