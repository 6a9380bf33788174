//! Rolling an upgrade back: the database policy first (down-migration, or scale to zero and
//! restore), then exactly the images recorded in `previousImages` (invariant 5). Each handler
//! returns the next move (see `machine`).

use std::time::Duration;

use crate::api::{AppReleaseSpec, DatabaseRollback, RolloutStrategy, Step, Upgrade, duration};
use crate::jobs::names::JobKind;

use super::decision::{Action, NoteType, Planner};
use super::job_progress::{JobProgress, elapsed, run_component_job, run_job};
use super::replicas;
use super::transition::{End, Transition};

/// The first step of a rollback: the database policy first (a down-migration once a
/// migration may have run, or scale to zero and restore when this upgrade took a backup),
/// else straight to the images. An offline upgrade stops the targets again before its
/// down-migration.
pub fn first_step(spec: &AppReleaseSpec, upgrade: &Upgrade) -> Step {
    let offline = spec.rollout.strategy == RolloutStrategy::Offline;
    match spec.rollback.database {
        DatabaseRollback::Downgrade if !upgrade.migration_started => Step::RollingBack,
        DatabaseRollback::Downgrade if offline => Step::ScalingDown,
        DatabaseRollback::Downgrade => Step::Downgrading,
        DatabaseRollback::Restore if upgrade.backup.is_some() => Step::ScalingDown,
        _ => Step::RollingBack,
    }
}

pub fn downgrading(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    match run_job(plan, upgrade, JobKind::Downgrade) {
        JobProgress::Waiting(message) => Transition::Wait(message),
        JobProgress::Failed(message) => {
            let advice = format!(
                "{message}. The targets were left as they are ({}). The database may be partly downgraded: check it, restore {} by hand if needed, then set the images back.",
                images(upgrade, true, plan),
                backup_hint(plan, upgrade)
            );
            Transition::Finish(End::RollbackFailed(advice))
        }
        JobProgress::Succeeded { .. } => Transition::Enter(Step::RollingBack),
    }
}

pub fn scaling_down(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    // An offline upgrade recorded them before stopping the targets; those are kept.
    replicas::record(plan, &deployments(upgrade));
    let waiting = replicas::scale_to_zero(plan);
    let (next, what) = match plan.spec.rollback.database {
        DatabaseRollback::Downgrade => (Step::Downgrading, "down-migration".to_string()),
        _ => (
            Step::Restoring,
            format!("restore of {}", backup_hint(plan, upgrade)),
        ),
    };
    if waiting.is_empty() {
        return Transition::Enter(next);
    }
    let timeout = rollout_timeout(plan);
    if elapsed(plan, upgrade) >= timeout {
        let message = format!(
            "the targets did not scale to zero within {} ({} still running), so the {what} did not start; the database was not touched",
            plan.spec.rollout.timeout,
            waiting.join(", "),
        );
        return Transition::Finish(End::RollbackFailed(message));
    }
    Transition::Wait(format!(
        "scaling {} to zero before the {what}",
        waiting.join(", ")
    ))
}

pub fn restoring(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    let components = restore_order(plan, upgrade);
    let set = components.iter().any(Option::is_some);
    for component in components {
        let label = component.clone().unwrap_or_default();
        if set && upgrade.restored_components.contains(&label) {
            continue;
        }
        match run_component_job(plan, upgrade, JobKind::Restore, component.as_deref()) {
            JobProgress::Waiting(message) => return Transition::Wait(message),
            JobProgress::Failed(message) => {
                let what = match &component {
                    Some(c) => format!(
                        "component {c} of {} was not restored{}",
                        backup_hint(plan, upgrade),
                        restored_so_far(upgrade)
                    ),
                    None => String::new(),
                };
                let replicas: Vec<String> = upgrade
                    .previous_replicas
                    .iter()
                    .map(|r| format!("{}={}", r.deployment, r.replicas))
                    .collect();
                let advice = format!(
                    "{message}{}{what}. The targets stay scaled to zero so that nothing writes into a half-restored database. Restore {} by hand, then set the images back ({}) and the replicas ({}).",
                    if what.is_empty() { "" } else { ": " },
                    backup_hint(plan, upgrade),
                    images(upgrade, false, plan),
                    replicas.join(", ")
                );
                return Transition::Finish(End::RollbackFailed(advice));
            }
            JobProgress::Succeeded { name, .. } => {
                let what = match &component {
                    Some(c) => format!("component {c} of {}", backup_hint(plan, upgrade)),
                    None => backup_hint(plan, upgrade),
                };
                plan.note(
                    NoteType::Normal,
                    "RestoreSucceeded",
                    format!("restore Job {name} restored {what}"),
                );
                if set && let Some(u) = plan.status.upgrade.as_mut() {
                    u.restored_components.push(label);
                }
            }
        }
    }
    Transition::Enter(Step::RollingBack)
}

