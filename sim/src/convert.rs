//! Kinds served in two API versions from one storage: events.k8s.io/v1 Events are stored
//! as core/v1 Events (as on a real server), so events an operator publishes through
//! events.k8s.io show up in `kubectl describe`, which reads core/v1 Events.

use serde_json::{Map, Value};

use crate::registry::ResourceType;

/// (events.k8s.io/v1 field, core/v1 field) pairs that only differ in name.
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_new_event(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.kind == "Event"
}

fn rename(obj: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let mut out: Map<String, Value> = map.clone();
    for (from, to) in pairs {
        if let Some(v) = out.remove(from) {
            out.insert(to.to_string(), v);
        }
    }
    Value::Object(out)
}

/// The stored object in the shape `rt` serves.
pub fn to_view(rt: &ResourceType, stored: &Value) -> Value {
    if !is_new_event(rt) {
        return stored.clone();
    }
    let mut v = rename(stored, EVENT_FIELDS.iter().map(|(new, old)| (*old, *new)));
    // The new API has no event source; the reporting controller stands in for it.
    if let Some(map) = v.as_object_mut() {
        if !map.contains_key("reportingController")
            && let Some(component) = map.get("deprecatedSource").and_then(|s| s.get("component"))
        {
            map.insert("reportingController".into(), component.clone());
        }
        map.entry("reportingInstance")
            .or_insert_with(|| Value::String(String::new()));
    }
    v
}

/// An object in the shape `rt` serves, in the shape it is stored.
pub fn from_view(rt: &ResourceType, served: &Value) -> Value {
    if !is_new_event(rt) {
        return served.clone();
    }
    let mut v = rename(served, EVENT_FIELDS.iter().copied());
    if let Some(map) = v.as_object_mut() {
        map.insert("apiVersion".into(), Value::String("v1".into()));
        // kubectl describe shows the source and timestamps of core events.
        if !map.contains_key("source")
            && let Some(component) = map.get("reportingComponent").cloned()
        {
            map.insert("source".into(), serde_json::json!({"component": component}));
        }
        let series_count = map.get("series").and_then(|s| s.get("count")).cloned();
        let series_last = map
            .get("series")
            .and_then(|s| s.get("lastObservedTime"))
            .cloned();
        if let Some(c) = series_count {
            map.insert("count".into(), c);
        }
        if let Some(t) = series_last.or_else(|| map.get("eventTime").cloned()) {
            map.entry("lastTimestamp").or_insert(t.clone());
            map.entry("firstTimestamp").or_insert(t);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_events_are_stored_as_core_events_and_read_back() {
        let rt = crate::registry::builtins()
            .into_iter()
            .find(|t| t.group == "events.k8s.io")
            .unwrap();
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1"}, "regarding": {"kind": "Widget", "name": "w1"},
            "note": "backed up", "reason": "BackupSucceeded", "type": "Normal",
            "reportingController": "apprelease", "reportingInstance": "pod-1",
            "eventTime": "2026-01-01T00:00:00.000000Z"});
        let stored = from_view(&rt, &served);
        assert_eq!(stored["involvedObject"]["name"], "w1");
        assert_eq!(stored["message"], "backed up");
        assert_eq!(stored["source"]["component"], "apprelease");
        assert_eq!(stored["apiVersion"], "v1");
        let back = to_view(&rt, &stored);
        assert_eq!(back["regarding"], served["regarding"]);
        assert_eq!(back["note"], "backed up");
        assert_eq!(back["reportingController"], "apprelease");
    }
}
