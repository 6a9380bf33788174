//! The forward steps of an upgrade: (offline: stop,) backup, migration, rollout, (offline:
//! start,) verification. Each handler reads the upgrade and the observation and returns the
//! next move (see `machine`).

use std::time::Duration;

use crate::api::{
    BackupRecord, ComponentBackup, ContainerImage, MigrationPhase, RolloutStrategy, Step, Upgrade,
    duration,
};
use crate::jobs::names::{JobKind, job_name};

use super::backup_report::{BackupReport, lenient_report, parse_report};
use super::decision::{Action, NoteType, Planner};
use super::job_progress::{JobProgress, elapsed, run_component_job, run_job};
use super::observed::DeploymentState;
use super::replicas;
use super::retention;
use super::start::{after_backup, after_stop};
use super::targets;
use super::text::display;
use super::transition::{End, Transition};

/// Offline: every target is scaled to zero (its count recorded first) and no pod of it may
/// run before the backup starts.
pub fn stopping(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    let names: Vec<String> = plan
        .spec
        .targets
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    if upgrade.previous_replicas.is_empty() {
        note_autoscalers(plan, &names);
    }
    replicas::record(plan, &names);
    let running = replicas::scale_to_zero(plan);
    if running.is_empty() {
        return Transition::Enter(after_stop(
            plan.spec,
            upgrade.backup.as_deref(),
            &upgrade.from,
            &upgrade.to,
        ));
    }
    let timeout = rollout_timeout(plan);
    if elapsed(plan, upgrade) >= timeout {
        return Transition::RollBack {
            reason: "StopFailed",
            message: format!(
                "{} still ran pods {} after being scaled to zero, so the offline upgrade did not go on; nothing else was changed",
                running.join(", "),
                plan.spec.rollout.timeout
            ),
        };
    }
    Transition::Wait(format!(
        "stopping {} for the offline upgrade to {}",
        running.join(", "),
        upgrade.to
    ))
}

/// Says, once, which targets an autoscaler scales: the stop sets them to zero, where an
/// autoscaler does nothing, and the start back to the recorded count, after which the count
/// is the autoscaler's again.
fn note_autoscalers(plan: &mut Planner, names: &[String]) {
    for name in names {
        let Some(d) = plan.observed.deployments.get(name) else {
            continue;
        };
        if let Some(hpa) = d.autoscaler.clone() {
            let message = format!(
                "{} {name} is scaled by HorizontalPodAutoscaler {hpa}: the offline upgrade scales it to zero (an autoscaler leaves a target at zero alone) and back to its {} replicas, then leaves the count to the autoscaler again",
                d.kind, d.replicas
            );
            plan.note(NoteType::Normal, "AutoscaledTarget", message);
        }
    }
}

pub fn backing_up(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    // Offline, the targets are stopped by now: the upgrade cannot end without starting them.
    let stopped = !upgrade.previous_replicas.is_empty();
    // An on-demand backup changes nothing: it finishes whatever spec.version says meanwhile.
    let requested = upgrade.request.is_some();
    if stopped && let Some(moved) = supersede(plan, upgrade) {
        return moved;
    }
    if !stopped && !requested && plan.spec.version != upgrade.to {
        // Nothing was changed yet: drop this upgrade and plan again for the new version.
        let message = format!(
            "spec.version changed to {} while backing up",
            plan.spec.version
        );
        return Transition::Finish(End::Superseded(message));
    }
    let components: Vec<(Option<String>, bool)> = plan
        .spec
        .backup_components()
        .iter()
        .map(|c| (c.name.map(String::from), c.preset.is_some()))
        .collect();
    let set = components.iter().any(|(name, _)| name.is_some());
    let (mut running, mut failures, mut taken) = (Vec::new(), Vec::new(), Vec::new());
    let mut unreported = Vec::new();
    for (component, preset) in components {
        match run_component_job(plan, upgrade, JobKind::Backup, component.as_deref()) {
            JobProgress::Waiting(message) => running.push(message),
            JobProgress::Failed(message) => failures.push(message),
            JobProgress::Succeeded { name, message } => {
                match parse_report(message.as_deref()) {
                    Ok(report) => taken.push((component, name, report)),
                    // A preset always reports what it wrote; a Job that exited 0 without a
                    // valid report cannot prove a backup exists, so it is not one.
                    Err(why) if preset => {
                        failures.push(format!(
                            "backup Job {name} finished without a valid report ({why}), so it is not counted as a backup"
                        ));
                        // It may have written its file all the same.
                        unreported.push(name);
                    }
                    // A hand-written template may report nothing; it is trusted as before.
                    Err(_) => taken.push((component, name, lenient_report(message.as_deref()))),
                }
            }
        }
    }
    if !running.is_empty() {
        if failures.is_empty() {
            return Transition::Wait(running.join("; "));
        }
        // Concluding now would leave the running Jobs' files behind, unknown to anyone.
        return Transition::Wait(format!(
            "{}; the backup set will not count, waiting for the other components to finish: {}",
            failures.join("; "),
            running.join("; ")
        ));
    }
    if !failures.is_empty() {
        let mut message = failures.join("; ");
        if set {
            let id = job_name(plan.name, JobKind::Backup, upgrade.attempt);
            message = format!("backup set {id} is not counted: {message}");
            let written = taken.into_iter().map(|(_, job, _)| job);
            for job in written.chain(unreported) {
                if !plan.status.incomplete_backups.contains(&job) {
                    plan.status.incomplete_backups.push(job);
                }
            }
        }
        return if stopped {
            Transition::RollBack {
                reason: "BackupFailed",
                message: format!("{message}; the data was not changed"),
            }
        } else {
            Transition::Finish(End::Aborted {
                reason: "BackupFailed",
                message: format!("{message}; nothing was changed"),
            })
        };
    }
    record_backup(plan, upgrade, taken);
    if requested {
        return Transition::Finish(End::Succeeded);
    }
    Transition::Enter(after_backup(plan.spec, &upgrade.from, &upgrade.to))
}