/// The components to restore, in order: those the backup set recorded (spec order when it
/// was taken), else the spec's; `[None]` for a single backup.
pub fn restore_order(plan: &Planner, upgrade: &Upgrade) -> Vec<Option<String>> {
    if upgrade.request.is_some() {
        return super::requests::restore_parts(upgrade);
    }
    let recorded = upgrade
        .backup
        .as_ref()
        .and_then(|id| plan.status.backups.iter().find(|b| &b.id == id))
        .map(|b| {
            b.components
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !recorded.is_empty() {
        return recorded.into_iter().map(Some).collect();
    }
    plan.spec
        .backup_components()
        .iter()
        .map(|c| c.name.map(String::from))
        .collect()
}

/// `; db, cache were restored already`, or nothing.
fn restored_so_far(upgrade: &Upgrade) -> String {
    if upgrade.restored_components.is_empty() {
        return " (no component was restored)".into();
    }
    format!(
        " ({} restored before it)",
        upgrade.restored_components.join(", ")
    )
}

pub fn rolling_back(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    // Past the deadline the rollback is declared failed below; deleting a pod in the same
    // decision would act on a rollback that is over.
    let timeout = rollout_timeout(plan);
    let waited = elapsed(plan, upgrade);
    let mut pending = Vec::new();
    for deployment in deployments(upgrade) {
        let Some(d) = plan.observed.deployments.get(&deployment) else {
            continue;
        };
        let images: Vec<(String, String)> = upgrade
            .previous_images
            .iter()
            .filter(|p| p.deployment == deployment)
            .map(|p| (p.container.clone(), p.image.clone()))
            .collect();
        if images
            .iter()
            .any(|(c, image)| d.image(c) != Some(image.as_str()))
        {
            plan.act(Action::SetImages {
                kind: d.kind,
                deployment: deployment.clone(),
                images,
            });
            pending.push(deployment.clone());
        } else if waited < timeout {
            // A StatefulSet waits forever for a pod of the failed version to become ready
            // before it replaces it; the template is back, so that pod goes (forced rollback).
            for pod in d.stuck_pods() {
                plan.act(Action::DeletePod {
                    pod: pod.name.clone(),
                    uid: pod.uid.clone(),
                });
                let message = format!(
                    "deleted pod {} of StatefulSet {deployment}: it runs the failed version and is not ready, and its controller would wait for it forever; it is recreated from the previous template",
                    pod.name
                );
                plan.note(NoteType::Normal, "StuckPodDeleted", message);
            }
        }
        if let Some(r) = upgrade
            .previous_replicas
            .iter()
            .find(|r| r.deployment == deployment)
            && d.replicas != r.replicas
        {
            plan.act(Action::Scale {
                kind: d.kind,
                deployment: deployment.clone(),
                replicas: r.replicas,
            });
            pending.push(deployment.clone());
        }
        if !d.is_rolled_out() && !pending.contains(&deployment) {
            pending.push(deployment.clone());
        }
    }
    if pending.is_empty() {
        return Transition::Finish(End::RolledBack);
    }
    if waited >= timeout {
        let message = format!(
            "the previous version did not become available again within {} ({} not ready); its images are set back ({})",
            plan.spec.rollout.timeout,
            pending.join(", "),
            images(upgrade, false, plan)
        );
        return Transition::Finish(End::RollbackFailed(message));
    }
    plan.requeue(timeout.saturating_sub(waited) + Duration::from_secs(1));
    Transition::Wait(format!(
        "putting back the previous images of {}",
        pending.join(", ")
    ))
}

/// The Deployments the upgrade touched, in first-seen order.
fn deployments(upgrade: &Upgrade) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in &upgrade.previous_images {
        if !names.contains(&p.deployment) {
            names.push(p.deployment.clone());
        }
    }
    names
}

/// `backend/app=repo:1.2.2, …`: the previous images (or the current ones) for messages.
fn images(upgrade: &Upgrade, current: bool, plan: &Planner) -> String {
    upgrade
        .previous_images
        .iter()
        .map(|p| {
            let image = if current {
                plan.observed
                    .deployments
                    .get(&p.deployment)
                    .and_then(|d| d.image(&p.container))
                    .unwrap_or("?")
            } else {
                &p.image
            };
            format!("{}/{}={image}", p.deployment, p.container)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The backup to restore, for messages: its id, and where it is when the inventory knows.
fn backup_hint(plan: &Planner, upgrade: &Upgrade) -> String {
    let Some(id) = &upgrade.backup else {
        return "the last good backup".into();
    };
    let record = plan.status.backups.iter().find(|b| &b.id == id);
    if record.is_some_and(|b| !b.components.is_empty()) {
        return format!("backup set {id}");
    }
    match record.and_then(|b| b.location.as_deref()) {
        Some(location) => {
            let sha = record
                .and_then(|b| b.sha256.as_deref())
                .map(|s| format!(", sha256 {s}"))
                .unwrap_or_default();
            format!("backup {id} ({location}{sha})")
        }
        None => format!("backup {id}"),
    }
}

fn rollout_timeout(plan: &Planner) -> Duration {
    duration::parse(&plan.spec.rollout.timeout).unwrap_or(Duration::from_secs(600))
}
