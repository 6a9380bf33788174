//! The JSON body a webhook receives for one milestone. Pure.
//!
//! ```json
//! {"event": "RolledBack", "release": "meet", "namespace": "meet",
//!  "from": "1.0.0", "to": "1.2.0", "attempt": 3, "step": "RollingBack",
//!  "reason": "RolloutFailed", "message": "Deployment backend did not become available …",
//!  "backup": "meet-backup-3", "time": "2026-11-21T12:00:00Z",
//!  "text": "meet/meet: upgrade 1.0.0 → 1.2.0 rolled back (RolloutFailed): …"}
//! ```
//!
//! `text` is what Slack's incoming webhooks (and Mattermost's, Rocket.Chat's, Discord's
//! Slack-compatible endpoint) show; the other fields are for programs. `from` is empty when
//! the running version was unknown, `backup` null until the upgrade took one.

use serde_json::{Value, json};

use crate::plan::{Milestone, MilestoneKind};

/// The body for `milestone` of the AppRelease `namespace/release`.
pub fn body(namespace: &str, release: &str, milestone: &Milestone) -> Value {
    json!({
        "event": milestone.kind.as_str(),
        "release": release,
        "namespace": namespace,
        "from": milestone.from,
        "to": milestone.to,
        "attempt": milestone.attempt,
        "step": milestone.step.as_str(),
        "reason": milestone.reason,
        "message": milestone.message,
        "backup": milestone.backup,
        "time": milestone.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "text": slack_escape(&text(namespace, release, milestone)),
    })
}

/// One line for a chat: who, which upgrade, what happened, and why.
pub fn text(namespace: &str, release: &str, m: &Milestone) -> String {
    let from = if m.from.is_empty() { "?" } else { &m.from };
    let head = format!("{namespace}/{release}: upgrade {from} → {}", m.to);
    match m.kind {
        MilestoneKind::Started => format!(
            "{head} started (attempt {}, first step {})",
            m.attempt,
            m.step.as_str()
        ),
        MilestoneKind::Succeeded => format!("{head} succeeded"),
        MilestoneKind::Failed => format!(
            "{head} failed at {} ({}): {}",
            m.step.as_str(),
            m.reason,
            m.message
        ),
        MilestoneKind::RolledBack => {
            format!("{head} rolled back ({}): {}", m.reason, m.message)
        }
        MilestoneKind::RollbackFailed => format!(
            "{head}: the rollback failed at {}, a human must act: {}",
            m.step.as_str(),
            m.message
        ),
    }
}

/// Slack reads `&`, `<` and `>` as markup (links, mentions): they are escaped, as its
/// documentation asks, so a message is shown as written.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::api::Step;

    fn milestone(kind: MilestoneKind) -> Milestone {
        Milestone {
            kind,
            from: "1.0.0".into(),
            to: "1.2.0".into(),
            attempt: 3,
            step: Step::RollingOut,
            reason: "RolloutFailed".into(),
            message: "Deployment backend did not become available with 1.2.0: its progress deadline was exceeded (1/2 updated)".into(),
            backup: Some("meet-backup-3".into()),
            at: Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap(),
        }
    }

    #[test]
    fn the_body_carries_every_field_a_program_reads() {
        let body = body("apps", "meet", &milestone(MilestoneKind::Failed));
        assert_eq!(
            body,
            json!({
                "event": "Failed", "release": "meet", "namespace": "apps",
                "from": "1.0.0", "to": "1.2.0", "attempt": 3, "step": "RollingOut",
                "reason": "RolloutFailed",
                "message": "Deployment backend did not become available with 1.2.0: its progress deadline was exceeded (1/2 updated)",
                "backup": "meet-backup-3", "time": "2026-11-21T12:00:00Z",
                "text": "apps/meet: upgrade 1.0.0 → 1.2.0 failed at RollingOut (RolloutFailed): Deployment backend did not become available with 1.2.0: its progress deadline was exceeded (1/2 updated)",
            })
        );
    }

    #[test]
    fn the_text_says_what_happened_for_each_kind() {
        let line = |kind| text("apps", "meet", &milestone(kind));
        assert_eq!(
            line(MilestoneKind::Started),
            "apps/meet: upgrade 1.0.0 → 1.2.0 started (attempt 3, first step RollingOut)"
        );
        assert_eq!(
            line(MilestoneKind::Succeeded),
            "apps/meet: upgrade 1.0.0 → 1.2.0 succeeded"
        );
        assert!(line(MilestoneKind::RolledBack).starts_with(
            "apps/meet: upgrade 1.0.0 → 1.2.0 rolled back (RolloutFailed): Deployment backend"
        ));
        assert!(line(MilestoneKind::RollbackFailed).starts_with(
            "apps/meet: upgrade 1.0.0 → 1.2.0: the rollback failed at RollingOut, a human must act: "
        ));
    }

    #[test]
    fn an_unknown_from_and_a_missing_backup_are_said_so() {
        let mut m = milestone(MilestoneKind::Started);
        m.from.clear();
        m.backup = None;
        let body = body("apps", "meet", &m);
        assert_eq!(body["from"], "");
        assert_eq!(body["backup"], Value::Null);
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("apps/meet: upgrade ? → 1.2.0 started")
        );
    }

    #[test]
    fn slack_markup_in_a_message_is_escaped_in_text_only() {
        let mut m = milestone(MilestoneKind::RolledBack);
        m.message = "verify: <html> & more".into();
        let body = body("apps", "meet", &m);
        assert_eq!(body["message"], "verify: <html> & more");
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .ends_with("verify: &lt;html&gt; &amp; more")
        );
    }
}