/// Adds the backup to the inventory: the single backup's report, or the set of its
/// components' (in spec order). The backups this one's Jobs pruned leave it.
fn record_backup(
    plan: &mut Planner,
    upgrade: &Upgrade,
    taken: Vec<(Option<String>, String, BackupReport)>,
) {
    let finished = |job: &str| plan.observed.jobs.get(job).and_then(|j| j.finished_at);
    let taken_at = taken
        .iter()
        .filter_map(|(_, job, _)| finished(job))
        .max()
        .unwrap_or(plan.now());
    let id = job_name(plan.name, JobKind::Backup, upgrade.attempt);
    let mut record = BackupRecord {
        id: id.clone(),
        version: upgrade.from.clone(),
        taken_at,
        job: String::new(),
        location: None,
        size_bytes: None,
        sha256: None,
        components: Vec::new(),
        images: upgrade.previous_images.clone(),
    };
    let mut described = Vec::new();
    for (component, job, report) in taken {
        match component {
            None => {
                record.job = job;
                record.location = report.location;
                record.size_bytes = report.size_bytes;
                record.sha256 = report.sha256;
            }
            Some(name) => {
                described.push(match report.size_bytes {
                    Some(size) => format!("{name} ({size} bytes)"),
                    None => name.clone(),
                });
                record.components.push(ComponentBackup {
                    name,
                    job,
                    location: report.location,
                    size_bytes: report.size_bytes,
                    sha256: report.sha256,
                });
            }
        }
    }
    if !record.components.is_empty() {
        record.size_bytes = record.components.iter().map(|c| c.size_bytes).sum();
    }
    plan.status
        .backups
        .retain(|b| b.id != id && !retention::is_pruned(b, &upgrade.prune));
    plan.status
        .incomplete_backups
        .retain(|job| !upgrade.prune.contains(job));
    plan.status.backups.insert(0, record);
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.backup = Some(id.clone());
    }
    let what = if described.is_empty() {
        format!("backup {id}")
    } else {
        format!("backup set {id} ({})", described.join(", "))
    };
    plan.note(
        NoteType::Normal,
        "BackupSucceeded",
        format!("{what} of version {} taken", display(&upgrade.from)),
    );
}

pub fn migrating(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    // Write-ahead: from now on the data may be the new version's, so a rollback downgrades it.
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.migration_started = true;
    }
    // A running migration is never interrupted, even when spec.version moves on.
    match run_job(plan, upgrade, JobKind::Migration) {
        JobProgress::Waiting(message) => Transition::Wait(message),
        JobProgress::Failed(message) => Transition::RollBack {
            reason: "MigrationFailed",
            message,
        },
        JobProgress::Succeeded { name, .. } => {
            plan.note(
                NoteType::Normal,
                "MigrationSucceeded",
                format!("migration Job {name} succeeded"),
            );
            let rolled_out =
                usize::try_from(upgrade.targets_done).unwrap_or(0) >= plan.spec.targets.len();
            if rolled_out {
                after_start(plan, upgrade, true)
            } else {
                Transition::Enter(Step::RollingOut)
            }
        }
    }
}

