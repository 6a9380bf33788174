//! Target images changed by someone else while the release is at rest at its version (a
//! person, Argo CD self-heal, Flux drift correction). Putting them back is not an upgrade:
//! no attempt, no Jobs, no history entry. It happens a few times with growing pauses; when
//! the images keep changing the operator stops fighting and says who changes them, since
//! only a human (or the GitOps setup) can settle who owns the field.

use std::time::Duration;

use crate::api::conditions::{ConditionStatus, Desired};
use crate::api::{ContainerImage, Drift, DriftedImage};

use super::decision::{Action, NoteType, Planner};
use super::observed::Observed;

/// Repairs are counted within this window.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Repairs within the window before the operator stops putting images back.
pub const MAX_REPAIRS: usize = 3;
/// The pause before the second repair; it doubles for each one after.
pub const FIRST_PAUSE: Duration = Duration::from_secs(30);
/// How long after the newest change of a drifted image a repair waits: a tool that changes
/// several targets in a row (Flux applying its whole set, a script) is let finish, so that
/// one repair puts back everything it changed instead of each target costing a repair of
/// the few allowed. The operator's caches may show the first target changed a moment
/// before the others.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The pause owed before the next repair, after `repairs` recent ones.
pub fn pause_after(repairs: usize) -> Duration {
    match repairs {
        0 => Duration::ZERO,
        n => FIRST_PAUSE.saturating_mul(1 << (n - 1).min(16)),
    }
}

/// The drift record as it counts now: reset for a new spec or retry value, repairs older
/// than the window forgotten (unless the operator already stopped: that waits for a human).
fn current_record(plan: &Planner) -> Drift {
    let now = plan.now();
    match plan.status.drift.clone() {
        Some(d) if d.generation == plan.generation && d.retry == plan.retry => {
            let mut d = d;
            if !d.stopped {
                d.repairs
                    .retain(|t| (now - *t).to_std().unwrap_or_default() < WINDOW);
            }
            d
        }
        _ => Drift {
            generation: plan.generation,
            retry: plan.retry.clone(),
            ..Drift::default()
        },
    }
}

/// The release is at rest at `spec.version` but some of `wanted` differ in the cluster:
/// put them back, wait, or stop and report.
pub fn repair(plan: &mut Planner, wanted: &[ContainerImage]) {
    let changes = drifted(plan, wanted);
    let mut record = current_record(plan);
    if !record.stopped {
        // Once stopped, the report stays as it was then: an image flipping back and forth
        // must not turn into a stream of new messages and Events.
        record.changes = changes.clone();
    }
    let found = describe(&record.changes, plan.observed);
    let version = plan.spec.version.clone();
    if record.stopped || record.repairs.len() >= MAX_REPAIRS {
        let message = format!(
            "{found}, not {version}. The operator put the images back {} times within {} and stops fighting: make the images {version} again, or tell the tool that changes them to leave the fields of field manager {} alone (see the README, GitOps). A new spec or a new value of the annotation {} lets the operator try again.",
            record.repairs.len(),
            minutes(WINDOW),
            crate::api::FIELD_MANAGER,
            crate::api::RETRY_ANNOTATION
        );
        record.stopped = true;
        plan.status.drift = Some(record);
        return plan.blocked("Drifted", &message);
    }
    let pause = pause_after(record.repairs.len());
    let paused_until = record
        .repairs
        .first()
        .map(|last| *last + chrono::Duration::from_std(pause).unwrap_or_default());
    let due = paused_until.max(settled_at(&changes, plan));
    if let Some(due) = due.filter(|due| *due > plan.now()) {
        let wait = (due - plan.now()).to_std().unwrap_or_default();
        // The due time, not a countdown: the message (and so the status) stays the same
        // across the reconciles that happen while waiting.
        let message = format!(
            "{found}, not {version}; putting it back at {} (repair {} of at most {} within {})",
            due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            record.repairs.len() + 1,
            MAX_REPAIRS,
            minutes(WINDOW)
        );
        plan.status.drift = Some(record);
        repairing(plan, message);
        return plan.requeue(wait);
    }
    for deployment in deployments(&changes) {
        let kind = plan
            .observed
            .deployments
            .get(&deployment)
            .map(|d| d.kind)
            .unwrap_or_default();
        let images = wanted
            .iter()
            .filter(|w| w.deployment == deployment)
            .map(|w| (w.container.clone(), w.image.clone()))
            .collect();
        plan.act(Action::SetImages {
            kind,
            deployment,
            images,
        });
    }
    record.repairs.insert(0, plan.now());
    let message = format!(
        "{found}, not {version}; put back (repair {} of at most {} within {})",
        record.repairs.len(),
        MAX_REPAIRS,
        minutes(WINDOW)
    );
    plan.status.drift = Some(record);
    plan.note(NoteType::Warning, "DriftRepaired", message.clone());
    repairing(plan, message);
}

