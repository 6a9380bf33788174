//! Running the Jobs of an upgrade: each is created once from the upgrade's intent, adopted
//! when it exists, and never created again once seen (invariant 2).

use std::time::Duration;

use crate::api::{AppReleaseSpec, Upgrade, duration};
use crate::jobs::names::{JobKind, component_job_name};

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
    run_component_job(plan, upgrade, kind, None)
}

/// [`run_job`] for one component of a backup set (None: the single backup).
pub fn run_component_job(
    plan: &mut Planner,
    upgrade: &Upgrade,
    kind: JobKind,
    component: Option<&str>,
) -> JobProgress {
    let name = component_job_name(plan.name, kind, upgrade.attempt, component);
    let Some(job) = plan.observed.jobs.get(&name) else {
        if upgrade.jobs_seen.contains(&name) {
            return JobProgress::Failed(format!(
                "{kind} Job {name} disappeared before the operator saw it finish; it is not run a second time"
            ));
        }
        return match job_request(plan, upgrade, kind, component, name.clone()) {
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
            let timeout =
                job_timeout(plan.spec, kind, component).unwrap_or(Duration::from_secs(600));
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
    component: Option<&str>,
    name: String,
) -> Option<JobRequest> {
    let timeout = job_timeout(plan.spec, kind, component)?;
    let restored = upgrade
        .backup
        .as_ref()
        .and_then(|id| plan.status.backups.iter().find(|b| &b.id == id));
    // A component's restore reads that component's files; the single backup's, the record's.
    let (restored_id, location, sha256) = match (restored, component) {
        (Some(record), Some(c)) => match record.components.iter().find(|b| b.name == c) {
            Some(b) => (Some(b.job.clone()), b.location.clone(), b.sha256.clone()),
            None => (Some(backup_file(plan, upgrade, c)), None, None),
        },
        (Some(record), None) => (
            Some(record.id.clone()),
            record.location.clone(),
            record.sha256.clone(),
        ),
        (None, Some(c)) => (Some(backup_file(plan, upgrade, c)), None, None),
        (None, None) => (upgrade.backup.clone(), None, None),
    };
    Some(JobRequest {
        kind,
        component: component.map(String::from),
        from: upgrade.from.clone(),
        to: upgrade.to.clone(),
        attempt: upgrade.attempt,
        app_image: plan.app_image(&upgrade.to, &upgrade.previous_images),
        backup_id: match kind {
            JobKind::Backup => Some(name.clone()),
            _ => restored_id,
        },
        backup_location: location,
        backup_sha256: sha256,
        prune: if kind == JobKind::Backup {
            upgrade.prune.clone()
        } else {
            Vec::new()
        },
        timeout,
        name,
    })
}

/// The id of a component's files when the inventory does not say: its backup Job's name in
/// this upgrade, which took the backup being restored.
fn backup_file(plan: &Planner, upgrade: &Upgrade, component: &str) -> String {
    component_job_name(plan.name, JobKind::Backup, upgrade.attempt, Some(component))
}

/// The timeout of a Job kind (for a backup set's `component`), or None when the spec has no
/// template for it.
fn job_timeout(spec: &AppReleaseSpec, kind: JobKind, component: Option<&str>) -> Option<Duration> {
    let text = match kind {
        JobKind::Backup => &spec.backup.as_ref()?.timeout,
        JobKind::Migration => &spec.migration.as_ref()?.timeout,
        JobKind::Verify => &spec.verify.as_ref()?.timeout,
        JobKind::Downgrade => &spec.rollback.downgrade.as_ref()?.timeout,
        JobKind::Check => {
            spec.backup_component(component)?.preset?;
            &spec.backup.as_ref()?.timeout
        }
        JobKind::Restore => {
            let part = spec.backup_component(component)?;
            match (part.restore, part.preset) {
                (Some(restore), _) => &restore.timeout,
                // A preset restores with its own Job, given the backup's time.
                (None, Some(_)) => &spec.backup.as_ref()?.timeout,
                (None, None) => return None,
            }
        }
    };
    duration::parse(text).ok()
}
