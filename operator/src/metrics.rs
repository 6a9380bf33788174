//! Prometheus metrics, registered in one place with their help texts. README.md lists them
//! with what each is for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::conditions::{self, ConditionStatus};
use crate::api::{AppRelease, RequestKind, UpgradeResult};
use crate::plan::Telemetry;
use crate::plan::telemetry::BackupResult;

/// Labels of the counters and histograms that only tell how something ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Reconciliations: `ok` or `error`; backups: `succeeded` or `failed`.
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

/// Labels of the finished-upgrade counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpgradeLabels {
    /// `succeeded`, `aborted`, `rolled_back`, `failed`, `superseded` or `cancelled`
    /// (`status.history[].result`).
    pub result: &'static str,
    /// The history entry's reason: Succeeded, BackupFailed, RolloutFailed, RollbackFailed, …
    pub reason: String,
}

/// Labels of the step histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step (`status.upgrade.step`).
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    status: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    namespace: String,
    name: String,
    reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// From half a second to about an hour: a rollout of one target takes seconds, a backup of
/// a large database tens of minutes (the default timeout is 30m).
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

/// The operator's metrics.
pub struct Metrics {
    /// Reconciliations by result.
    pub reconciliations: Family<ResultLabels, Counter>,
    /// Failed reconciliations by failure point.
    pub errors: Family<ErrorLabels, Counter>,
    /// Events published, by reason: upgrade outcomes among them.
    pub events: Family<EventLabels, Counter>,
    /// How long one reconciliation takes, by result.
    pub duration: Histograms<ResultLabels>,
    /// Webhook notifications, by how their delivery ended.
    pub notifications: Family<NotificationLabels, Counter>,
    /// Webhook delivery attempts, by result.
    pub notification_attempts: Family<AttemptLabels, Counter>,
    /// Upgrades that ended, by result and reason.
    pub upgrades: Family<UpgradeLabels, Counter>,
    /// Time on each step clock, by step.
    pub steps: Histograms<StepLabels>,
    /// Backups (single or sets) that ended, by result.
    pub backups: Family<ResultLabels, Counter>,
    census: Arc<CensusCollector>,
    /// 1 while this replica runs the controller, 0 while it stands by.
    pub leader: Gauge,
    /// AppReleases woken and waiting for their reconcile (crate::queue).
    pub queue_depth: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("apprelease");
        let reconciliations = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let duration = Histograms::new_with_constructor(reconcile_histogram as fn() -> Histogram);
        let notifications = Family::<NotificationLabels, Counter>::default();
        let notification_attempts = Family::<AttemptLabels, Counter>::default();
        let upgrades = Family::<UpgradeLabels, Counter>::default();
        let steps = Histograms::new_with_constructor(step_histogram as fn() -> Histogram);
        let backups = Family::<ResultLabels, Counter>::default();
        // Series of a known, small label set exist from the start, at 0: a rate or an
        // increase over the first one then counts from the start too.
        for result in ["ok", "error"] {
            drop(reconciliations.get_or_create(&ResultLabels { result }));
        }
        for result in ["succeeded", "failed"] {
            drop(backups.get_or_create(&ResultLabels { result }));
        }
        let census = Arc::new(CensusCollector::default());
        let leader = Gauge::default();
        let queue_depth = Gauge::default();
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
            "Time one reconciliation takes, by result",
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
            "upgrades",
            "Upgrades that ended, by result and reason (as in status.history)",
            upgrades.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time an upgrade (or an on-demand backup or restore) spent in a step, observed when the step is left; RollingOut once per target",
            steps.clone(),
        );
        registry.register(
            "backups",
            "Backups that ended (a backup set counts once), by result",
            backups.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles (always 1 without leader election), 0 while it stands by",
            leader.clone(),
        );
        registry.register(
            "work_queue_depth",
            "AppReleases a change woke (of themselves, their Jobs, targets or requests) that wait for their reconcile; requeues after a delay are not counted",
            queue_depth.clone(),
        );
        registry.register_collector(Box::new(census.clone()));
        Self {
            reconciliations,
            errors,
            events,
            duration,
            notifications,
            notification_attempts,
            upgrades,
            steps,
            backups,
            census,
            leader,
            queue_depth,
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

    /// Counts what a decision changed; called once its status is written.
    pub fn record(&self, telemetry: &Telemetry) {
        for step in &telemetry.steps {
            self.steps
                .get_or_create(&StepLabels {
                    step: step.step.as_str(),
                })
                .observe(step.seconds);
        }
        for ended in &telemetry.upgrades {
            self.upgrades
                .get_or_create(&UpgradeLabels {
                    result: result_label(ended.result),
                    reason: ended.reason.clone(),
                })
                .inc();
        }
        for backup in &telemetry.backups {
            let result = match backup {
                BackupResult::Succeeded => "succeeded",
                BackupResult::Failed => "failed",
            };
            self.backups.get_or_create(&ResultLabels { result }).inc();
        }
    }

    /// Where the gauges of AppReleases come from: called at each scrape with what the
    /// controller's cache holds, until the returned guard is dropped. A replica leads in
    /// terms, each with a cache of its own; between them, and on a standby, there is no
    /// cache kept up to date, so the gauges are absent rather than stale.
    pub fn count_releases(
        &self,
        source: impl Fn() -> Census + Send + Sync + 'static,
    ) -> CountingReleases {
        *self.census.lock() = Some(Box::new(source));
        CountingReleases(self.census.clone())
    }
}

