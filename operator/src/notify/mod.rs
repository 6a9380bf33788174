//! Upgrade notifications: the planner's milestones (see `plan::milestone`) as JSON messages
//! to the webhook of `spec.notifications`. `message` builds the body (pure); `deliver` sends
//! it in the background, retried, never holding up a reconcile.

pub mod deliver;
pub mod message;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use kube::{Resource, ResourceExt};

use crate::api::AppRelease;
use crate::k8s::Reporter;
use crate::metrics::Metrics;
use crate::plan::Milestone;

pub use deliver::Policy;

/// Hands milestones to the webhook of their AppRelease. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    deliverer: deliver::Deliverer,
}

impl Notifier {
    /// A notifier reading webhook Secrets with `client`, reporting failures as Events
    /// through `reporter` and counting deliveries in `metrics`.
    pub fn new(
        client: kube::Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        policy: Policy,
    ) -> Self {
        Self {
            deliverer: deliver::Deliverer::new(client, reporter, metrics, policy),
        }
    }

    /// Queues one message per milestone when `release` has a webhook; returns at once.
    /// Call it once the status that records these milestones is written.
    pub fn notify(&self, release: &AppRelease, milestones: &[Milestone]) {
        let Some(notifications) = &release.spec.notifications else {
            return;
        };
        let (namespace, name) = (release.namespace().unwrap_or_default(), release.name_any());
        for milestone in milestones {
            let body = message::body(&namespace, &name, milestone);
            self.deliverer.enqueue(deliver::Delivery {
                reference: release.object_ref(&()),
                secret: notifications.webhook.url_secret_ref.clone(),
                what: format!(
                    "{} ({} → {})",
                    milestone.kind.as_str(),
                    if milestone.from.is_empty() {
                        "?"
                    } else {
                        &milestone.from
                    },
                    milestone.to
                ),
                body: Bytes::from(body.to_string()),
            });
        }
    }

    /// Gives the messages queued so far up to `limit` to go out (at shutdown).
    pub async fn drain(&self, limit: Duration) -> bool {
        self.deliverer.drain(limit).await
    }
}

#[cfg(test)]
mod tests;
