//! Prometheus metrics, registered in one place with their help texts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the reconciliation counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Which step failed (see `k8s::Error::metric_label`).
    pub error: &'static str,
}

/// Labels of the event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The Event's reason (UpgradeSucceeded, RolledBack, BackupFailed, …).
    pub reason: String,
}

/// Labels of the notification counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `delivered`, `failed` (every attempt failed, or one that cannot succeed) or `dropped`
    /// (the release's queue was full).
    pub outcome: &'static str,
}

/// Labels of the notification attempt counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `ok`, `timeout`, `connect`, `tls`, `http_status`, `request`, `secret` or `invalid_url`
    /// (see `notify::deliver`).
    pub result: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    /// Reconciliations by result.
    pub reconciliations: Family<ResultLabels, Counter>,
    /// Failed reconciliations by failure point.
    pub errors: Family<ErrorLabels, Counter>,
    /// Events published, by reason: upgrade outcomes among them.
    pub events: Family<EventLabels, Counter>,
    /// How long one reconciliation takes.
    pub duration: Histogram,
    /// Webhook notifications, by how their delivery ended.
    pub notifications: Family<NotificationLabels, Counter>,
    /// Webhook delivery attempts, by result.
    pub notification_attempts: Family<AttemptLabels, Counter>,
    /// 1 while this replica runs the controller, 0 while it stands by.
    pub leader: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("apprelease");
        let reconciliations = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let notifications = Family::<NotificationLabels, Counter>::default();
        let notification_attempts = Family::<AttemptLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciliations of AppReleases, by result",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations, by the step that failed",
            errors.clone(),
        );
        registry.register(
            "events",
            "Events published on AppReleases, by reason",
            events.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation takes",
            duration.clone(),
        );
        registry.register(
            "notifications",
            "Webhook notifications of upgrade milestones, by how their delivery ended",
            notifications.clone(),
        );
        registry.register(
            "notification_attempts",
            "Webhook delivery attempts, by result (ok, or why it failed)",
            notification_attempts.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles (always 1 without leader election), 0 while it stands by",
            leader.clone(),
        );
        Self {
            reconciliations,
            errors,
            events,
            duration,
            notifications,
            notification_attempts,
            leader,
            registry,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_with_help() {
        let metrics = Metrics::default();
        metrics
            .reconciliations
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        metrics
            .errors
            .get_or_create(&ErrorLabels {
                error: "write_status",
            })
            .inc();
        let text = metrics.encode();
        assert!(text.contains(
            "# HELP apprelease_reconciliations Reconciliations of AppReleases, by result"
        ));
        assert!(text.contains("apprelease_reconciliations_total{result=\"ok\"} 1"));
        assert!(text.contains("apprelease_reconcile_errors_total{error=\"write_status\"} 1"));
        assert!(text.contains("# HELP apprelease_leader 1 while this replica holds the Lease"));
        assert!(text.contains("# TYPE apprelease_leader gauge\napprelease_leader 0\n"));
        metrics.leader.set(1);
        assert!(metrics.encode().contains("\napprelease_leader 1\n"));
    }
}
