//! `status NAME`: the versions, what runs in each target, the step in flight, the
//! conditions and the last Events — built from what was read, then printed.

use apprelease_operator::api::conditions::Condition;
use apprelease_operator::api::time::to_chrono;
use apprelease_operator::api::{AppRelease, Approval, FailedVersion, TargetKind, Upgrade};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::format;

/// How many Events `status` shows: the newest.
pub const EVENTS: usize = 10;

/// Everything `status` shows (also its `-o json`).
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub name: String,
    pub namespace: String,
    /// `spec.version`.
    pub target_version: String,
    /// `status.currentVersion`.
    pub current_version: Option<String>,
    pub approval: Approval,
    pub targets: Vec<TargetView>,
    /// `status.upgrade`, the step in flight.
    pub upgrade: Option<Upgrade>,
    /// `status.failed`: a version not tried again until the spec changes or a retry.
    pub failed: Option<FailedVersion>,
    pub conditions: Vec<Condition>,
    /// Oldest first, at most [`EVENTS`].
    pub events: Vec<EventView>,
}

/// One target as its workload runs now.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    pub kind: String,
    pub name: String,
    /// False when the workload does not exist.
    pub found: bool,
    pub images: Vec<ContainerView>,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
}

/// One container of a target's pod template.
#[derive(Serialize, Debug, PartialEq)]
pub struct ContainerView {
    pub container: String,
    pub image: String,
}

/// One Event about the AppRelease.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    pub last_seen: Option<DateTime<Utc>>,
}

impl TargetView {
    /// A target whose workload was not found.
    pub fn missing(kind: TargetKind, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            name: name.into(),
            found: false,
            images: Vec::new(),
            ready_replicas: 0,
            desired_replicas: 0,
        }
    }

    /// A Deployment target as it runs.
    pub fn deployment(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        Self::workload(
            TargetKind::Deployment,
            d.metadata.name.as_deref(),
            spec.map(|s| &s.template),
            spec.and_then(|s| s.replicas),
            d.status.as_ref().and_then(|s| s.ready_replicas),
        )
    }

    /// A StatefulSet target as it runs.
    pub fn stateful_set(s: &StatefulSet) -> Self {
        let spec = s.spec.as_ref();
        Self::workload(
            TargetKind::StatefulSet,
            s.metadata.name.as_deref(),
            spec.map(|s| &s.template),
            spec.and_then(|s| s.replicas),
            s.status.as_ref().and_then(|s| s.ready_replicas),
        )
    }

    fn workload(
        kind: TargetKind,
        name: Option<&str>,
        template: Option<&PodTemplateSpec>,
        replicas: Option<i32>,
        ready: Option<i32>,
    ) -> Self {
        let containers = template
            .and_then(|t| t.spec.as_ref())
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        Self {
            kind: kind.to_string(),
            name: name.unwrap_or_default().into(),
            found: true,
            images: containers
                .iter()
                .map(|c| ContainerView {
                    container: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                })
                .collect(),
            ready_replicas: ready.unwrap_or(0),
            // The API server's default when spec.replicas is left out.
            desired_replicas: replicas.unwrap_or(1),
        }
    }
}

impl EventView {
    /// A core/v1 Event: its newest time is the series' last observation, else the last
    /// timestamp, else the event time (events.k8s.io Events have no lastTimestamp).
    pub fn from_event(e: &Event) -> Self {
        let micro =
            |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime| to_chrono(&Time(m.0));
        let last_seen = e
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(micro)
            .or_else(|| e.last_timestamp.as_ref().map(to_chrono))
            .or_else(|| e.event_time.as_ref().map(micro))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(to_chrono));
        Self {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1),
            last_seen,
        }
    }
}

impl StatusView {
    /// The view of `release` with its targets (in spec order) and Events (any order).
    pub fn new(release: &AppRelease, targets: Vec<TargetView>, mut events: Vec<EventView>) -> Self {
        let status = release.status.clone().unwrap_or_default();
        // Newest last, as `kubectl describe` lists them; an Event without a time first.
        events.sort_by_key(|e| e.last_seen);
        let skip = events.len().saturating_sub(EVENTS);
        Self {
            name: release.metadata.name.clone().unwrap_or_default(),
            namespace: release.metadata.namespace.clone().unwrap_or_default(),
            target_version: release.spec.version.clone(),
            current_version: status.current_version,
            approval: release.spec.approval,
            targets,
            upgrade: status.upgrade,
            failed: status.failed,
            conditions: status.conditions,
            events: events.into_iter().skip(skip).collect(),
        }
    }

