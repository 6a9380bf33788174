//! Conditions in the `metav1.Condition` shape, and the rules for setting them.
//!
//! Only three types exist, following kstatus (read by `kubectl wait`, Flux and our Argo CD
//! health check): `Ready` summarises, `Reconciling` says work is under way, `Stalled` says a
//! human or a spec change is needed. `Reconciling` and `Stalled` are removed when false.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types.
pub const READY: &str = "Ready";
/// Condition types.
pub const RECONCILING: &str = "Reconciling";
/// Condition types.
pub const STALLED: &str = "Stalled";

/// A condition, as `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase cause, e.g. Succeeded, BackupFailed, RolledBack.
    pub reason: String,
    /// What happened, for a human.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The generation this condition describes.
    pub observed_generation: i64,
}

/// The three values of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not known yet (e.g. Ready while an upgrade runs).
    Unknown,
}

/// What a condition should say, before timestamps are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase cause.
    pub reason: String,
    /// Human message.
    pub message: String,
}

impl Desired {
    /// A condition with the given status, reason and message.
    pub fn new(
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Sets (`Some`) or removes (`None`) the condition `type_`, keeping `lastTransitionTime`
/// when the status does not change so that rewriting the same state is a no-op.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    desired: Option<Desired>,
    generation: i64,
    now: DateTime<Utc>,
) {
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let Some(desired) = desired else {
        if let Some(i) = existing {
            conditions.remove(i);
        }
        return;
    };
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(old) if old.status == desired.status => old.last_transition_time,
        _ => now,
    };
    let condition = Condition {
        type_: type_.to_string(),
        status: desired.status,
        reason: desired.reason,
        message: desired.message,
        last_transition_time,
        observed_generation: generation,
    };
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of the given type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = vec![];
        let ready = |status, reason: &str| Some(Desired::new(status, reason, "m"));
        set(
            &mut conditions,
            READY,
            ready(ConditionStatus::Unknown, "Progressing"),
            1,
            t(10),
        );
        set(
            &mut conditions,
            READY,
            ready(ConditionStatus::Unknown, "Migrating"),
            2,
            t(20),
        );
        assert_eq!(conditions[0].last_transition_time, t(10));
        assert_eq!(conditions[0].reason, "Migrating");
        assert_eq!(conditions[0].observed_generation, 2);
        set(
            &mut conditions,
            READY,
            ready(ConditionStatus::True, "Succeeded"),
            2,
            t(30),
        );
        assert_eq!(conditions[0].last_transition_time, t(30));
    }

    #[test]
    fn none_removes_the_condition() {
        let mut conditions = vec![];
        set(
            &mut conditions,
            STALLED,
            Some(Desired::new(ConditionStatus::True, "X", "m")),
            1,
            t(1),
        );
        set(
            &mut conditions,
            READY,
            Some(Desired::new(ConditionStatus::False, "X", "m")),
            1,
            t(1),
        );
        set(&mut conditions, STALLED, None, 1, t(2));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, READY);
        set(&mut conditions, STALLED, None, 1, t(2));
        assert_eq!(conditions.len(), 1);
    }
}
