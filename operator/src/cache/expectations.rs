//! The operator's own writes that its caches have not shown yet.
//!
//! A watch cache lags behind the API server, and most of all behind the operator's own last
//! writes: a Job it just created, an image it just applied. A decision taken from a cache
//! that does not show them yet would take them for undone. So each such write is remembered
//! here (what the cache must show once it caught up), and a reconcile whose caches do not show
//! all of its release's writes yet decides nothing: it is tried again moments later, or woken
//! by the watch event that brings the write (the approach of kube-controller-manager's
//! `ControllerExpectations`).
//!
//! An expectation is forgotten once met, and after `TIMEOUT` in any case: a Job deleted by
//! someone before the cache saw it would otherwise hold its release forever.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::TargetKind;

/// How long a write may stay unseen before the caches are trusted again.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What a cache must show once it has caught up with one of the operator's writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The Job the operator created.
    Job { name: String },
    /// The workload at (at least) the generation the operator's write gave it.
    Generation {
        kind: TargetKind,
        name: String,
        generation: i64,
    },
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Job { name } => write!(f, "Job {name}, just created"),
            Expected::Generation {
                kind,
                name,
                generation,
            } => write!(f, "{kind} {name} at generation {generation}, just written"),
        }
    }
}

/// The writes awaited, by release (`(namespace, name)`), each with when it was made.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<(String, String), Vec<Awaited>>>,
}

type Awaited = (Expected, Instant);

impl Expectations {
    /// Remembers that the caches must show `what` before the release `name` of `namespace`
    /// is decided on again.
    pub fn expect(&self, namespace: &str, name: &str, what: Expected, now: Instant) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let list = pending
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        list.retain(|(awaited, _)| !supersedes(&what, awaited));
        list.push((what, now));
    }

    /// The first write of the release that `seen` says the caches do not show yet. Writes
    /// they show, and writes awaited longer than `TIMEOUT`, are forgotten.
    pub fn unmet(
        &self,
        namespace: &str,
        name: &str,
        now: Instant,
        seen: impl Fn(&Expected) -> bool,
    ) -> Option<Expected> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.to_string(), name.to_string());
        let list = pending.get_mut(&key)?;
        list.retain(|(what, since)| now.duration_since(*since) < TIMEOUT && !seen(what));
        let first = list.first().map(|(what, _)| what.clone());
        if list.is_empty() {
            pending.remove(&key);
        }
        first
    }

    /// How many writes are awaited, for all releases.
    pub fn len(&self) -> usize {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.values().map(Vec::len).sum()
    }

    /// Whether no write is awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A newer write of the same workload replaces the older expectation.
fn supersedes(new: &Expected, old: &Expected) -> bool {
    match (new, old) {
        (
            Expected::Generation { kind, name, .. },
            Expected::Generation {
                kind: old_kind,
                name: old_name,
                ..
            },
        ) => kind == old_kind && name == old_name,
        (Expected::Job { name }, Expected::Job { name: old }) => name == old,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Expected {
        Expected::Job { name: name.into() }
    }

    fn generation(name: &str, generation: i64) -> Expected {
        Expected::Generation {
            kind: TargetKind::Deployment,
            name: name.into(),
            generation,
        }
    }

    #[test]
    fn a_write_is_awaited_until_the_cache_shows_it() {
        let (expectations, t0) = (Expectations::default(), Instant::now());
        expectations.expect("apps", "meet", job("meet-backup-1"), t0);
        assert_eq!(
            expectations.unmet("apps", "meet", t0, |_| false),
            Some(job("meet-backup-1"))
        );
        // Other releases are not held by it.
        assert_eq!(expectations.unmet("apps", "chat", t0, |_| false), None);
        assert_eq!(expectations.unmet("other", "meet", t0, |_| false), None);
        assert_eq!(expectations.unmet("apps", "meet", t0, |_| true), None);
        assert!(expectations.is_empty(), "met, so forgotten");
        assert_eq!(expectations.unmet("apps", "meet", t0, |_| false), None);
    }

    #[test]
    fn an_unseen_write_is_given_up_after_the_timeout() {
        let (expectations, t0) = (Expectations::default(), Instant::now());
        expectations.expect("apps", "meet", job("meet-backup-1"), t0);
        let almost = t0 + TIMEOUT - Duration::from_millis(1);
        assert!(
            expectations
                .unmet("apps", "meet", almost, |_| false)
                .is_some()
        );
        assert_eq!(
            expectations.unmet("apps", "meet", t0 + TIMEOUT, |_| false),
            None
        );
        assert!(expectations.is_empty());
    }

    #[test]
    fn each_write_is_checked_and_a_newer_one_of_the_same_workload_replaces_the_older() {
        let (expectations, t0) = (Expectations::default(), Instant::now());
        expectations.expect("apps", "meet", generation("web", 4), t0);
        expectations.expect("apps", "meet", job("meet-migrate-2"), t0);
        expectations.expect("apps", "meet", generation("web", 5), t0);
        assert_eq!(expectations.len(), 2);
        let shows = |what: &Expected| match what {
            Expected::Generation { generation, .. } => *generation <= 4,
            Expected::Job { .. } => true,
        };
        assert_eq!(
            expectations.unmet("apps", "meet", t0, shows),
            Some(generation("web", 5))
        );
        assert_eq!(expectations.len(), 1, "the Job was seen");
    }

    #[test]
    fn says_what_it_waits_for() {
        assert_eq!(
            generation("web", 5).to_string(),
            "Deployment web at generation 5, just written"
        );
        assert_eq!(job("j").to_string(), "Job j, just created");
    }
}
