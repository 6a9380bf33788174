//! Writing status conditions the way Kubernetes controllers do: timestamps move only when
//! something about the condition changes, so an unchanged status is a no-op write.

use serde_json::{Value, json};

/// A condition to write.
pub struct Condition<'a> {
    /// `type`.
    pub type_: &'a str,
    /// "True", "False" or "Unknown".
    pub status: &'a str,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: &'a str,
}

impl Condition<'_> {
    /// The condition as stored, given the conditions stored before: `lastTransitionTime`
    /// moves only when the status changes.
    pub fn render(&self, current: Option<&Value>) -> Value {
        let old = self.previous(current);
        let same_status = old.is_some_and(|o| o["status"] == self.status);
        let transition = match old {
            Some(o) if same_status => o["lastTransitionTime"].clone(),
            _ => json!(crate::meta::now()),
        };
        json!({"type": self.type_, "status": self.status, "reason": self.reason,
               "message": self.message, "lastTransitionTime": transition})
    }

    /// Like [`Self::render`], with the `lastUpdateTime` Deployment conditions carry, which
    /// also moves when the controller made progress.
    pub fn render_with_update_time(&self, current: Option<&Value>, progressed: bool) -> Value {
        let mut c = self.render(current);
        let unchanged = self.previous(current).filter(|o| {
            o["status"] == self.status && o["reason"] == self.reason && o["message"] == self.message
        });
        c["lastUpdateTime"] = match unchanged {
            Some(o) if !progressed => o["lastUpdateTime"].clone(),
            _ => json!(crate::meta::now()),
        };
        c
    }

    fn previous<'v>(&self, current: Option<&'v Value>) -> Option<&'v Value> {
        current
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == self.type_))
    }
}
