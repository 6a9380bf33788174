//! An AppRelease deleted while an upgrade is in flight (`kubectl delete`, a GitOps prune).
//! Its finalizer holds it until the upgrade is wound down safely:
//!
//! 1. a running migration, down-migration or restore Job is never cut short: the operator
//!    waits for it to finish (and starts no new Job);
//! 2. then the targets get the images that match the database, and the replica counts
//!    recorded before a restore: the new version's images when its migration ran and
//!    nothing undid it, else exactly `previousImages`; after a failed restore or
//!    down-migration the database is in an unknown state and the targets are left as they
//!    are, as a failed rollback leaves them;
//! 3. once the targets carry that state, an Event says what happened and the finalizer
//!    goes, so the object and its Jobs go with it.

use crate::api::{ContainerImage, MigrationPhase, Step, Upgrade, image};
use crate::jobs::names::{JobKind, component_job_name, job_name};

use super::decision::{Action, Decision, NoteType, Planner};
use super::observed::JobOutcome;
use super::outcome;
use super::text::display;

/// What the database holds once the data Jobs are done, as far as the operator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// The version the upgrade started from.
    From,
    /// The version the upgrade installs: its migration ran and nothing undid it.
    To,
    /// A restore or down-migration failed part-way: no image is known to match.
    Unknown,
    /// An on-demand restore had not restored anything yet: the images were not changed, the
    /// targets come back with their replica counts.
    Untouched,
}

/// Decides for an AppRelease that is being deleted.
pub fn decide(mut plan: Planner) -> Decision {
    let Some(upgrade) = plan.status.upgrade.clone() else {
        // Nothing in flight: nothing to wait for (the finalizer goes).
        return plan.finish();
    };
    if let Some((kind, name)) = running_data_job(&plan, &upgrade) {
        let message = format!(
            "the AppRelease is being deleted; waiting for the {kind} Job {name} to finish before letting it go (a data Job is never cut short)"
        );
        plan.progressing("Deleting", message);
        return plan.finish();
    }
    let data = data_state(&plan, &upgrade);
    let (images, replicas) = wanted_state(&plan, &upgrade, data);
    let mut pending = Vec::new();
    for (deployment, images) in &images {
        let Some(d) = plan.observed.deployments.get(deployment) else {
            continue;
        };
        if images.iter().any(|(c, i)| d.image(c) != Some(i.as_str())) {
            plan.act(Action::SetImages {
                kind: d.kind,
                deployment: deployment.clone(),
                images: images.clone(),
            });
            pending.push(deployment.clone());
        }
    }
    for (deployment, count) in &replicas {
        if let Some(d) = plan.observed.deployments.get(deployment)
            && d.replicas != *count
        {
            plan.act(Action::Scale {
                kind: d.kind,
                deployment: deployment.clone(),
                replicas: *count,
            });
            pending.push(deployment.clone());
        }
    }
    if !pending.is_empty() {
        pending.dedup();
        let message = format!(
            "the AppRelease is being deleted; setting {} to {} before letting it go",
            pending.join(", "),
            describe(data, &upgrade)
        );
        plan.progressing("Deleting", message);
        return plan.finish();
    }
    let message = format!(
        "deleted during the upgrade from {} to {} (step {}): {}",
        display(&upgrade.from),
        upgrade.to,
        upgrade.step.as_str(),
        outcome_text(data, &upgrade)
    );
    outcome::cancelled(&mut plan, &upgrade, message.clone());
    let type_ = if data == Data::Unknown {
        NoteType::Warning
    } else {
        NoteType::Normal
    };
    plan.note(type_, "DeletedDuringUpgrade", message);
    plan.finish()
}

/// The migration, down-migration or restore Job of this step, if it runs now. A Job the
/// status names but that was never created runs nothing, so it is not waited for.
fn running_data_job(plan: &Planner, upgrade: &Upgrade) -> Option<(JobKind, String)> {
    let (kind, names) = match upgrade.step {
        Step::Migrating => (
            JobKind::Migration,
            vec![job_name(plan.name, JobKind::Migration, upgrade.attempt)],
        ),
        Step::Downgrading => (
            JobKind::Downgrade,
            vec![job_name(plan.name, JobKind::Downgrade, upgrade.attempt)],
        ),
        Step::Restoring => (JobKind::Restore, restore_jobs(plan, upgrade)),
        _ => return None,
    };
    names.into_iter().find_map(|name| {
        let job = plan.observed.jobs.get(&name)?;
        (job.outcome == JobOutcome::Running).then_some((kind, name))
    })
}

/// The restore Jobs of this attempt: one per component of a backup set, else the one.
fn restore_jobs(plan: &Planner, upgrade: &Upgrade) -> Vec<String> {
    super::rollback::restore_order(plan, upgrade)
        .iter()
        .map(|part| {
            component_job_name(
                plan.name,
                JobKind::Restore,
                upgrade.attempt,
                part.as_deref(),
            )
        })
        .collect()
}

/// How far the restore of this attempt went: (some restore Job succeeded, every one did,
/// one failed).
fn restore_progress(plan: &Planner, upgrade: &Upgrade) -> (bool, bool, bool) {
    let outcomes: Vec<Option<&JobOutcome>> = restore_jobs(plan, upgrade)
        .iter()
        .map(|name| plan.observed.jobs.get(name).map(|j| &j.outcome))
        .collect();
    let done = |o: &Option<&JobOutcome>| *o == Some(&JobOutcome::Succeeded);
    // A component restored earlier may have lost its Job; the status remembers it.
    let any = !upgrade.restored_components.is_empty() || outcomes.iter().any(done);
    let all = !outcomes.is_empty() && outcomes.iter().all(done);
    let failed = outcomes
        .iter()
        .any(|o| matches!(o, Some(JobOutcome::Failed(_))));
    (any, all, failed)
}

