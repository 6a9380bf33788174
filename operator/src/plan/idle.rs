//! No upgrade in flight: report how things are, and start an upgrade when the targets do not
//! run `spec.version`.

use crate::api::conditions::{ConditionStatus, Desired};
use crate::api::{FailedVersion, Step, Upgrade, image};

use super::decision::{NoteType, Planner};
use super::{drift, steps, targets};

/// Settles an AppRelease that has no upgrade in flight.
pub fn settle(plan: &mut Planner) {
    // A recorded failure outranks everything else: after a failed rollback the targets may
    // run the new images, or one may be gone, yet the story to tell is the failure.
    if let Some(failed) = blocking_failure(plan) {
        let message = format!(
            "{}. Version {} is not tried again until the spec changes or the annotation {} gets a new value.",
            failed.message.trim_end_matches('.'),
            failed.version,
            crate::api::RETRY_ANNOTATION
        );
        return plan.blocked(&failed.reason.clone(), &message);
    }
    let version = plan.spec.version.clone();
    let carried = plan.status.current_version.clone();
    let wanted =
        match targets::desired_images(plan.spec, plan.observed, &version, carried.as_deref()) {
            Ok(wanted) => wanted,
            Err(error) => {
                plan.blocked(
                    error.reason,
                    &format!("{}; nothing was changed", error.message),
                );
                return;
            }
        };
    if let Some(message) = plan.claim.clone() {
        // Its own problems are told first; then that another release owns a target.
        return plan.refuse_claimed(&message);
    }
    note_untouched(plan, carried.as_deref());
    if targets::missing(&wanted, plan.observed).is_empty() {
        drift::settled(plan);
        return at_rest(plan);
    }
    if plan.spec.suspend {
        let message = format!("spec.suspend is true: the upgrade to {version} waits");
        plan.conditions(
            Desired::new(ConditionStatus::False, "Suspended", message),
            None,
            None,
        );
        return;
    }
    if let Some(paused) = paused_target(plan, &wanted) {
        let message = format!(
            "Deployment {paused} is paused (spec.paused), so nothing was changed and {version} waits; it goes on once the Deployment is resumed (kubectl rollout resume deployment/{paused})"
        );
        plan.conditions(
            Desired::new(ConditionStatus::False, "TargetPaused", message),
            None,
            None,
        );
        return;
    }
    if carried.as_deref() == Some(version.as_str()) {
        return drift::repair(plan, &wanted);
    }
    if carried.is_none() {
        let mixed = targets::mixed_versions(&wanted, plan.observed);
        if !mixed.is_empty() {
            let running: Vec<String> = mixed.iter().map(|(c, tag)| format!("{c}={tag}")).collect();
            let message = format!(
                "the targets run different versions ({}), so the version of the data cannot be told and nothing was changed. Set every target to the version the database is at; the operator then upgrades from there to {version} with backup and migration.",
                running.join(", ")
            );
            return plan.blocked("MixedVersions", &message);
        }
    }
    start(plan, wanted);
}

/// The first Deployment among those that would change that is paused: a rollout to it would
/// never progress, and the rollback after the timeout would not either.
fn paused_target(plan: &Planner, wanted: &[crate::api::ContainerImage]) -> Option<String> {
    targets::missing(wanted, plan.observed)
        .into_iter()
        .map(|w| &w.deployment)
        .find(|name| {
            plan.observed
                .deployments
                .get(*name)
                .is_some_and(|d| d.paused)
        })
        .cloned()
}

/// Records the containers the operator leaves alone, with an Event when that list changes.
fn note_untouched(plan: &mut Planner, carried: Option<&str>) {
    let untouched = targets::untouched_containers(plan.spec, plan.observed, carried);
    if untouched != plan.status.untouched_containers && !untouched.is_empty() {
        let names: Vec<String> = untouched
            .iter()
            .map(|c| format!("{}/{} ({})", c.deployment, c.container, c.image))
            .collect();
        plan.note(
            NoteType::Normal,
            "ContainersLeftAlone",
            format!(
                "these containers do not carry the release's version and keep their images: {}; list spec.targets[].containers to choose otherwise",
                names.join(", ")
            ),
        );
    }
    plan.status.untouched_containers = untouched;
}

