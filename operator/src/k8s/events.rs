//! Publishes the planner's notes as Kubernetes Events (events.k8s.io/v1) on the AppRelease.
//!
//! A small publisher of our own instead of kube-runtime's `Recorder`: the Recorder keys a
//! series on type, action, reason, reporter and the objects, not on the note, so every later
//! Event with the same reason was published as a repeat of the first one and kept its note
//! (after a second upgrade: "UpgradeStarted x2: upgrading from 1.0.0 to 1.1.0 (attempt 1)").
//! Here the note is part of the key: an identical repeat still counts up the series of one
//! Event, and a different message is an Event of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::warn;

use crate::plan::{Note, NoteType};

/// The Events API allows at most 1 kB of note.
const MAX_NOTE: usize = 1024;

/// A repeat this long after the last one starts a new Event instead of extending the series,
/// as client-go and kube-runtime do; it also bounds how long a series is remembered.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// At most this many series are remembered; beyond, the least recently seen is forgotten
/// (its next repeat creates a new Event), so memory stays bounded whatever the churn.
const MAX_SERIES: usize = 1024;

/// What the action field of every Event says.
const ACTION: &str = "Reconcile";

/// Publishes Events as the operator.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    /// `reportingInstance`: the pod name when known, else the controller name.
    instance: String,
    series: Arc<Mutex<Series>>,
}

impl Reporter {
    /// A reporter named after the operator, with the pod name as instance when known.
    pub fn new(client: Client) -> Self {
        let instance =
            std::env::var("POD_NAME").unwrap_or_else(|_| crate::api::FIELD_MANAGER.into());
        Self {
            client,
            instance,
            series: Arc::default(),
        }
    }