pub fn rolling_out(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    if let Some(moved) = supersede(plan, upgrade) {
        return moved;
    }
    let index = usize::try_from(upgrade.targets_done).unwrap_or(0);
    let Some(target) = plan.spec.targets.get(index) else {
        return after_rollout(plan, upgrade);
    };
    let Some(deployment) = plan.observed.deployments.get(target.name()) else {
        let message = format!(
            "{} {} was deleted during the upgrade",
            target.kind(),
            target.name()
        );
        return rollout_failed(message);
    };
    let wanted = match rollout_images(index, target, deployment, upgrade) {
        Ok(wanted) => wanted,
        Err(error) => return rollout_failed(error.message),
    };
    remember_previous(plan, &wanted);
    if !targets::missing(&wanted, plan.observed).is_empty() {
        let images = apply_body(plan, target.name(), &wanted);
        plan.act(Action::SetImages {
            kind: target.kind(),
            deployment: target.name().to_string(),
            images,
        });
        return Transition::Wait(format!(
            "rolling out {} to {} {}",
            upgrade.to,
            target.kind(),
            target.name()
        ));
    }
    if deployment.is_rolled_out() {
        return Transition::NextTarget;
    }
    if let Some(why) = given_up(plan, upgrade, deployment) {
        return rollout_failed(format!(
            "{} {} did not become available with {}: {why} ({})",
            target.kind(),
            target.name(),
            upgrade.to,
            deployment.progress()
        ));
    }
    Transition::Wait(format!(
        "waiting for {} {} to roll out {}: {}",
        target.kind(),
        target.name(),
        upgrade.to,
        deployment.progress()
    ))
}

/// Why waiting for `deployment` to become available is over, if it is: its progress deadline
/// passed, or the rollout timeout did. Otherwise the decision looks again at the timeout.
fn given_up(plan: &mut Planner, upgrade: &Upgrade, deployment: &DeploymentState) -> Option<String> {
    let timeout = rollout_timeout(plan);
    let waited = elapsed(plan, upgrade);
    if deployment.deadline_exceeded && deployment.observed_generation >= deployment.generation
        || waited >= timeout
    {
        return Some(if deployment.paused {
            "it was paused during the upgrade (spec.paused), so nothing rolled out".to_string()
        } else if deployment.deadline_exceeded {
            "its progress deadline was exceeded".to_string()
        } else {
            format!(
                "the rollout timeout of {} passed",
                plan.spec.rollout.timeout
            )
        });
    }
    plan.requeue(timeout.saturating_sub(waited) + Duration::from_secs(1));
    None
}

fn rollout_timeout(plan: &Planner) -> Duration {
    duration::parse(&plan.spec.rollout.timeout).unwrap_or(Duration::from_secs(600))
}

fn rollout_failed(message: String) -> Transition {
    Transition::RollBack {
        reason: "RolloutFailed",
        message,
    }
}

/// The images one target gets: exactly the containers recorded in `previousImages` when the
/// upgrade started (so a sidecar left alone then stays alone), else the target's selection.
fn rollout_images(
    index: usize,
    target: &crate::api::Target,
    deployment: &DeploymentState,
    upgrade: &Upgrade,
) -> Result<Vec<ContainerImage>, targets::TargetError> {
    let recorded: Vec<ContainerImage> = upgrade
        .previous_images
        .iter()
        .filter(|p| p.deployment == target.name())
        .map(|p| {
            let repository = target
                .image
                .as_deref()
                .unwrap_or_else(|| crate::api::image::repository(&p.image));
            ContainerImage {
                image: crate::api::image::with_tag(repository, &upgrade.to),
                ..p.clone()
            }
        })
        .collect();
    if recorded.is_empty() {
        return targets::target_images(index, target, deployment, &upgrade.to, Some(&upgrade.from));
    }
    if let Some(gone) = recorded
        .iter()
        .find(|r| deployment.image(&r.container).is_none())
    {
        return Err(targets::TargetError {
            reason: "InvalidSpec",
            message: format!(
                "container {} of {} {} was removed during the upgrade",
                gone.container,
                target.kind(),
                gone.deployment
            ),
        });
    }
    Ok(recorded)
}

/// After every target got the new images: offline, start them; else what follows the start.
fn after_rollout(plan: &Planner, upgrade: &Upgrade) -> Transition {
    if plan.spec.rollout.strategy == RolloutStrategy::Offline {
        return Transition::Enter(Step::Starting);
    }
    after_start(plan, upgrade, false)
}

