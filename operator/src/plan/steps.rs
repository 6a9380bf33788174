//! The forward steps of an upgrade: backup, migration, rollout, verification.

use std::time::Duration;

use crate::api::{
    AppReleaseSpec, BackupRecord, ContainerImage, MigrationPhase, Step, Upgrade, duration,
};
use crate::jobs::names::{JobKind, job_name};

use super::decision::{Action, JobRequest, NoteType, Planner};
use super::idle::{self, display};
use super::observed::JobOutcome;
use super::{outcome, retention, rollback, targets};

/// Most step transitions one decision makes; each moves strictly forward, so this bound is
/// never reached in practice and only guards against a logic error looping.
const MAX_TRANSITIONS: usize = 16;

/// Whether a step handler moved the upgrade on or waits for the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The status changed to a later step (or the upgrade ended): look again at once.
    Moved,
    /// Nothing more can be done until the cluster changes.
    Wait,
}

/// Moves the upgrade in flight as far as it can go now.
pub fn advance(plan: &mut Planner) {
    for _ in 0..MAX_TRANSITIONS {
        let Some(upgrade) = plan.status.upgrade.clone() else {
            // The upgrade ended: report the resting state (or start the next upgrade).
            return idle::settle(plan);
        };
        let flow = match upgrade.step {
            Step::BackingUp => backing_up(plan, &upgrade),
            Step::Migrating => migrating(plan, &upgrade),
            Step::RollingOut => rolling_out(plan, &upgrade),
            Step::Verifying => verifying(plan, &upgrade),
            Step::Downgrading | Step::ScalingDown | Step::Restoring | Step::RollingBack => {
                rollback::advance(plan, &upgrade)
            }
        };
        if flow == Flow::Wait {
            return;
        }
    }
}

/// The step after the backup: the migration if it runs first, else the rollout.
pub fn after_backup(spec: &AppReleaseSpec, from: &str, to: &str) -> Step {
    match &spec.migration {
        Some(m) if m.when == MigrationPhase::BeforeRollout && from != to => Step::Migrating,
        _ => Step::RollingOut,
    }
}

/// Moves the upgrade to `step`, restarting the step clock.
pub fn enter(plan: &mut Planner, step: Step) -> Flow {
    let now = plan.now();
    if let Some(upgrade) = plan.status.upgrade.as_mut() {
        upgrade.step = step;
        upgrade.step_started_at = now;
        let message = format!(
            "upgrade {} → {}: {}",
            display(&upgrade.from),
            upgrade.to,
            step.as_str()
        );
        plan.note(NoteType::Normal, step.as_str(), message);
    }
    Flow::Moved
}

/// Decides which backups the new backup Job will prune after its success.
pub fn plan_prune(plan: &mut Planner) {
    let Some(backup) = &plan.spec.backup else {
        return;
    };
    // Never pruned: the backup of the upgrade in flight (once it has one) and that of the last
    // upgrade that took one (what a human would restore after it).
    let in_flight = plan.status.upgrade.as_ref().and_then(|u| u.backup.clone());
    let last_used = plan.status.history.iter().find_map(|h| h.backup.clone());
    let protected: Vec<&str> = in_flight
        .iter()
        .chain(&last_used)
        .map(String::as_str)
        .collect();
    let max_age = backup
        .max_age
        .as_deref()
        .and_then(|a| duration::parse_age(a).ok());
    let prune = retention::to_prune(
        &plan.status.backups,
        retention::Policy {
            keep_last: backup.keep_last,
            max_age,
            now: plan.now(),
        },
        &protected,
    );
    if let Some(upgrade) = plan.status.upgrade.as_mut() {
        upgrade.prune = prune;
    }
}

fn backing_up(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    if plan.spec.version != upgrade.to {
        // Nothing was changed yet: drop this upgrade and plan again for the new version.
        let message = format!(
            "spec.version changed to {} while backing up",
            plan.spec.version
        );
        outcome::superseded(plan, upgrade, message);
        return Flow::Moved;
    }
    match run_job(plan, upgrade, JobKind::Backup) {
        JobProgress::Waiting(message) => plan.progressing("BackingUp", message),
        JobProgress::Failed(message) => {
            outcome::aborted(
                plan,
                upgrade,
                "BackupFailed",
                format!("{message}; nothing was changed"),
            );
            return Flow::Moved;
        }
        JobProgress::Succeeded { name, message } => {
            let preset = plan
                .spec
                .backup
                .as_ref()
                .is_some_and(|b| b.preset.is_some());
            let report = match parse_report(message.as_deref()) {
                Ok(report) => report,
                Err(why) if preset => {
                    // A preset always reports what it wrote; a Job that exited 0 without a
                    // valid report cannot prove a backup exists, so it is not one.
                    let message = format!(
                        "backup Job {name} finished without a valid report ({why}), so it is not counted as a backup; nothing was changed"
                    );
                    outcome::aborted(plan, upgrade, "BackupFailed", message);
                    return Flow::Moved;
                }
                // A hand-written template may report nothing; it is trusted as before.
                Err(_) => lenient_report(message.as_deref()),
            };
            record_backup(plan, upgrade, name, report);
            return enter(plan, after_backup(plan.spec, &upgrade.from, &upgrade.to));
        }
    }
    Flow::Wait
}