fn job_outcome<'a>(plan: &'a Planner, upgrade: &Upgrade, kind: JobKind) -> Option<&'a JobOutcome> {
    let name = job_name(plan.name, kind, upgrade.attempt);
    plan.observed.jobs.get(&name).map(|j| &j.outcome)
}

/// What the database holds now, from the step and the outcome of this attempt's data Jobs.
pub fn data_state(plan: &Planner, upgrade: &Upgrade) -> Data {
    let succeeded = |kind| job_outcome(plan, upgrade, kind) == Some(&JobOutcome::Succeeded);
    let failed = |kind| {
        matches!(
            job_outcome(plan, upgrade, kind),
            Some(JobOutcome::Failed(_))
        )
    };
    let migrated = succeeded(JobKind::Migration)
        || (upgrade
            .jobs_seen
            .contains(&job_name(plan.name, JobKind::Migration, upgrade.attempt))
            && matches!(
                upgrade.step,
                Step::RollingOut | Step::Starting | Step::Verifying
            )
            && plan
                .spec
                .migration
                .as_ref()
                .is_some_and(|m| m.when == MigrationPhase::BeforeRollout));
    let (restored_some, restored_all, restore_failed) = restore_progress(plan, upgrade);
    if upgrade
        .request
        .as_ref()
        .is_some_and(|r| r.kind == crate::api::RequestKind::Restore)
    {
        return match upgrade.step {
            Step::RollingBack => Data::From,
            Step::Restoring if restored_all => Data::From,
            Step::Restoring if restored_some || restore_failed => Data::Unknown,
            _ => Data::Untouched,
        };
    }
    match upgrade.step {
        Step::Stopping | Step::BackingUp | Step::Checking => Data::From,
        Step::Migrating
        | Step::RollingOut
        | Step::Starting
        | Step::Verifying
        | Step::ScalingDown => {
            if migrated {
                Data::To
            } else {
                Data::From
            }
        }
        Step::Downgrading if failed(JobKind::Downgrade) => Data::Unknown,
        Step::Restoring if restore_failed || (restored_some && !restored_all) => Data::Unknown,
        Step::Downgrading | Step::Restoring if !succeeded(JobKind::Downgrade) && !restored_some => {
            // Never created (a crash right after the status write): the database is as the
            // migration left it.
            if migrated { Data::To } else { Data::From }
        }
        Step::Downgrading | Step::Restoring | Step::RollingBack => Data::From,
    }
}

type Images = Vec<(String, Vec<(String, String)>)>;

/// The images per Deployment, and the replica counts, that match `data`.
fn wanted_state(plan: &Planner, upgrade: &Upgrade, data: Data) -> (Images, Vec<(String, i32)>) {
    let chosen: Vec<ContainerImage> = match data {
        Data::Unknown | Data::Untouched => Vec::new(),
        Data::From => upgrade.previous_images.clone(),
        Data::To => upgrade
            .previous_images
            .iter()
            .map(|p| {
                let repository = plan
                    .spec
                    .targets
                    .iter()
                    .find(|t| t.name() == p.deployment)
                    .and_then(|t| t.image.as_deref())
                    .unwrap_or_else(|| image::repository(&p.image));
                ContainerImage {
                    image: image::with_tag(repository, &upgrade.to),
                    ..p.clone()
                }
            })
            .collect(),
    };
    let mut images: Images = Vec::new();
    for c in chosen {
        match images.iter_mut().find(|(d, _)| *d == c.deployment) {
            Some((_, list)) => list.push((c.container, c.image)),
            None => images.push((c.deployment, vec![(c.container, c.image)])),
        }
    }
    let replicas = if data == Data::Unknown {
        Vec::new()
    } else {
        upgrade
            .previous_replicas
            .iter()
            .map(|r| (r.deployment.clone(), r.replicas))
            .collect()
    };
    (images, replicas)
}

fn describe(data: Data, upgrade: &Upgrade) -> String {
    match data {
        Data::From => format!("the images of {}", display(&upgrade.from)),
        Data::To => format!("the images of {} (its migration ran)", upgrade.to),
        Data::Unknown => "their current state".into(),
        Data::Untouched => "their replica counts from before the restore".into(),
    }
}

fn outcome_text(data: Data, upgrade: &Upgrade) -> String {
    match data {
        Data::Untouched => format!(
            "nothing of backup {} was restored yet; the targets run {} as before",
            upgrade.backup.as_deref().unwrap_or("(none)"),
            display(&upgrade.from)
        ),
        Data::From => format!(
            "the targets run {} again, which matches the database",
            display(&upgrade.from)
        ),
        Data::To => format!(
            "the migration to {} had run, so the targets run {} to match the database",
            upgrade.to, upgrade.to
        ),
        Data::Unknown => format!(
            "a {} failed, so the database may be half-way; the targets were left as they are (replicas recorded before the restore: {}). Restore backup {} by hand before starting them.",
            if upgrade.step == Step::Restoring {
                "restore"
            } else {
                "down-migration"
            },
            upgrade
                .previous_replicas
                .iter()
                .map(|r| format!("{}={}", r.deployment, r.replicas))
                .collect::<Vec<_>>()
                .join(", "),
            upgrade.backup.as_deref().unwrap_or("(none)")
        ),
    }
}
