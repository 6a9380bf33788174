//! The planner: given an AppRelease and a snapshot of what it depends on, decide the next
//! step. Pure — no client, no clock, no async — so every row of the step table is a plain
//! test (see `tests.rs`) and the invariants are property tests (see `properties.rs`).
//!
//! One call moves the upgrade as far as it can without waiting: it returns the status to
//! write first (write-ahead, invariant 3), then the actions that status describes, the Events
//! to publish and when to look again. Every action is idempotent, so a crash between the
//! status write and the actions only repeats them.

mod decision;
mod drift;
mod idle;
pub mod observed;
mod outcome;
pub mod retention;
mod rollback;
mod steps;
pub mod targets;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod rest_tests;
#[cfg(test)]
mod tests;

pub use decision::{Action, Decision, JobRequest, Note, NoteType};
pub use observed::{DeploymentState, JobOutcome, JobState, Observed};

use crate::api::{AppRelease, validate};

/// Decides what to do next for `release`, given what was observed.
pub fn decide(release: &AppRelease, observed: &Observed) -> Decision {
    let mut plan = decision::Planner::new(release, observed);
    let errors = validate::validate(&release.spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        plan.blocked(
            "InvalidSpec",
            &format!("the spec is invalid, nothing was changed: {message}"),
        );
    } else if plan.status.upgrade.is_some() {
        steps::advance(&mut plan);
    } else {
        idle::settle(&mut plan);
    }
    plan.finish()
}