/// Keeps [`Metrics::count_releases`]'s source in place while it lives.
#[must_use = "the gauges are gone when this is dropped"]
pub struct CountingReleases(Arc<CensusCollector>);

impl Drop for CountingReleases {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

/// `status.history[].result` as a label value.
pub fn result_label(result: UpgradeResult) -> &'static str {
    match result {
        UpgradeResult::Succeeded => "succeeded",
        UpgradeResult::Aborted => "aborted",
        UpgradeResult::RolledBack => "rolled_back",
        UpgradeResult::Failed => "failed",
        UpgradeResult::Superseded => "superseded",
        UpgradeResult::Cancelled => "cancelled",
    }
}

/// The AppReleases of the cache, counted for the gauges. Read at scrape time rather than
/// kept up to date by reconciles: a deleted AppRelease is never reconciled again, and would
/// otherwise stay counted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Census {
    /// AppReleases with `status.upgrade` set, by what it is: `upgrade`, `backup` or
    /// `restore` (an on-demand request).
    pub in_flight: BTreeMap<&'static str, i64>,
    /// AppReleases by their Ready condition's status and reason.
    pub ready: BTreeMap<(&'static str, String), i64>,
    /// Each AppRelease whose Stalled condition is True: (namespace, name, reason) and when it
    /// became so, in Unix seconds.
    pub stalled: Vec<((String, String, String), f64)>,
}

impl Census {
    /// Counts `releases`.
    pub fn of<'a>(releases: impl IntoIterator<Item = &'a AppRelease>) -> Self {
        let mut census = Census {
            in_flight: ["upgrade", "backup", "restore"]
                .into_iter()
                .map(|kind| (kind, 0))
                .collect(),
            ..Census::default()
        };
        for release in releases {
            let Some(status) = &release.status else {
                continue;
            };
            if let Some(upgrade) = &status.upgrade {
                let kind = match upgrade.request.as_ref().map(|r| r.kind) {
                    None => "upgrade",
                    Some(RequestKind::Backup) => "backup",
                    Some(RequestKind::Restore) => "restore",
                };
                *census.in_flight.entry(kind).or_default() += 1;
            }
            if let Some(ready) = conditions::get(&status.conditions, conditions::READY) {
                let key = (status_label(ready.status), ready.reason.clone());
                *census.ready.entry(key).or_default() += 1;
            }
            if let Some(stalled) = conditions::get(&status.conditions, conditions::STALLED)
                && stalled.status == ConditionStatus::True
            {
                let meta = &release.metadata;
                let key = (
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default(),
                    stalled.reason.clone(),
                );
                let since = stalled.last_transition_time.timestamp_millis() as f64 / 1000.0;
                census.stalled.push((key, since));
            }
        }
        census
    }
}

fn status_label(status: ConditionStatus) -> &'static str {
    match status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

type CensusSource = Box<dyn Fn() -> Census + Send + Sync>;

/// The gauges of AppReleases, computed from the census at each scrape.
#[derive(Default)]
struct CensusCollector {
    source: Mutex<Option<CensusSource>>,
}

impl CensusCollector {
    /// A panic while counting leaves nothing half-written: the source is only replaced.
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CensusSource>> {
        self.source.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for CensusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CensusCollector")
            .field("source", &self.lock().is_some())
            .finish()
    }
}

