//! What a step handler decides: the one value the dispatcher (`machine`) acts on.

use crate::api::Step;

/// The next move of an upgrade in flight, as one step handler decides it from the upgrade
/// and the observation. Handlers only say what should happen; `machine::apply` makes it so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing more can be done until the cluster changes: Ready and Reconciling say this.
    Wait(String),
    /// Enter this step, restarting the step clock.
    Enter(Step),
    /// The rollout target being waited for is available: go on with the next one.
    NextTarget,
    /// Something failed: roll back (or stop, with automatic rollback off).
    RollBack {
        /// CamelCase cause, kept in the history entry.
        reason: &'static str,
        /// What failed, for a human.
        message: String,
    },
    /// The upgrade ends.
    Finish(End),
}

/// How an upgrade ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The new version runs.
    Succeeded,
    /// Failed before anything was changed.
    Aborted {
        /// CamelCase reason.
        reason: &'static str,
        /// For a human.
        message: String,
    },
    /// `spec.version` moved on. Nothing was changed yet, so the next decision plans afresh.
    Superseded(String),
    /// `spec.version` moved on after targets may have changed: a new upgrade goes on towards
    /// it from the same starting point (previous images and backup).
    Chained(String),
    /// The rollback put the previous version back.
    RolledBack,
    /// The rollback failed: a human must act.
    RollbackFailed(String),
}
