//! Every API request counted per (verb, group, resource), and a bounded log of recent requests,
//! so tests and benchmarks can check how many calls an operator made (and of which kind).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

const LOG_LIMIT: usize = 10_000;

/// One request as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// Plural resource, with `/subresource` when one was addressed (`appreleases/status`).
    pub resource: String,
    /// API group ("" for core).
    pub group: String,
    /// Namespace, "" when cluster-wide.
    pub namespace: String,
    /// Object name: from the path, or for a create from the body's `metadata.name`; "" for
    /// other collection requests.
    pub name: String,
    /// The client's User-Agent.
    pub user_agent: String,
    /// The HTTP status of the answer (200 for a watch that started; faults included), so
    /// that, say, only creates that took effect (201) can be counted.
    pub code: u16,
}

/// A (verb, group, resource) count, as `/sim/requests` reports it: together they are what
/// an RBAC rule has to allow.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Count {
    /// Verb.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource (with subresource).
    pub resource: String,
    /// Requests seen.
    pub count: u64,
}

#[derive(Default)]
struct State {
    counts: BTreeMap<(String, String, String), u64>,
    recent: VecDeque<RequestRecord>,
}

/// The request counters.
#[derive(Default)]
pub struct RequestLog {
    state: Mutex<State>,
}

/// Verbs that change objects.
pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request.
    pub fn record(&self, record: RequestRecord) {
        let mut s = self.lock();
        *s.counts
            .entry((
                record.verb.clone(),
                record.group.clone(),
                record.resource.clone(),
            ))
            .or_default() += 1;
        s.recent.push_back(record);
        if s.recent.len() > LOG_LIMIT {
            s.recent.pop_front();
        }
    }

    /// Requests with this verb on this resource in any group (`("create", "jobs")`).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.lock()
            .counts
            .iter()
            .filter(|((v, _, r), _)| v == verb && r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// All writes (create, update, patch, delete) to a resource, subresources included.
    pub fn writes(&self, resource: &str) -> u64 {
        self.lock()
            .counts
            .iter()
            .filter(|((verb, _, res), _)| {
                WRITE_VERBS.contains(&verb.as_str())
                    && (res == resource || res.starts_with(&format!("{resource}/")))
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (verb, group, resource) count.
    pub fn counts(&self) -> Vec<Count> {
        self.lock()
            .counts
            .iter()
            .map(|((verb, group, resource), count)| Count {
                verb: verb.clone(),
                group: group.clone(),
                resource: resource.clone(),
                count: *count,
            })
            .collect()
    }

    /// The most recent requests, oldest first.
    pub fn recent(&self) -> Vec<RequestRecord> {
        self.lock().recent.iter().cloned().collect()
    }

    /// The most recent requests, oldest first, removed from the log: a caller that takes
    /// them often enough (before `LOG_LIMIT` more arrive) sees every request once.
    pub fn take(&self) -> Vec<RequestRecord> {
        self.lock().recent.drain(..).collect()
    }

    /// Clears counts and log.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.counts.clear();
        s.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str) -> RequestRecord {
        RequestRecord {
            verb: "get".into(),
            resource: "pods".into(),
            group: String::new(),
            namespace: "a".into(),
            name: name.into(),
            user_agent: "test".into(),
            code: 200,
        }
    }

    #[test]
    fn take_hands_out_each_request_once_and_keeps_the_counts() {
        let log = RequestLog::default();
        log.record(request("one"));
        log.record(request("two"));
        let names = |records: Vec<RequestRecord>| -> Vec<String> {
            records.into_iter().map(|r| r.name).collect()
        };
        assert_eq!(names(log.take()), ["one", "two"]);
        log.record(request("three"));
        assert_eq!(names(log.take()), ["three"]);
        assert!(log.take().is_empty());
        assert_eq!(log.count("get", "pods"), 3);
    }
}
