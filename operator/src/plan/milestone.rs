//! Milestones: the moments of an upgrade a human wants to hear about (started, succeeded,
//! failed, rolled back, rollback failed), as structured data for notifications.
//!
//! The planner records them where the upgrade record changes, in the same decision as the
//! status that describes them, so a milestone is delivered only once that status is written
//! (see `k8s::act`), and a decision retried after a refused status write does not repeat it.
//! Each is recorded by one call from the step that makes it happen; the wording of reason and
//! message is that of the history entry (or the Event) written with it.

use chrono::{DateTime, Utc};

use crate::api::{Step, Upgrade, UpgradeResult};

use super::decision::Planner;
use super::text::display;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MilestoneKind {
    /// An upgrade was recorded and takes its first step.
    Started,
    /// The new version runs.
    Succeeded,
    /// The upgrade failed: before anything changed (a failed backup), with automatic rollback
    /// off (the targets stay where it failed), or just before an automatic rollback starts
    /// (a `RolledBack` or `RollbackFailed` follows).
    Failed,
    /// The rollback finished: the previous version runs again.
    RolledBack,
    /// The rollback itself failed: a human must act.
    RollbackFailed,
}

impl MilestoneKind {
    /// The name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "Started",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::RolledBack => "RolledBack",
            Self::RollbackFailed => "RollbackFailed",
        }
    }
}

/// One milestone of one upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Milestone {
    /// What happened.
    pub kind: MilestoneKind,
    /// Version before the upgrade (empty when unknown).
    pub from: String,
    /// Version being installed.
    pub to: String,
    /// Attempt serial, as in `status.attempts`.
    pub attempt: i64,
    /// The step the upgrade was at: the first step when it starts, the failing step when it
    /// fails, the rollback step that failed when its rollback fails.
    pub step: Step,
    /// CamelCase reason (`Succeeded`, `BackupFailed`, `RolloutFailed`, …).
    pub reason: String,
    /// For a human.
    pub message: String,
    /// The backup this upgrade took, once it has one.
    pub backup: Option<String>,
    /// When the operator saw it.
    pub at: DateTime<Utc>,
}

/// The upgrade just recorded in the status starts.
pub fn started(plan: &mut Planner) {
    let Some(upgrade) = plan.status.upgrade.clone() else {
        return;
    };
    let message = format!(
        "upgrading from {} to {} (attempt {})",
        display(&upgrade.from),
        upgrade.to,
        upgrade.attempt
    );
    record(
        plan,
        MilestoneKind::Started,
        &upgrade,
        "UpgradeStarted",
        &message,
    );
}

/// The upgrade failed at its current step and an automatic rollback starts.
pub fn rolling_back(plan: &mut Planner, upgrade: &Upgrade, reason: &str, message: &str) {
    let message = format!("{message}; rolling back");
    record(plan, MilestoneKind::Failed, upgrade, reason, &message);
}

/// The upgrade ended with `result`; superseded and cancelled upgrades are no milestone (the
/// next upgrade's `Started` tells the first, a deleted AppRelease the second).
pub fn ended(
    plan: &mut Planner,
    upgrade: &Upgrade,
    result: UpgradeResult,
    reason: &str,
    message: &str,
) {
    // Webhooks tell upgrades; on-demand requests have their own objects to watch.
    if upgrade.request.is_some() {
        return;
    }
    let kind = match result {
        UpgradeResult::Succeeded => MilestoneKind::Succeeded,
        UpgradeResult::RolledBack => MilestoneKind::RolledBack,
        UpgradeResult::Aborted => MilestoneKind::Failed,
        // `outcome::rollback_failed` ends with this reason; `outcome::stopped` with the
        // failure's own.
        UpgradeResult::Failed if reason == "RollbackFailed" => MilestoneKind::RollbackFailed,
        UpgradeResult::Failed => MilestoneKind::Failed,
        UpgradeResult::Superseded | UpgradeResult::Cancelled => return,
    };
    record(plan, kind, upgrade, reason, message);
}

fn record(plan: &mut Planner, kind: MilestoneKind, upgrade: &Upgrade, reason: &str, message: &str) {
    let milestone = Milestone {
        kind,
        from: upgrade.from.clone(),
        to: upgrade.to.clone(),
        attempt: upgrade.attempt,
        step: upgrade.step,
        reason: reason.to_string(),
        message: message.to_string(),
        backup: upgrade.backup.clone(),
        at: plan.now(),
    };
    plan.milestone(milestone);
}