/// Every target runs `spec.version`: record it, and say whether it is ready.
fn at_rest(plan: &mut Planner) {
    let version = plan.spec.version.clone();
    if plan.status.current_version.as_deref() != Some(version.as_str()) {
        plan.note(
            NoteType::Normal,
            "VersionObserved",
            format!("every target runs {version}"),
        );
        plan.status.current_version = Some(version.clone());
    }
    let unready: Vec<String> = plan
        .spec
        .targets
        .iter()
        .filter_map(|t| {
            let d = plan.observed.deployments.get(&t.deployment)?;
            (!d.is_rolled_out()).then(|| format!("{} ({})", t.deployment, d.progress()))
        })
        .collect();
    let ready = if unready.is_empty() {
        Desired::new(
            ConditionStatus::True,
            "Succeeded",
            format!("{version} runs and every target is available"),
        )
    } else {
        Desired::new(
            ConditionStatus::False,
            "TargetsUnavailable",
            format!(
                "{version} runs but not every target is available: {}",
                unready.join(", ")
            ),
        )
    };
    plan.conditions(ready, None, None);
}

/// The recorded failure, if it still applies to this spec and retry annotation.
fn blocking_failure(plan: &Planner) -> Option<FailedVersion> {
    let failed = plan.status.failed.as_ref()?;
    (failed.version == plan.spec.version
        && failed.generation == plan.generation
        && failed.retry == plan.retry)
        .then(|| failed.clone())
}

/// Records a new upgrade (write-ahead) and takes its first step.
fn start(plan: &mut Planner, wanted: Vec<crate::api::ContainerImage>) {
    let to = plan.spec.version.clone();
    let previous_images = targets::current_images(&wanted, plan.observed);
    let from = plan
        .status
        .current_version
        .clone()
        .or_else(|| {
            previous_images
                .first()
                .and_then(|p| image::tag(&p.image))
                .map(String::from)
        })
        .unwrap_or_default();
    let all_ready = plan
        .observed
        .deployments
        .values()
        .all(|d| d.is_rolled_out());
    if plan.status.current_version.is_none() && !from.is_empty() && all_ready {
        // First visit: the targets run `from` and are ready, so it is the current version.
        plan.status.current_version = Some(from.clone());
    }
    plan.status.attempts += 1;
    plan.status.failed = None;
    plan.status.last_attempted_version = Some(to.clone());
    let now = plan.now();
    let attempt = plan.status.attempts;
    let first = if plan.spec.backup.is_some() && from != to {
        Step::BackingUp
    } else {
        steps::after_backup(plan.spec, &from, &to)
    };
    plan.note(
        NoteType::Normal,
        "UpgradeStarted",
        format!(
            "upgrading from {} to {to} (attempt {attempt})",
            display(&from)
        ),
    );
    warn_downgrade(plan, &from, &to);
    plan.status.upgrade = Some(Upgrade {
        from,
        to,
        attempt,
        step: first,
        started_at: now,
        step_started_at: now,
        targets_done: 0,
        backup: None,
        previous_images,
        previous_replicas: Vec::new(),
        jobs_seen: Vec::new(),
        prune: Vec::new(),
        failure: None,
    });
    super::milestone::started(plan);
    if first == Step::BackingUp {
        steps::plan_prune(plan);
    }
    steps::advance(plan);
}

/// Going back to an older version by spec runs the older image's migrations forward, which
/// do not undo the newer ones: say so before anything happens.
pub fn warn_downgrade(plan: &mut Planner, from: &str, to: &str) {
    if crate::api::version::compare(to, from) != Some(std::cmp::Ordering::Less) {
        return;
    }
    let migration = if plan.spec.migration.is_some() {
        format!(
            " The migration Job runs {to}'s migrations, which do not undo {from}'s schema changes."
        )
    } else {
        String::new()
    };
    plan.note(
        NoteType::Warning,
        "Downgrade",
        format!(
            "spec.version {to} is older than the running {from}: this is a downgrade.{migration} If the data must go back too, restore a backup taken at {to} (status.backups lists each backup's version)."
        ),
    );
}

/// A version for messages: an unknown one is said so.
pub fn display(version: &str) -> &str {
    if version.is_empty() {
        "an unknown version"
    } else {
        version
    }
}