/// What a backup Job says it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    pub location: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
}

/// The strict reading of a backup's termination message, required of presets: JSON with a
/// non-empty `location`, a positive `sizeBytes` and a 64-digit hex `sha256`.
pub fn parse_report(message: Option<&str>) -> Result<BackupReport, String> {
    let text = message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or("no termination message")?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format!("not JSON: {:?}", clip(text)))?;
    let location = value
        .get("location")
        .and_then(|v| v.as_str())
        .filter(|l| !l.is_empty())
        .ok_or("no location")?;
    let size = value
        .get("sizeBytes")
        .and_then(|v| v.as_i64())
        .filter(|s| *s > 0)
        .ok_or("no positive sizeBytes")?;
    let sha256 = value
        .get("sha256")
        .and_then(|v| v.as_str())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("no 64-digit hex sha256")?;
    Ok(BackupReport {
        location: Some(location.to_string()),
        size_bytes: Some(size),
        sha256: Some(sha256.to_ascii_lowercase()),
    })
}

/// Whatever a hand-written template's Job reported, field by field.
fn lenient_report(message: Option<&str>) -> BackupReport {
    let report = message.and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok());
    let field = |key: &str| report.as_ref().and_then(|r| r.get(key)).cloned();
    BackupReport {
        location: field("location").and_then(|v| v.as_str().map(String::from)),
        size_bytes: field("sizeBytes").and_then(|v| v.as_i64()),
        sha256: field("sha256").and_then(|v| v.as_str().map(String::from)),
    }
}

fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

fn record_backup(plan: &mut Planner, upgrade: &Upgrade, name: String, report: BackupReport) {
    let taken_at = plan
        .observed
        .jobs
        .get(&name)
        .and_then(|j| j.finished_at)
        .unwrap_or(plan.now());
    let record = BackupRecord {
        id: name.clone(),
        version: upgrade.from.clone(),
        taken_at,
        job: name.clone(),
        location: report.location,
        size_bytes: report.size_bytes,
        sha256: report.sha256,
    };
    plan.status
        .backups
        .retain(|b| b.id != name && !upgrade.prune.contains(&b.id));
    plan.status.backups.insert(0, record);
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.backup = Some(name.clone());
    }
    plan.note(
        NoteType::Normal,
        "BackupSucceeded",
        format!("backup {name} of version {} taken", display(&upgrade.from)),
    );
}

fn migrating(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    // A running migration is never interrupted, even when spec.version moves on.
    match run_job(plan, upgrade, JobKind::Migration) {
        JobProgress::Waiting(message) => plan.progressing("Migrating", message),
        JobProgress::Failed(message) => return rollback::start(plan, "MigrationFailed", message),
        JobProgress::Succeeded { name, .. } => {
            plan.note(
                NoteType::Normal,
                "MigrationSucceeded",
                format!("migration Job {name} succeeded"),
            );
            let rolled_out =
                usize::try_from(upgrade.targets_done).unwrap_or(0) >= plan.spec.targets.len();
            return if rolled_out {
                after_rollout(plan, upgrade, true)
            } else {
                enter(plan, Step::RollingOut)
            };
        }
    }
    Flow::Wait
}

