//! How an upgrade ends: the history entry, the failure record that stops retries, and the
//! Event. The resting conditions are set afterwards, when the dispatcher settles the release.

use crate::api::{FailedVersion, HistoryEntry, Upgrade, UpgradeResult};

use super::decision::{NoteType, Planner};
use super::text::display;

/// Finished upgrades kept in `status.history`.
pub const MAX_HISTORY: usize = 20;

/// The new version runs.
pub fn succeeded(plan: &mut Planner, upgrade: &Upgrade) {
    let message = format!("upgraded from {} to {}", display(&upgrade.from), upgrade.to);
    plan.status.current_version = Some(upgrade.to.clone());
    plan.status.failed = None;
    end(
        plan,
        upgrade,
        UpgradeResult::Succeeded,
        "Succeeded",
        &message,
    );
    plan.note(NoteType::Normal, "UpgradeSucceeded", message);
}

/// Failed before anything was changed.
pub fn aborted(plan: &mut Planner, upgrade: &Upgrade, reason: &str, message: String) {
    fail(plan, upgrade, UpgradeResult::Aborted, reason, message);
}

/// Replaced by a newer version before it finished; no failure is recorded.
pub fn superseded(plan: &mut Planner, upgrade: &Upgrade, message: String) {
    end(
        plan,
        upgrade,
        UpgradeResult::Superseded,
        "Superseded",
        &message,
    );
    plan.note(NoteType::Normal, "Superseded", message);
}

/// The AppRelease was deleted before the upgrade finished; see `deletion`.
pub fn cancelled(plan: &mut Planner, upgrade: &Upgrade, message: String) {
    end(
        plan,
        upgrade,
        UpgradeResult::Cancelled,
        "DeletedDuringUpgrade",
        &message,
    );
}

/// Rolled back completely: the previous version runs again.
pub fn rolled_back(plan: &mut Planner, upgrade: &Upgrade) {
    let cause = upgrade
        .failure
        .clone()
        .unwrap_or_else(|| crate::api::Failure {
            reason: "RolledBack".into(),
            message: "the upgrade failed".into(),
        });
    let message = format!(
        "{}; rolled back to {}",
        cause.message,
        display(&upgrade.from)
    );
    record_failure(plan, upgrade, "RolledBack", &message);
    end(
        plan,
        upgrade,
        UpgradeResult::RolledBack,
        &cause.reason,
        &message,
    );
    plan.note(NoteType::Warning, "RolledBack", message);
}

/// The rollback failed: a human must act.
pub fn rollback_failed(plan: &mut Planner, upgrade: &Upgrade, message: String) {
    let cause = upgrade
        .failure
        .as_ref()
        .map(|f| format!("{}; ", f.message))
        .unwrap_or_default();
    fail(
        plan,
        upgrade,
        UpgradeResult::Failed,
        "RollbackFailed",
        format!("{cause}the rollback failed: {message}"),
    );
}

/// Failed with automatic rollback off: left where it failed for a human.
pub fn stopped(plan: &mut Planner, upgrade: &Upgrade, reason: &str, message: String) {
    let previous: Vec<String> = upgrade
        .previous_images
        .iter()
        .map(|p| format!("{}/{}={}", p.deployment, p.container, p.image))
        .collect();
    let message = format!(
        "{message}; automatic rollback is off, so the targets were left as they are (previous images: {})",
        previous.join(", ")
    );
    fail(plan, upgrade, UpgradeResult::Failed, reason, message);
}

fn fail(
    plan: &mut Planner,
    upgrade: &Upgrade,
    result: UpgradeResult,
    reason: &str,
    message: String,
) {
    record_failure(plan, upgrade, reason, &message);
    end(plan, upgrade, result, reason, &message);
    plan.note(NoteType::Warning, reason, message);
}

/// Stops the failed version from being tried again with the same spec.
fn record_failure(plan: &mut Planner, upgrade: &Upgrade, reason: &str, message: &str) {
    plan.status.failed = Some(FailedVersion {
        version: upgrade.to.clone(),
        generation: plan.generation,
        retry: plan.retry.clone(),
        reason: reason.to_string(),
        message: message.to_string(),
    });
}

pub fn end(
    plan: &mut Planner,
    upgrade: &Upgrade,
    result: UpgradeResult,
    reason: &str,
    message: &str,
) {
    super::milestone::ended(plan, upgrade, result, reason, message);
    let entry = HistoryEntry {
        from: upgrade.from.clone(),
        to: upgrade.to.clone(),
        attempt: upgrade.attempt,
        started_at: upgrade.started_at,
        finished_at: plan.now(),
        result,
        reason: reason.to_string(),
        message: message.to_string(),
        backup: upgrade.backup.clone(),
        request: upgrade.request.clone(),
    };
    plan.status.history.insert(0, entry);
    plan.status.history.truncate(MAX_HISTORY);
    plan.status.upgrade = None;
}
