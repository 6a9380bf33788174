//! Rolling an upgrade back: the database policy first (down-migration, or scale to zero and
//! restore), then exactly the images recorded in `previousImages` (invariant 5).

use std::time::Duration;

use crate::api::{DatabaseRollback, DeploymentReplicas, Failure, Step, Upgrade, duration};
use crate::jobs::names::JobKind;

use super::decision::{Action, NoteType, Planner};
use super::outcome;
use super::steps::{Flow, JobProgress, elapsed, enter, run_job};

/// Starts a rollback because of `reason`; with automatic rollback off, stops instead.
pub fn start(plan: &mut Planner, reason: &str, message: String) -> Flow {
    let Some(upgrade) = plan.status.upgrade.clone() else {
        return Flow::Moved;
    };
    if !plan.spec.rollback.automatic {
        outcome::stopped(plan, &upgrade, reason, message);
        return Flow::Moved;
    }
    plan.note(
        NoteType::Warning,
        reason,
        format!("{message}; rolling back"),
    );
    super::milestone::rolling_back(plan, &upgrade, reason, &message);
    let first = match plan.spec.rollback.database {
        DatabaseRollback::Downgrade => Step::Downgrading,
        DatabaseRollback::Restore if upgrade.backup.is_some() => Step::ScalingDown,
        _ => Step::RollingBack,
    };
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.failure = Some(Failure {
            reason: reason.to_string(),
            message,
        });
    }
    enter(plan, first)
}

/// Moves a rollback on.
pub fn advance(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    match upgrade.step {
        Step::Downgrading => downgrading(plan, upgrade),
        Step::ScalingDown => scaling_down(plan, upgrade),
        Step::Restoring => restoring(plan, upgrade),
        _ => rolling_back(plan, upgrade),
    }
}

fn downgrading(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    match run_job(plan, upgrade, JobKind::Downgrade) {
        JobProgress::Waiting(message) => plan.progressing("RollingBack", message),
        JobProgress::Failed(message) => {
            let advice = format!(
                "{message}. The targets were left as they are ({}). The database may be partly downgraded: check it, restore {} by hand if needed, then set the images back.",
                images(upgrade, true, plan),
                backup_hint(plan, upgrade)
            );
            outcome::rollback_failed(plan, upgrade, advice);
            return Flow::Moved;
        }
        JobProgress::Succeeded { .. } => return enter(plan, Step::RollingBack),
    }
    Flow::Wait
}

fn scaling_down(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    if upgrade.previous_replicas.is_empty() {
        // Write-ahead: the replica counts are in the status before anything is scaled.
        let replicas: Vec<DeploymentReplicas> = deployments(upgrade)
            .into_iter()
            .filter_map(|name| {
                let d = plan.observed.deployments.get(&name)?;
                Some(DeploymentReplicas {
                    deployment: name,
                    replicas: d.replicas,
                })
            })
            .collect();
        if let Some(u) = plan.status.upgrade.as_mut() {
            u.previous_replicas = replicas;
        }
    }
    let recorded = plan
        .status
        .upgrade
        .as_ref()
        .map(|u| u.previous_replicas.clone())
        .unwrap_or_default();
    let mut waiting = Vec::new();
    for r in &recorded {
        let Some(d) = plan.observed.deployments.get(&r.deployment) else {
            continue;
        };
        if d.replicas != 0 {
            plan.act(Action::Scale {
                deployment: r.deployment.clone(),
                replicas: 0,
            });
        }
        if d.replicas != 0 || !d.is_scaled_down() {
            waiting.push(r.deployment.as_str());
        }
    }
    if waiting.is_empty() {
        return enter(plan, Step::Restoring);
    }
    let timeout = rollout_timeout(plan);
    if elapsed(plan, upgrade) >= timeout {
        let message = format!(
            "the targets did not scale to zero within {} ({} still running), so the restore of {} did not start; the database was not touched",
            plan.spec.rollout.timeout,
            waiting.join(", "),
            backup_hint(plan, upgrade)
        );
        outcome::rollback_failed(plan, upgrade, message);
        return Flow::Moved;
    }
    plan.progressing(
        "RollingBack",
        format!(
            "scaling {} to zero before restoring {}",
            waiting.join(", "),
            backup_hint(plan, upgrade)
        ),
    );
    Flow::Wait
}

fn restoring(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    match run_job(plan, upgrade, JobKind::Restore) {
        JobProgress::Waiting(message) => plan.progressing("RollingBack", message),
        JobProgress::Failed(message) => {
            let replicas: Vec<String> = upgrade
                .previous_replicas
                .iter()
                .map(|r| format!("{}={}", r.deployment, r.replicas))
                .collect();
            let advice = format!(
                "{message}. The targets stay scaled to zero so that nothing writes into a half-restored database. Restore {} by hand, then set the images back ({}) and the replicas ({}).",
                backup_hint(plan, upgrade),
                images(upgrade, false, plan),
                replicas.join(", ")
            );
            outcome::rollback_failed(plan, upgrade, advice);
            return Flow::Moved;
        }
        JobProgress::Succeeded { name, .. } => {
            plan.note(
                NoteType::Normal,
                "RestoreSucceeded",
                format!("restore Job {name} restored {}", backup_hint(plan, upgrade)),
            );
            return enter(plan, Step::RollingBack);
        }
    }
    Flow::Wait
}

fn rolling_back(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
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
                deployment: deployment.clone(),
                images,
            });
            pending.push(deployment.clone());
        }
        if let Some(r) = upgrade
            .previous_replicas
            .iter()
            .find(|r| r.deployment == deployment)
            && d.replicas != r.replicas
        {
            plan.act(Action::Scale {
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
        outcome::rolled_back(plan, upgrade);
        return Flow::Moved;
    }
    let timeout = rollout_timeout(plan);
    let waited = elapsed(plan, upgrade);
    if waited >= timeout {
        let message = format!(
            "the previous version did not become available again within {} ({} not ready); its images are set back ({})",
            plan.spec.rollout.timeout,
            pending.join(", "),
            images(upgrade, false, plan)
        );
        outcome::rollback_failed(plan, upgrade, message);
        return Flow::Moved;
    }
    plan.progressing(
        "RollingBack",
        format!("putting back the previous images of {}", pending.join(", ")),
    );
    plan.requeue(timeout.saturating_sub(waited) + Duration::from_secs(1));
    Flow::Wait
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