    /// The human-readable form.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let mut fields = vec![
            ("Name", self.name.clone()),
            ("Namespace", self.namespace.clone()),
            ("Target version", self.target_version.clone()),
            (
                "Current version",
                self.current_version.clone().unwrap_or_default(),
            ),
        ];
        if self.approval == Approval::Manual {
            fields.push(("Approval", "Manual".into()));
        }
        match &self.upgrade {
            None => fields.push(("In flight", String::new())),
            Some(u) => {
                let what = match &u.request {
                    Some(r) => format!("{:?} {} (attempt {})", r.kind, r.name, u.attempt),
                    None => format!(
                        "upgrade {} → {} (attempt {})",
                        if u.from.is_empty() { "?" } else { &u.from },
                        u.to,
                        u.attempt
                    ),
                };
                fields.push(("In flight", what));
                fields.push((
                    "Step",
                    format!(
                        "{} for {} (started {} ago)",
                        u.step.as_str(),
                        format::age(u.step_started_at, now),
                        format::age(u.started_at, now)
                    ),
                ));
                if let Some(backup) = &u.backup {
                    fields.push(("Backup", backup.clone()));
                }
                if let Some(failure) = &u.failure {
                    fields.push((
                        "Rolling back",
                        format!("{}: {}", failure.reason, failure.message),
                    ));
                }
            }
        }
        if let Some(f) = &self.failed {
            fields.push((
                "Failed version",
                format!(
                    "{} ({}): not tried again until the spec changes or `kubectl apprelease retry {}`",
                    f.version, f.reason, self.name
                ),
            ));
        }
        let mut out = format::fields(&fields);

        out.push_str("\nTargets:\n");
        let rows: Vec<Vec<String>> = self
            .targets
            .iter()
            .map(|t| {
                let images = t
                    .images
                    .iter()
                    .map(|c| format!("{}={}", c.container, c.image))
                    .collect::<Vec<_>>()
                    .join(",");
                let ready = if t.found {
                    format!("{}/{}", t.ready_replicas, t.desired_replicas)
                } else {
                    "not found".into()
                };
                vec![t.kind.clone(), t.name.clone(), ready, images]
            })
            .collect();
        out.push_str(&format::table(&["KIND", "NAME", "READY", "IMAGES"], &rows));

        out.push_str("\nConditions:\n");
        if self.conditions.is_empty() {
            out.push_str("  <none>: the operator has not written a status yet\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .conditions
                .iter()
                .map(|c| {
                    vec![
                        c.type_.clone(),
                        format!("{:?}", c.status),
                        c.reason.clone(),
                        format::age(c.last_transition_time, now),
                        c.message.clone(),
                    ]
                })
                .collect();
            out.push_str(&format::table(
                &["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
                &rows,
            ));
        }

        out.push_str("\nEvents:\n");
        if self.events.is_empty() {
            out.push_str("  <none>\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .events
                .iter()
                .map(|e| {
                    let seen = e.last_seen.map(|t| format::age(t, now)).unwrap_or_default();
                    let seen = if e.count > 1 {
                        format!("{seen} (x{})", e.count)
                    } else {
                        seen
                    };
                    vec![seen, e.type_.clone(), e.reason.clone(), e.message.clone()]
                })
                .collect();
            out.push_str(&format::table(
                &["LAST SEEN", "TYPE", "REASON", "MESSAGE"],
                &rows,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{at, release};
    use apprelease_operator::api::conditions::ConditionStatus;
    use apprelease_operator::api::{RequestKind, RequestRef, Step};
    use serde_json::json;

    fn target(name: &str, images: &[(&str, &str)], ready: i32, desired: i32) -> TargetView {
        TargetView {
            kind: "Deployment".into(),
            name: name.into(),
            found: true,
            images: images
                .iter()
                .map(|(c, i)| ContainerView {
                    container: c.to_string(),
                    image: i.to_string(),
                })
                .collect(),
            ready_replicas: ready,
            desired_replicas: desired,
        }
    }

    fn event(reason: &str, minute: u32, count: i32) -> EventView {
        EventView {
            type_: "Normal".into(),
            reason: reason.into(),
            message: format!("{reason} happened"),
            count,
            last_seen: Some(at(minute)),
        }
    }

    fn condition(type_: &str, status: ConditionStatus, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: at(50),
            observed_generation: 2,
        }
    }

    #[test]
    fn at_rest() {
        let mut r = release();
        let status = r.status.get_or_insert_default();
        status.conditions = vec![condition(
            "Ready",
            ConditionStatus::True,
            "Succeeded",
            "1.1.0 runs in every target",
        )];
        let view = StatusView::new(
            &r,
            vec![
                target(
                    "backend",
                    &[("backend", "busybox:1.1.0"), ("metrics", "busybox:1.36")],
                    2,
                    2,
                ),
                TargetView::missing(TargetKind::StatefulSet, "worker"),
            ],
            vec![
                event("UpgradeSucceeded", 50, 1),
                event("UpgradeStarted", 40, 3),
            ],
        );
        assert_eq!(
            view.render(at(60)),
            "\
Name:             shop
Namespace:        prod
Target version:   1.1.0
Current version:  1.1.0
In flight:        <none>

Targets:
KIND          NAME      READY       IMAGES
Deployment    backend   2/2         backend=busybox:1.1.0,metrics=busybox:1.36
StatefulSet   worker    not found   <none>

Conditions:
TYPE    STATUS   REASON      SINCE   MESSAGE
Ready   True     Succeeded   10m     1.1.0 runs in every target

Events:
LAST SEEN   TYPE     REASON             MESSAGE
20m (x3)    Normal   UpgradeStarted     UpgradeStarted happened
10m         Normal   UpgradeSucceeded   UpgradeSucceeded happened
"
        );
    }

    #[test]
    fn in_flight_request_and_manual_approval() {
        let mut r = release();
        r.spec.approval = Approval::Manual;
        let status = r.status.get_or_insert_default();
        status.current_version = None;
        status.upgrade = Some(crate::testdata::upgrade(
            Step::Restoring,
            Some(RequestRef {
                kind: RequestKind::Restore,
                name: "shop-restore-x7k2p".into(),
                uid: "u".into(),
                components: Vec::new(),
            }),
        ));
        let view = StatusView::new(&r, Vec::new(), Vec::new());
        assert_eq!(
            view.render(at(60)),
            "\
Name:             shop
Namespace:        prod
Target version:   1.1.0
Current version:  <none>
Approval:         Manual
In flight:        Restore shop-restore-x7k2p (attempt 4)
Step:             Restoring for 2m (started 5m ago)
Backup:           shop-backup-3

Targets:
KIND   NAME   READY   IMAGES

Conditions:
  <none>: the operator has not written a status yet

Events:
  <none>
"
        );
        let mut upgrade = crate::testdata::upgrade(Step::Migrating, None);
        upgrade.from = String::new();
        r.status.get_or_insert_default().upgrade = Some(upgrade);
        let text = StatusView::new(&r, Vec::new(), Vec::new()).render(at(60));
        assert!(
            text.contains("In flight:        upgrade ? → 1.1.0 (attempt 4)\nStep:             Migrating for 2m"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_version_says_how_to_retry() {
        let mut r = release();
        r.status.get_or_insert_default().failed = Some(FailedVersion {
            version: "1.2.0".into(),
            generation: 2,
            retry: String::new(),
            reason: "RolledBack".into(),
            message: "never ready".into(),
        });
        let text = StatusView::new(&r, Vec::new(), Vec::new()).render(at(60));
        assert!(
            text.contains("In flight:        <none>\nFailed version:   1.2.0 (RolledBack): not tried again until the spec changes or `kubectl apprelease retry shop`\n"),
            "{text}"
        );
    }

    #[test]
    fn keeps_the_ten_newest_events_newest_last() {
        let events: Vec<EventView> = (0..14)
            .rev()
            .map(|m| event(&format!("E{m}"), m, 1))
            .collect();
        let view = StatusView::new(&release(), Vec::new(), events);
        let reasons: Vec<&str> = view.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "E4", "E5", "E6", "E7", "E8", "E9", "E10", "E11", "E12", "E13"
            ]
        );
    }

    #[test]
    fn reads_workloads_and_events() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "backend"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "backend", "image": "busybox:1.1.0"}]}}},
            "status": {"readyReplicas": 0}
        }))
        .unwrap();
        assert_eq!(
            TargetView::deployment(&d),
            target("backend", &[("backend", "busybox:1.1.0")], 0, 1)
        );
        let s: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "worker"},
            "spec": {"replicas": 3, "selector": {}, "serviceName": "w", "template": {"spec": {"containers": [
                {"name": "worker", "image": "busybox:1.1.0"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}
        }))
        .unwrap();
        let view = TargetView::stateful_set(&s);
        assert_eq!(
            (
                view.kind.as_str(),
                view.ready_replicas,
                view.desired_replicas
            ),
            ("StatefulSet", 2, 3)
        );

        // events.k8s.io Events read as core ones: an event time, a series.
        let e: Event = serde_json::from_value(json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "AppRelease", "name": "shop"},
            "type": "Warning", "reason": "BackupFailed", "message": "exit 1",
            "eventTime": "1970-01-01T00:03:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "1970-01-01T00:05:00.000000Z"}
        }))
        .unwrap();
        assert_eq!(
            EventView::from_event(&e),
            EventView {
                type_: "Warning".into(),
                reason: "BackupFailed".into(),
                message: "exit 1".into(),
                count: 4,
                last_seen: Some(at(5)),
            }
        );
        let e: Event = serde_json::from_value(json!({
            "metadata": {"name": "e"}, "involvedObject": {},
            "lastTimestamp": "1970-01-01T00:07:00Z", "count": 2
        }))
        .unwrap();
        let view = EventView::from_event(&e);
        assert_eq!((view.count, view.last_seen), (2, Some(at(7))));
    }
}
