//! Writing status conditions the way Kubernetes controllers do: timestamps move only when
//! something about the condition changes, so an unchanged status is a no-op write.

use serde_json::{Value, json};

/// The new value of condition `type_`, given the conditions currently stored.
/// `progressed` also refreshes `lastUpdateTime` (Deployment conditions carry one).
pub fn condition(
    current: Option<&Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    progressed: bool,
    with_update_time: bool,
) -> Value {
    let old = current
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let now = crate::meta::now();
    let same_status = old.is_some_and(|o| o["status"] == status);
    let unchanged =
        same_status && old.is_some_and(|o| o["reason"] == reason && o["message"] == message);
    let transition = match old {
        Some(o) if same_status => o["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c = json!({"type": type_, "status": status, "reason": reason, "message": message,
                       "lastTransitionTime": transition});
    if with_update_time {
        c["lastUpdateTime"] = match old {
            Some(o) if unchanged && !progressed => o["lastUpdateTime"].clone(),
            _ => json!(now),
        };
    } else if let Some(o) = old.filter(|_| unchanged) {
        c["lastProbeTime"] = o.get("lastProbeTime").cloned().unwrap_or(Value::Null);
    }
    c
}