fn rolling_out(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    if plan.spec.version != upgrade.to {
        return supersede(plan, upgrade);
    }
    let index = usize::try_from(upgrade.targets_done).unwrap_or(0);
    let Some(target) = plan.spec.targets.get(index) else {
        return after_rollout(plan, upgrade, false);
    };
    let Some(deployment) = plan.observed.deployments.get(&target.deployment) else {
        let message = format!(
            "Deployment {} was deleted during the upgrade",
            target.deployment
        );
        return rollback::start(plan, "RolloutFailed", message);
    };
    let wanted = match rollout_images(index, target, deployment, upgrade) {
        Ok(wanted) => wanted,
        Err(error) => return rollback::start(plan, "RolloutFailed", error.message),
    };
    remember_previous(plan, &wanted);
    if !targets::missing(&wanted, plan.observed).is_empty() {
        let images = apply_body(plan, &target.deployment, &wanted);
        plan.act(Action::SetImages {
            deployment: target.deployment.clone(),
            images,
        });
        plan.progressing(
            "RollingOut",
            format!(
                "rolling out {} to Deployment {}",
                upgrade.to, target.deployment
            ),
        );
        return Flow::Wait;
    }
    if deployment.is_rolled_out() {
        if let Some(u) = plan.status.upgrade.as_mut() {
            u.targets_done += 1;
            u.step_started_at = plan.observed.now;
        }
        plan.note(
            NoteType::Normal,
            "TargetReady",
            format!(
                "Deployment {} runs {} and is available",
                target.deployment, upgrade.to
            ),
        );
        return Flow::Moved;
    }
    let timeout = duration::parse(&plan.spec.rollout.timeout).unwrap_or(Duration::from_secs(600));
    let waited = elapsed(plan, upgrade);
    if deployment.deadline_exceeded && deployment.observed_generation >= deployment.generation
        || waited >= timeout
    {
        let why = if deployment.paused {
            "it was paused during the upgrade (spec.paused), so nothing rolled out".to_string()
        } else if deployment.deadline_exceeded {
            "its progress deadline was exceeded".to_string()
        } else {
            format!(
                "the rollout timeout of {} passed",
                plan.spec.rollout.timeout
            )
        };
        let message = format!(
            "Deployment {} did not become available with {}: {why} ({})",
            target.deployment,
            upgrade.to,
            deployment.progress()
        );
        return rollback::start(plan, "RolloutFailed", message);
    }
    plan.progressing(
        "RollingOut",
        format!(
            "waiting for Deployment {} to roll out {}: {}",
            target.deployment,
            upgrade.to,
            deployment.progress()
        ),
    );
    plan.requeue(timeout.saturating_sub(waited) + Duration::from_secs(1));
    Flow::Wait
}

/// The images one target gets: exactly the containers recorded in `previousImages` when the
/// upgrade started (so a sidecar left alone then stays alone), else the target's selection.
fn rollout_images(
    index: usize,
    target: &crate::api::Target,
    deployment: &super::DeploymentState,
    upgrade: &Upgrade,
) -> Result<Vec<ContainerImage>, targets::TargetError> {
    let recorded: Vec<ContainerImage> = upgrade
        .previous_images
        .iter()
        .filter(|p| p.deployment == target.deployment)
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
                "container {} of Deployment {} was removed during the upgrade",
                gone.container, gone.deployment
            ),
        });
    }
    Ok(recorded)
}

/// After every target is rolled out: the late migration, then verification, then done.
fn after_rollout(plan: &mut Planner, upgrade: &Upgrade, migrated: bool) -> Flow {
    let late_migration =
        matches!(&plan.spec.migration, Some(m) if m.when == MigrationPhase::AfterRollout);
    if late_migration && !migrated && upgrade.from != upgrade.to {
        return enter(plan, Step::Migrating);
    }
    if plan.spec.verify.is_some() {
        return enter(plan, Step::Verifying);
    }
    outcome::succeeded(plan, upgrade);
    Flow::Moved
}

fn verifying(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    if plan.spec.version != upgrade.to {
        return supersede(plan, upgrade);
    }
    match run_job(plan, upgrade, JobKind::Verify) {
        JobProgress::Waiting(message) => plan.progressing("Verifying", message),
        JobProgress::Failed(message) => return rollback::start(plan, "VerifyFailed", message),
        JobProgress::Succeeded { .. } => {
            outcome::succeeded(plan, upgrade);
            return Flow::Moved;
        }
    }
    Flow::Wait
}