/// The release runs its wanted images again: the record stays while its repairs still
/// count, so that drift that comes back is recognised as repeated.
pub fn settled(plan: &mut Planner) {
    let Some(mut record) = plan.status.drift.clone() else {
        return;
    };
    record.stopped = false;
    record.changes.clear();
    let now = plan.now();
    record
        .repairs
        .retain(|t| (now - *t).to_std().unwrap_or_default() < WINDOW);
    plan.status.drift = (!record.repairs.is_empty()).then_some(record);
}

fn repairing(plan: &mut Planner, message: String) {
    plan.conditions(
        Desired::new(ConditionStatus::Unknown, "Progressing", message.clone()),
        Some(Desired::new(
            ConditionStatus::True,
            "RepairingDrift",
            message,
        )),
        None,
    );
    plan.requeue(super::decision::POLL);
}

/// When the newest change of the drifted images is `SETTLE` old. The change time is the API
/// server's (managedFields, whole seconds); one in the future of the operator's clock is not
/// trusted (a skewed clock must not hold a repair back), so the repair is not delayed for
/// it. None when no change time is known.
fn settled_at(changes: &[DriftedImage], plan: &Planner) -> Option<chrono::DateTime<chrono::Utc>> {
    let now = plan.now();
    changes
        .iter()
        .filter_map(|c| {
            let d = plan.observed.deployments.get(&c.deployment)?;
            d.image_changed.get(&c.container).copied()
        })
        .filter(|changed| *changed <= now)
        .max()
        .map(|changed| changed + chrono::Duration::from_std(SETTLE).unwrap_or_default())
}

/// The wanted images the cluster does not run, with what it runs and who set it.
fn drifted(plan: &Planner, wanted: &[ContainerImage]) -> Vec<DriftedImage> {
    wanted
        .iter()
        .filter_map(|w| {
            let d = plan.observed.deployments.get(&w.deployment)?;
            let found = d.image(&w.container)?;
            (found != w.image).then(|| DriftedImage {
                deployment: w.deployment.clone(),
                container: w.container.clone(),
                found: found.to_string(),
                wanted: w.image.clone(),
                manager: d
                    .image_managers
                    .get(&w.container)
                    .and_then(|m| m.first())
                    .cloned(),
            })
        })
        .collect()
}

/// "Deployment frontend container web runs ghcr.io/meet/web:hotfix (set by kubectl-edit)".
fn describe(changes: &[DriftedImage], observed: &Observed) -> String {
    changes
        .iter()
        .map(|c| {
            let by = c
                .manager
                .as_deref()
                .map_or("by an unknown field manager".to_string(), |m| {
                    format!("set by {m}")
                });
            let kind = observed
                .deployments
                .get(&c.deployment)
                .map(|d| d.kind)
                .unwrap_or_default();
            format!(
                "{kind} {} container {} runs {} ({by})",
                c.deployment, c.container, c.found
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn deployments(changes: &[DriftedImage]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in changes {
        if !names.contains(&c.deployment) {
            names.push(c.deployment.clone());
        }
    }
    names
}

fn minutes(d: Duration) -> String {
    format!("{}m", d.as_secs() / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_the_window_holds_the_allowed_repairs() {
        assert_eq!(pause_after(0), Duration::ZERO);
        assert_eq!(pause_after(1), FIRST_PAUSE);
        assert_eq!(pause_after(2), FIRST_PAUSE * 2);
        let needed: Duration = (0..MAX_REPAIRS).map(pause_after).sum();
        assert!(
            needed < WINDOW,
            "all allowed repairs fit in the window, so repeated drift is caught"
        );
    }
}