    /// Publishes one note: a new Event, or, when the same note about the same object was
    /// published within `SERIES_TTL`, one more count in that Event's series. A failure is
    /// logged, not returned: the status already holds the same story, and an Event lost must
    /// not stop an upgrade.
    pub async fn publish(&self, reference: &ObjectReference, note: &Note) {
        let message = truncate(&note.message, MAX_NOTE);
        let key = Key::new(reference, note, &message);
        let now = Instant::now();
        let plan = self.lock().plan(&key, now);
        let api: Api<Event> = Api::namespaced(
            self.client.clone(),
            reference.namespace.as_deref().unwrap_or("default"),
        );
        let published = match plan {
            Publish::Repeat { name, count } => match repeat(&api, &name, count).await {
                // The Event is gone (expired on the server, or deleted): start afresh.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.create(&api, reference, note, &message).await
                }
                other => other.map(|()| (name, count)),
            },
            Publish::Create => self.create(&api, reference, note, &message).await,
        };
        match published {
            Ok((name, count)) => self.lock().record(key, name, count, now),
            Err(error) => warn!(%error, reason = note.reason, "could not publish Event"),
        }
    }

    async fn create(
        &self,
        api: &Api<Event>,
        reference: &ObjectReference,
        note: &Note,
        message: &str,
    ) -> Result<(String, i32), kube::Error> {
        let now = Timestamp::now();
        // client-go's naming: the object's name and the time, unique enough per object.
        let name = format!(
            "{}.{:x}",
            reference
                .name
                .as_deref()
                .unwrap_or(crate::api::FIELD_MANAGER),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: reference.namespace.clone(),
                ..Default::default()
            },
            action: Some(ACTION.into()),
            reason: Some(note.reason.clone()),
            note: Some(message.to_string()),
            type_: Some(type_name(note.type_).into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            reporting_controller: Some(crate::api::FIELD_MANAGER.into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok((name, 1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        // A panic while holding the lock leaves the cache consistent (each call is one
        // insert or lookup), so a poisoned lock is still usable.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One more occurrence of an Event: only its series changes, never its note.
async fn repeat(api: &Api<Event>, name: &str, count: i32) -> Result<(), kube::Error> {
    let patch =
        json!({"series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}

fn type_name(type_: NoteType) -> &'static str {
    match type_ {
        NoteType::Normal => "Normal",
        NoteType::Warning => "Warning",
    }
}

/// What makes two Events the same: the object, the type, the reason and the very note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    regarding: [Option<String>; 5],
    type_: &'static str,
    reason: String,
    note: String,
}

impl Key {
    fn new(reference: &ObjectReference, note: &Note, message: &str) -> Self {
        let r = reference.clone();
        Self {
            regarding: [r.api_version, r.kind, r.namespace, r.name, r.uid],
            type_: type_name(note.type_),
            reason: note.reason.clone(),
            note: message.to_string(),
        }
    }
}

/// The Event last published for a key.
#[derive(Debug)]
struct Entry {
    name: String,
    count: i32,
    last: Instant,
}

/// What to do for one note.
#[derive(Debug, PartialEq, Eq)]
enum Publish {
    /// A new Event.
    Create,
    /// Count the Event `name` once more, to `count` occurrences.
    Repeat { name: String, count: i32 },
}

/// The series seen recently, bounded by `SERIES_TTL` and `MAX_SERIES`.
#[derive(Debug, Default)]
struct Series {
    entries: HashMap<Key, Entry>,
}

impl Series {
    fn plan(&mut self, key: &Key, now: Instant) -> Publish {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last) < SERIES_TTL);
        match self.entries.get(key) {
            Some(e) => Publish::Repeat {
                name: e.name.clone(),
                count: e.count.saturating_add(1),
            },
            None => Publish::Create,
        }
    }

    fn record(&mut self, key: Key, name: String, count: i32, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_SERIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                name,
                count,
                last: now,
            },
        );
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
    use std::time::{Duration, Instant};

    use http::{Request, Response};
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::Client;
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::{Key, MAX_SERIES, Publish, Reporter, SERIES_TTL, Series, truncate};
    use crate::plan::{Note, NoteType};

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(600), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
    }

    fn reference() -> ObjectReference {
        ObjectReference {
            api_version: Some("apprelease.io/v1alpha1".into()),
            kind: Some("AppRelease".into()),
            name: Some("meet".into()),
            namespace: Some("meet".into()),
            uid: Some("uid-meet".into()),
            ..Default::default()
        }
    }

    fn note(reason: &str, message: &str) -> Note {
        Note {
            type_: NoteType::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn key(message: &str) -> Key {
        Key::new(&reference(), &note("UpgradeStarted", message), message)
    }

    const FIRST: &str = "upgrading from 1.0.0 to 1.1.0 (attempt 1)";
    const SECOND: &str = "upgrading from 1.1.0 to 1.2.0 (attempt 1)";

    #[test]
    fn only_the_very_same_note_extends_a_series() {
        let (mut series, now) = (Series::default(), Instant::now());
        assert_eq!(series.plan(&key(FIRST), now), Publish::Create);
        series.record(key(FIRST), "e1".into(), 1, now);
        assert_eq!(
            series.plan(&key(FIRST), now),
            Publish::Repeat {
                name: "e1".into(),
                count: 2
            }
        );
        // Same reason, another message: another Event.
        assert_eq!(series.plan(&key(SECOND), now), Publish::Create);
    }

    #[test]
    fn a_series_is_forgotten_after_its_ttl() {
        let (mut series, now) = (Series::default(), Instant::now());
        series.record(key(FIRST), "e1".into(), 1, now);
        assert_eq!(series.plan(&key(FIRST), now + SERIES_TTL), Publish::Create);
        assert!(series.entries.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_least_recent_first() {
        let (mut series, start) = (Series::default(), Instant::now());
        for i in 0..=MAX_SERIES {
            let at = start + Duration::from_millis(i as u64);
            series.record(key(&i.to_string()), format!("e{i}"), 1, at);
        }
        assert_eq!(series.entries.len(), MAX_SERIES);
        let now = start + Duration::from_secs(1);
        assert_eq!(series.plan(&key("0"), now), Publish::Create);
        assert!(matches!(
            series.plan(&key("1"), now),
            Publish::Repeat { .. }
        ));
    }

    /// Answers every request like the Events API would and returns what it saw, in order:
    /// `(method, path, body)`. With `gone`, every PATCH answers 404.
    async fn serve(
        mut handle: mock::Handle<Request<Body>, Response<Body>>,
        gone: bool,
    ) -> Vec<(String, String, Value)> {
        let mut seen = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body: Value = serde_json::from_slice(&body.collect_bytes().await.unwrap()).unwrap();
            let path = parts.uri.path().to_string();
            let (code, answer) = if parts.method == "PATCH" && gone {
                (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                )
            } else {
                let mut event = body.clone();
                event["apiVersion"] = "events.k8s.io/v1".into();
                event["kind"] = "Event".into();
                (if parts.method == "POST" { 201 } else { 200 }, event)
            };
            respond.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
            seen.push((parts.method.to_string(), path, body));
        }
        seen
    }

    #[tokio::test]
    async fn each_message_is_its_own_event_and_identical_repeats_count_up() {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(serve(handle, false));
        let reporter = Reporter::new(Client::new(service, "default"));
        let events = "/apis/events.k8s.io/v1/namespaces/meet/events";
        reporter
            .publish(&reference(), &note("UpgradeStarted", FIRST))
            .await;
        reporter
            .publish(&reference(), &note("UpgradeStarted", FIRST))
            .await;
        reporter
            .publish(&reference(), &note("UpgradeStarted", SECOND))
            .await;
        drop(reporter);
        let seen = server.await.unwrap();

        let methods: Vec<_> = seen.iter().map(|(m, p, _)| (m.as_str(), p)).collect();
        let first = seen[0].2["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            methods,
            [
                ("POST", &events.to_string()),
                ("PATCH", &format!("{events}/{first}")),
                ("POST", &events.to_string()),
            ]
        );
        assert_eq!(seen[0].2["note"], FIRST);
        assert_eq!(seen[0].2["reason"], "UpgradeStarted");
        assert_eq!(seen[0].2["regarding"]["uid"], "uid-meet");
        assert_eq!(seen[0].2["reportingController"], "apprelease-operator");
        // The repeat changes the series only: the note it shows stays the one it is about.
        assert_eq!(seen[1].2["series"]["count"], 2);
        assert_eq!(seen[1].2.as_object().unwrap().len(), 1, "{:?}", seen[1].2);
        assert_eq!(seen[2].2["note"], SECOND);
        assert!(seen[2].2.get("series").is_none());
        assert_ne!(seen[2].2["metadata"]["name"], first);
    }

    #[tokio::test]
    async fn a_repeat_of_an_event_gone_from_the_server_creates_it_again() {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(serve(handle, true));
        let reporter = Reporter::new(Client::new(service, "default"));
        for _ in 0..3 {
            reporter
                .publish(&reference(), &note("UpgradeStarted", FIRST))
                .await;
        }
        drop(reporter);
        let methods: Vec<_> = server
            .await
            .unwrap()
            .into_iter()
            .map(|(m, _, _)| m)
            .collect();
        // Each PATCH is answered 404 (see `serve`), so each repeat creates the Event anew.
        assert_eq!(methods, ["POST", "PATCH", "POST", "PATCH", "POST"]);
    }
}