impl Collector for CensusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Before the controller's cache exists there is nothing to count.
        let Some(census) = self.lock().as_ref().map(|source| source()) else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "in_flight",
            "AppReleases with an operation in flight (status.upgrade set), by kind: upgrade, or an on-demand backup or restore",
            None,
            MetricType::Gauge,
        )?;
        for (kind, count) in &census.in_flight {
            ConstGauge::new(*count).encode(family.encode_family(&KindLabels { kind })?)?;
        }
        let mut family = encoder.encode_descriptor(
            "releases",
            "AppReleases by the status and reason of their Ready condition",
            None,
            MetricType::Gauge,
        )?;
        for ((status, reason), count) in &census.ready {
            let labels = ReadyLabels {
                status,
                reason: reason.clone(),
            };
            ConstGauge::new(*count).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "stalled_since_timestamp_seconds",
            "When each Stalled AppRelease became so (Unix seconds); absent while not Stalled",
            None,
            MetricType::Gauge,
        )?;
        for ((namespace, name, reason), since) in &census.stalled {
            let labels = ReleaseLabels {
                namespace: namespace.clone(),
                name: name.clone(),
                reason: reason.clone(),
            };
            ConstGauge::new(*since).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::api::conditions::Desired;
    use crate::api::{AppReleaseStatus, RequestRef, Step};
    use crate::plan::fixtures;
    use crate::plan::telemetry::{Ended, StepTime};

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
        assert!(text.contains("apprelease_reconciliations_total{result=\"error\"} 0"));
        assert!(text.contains("apprelease_reconcile_errors_total{error=\"write_status\"} 1"));
        assert!(text.contains("apprelease_backups_total{result=\"succeeded\"} 0"));
        assert!(text.contains("# HELP apprelease_leader 1 while this replica holds the Lease"));
        assert!(text.contains("# TYPE apprelease_leader gauge\napprelease_leader 0\n"));
        metrics.leader.set(1);
        assert!(metrics.encode().contains("\napprelease_leader 1\n"));
    }

    #[test]
    fn a_decision_is_counted_by_step_result_and_backup() {
        let metrics = Metrics::default();
        metrics.record(&Telemetry {
            steps: vec![StepTime {
                step: Step::BackingUp,
                seconds: 3.0,
            }],
            upgrades: vec![Ended {
                result: UpgradeResult::RolledBack,
                reason: "RolloutFailed".into(),
            }],
            backups: vec![BackupResult::Succeeded],
        });
        let text = metrics.encode();
        for line in [
            "apprelease_step_duration_seconds_count{step=\"BackingUp\"} 1",
            "apprelease_step_duration_seconds_bucket{le=\"4.0\",step=\"BackingUp\"} 1",
            "apprelease_upgrades_total{result=\"rolled_back\",reason=\"RolloutFailed\"} 1",
            "apprelease_backups_total{result=\"succeeded\"} 1",
            "apprelease_backups_total{result=\"failed\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    fn with(
        name: &str,
        upgrade: Option<Option<RequestKind>>,
        ready: (ConditionStatus, &str),
        stalled: bool,
    ) -> AppRelease {
        let mut release = fixtures::release("2.0");
        release.metadata.name = Some(name.into());
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let mut status = AppReleaseStatus::default();
        let desired = Desired::new(ready.0, ready.1, "");
        conditions::set(
            &mut status.conditions,
            conditions::READY,
            Some(desired),
            1,
            at,
        );
        if stalled {
            let desired = Desired::new(ConditionStatus::True, ready.1, "");
            conditions::set(
                &mut status.conditions,
                conditions::STALLED,
                Some(desired),
                1,
                at,
            );
        }
        status.upgrade = upgrade.map(|kind| {
            let mut world = fixtures::World::new(fixtures::full("2.0"), fixtures::cluster("1.0"));
            world.step();
            let mut upgrade = world.status().upgrade.clone().unwrap();
            upgrade.request = kind.map(|kind| RequestRef {
                kind,
                name: "now".into(),
                uid: "uid-now".into(),
                components: Vec::new(),
            });
            upgrade
        });
        release.status = Some(status);
        release
    }

    #[test]
    fn the_gauges_count_the_cache_at_each_scrape() {
        let releases = vec![
            with(
                "a",
                Some(None),
                (ConditionStatus::Unknown, "Progressing"),
                false,
            ),
            with(
                "b",
                Some(None),
                (ConditionStatus::Unknown, "Progressing"),
                false,
            ),
            with(
                "c",
                Some(Some(RequestKind::Restore)),
                (ConditionStatus::True, "Succeeded"),
                false,
            ),
            with("d", None, (ConditionStatus::False, "RollbackFailed"), true),
            with("e", None, (ConditionStatus::True, "Succeeded"), false),
        ];
        let census = Census::of(&releases);
        assert_eq!(
            census.in_flight,
            BTreeMap::from([("upgrade", 2), ("backup", 0), ("restore", 1)])
        );
        assert_eq!(
            census.ready,
            BTreeMap::from([
                (("Unknown", "Progressing".to_string()), 2),
                (("True", "Succeeded".to_string()), 2),
                (("False", "RollbackFailed".to_string()), 1),
            ])
        );
        let metrics = Metrics::default();
        assert!(
            !metrics.encode().contains("apprelease_in_flight"),
            "no cache yet"
        );
        let counting = metrics.count_releases(move || Census::of(&releases));
        let text = metrics.encode();
        for line in [
            "# HELP apprelease_in_flight AppReleases with an operation in flight",
            "apprelease_in_flight{kind=\"upgrade\"} 2",
            "apprelease_in_flight{kind=\"backup\"} 0",
            "apprelease_releases{status=\"False\",reason=\"RollbackFailed\"} 1",
            "apprelease_stalled_since_timestamp_seconds{namespace=\"meet\",name=\"d\",reason=\"RollbackFailed\"} 1795262400.0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        drop(counting);
        assert!(
            !metrics.encode().contains("apprelease_in_flight"),
            "a term over, its cache is gone"
        );
    }
}
