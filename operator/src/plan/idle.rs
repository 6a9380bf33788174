//! No upgrade in flight: report how things are, and start an upgrade when the targets do not
//! run `spec.version`.

use crate::api::conditions::{ConditionStatus, Desired};
use crate::api::{ContainerImage, FailedVersion};

use super::decision::{NoteType, Planner};
use super::{drift, start, targets};

/// How settling a release without an upgrade in flight ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Nothing to start: the conditions say how things are.
    AtRest,
    /// An upgrade was recorded; the dispatcher takes its first step.
    Started,
}

/// Settles an AppRelease that has no upgrade in flight, starting an upgrade when the targets
/// do not run `spec.version` and nothing holds it.
pub fn settle(plan: &mut Planner) -> Settled {
    // An on-demand backup or restore asked for goes first: the upgrade waits for it.
    if super::requests::begin(plan) {
        return Settled::Started;
    }
    match upgrade_to_start(plan) {
        Some(wanted) => {
            start::begin(plan, wanted);
            Settled::Started
        }
        None => Settled::AtRest,
    }
}

/// The images an upgrade would set, when one should start now; otherwise the conditions are
/// set to say why not (or that all is well).
fn upgrade_to_start(plan: &mut Planner) -> Option<Vec<ContainerImage>> {
    // A recorded failure outranks everything else: after a failed rollback the targets may
    // run the new images, or one may be gone, yet the story to tell is the failure.
    if let Some(failed) = blocking_failure(plan) {
        let message = format!(
            "{}. Version {} is not tried again until the spec changes or the annotation {} gets a new value.",
            failed.message.trim_end_matches('.'),
            failed.version,
            crate::api::RETRY_ANNOTATION
        );
        plan.blocked(&failed.reason.clone(), &message);
        return None;
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
                return None;
            }
        };
    if let Some(message) = plan.claim.clone() {
        // Its own problems are told first; then that another release owns a target.
        plan.refuse_claimed(&message);
        return None;
    }
    note_untouched(plan, carried.as_deref());
    if targets::missing(&wanted, plan.observed).is_empty() {
        drift::settled(plan);
        at_rest(plan);
        return None;
    }
    if plan.spec.suspend {
        let message = format!("spec.suspend is true: the upgrade to {version} waits");
        plan.conditions(
            Desired::new(ConditionStatus::False, "Suspended", message),
            None,
            None,
        );
        return None;
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
        return None;
    }
    if carried.as_deref() == Some(version.as_str()) {
        drift::repair(plan, &wanted);
        return None;
    }
    if let Some(message) = targets::unsupported_strategy(&wanted, plan.observed) {
        plan.blocked("UnsupportedUpdateStrategy", &message);
        return None;
    }
    if carried.is_none() {
        let mixed = targets::mixed_versions(&wanted, plan.observed);
        if !mixed.is_empty() {
            let running: Vec<String> = mixed.iter().map(|(c, tag)| format!("{c}={tag}")).collect();
            let message = format!(
                "the targets run different versions ({}), so the version of the data cannot be told and nothing was changed. Set every target to the version the database is at; the operator then upgrades from there to {version} with backup and migration.",
                running.join(", ")
            );
            plan.blocked("MixedVersions", &message);
            return None;
        }
    }
    let running = carried.clone().or_else(|| {
        targets::current_images(&wanted, plan.observed)
            .first()
            .and_then(|c| crate::api::image::tag(&c.image).map(String::from))
    });
    if let Some(from) = &running
        && plan.refuses_downgrade(from, &version)
    {
        let message = refused_downgrade(plan, from, &version);
        plan.blocked("DowngradeRefused", &message);
        return None;
    }
    if !plan.approved(&version) {
        let message = format!(
            "the upgrade from {} to {version} waits for approval: kubectl annotate appreleases.apprelease.io {} -n {} {}={version} --overwrite",
            super::text::display(running.as_deref().unwrap_or_default()),
            plan.name,
            plan.namespace,
            crate::api::APPROVE_ANNOTATION
        );
        plan.waiting("AwaitingApproval", &message);
        return None;
    }
    // Maintenance windows gate only the start of an upgrade, never one in flight.
    if super::window::holds(plan) {
        return None;
    }
    Some(wanted)
}

/// Why a downgrade by spec changed nothing, and the ways back.
fn refused_downgrade(plan: &Planner, from: &str, to: &str) -> String {
    let backups: Vec<&str> = plan
        .status
        .backups
        .iter()
        .filter(|b| b.version == to)
        .map(|b| b.id.as_str())
        .collect();
    let restore = if backups.is_empty() {
        format!("no backup taken at {to} is in status.backups")
    } else {
        format!("backups taken at {to}: {}", backups.join(", "))
    };
    format!(
        "spec.version {to} is older than the running {from}: a downgrade is refused, because {to}'s migrations would run against {from}'s schema, which they do not know; nothing was changed. Set spec.version back to {from}; or restore a backup taken at {to} by hand ({restore}) and then set spec.downgrade: Allow; or set spec.downgrade: Allow if {to} runs on {from}'s schema."
    )
}

/// The first Deployment among those that would change that is paused: a rollout to it would
/// never progress, and the rollback after the timeout would not either.
fn paused_target(plan: &Planner, wanted: &[ContainerImage]) -> Option<String> {
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
    let unready: Vec<(String, bool)> = plan
        .spec
        .targets
        .iter()
        .filter_map(|t| {
            let d = plan.observed.deployments.get(t.name())?;
            (!d.is_rolled_out()).then(|| {
                (
                    format!("{} ({})", t.name(), d.progress()),
                    d.deadline_exceeded,
                )
            })
        })
        .collect();
    if unready.is_empty() {
        let ready = Desired::new(
            ConditionStatus::True,
            "Succeeded",
            format!("{version} runs and every target is available"),
        );
        return plan.conditions(ready, None, None);
    }
    let names: Vec<String> = unready.iter().map(|(n, _)| n.clone()).collect();
    let message = format!(
        "{version} runs but not every target is available: {}",
        names.join(", ")
    );
    let reason = "TargetsUnavailable";
    let ready = Desired::new(ConditionStatus::False, reason, message.clone());
    // kstatus (Flux health checks, `kubectl wait` on kstatus tools) reads Reconciling and
    // Stalled, not Ready: with neither, a release whose targets are still starting would
    // count as done. Still coming up is in progress; a target past its progress deadline has
    // failed, as kstatus says of that Deployment itself.
    let other = Desired::new(ConditionStatus::True, reason, message);
    if unready.iter().any(|(_, failed)| *failed) {
        plan.conditions(ready, None, Some(other));
    } else {
        plan.conditions(ready, Some(other), None);
    }
}

/// The recorded failure, if it still applies to this spec and retry annotation.
fn blocking_failure(plan: &Planner) -> Option<FailedVersion> {
    let failed = plan.status.failed.as_ref()?;
    (failed.version == plan.spec.version
        && failed.generation == plan.generation
        && failed.retry == plan.retry)
        .then(|| failed.clone())
}
