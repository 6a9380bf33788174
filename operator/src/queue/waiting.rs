//! The work-queue depth: AppReleases that a change woke (of themselves, their Jobs, their
//! targets or their requests) and that wait for their reconcile.
//!
//! kube-runtime 5 keeps its scheduler private (`controller/runner.rs`), so this counts at its
//! edges: each trigger the controller is given is marked here on its way in, and the mark is
//! taken when the reconcile of that AppRelease starts. Like the scheduler, it holds an
//! AppRelease once however often it is woken, and a trigger that comes during its reconcile
//! waits for the next one. A requeue after a delay (a deadline, a window, a backoff) is a
//! timer, not work waiting, and is not counted.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use kube::runtime::reflector::ObjectRef;
use prometheus_client::metrics::gauge::Gauge;

/// `(namespace, name)` of an AppRelease.
type Key = (String, String);

/// The AppReleases woken and not yet reconciled, exposed as a gauge.
#[derive(Debug)]
pub struct Waiting {
    keys: Mutex<HashSet<Key>>,
    depth: Gauge,
}

impl Waiting {
    /// Counts into `depth`, which starts at 0.
    pub fn new(depth: Gauge) -> Self {
        depth.set(0);
        Self {
            keys: Mutex::default(),
            depth,
        }
    }

    /// Marks every AppRelease of `refs` as woken and hands them on to the controller.
    pub fn woke<K, I>(&self, refs: I) -> Vec<ObjectRef<K>>
    where
        K: kube::Resource<DynamicType = ()>,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let refs: Vec<_> = refs.into_iter().collect();
        self.update(|keys| {
            for r in &refs {
                keys.insert(key(r.namespace.as_deref(), &r.name));
            }
        });
        refs
    }

    /// Its reconcile started, or the controller dropped it (the AppRelease no longer exists).
    pub fn taken(&self, namespace: Option<&str>, name: &str) {
        self.update(|keys| {
            keys.remove(&key(namespace, name));
        });
    }

    fn update(&self, change: impl FnOnce(&mut HashSet<Key>)) {
        // A panic elsewhere while holding the lock leaves a valid set behind.
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut keys);
        self.depth
            .set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
    }
}

/// A term of leadership over, nothing waits in this replica.
impl Drop for Waiting {
    fn drop(&mut self) {
        self.depth.set(0);
    }
}

fn key(namespace: Option<&str>, name: &str) -> Key {
    (namespace.unwrap_or_default().to_string(), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppRelease;

    fn release(namespace: &str, name: &str) -> ObjectRef<AppRelease> {
        ObjectRef::new(name).within(namespace)
    }

    #[test]
    fn an_app_release_waits_once_however_often_it_is_woken() {
        let depth = Gauge::default();
        let waiting = Waiting::new(depth.clone());
        let handed = waiting.woke([release("apps", "meet"), release("apps", "meet")]);
        assert_eq!(handed.len(), 2, "the controller still gets every trigger");
        waiting.woke([release("apps", "wiki"), release("other", "meet")]);
        assert_eq!(depth.get(), 3);
        waiting.taken(Some("apps"), "meet");
        assert_eq!(depth.get(), 2);
        // Woken again during its reconcile: it waits for the next one.
        waiting.woke([release("apps", "meet")]);
        assert_eq!(depth.get(), 3);
    }

    #[test]
    fn taking_what_does_not_wait_changes_nothing_and_the_end_of_a_term_empties_it() {
        let depth = Gauge::default();
        let waiting = Waiting::new(depth.clone());
        waiting.woke([release("apps", "meet")]);
        waiting.taken(Some("apps"), "wiki");
        waiting.taken(None, "meet");
        assert_eq!(depth.get(), 1);
        drop(waiting);
        assert_eq!(depth.get(), 0);
    }
}
