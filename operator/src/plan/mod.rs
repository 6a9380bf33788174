//! The planner: given an AppRelease and a snapshot of what it depends on, decide the next
//! step. Pure — no client, no clock, no async — so every row of the step table is a plain
//! test (see `tests.rs`) and the invariants are property tests (see `properties.rs`).
//!
//! One call moves the upgrade as far as it can without waiting: it returns the status to
//! write first (write-ahead, invariant 3), then the actions that status describes, the Events
//! to publish and when to look again. Every action is idempotent, so a crash between the
//! status write and the actions only repeats them.

mod backup_report;
pub mod claims;
mod decision;
mod deletion;
mod drift;
mod forward;
mod idle;
mod job_progress;
mod machine;
pub mod milestone;
pub mod observed;
mod outcome;
pub mod protection;
mod replicas;
mod requests;
pub mod retention;
mod rollback;
mod start;
pub mod targets;
pub mod telemetry;
mod text;
mod transition;
mod window;

#[cfg(test)]
mod approval_tests;
#[cfg(test)]
mod backup_set_tests;
#[cfg(test)]
mod deletion_tests;
#[cfg(test)]
mod downgrade_tests;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod milestone_tests;
#[cfg(test)]
mod offline_tests;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod rest_tests;
#[cfg(test)]
mod statefulset_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_properties;
#[cfg(test)]
mod window_tests;

pub use decision::{Action, Decision, JobRequest, Note, NoteType, POLL, RequestUpdate};
pub use milestone::{Milestone, MilestoneKind};
pub use observed::{DeploymentState, JobOutcome, JobState, Observed, Peer, PodState, Request};
pub use requests::orphaned;
pub use telemetry::Telemetry;

use crate::api::{AppRelease, validate};

/// Why the release may not touch its targets: another AppRelease, created earlier, lists one
/// of them. The claim goes when that release lets go, which no watch of ours reports, so the
/// caller looks again after a poll interval.
fn claimed(release: &AppRelease, observed: &Observed) -> Option<String> {
    let targets: Vec<(crate::api::TargetKind, String)> = release
        .spec
        .targets
        .iter()
        .map(|t| (t.kind(), t.name().to_string()))
        .collect();
    let claimed = claims::claimed_targets(
        release.metadata.name.as_deref().unwrap_or_default(),
        release
            .metadata
            .creation_timestamp
            .as_ref()
            .map(crate::api::time::to_chrono),
        &targets,
        &observed.peers,
    );
    if claimed.is_empty() {
        return None;
    }
    let owners: Vec<String> = claimed
        .iter()
        .map(|((kind, name), owner)| format!("{kind} {name} belongs to AppRelease {owner}"))
        .collect();
    Some(format!(
        "{}, created earlier; a workload is upgraded by one AppRelease only, so nothing was changed. Remove it from one of the two; this AppRelease goes on by itself once the other lets go.",
        owners.join(", ")
    ))
}

/// Decides for `release` that is being deleted: let a running data Job finish, put the
/// targets in a state that matches the database, then let go (see `deletion`).
pub fn decide_deletion(release: &AppRelease, observed: &Observed) -> Decision {
    deletion::decide(decision::Planner::new(release, observed))
}

/// Decides what to do next for `release`, given what was observed.
pub fn decide(release: &AppRelease, observed: &Observed) -> Decision {
    let mut plan = decision::Planner::new(release, observed);
    // Set again by this decision only while an upgrade waits for a window (see `window`).
    plan.status.next_window = None;
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
    } else {
        plan.claim = claimed(release, observed);
        match (plan.claim.clone(), plan.status.upgrade.is_some()) {
            // Held like an invalid spec: nothing is changed, the upgrade is kept.
            (Some(message), true) => plan.refuse_claimed(&message),
            // At rest the release's own problems are told before the claim (see `idle`).
            _ => machine::run(&mut plan),
        }
    }
    plan.finish()
}