/// spec.version moved on while targets may already run `upgrade.to`.
fn supersede(plan: &mut Planner, upgrade: &Upgrade) -> Flow {
    let version = plan.spec.version.clone();
    if version == upgrade.from {
        let message = format!(
            "spec.version went back to {version} during the upgrade to {}",
            upgrade.to
        );
        return rollback::start(plan, "Cancelled", message);
    }
    // Continue towards the new version from the same starting point: the previous images and
    // the backup stay those of the last version that ran, so a rollback still restores a
    // consistent pair of images and data.
    let message = format!(
        "spec.version changed to {version} during the upgrade to {}",
        upgrade.to
    );
    outcome::superseded(plan, upgrade, message);
    plan.status.attempts += 1;
    plan.status.last_attempted_version = Some(version.clone());
    let now = plan.now();
    // A chain that started as a same-version repair has no backup yet: take one now, before
    // anything moves towards the new version (invariant 1).
    let needs_backup =
        upgrade.backup.is_none() && plan.spec.backup.is_some() && upgrade.from != version;
    let step = if needs_backup {
        Step::BackingUp
    } else {
        after_backup(plan.spec, &upgrade.from, &version)
    };
    let chained = Upgrade {
        to: version.clone(),
        attempt: plan.status.attempts,
        step,
        started_at: now,
        step_started_at: now,
        targets_done: 0,
        jobs_seen: Vec::new(),
        prune: Vec::new(),
        failure: None,
        ..upgrade.clone()
    };
    plan.note(
        NoteType::Normal,
        "UpgradeStarted",
        format!(
            "upgrading from {} to {version} (attempt {})",
            display(&upgrade.from),
            chained.attempt
        ),
    );
    plan.status.upgrade = Some(chained);
    super::milestone::started(plan);
    if needs_backup {
        plan_prune(plan);
    }
    Flow::Moved
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

/// How long the current step (or rollout target) has run.
pub fn elapsed(plan: &Planner, upgrade: &Upgrade) -> Duration {
    (plan.now() - upgrade.step_started_at)
        .to_std()
        .unwrap_or_default()
}

/// Where a Job of the upgrade is.
pub enum JobProgress {
    /// Created now, or running: a message for Ready.
    Waiting(String),
    /// Succeeded, with its termination message.
    Succeeded {
        name: String,
        message: Option<String>,
    },
    /// Failed or vanished: why.
    Failed(String),
}

/// Creates the Job of `kind` for this upgrade if it was never seen, and reports where it is.
/// A Job seen once is never created again (invariant 2), even if it disappears.
pub fn run_job(plan: &mut Planner, upgrade: &Upgrade, kind: JobKind) -> JobProgress {
    let name = job_name(plan.name, kind, upgrade.attempt);
    let Some(job) = plan.observed.jobs.get(&name) else {
        if upgrade.jobs_seen.contains(&name) {
            return JobProgress::Failed(format!(
                "{kind} Job {name} disappeared before the operator saw it finish; it is not run a second time"
            ));
        }
        return match job_request(plan, upgrade, kind, name.clone()) {
            Some(request) => {
                plan.act(Action::CreateJob(request));
                JobProgress::Waiting(format!("{kind} Job {name} created"))
            }
            None => JobProgress::Failed(format!(
                "spec has no {kind} template any more, so Job {name} cannot be created"
            )),
        };
    };
    if let Some(u) = plan.status.upgrade.as_mut()
        && !u.jobs_seen.contains(&name)
    {
        u.jobs_seen.push(name.clone());
    }
    match &job.outcome {
        JobOutcome::Running => {
            let timeout = job_timeout(plan.spec, kind).unwrap_or(Duration::from_secs(600));
            plan.requeue(
                timeout
                    .saturating_sub(elapsed(plan, upgrade))
                    .max(Duration::from_secs(5)),
            );
            JobProgress::Waiting(format!("{kind} Job {name} is running"))
        }
        JobOutcome::Succeeded => JobProgress::Succeeded {
            name,
            message: job.termination_message.clone(),
        },
        JobOutcome::Failed(why) => JobProgress::Failed(format!("{kind} Job {name} failed: {why}")),
    }
}

fn job_request(
    plan: &Planner,
    upgrade: &Upgrade,
    kind: JobKind,
    name: String,
) -> Option<JobRequest> {
    let timeout = job_timeout(plan.spec, kind)?;
    let restored = upgrade
        .backup
        .as_ref()
        .and_then(|id| plan.status.backups.iter().find(|b| &b.id == id));
    Some(JobRequest {
        kind,
        from: upgrade.from.clone(),
        to: upgrade.to.clone(),
        attempt: upgrade.attempt,
        app_image: plan.app_image(&upgrade.to, &upgrade.previous_images),
        backup_id: match kind {
            JobKind::Backup => Some(name.clone()),
            _ => upgrade.backup.clone(),
        },
        backup_location: restored.and_then(|b| b.location.clone()),
        backup_sha256: restored.and_then(|b| b.sha256.clone()),
        prune: if kind == JobKind::Backup {
            upgrade.prune.clone()
        } else {
            Vec::new()
        },
        timeout,
        name,
    })
}

/// The timeout of a Job kind, or None when the spec has no template for it.
fn job_timeout(spec: &AppReleaseSpec, kind: JobKind) -> Option<Duration> {
    let text = match kind {
        JobKind::Backup => &spec.backup.as_ref()?.timeout,
        JobKind::Migration => &spec.migration.as_ref()?.timeout,
        JobKind::Verify => &spec.verify.as_ref()?.timeout,
        JobKind::Downgrade => &spec.rollback.downgrade.as_ref()?.timeout,
        JobKind::Restore => match (&spec.rollback.restore, &spec.backup) {
            (Some(restore), _) => &restore.timeout,
            // A preset restores with its own Job, given the backup's time.
            (None, Some(backup)) if backup.preset.is_some() => &backup.timeout,
            _ => return None,
        },
    };
    duration::parse(text).ok()
}
