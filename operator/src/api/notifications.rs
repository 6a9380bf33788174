//! `spec.notifications`: who hears about an upgrade. The webhook's URL often carries a token
//! (a Slack or Mattermost incoming webhook), so the AppRelease names only the Secret that
//! holds it; the operator reads it when it delivers and never writes it anywhere.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where the operator reports the milestones of each upgrade.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// A webhook that receives one JSON message (HTTP POST) when an upgrade starts, succeeds,
    /// fails, is rolled back, or its rollback fails:
    /// `{"event": "Succeeded", "release", "namespace", "from", "to", "attempt", "step",
    /// "reason", "message", "backup", "time", "text"}` (`event` is one of Started,
    /// Succeeded, Failed, RolledBack, RollbackFailed; `text` is a one-line summary, so Slack,
    /// Mattermost and Rocket.Chat incoming webhooks take the message as it is). Delivery is
    /// retried with backoff and never holds up or fails an upgrade; a message that cannot be
    /// delivered is reported as a `NotificationFailed` Event.
    pub webhook: WebhookSpec,
}

/// An HTTP(S) endpoint for the operator's JSON messages.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The Secret key, in the AppRelease's namespace, whose value is the webhook's URL
    /// (`http://` or `https://`). Read at each delivery, so a rotated URL takes effect at
    /// once; never logged, nor written to status or Events.
    pub url_secret_ref: SecretKeyRef,
}

/// One key of a Secret in the AppRelease's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$') && size(self) <= 253")
        .message("name must be a Secret name"))]
    #[schemars(length(max = 253))]
    pub name: String,

    /// The key whose value is used.
    #[serde(default = "default_key")]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && size(self) <= 253")
        .message("key must be a Secret key: letters, digits, '-', '_' and '.'"))]
    #[schemars(length(max = 253))]
    pub key: String,
}

fn default_key() -> String {
    "url".into()
}