/// Offline: the targets, on the new images, come back with the replica counts recorded
/// before they were stopped. Only a target still at zero is scaled: once it runs, an
/// autoscaler or a human may change its count, and the operator does not fight them.
pub fn starting(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    if let Some(moved) = supersede(plan, upgrade) {
        return moved;
    }
    let mut waiting = Vec::new();
    for r in &upgrade.previous_replicas {
        let Some(deployment) = plan.observed.deployments.get(&r.deployment) else {
            return rollout_failed(format!(
                "target {} was deleted during the upgrade",
                r.deployment
            ));
        };
        if deployment.replicas == 0 && r.replicas != 0 {
            plan.act(Action::Scale {
                kind: deployment.kind,
                deployment: r.deployment.clone(),
                replicas: r.replicas,
            });
            waiting.push(format!("{} (starting {})", r.deployment, r.replicas));
        } else if !deployment.is_rolled_out() {
            if let Some(why) = given_up(plan, upgrade, deployment) {
                return rollout_failed(format!(
                    "{} {} did not become available with {} after starting: {why} ({})",
                    deployment.kind,
                    r.deployment,
                    upgrade.to,
                    deployment.progress()
                ));
            }
            waiting.push(format!("{} ({})", r.deployment, deployment.progress()));
        }
    }
    if waiting.is_empty() {
        return after_start(plan, upgrade, false);
    }
    Transition::Wait(format!(
        "starting {} with {}: {}",
        upgrade.to,
        if waiting.len() == 1 {
            "one target"
        } else {
            "the targets"
        },
        waiting.join(", ")
    ))
}

/// Once the targets run the new version: the late migration, then verification, then done.
fn after_start(plan: &Planner, upgrade: &Upgrade, migrated: bool) -> Transition {
    let late_migration =
        matches!(&plan.spec.migration, Some(m) if m.when == MigrationPhase::AfterRollout);
    if late_migration && !migrated && upgrade.from != upgrade.to {
        return Transition::Enter(Step::Migrating);
    }
    if plan.spec.verify.is_some() {
        return Transition::Enter(Step::Verifying);
    }
    Transition::Finish(End::Succeeded)
}

pub fn verifying(plan: &mut Planner, upgrade: &Upgrade) -> Transition {
    if let Some(moved) = supersede(plan, upgrade) {
        return moved;
    }
    match run_job(plan, upgrade, JobKind::Verify) {
        JobProgress::Waiting(message) => Transition::Wait(message),
        JobProgress::Failed(message) => Transition::RollBack {
            reason: "VerifyFailed",
            message,
        },
        JobProgress::Succeeded { .. } => Transition::Finish(End::Succeeded),
    }
}

/// spec.version moved on while targets may already run `upgrade.to`: back to the start when
/// it went back to where the upgrade came from, else on towards the newer version — once it
/// is approved (`approval: Manual`) and is no refused downgrade of the data (which is at
/// `to` once a migration may have run); until then this upgrade goes on as it is.
fn supersede(plan: &Planner, upgrade: &Upgrade) -> Option<Transition> {
    let version = &plan.spec.version;
    let data = if upgrade.migration_started {
        &upgrade.to
    } else {
        &upgrade.from
    };
    let held = !plan.approved(version) || plan.refuses_downgrade(data, version);
    if *version == upgrade.to || *version != upgrade.from && held {
        return None;
    }
    // A chained upgrade starts only inside a maintenance window, like any other.
    if *version != upgrade.from && !super::window::open(plan) {
        return None;
    }
    Some(if *version == upgrade.from {
        Transition::RollBack {
            reason: "Cancelled",
            message: format!(
                "spec.version went back to {version} during the upgrade to {}",
                upgrade.to
            ),
        }
    } else {
        Transition::Finish(End::Chained(format!(
            "spec.version changed to {version} during the upgrade to {}",
            upgrade.to
        )))
    })
}

/// Records the current image of every wanted container not yet in `previousImages`, before
/// it is changed.
fn remember_previous(plan: &mut Planner, wanted: &[ContainerImage]) {
    let current = targets::current_images(wanted, plan.observed);
    let Some(upgrade) = plan.status.upgrade.as_mut() else {
        return;
    };
    for image in current {
        let known = upgrade
            .previous_images
            .iter()
            .any(|p| p.deployment == image.deployment && p.container == image.container);
        if !known {
            upgrade.previous_images.push(image);
        }
    }
}

/// The full set of images the operator's field manager sets on one Deployment. Server-side
/// apply removes a field its manager stops mentioning, so every apply names every container
/// the upgrade touches on that Deployment: the wanted image where given, else the previous.
fn apply_body(
    plan: &Planner,
    deployment: &str,
    wanted: &[ContainerImage],
) -> Vec<(String, String)> {
    let previous = plan.status.upgrade.iter().flat_map(|u| &u.previous_images);
    let mut images: Vec<(String, String)> = wanted
        .iter()
        .filter(|w| w.deployment == deployment)
        .map(|w| (w.container.clone(), w.image.clone()))
        .collect();
    for p in previous.filter(|p| p.deployment == deployment) {
        if !images.iter().any(|(c, _)| *c == p.container) {
            images.push((p.container.clone(), p.image.clone()));
        }
    }
    images
}
