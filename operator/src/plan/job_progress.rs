//! Running the Jobs of an upgrade: each is created once from the upgrade's intent, adopted
//! when it exists, and never created again once seen (invariant 2).

use std::time::Duration;

use crate::api::{AppReleaseSpec, Upgrade, duration};
use crate::jobs::names::{JobKind, job_name};

use super::decision::{Action, JobRequest, Planner};
use super::observed::JobOutcome;

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
