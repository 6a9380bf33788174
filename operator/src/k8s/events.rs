//! Publishes the planner's notes as Kubernetes Events on the AppRelease.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::plan::{Note, NoteType};

/// The Events API allows at most 1 kB of note.
const MAX_NOTE: usize = 1024;

/// Publishes Events as the operator.
#[derive(Clone)]
pub struct Reporter {
    recorder: Recorder,
}

impl Reporter {
    /// A reporter named after the operator, with the pod name as instance when known.
    pub fn new(client: Client) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: crate::api::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes one note. A failure is logged, not returned: the status already holds the
    /// same story, and an Event lost must not stop an upgrade.
    pub async fn publish(&self, reference: &ObjectReference, note: &Note) {
        let event = Event {
            type_: match note.type_ {
                NoteType::Normal => EventType::Normal,
                NoteType::Warning => EventType::Warning,
            },
            reason: note.reason.clone(),
            note: Some(truncate(&note.message, MAX_NOTE)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, reference).await {
            warn!(%error, reason = note.reason, "could not publish Event");
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(600), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
    }
}
