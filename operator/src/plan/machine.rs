//! The dispatcher: one match from the step in flight to its handler, and one place that
//! carries out what the handler returned. The README's step table follows this match.
//!
//! Handlers (`forward`, `rollback`) read the upgrade and the observation and return a
//! `Transition`; none calls another step's module. `apply` records the transition (the step
//! clock, Events, the history entry) and the loop goes on until a handler waits.

use crate::api::{Failure, RequestKind, Step, Upgrade};

use super::decision::{NoteType, Planner};
use super::idle::{self, Settled};
use super::text::display;
use super::transition::{End, Transition};
use super::{forward, outcome, requests, rollback, start};

/// Most transitions one decision makes; each moves strictly forward, so this bound is never
/// reached in practice and only guards against a logic error looping.
const MAX_TRANSITIONS: usize = 16;

/// Moves the release as far as it can go now: settles it at rest (starting an upgrade when
/// the targets do not run `spec.version`), then steps the upgrade in flight until it waits.
pub fn run(plan: &mut Planner) {
    for _ in 0..MAX_TRANSITIONS {
        let Some(upgrade) = plan.status.upgrade.clone() else {
            match idle::settle(plan) {
                Settled::Started => continue,
                Settled::AtRest => return,
            }
        };
        let transition = match upgrade.step {
            Step::Stopping => forward::stopping(plan, &upgrade),
            Step::BackingUp => forward::backing_up(plan, &upgrade),
            Step::Migrating => forward::migrating(plan, &upgrade),
            Step::RollingOut => forward::rolling_out(plan, &upgrade),
            Step::Starting => forward::starting(plan, &upgrade),
            Step::Verifying => forward::verifying(plan, &upgrade),
            Step::Downgrading => rollback::downgrading(plan, &upgrade),
            Step::Checking => requests::checking(plan, &upgrade),
            Step::ScalingDown => rollback::scaling_down(plan, &upgrade),
            Step::Restoring => rollback::restoring(plan, &upgrade),
            Step::RollingBack => rollback::rolling_back(plan, &upgrade),
        };
        if let Transition::Wait(message) = transition {
            let reason = match upgrade.request.as_ref().map(|r| r.kind) {
                Some(RequestKind::Backup) => "BackingUp",
                Some(RequestKind::Restore) => "Restoring",
                None => reconciling_reason(upgrade.step),
            };
            plan.progressing(reason, message);
            return;
        }
        // What the handler recorded on the way (previous images, Jobs seen, the backup)
        // belongs to the upgrade the transition applies to.
        let current = plan.status.upgrade.clone().unwrap_or(upgrade);
        apply(plan, &current, transition);
    }
}

/// The Reconciling reason while a step waits: the forward step, or `RollingBack` for every
/// step of a rollback.
fn reconciling_reason(step: Step) -> &'static str {
    match step {
        Step::Stopping
        | Step::BackingUp
        | Step::Migrating
        | Step::RollingOut
        | Step::Starting
        | Step::Verifying => step.as_str(),
        Step::Downgrading
        | Step::Checking
        | Step::ScalingDown
        | Step::Restoring
        | Step::RollingBack => "RollingBack",
    }
}

fn apply(plan: &mut Planner, upgrade: &Upgrade, transition: Transition) {
    match transition {
        Transition::Wait(_) => {}
        Transition::Enter(step) => enter(plan, step),
        Transition::NextTarget => next_target(plan, upgrade),
        Transition::RollBack { reason, message } => roll_back(plan, upgrade, reason, message),
        Transition::Finish(end) => finish(plan, upgrade, end),
    }
}

/// Moves the upgrade to `step`, restarting the step clock.
fn enter(plan: &mut Planner, step: Step) {
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
}

/// The target rolled out: count it, and restart the clock for the next one.
fn next_target(plan: &mut Planner, upgrade: &Upgrade) {
    let now = plan.now();
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.targets_done += 1;
        u.step_started_at = now;
    }
    let index = usize::try_from(upgrade.targets_done).unwrap_or(0);
    if let Some(target) = plan.spec.targets.get(index) {
        let message = format!(
            "{} {} runs {} and is available",
            target.kind(),
            target.name(),
            upgrade.to
        );
        plan.note(NoteType::Normal, "TargetReady", message);
    }
}

/// Starts a rollback because of `reason`; with automatic rollback off, stops instead.
fn roll_back(plan: &mut Planner, upgrade: &Upgrade, reason: &str, message: String) {
    if !plan.spec.rollback.automatic {
        return outcome::stopped(plan, upgrade, reason, message);
    }
    plan.note(
        NoteType::Warning,
        reason,
        format!("{message}; rolling back"),
    );
    super::milestone::rolling_back(plan, upgrade, reason, &message);
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.failure = Some(Failure {
            reason: reason.to_string(),
            message,
        });
    }
    enter(plan, rollback::first_step(plan.spec, upgrade));
}

fn finish(plan: &mut Planner, upgrade: &Upgrade, end: End) {
    if upgrade.request.is_some() {
        return requests::finish(plan, upgrade, end);
    }
    match end {
        End::Succeeded => outcome::succeeded(plan, upgrade),
        End::Aborted { reason, message } => outcome::aborted(plan, upgrade, reason, message),
        End::Superseded(message) => outcome::superseded(plan, upgrade, message),
        End::Chained(message) => {
            outcome::superseded(plan, upgrade, message);
            start::chain(plan, upgrade);
        }
        End::RolledBack => outcome::rolled_back(plan, upgrade),
        End::RollbackFailed(message) => outcome::rollback_failed(plan, upgrade, message),
    }
}
