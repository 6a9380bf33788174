//! A watch cache with secondary keys: the objects of one watch by `(namespace, name)`, and
//! their names by `(namespace, key)` for keys computed from each object (the release a Job
//! belongs to, the targets an AppRelease names), so that finding the Jobs of a release or
//! the releases of a Deployment is a lookup, not a scan of everything watched.
//!
//! It follows the watch's events as kube-runtime's reflector store does: `Apply` and
//! `Delete` change one object; a (re)list arrives as `Init`, `InitApply`… and `InitDone`,
//! and replaces the whole content at `InitDone`, so a reader never sees half a relist.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use kube::Resource;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// `(namespace, name)`, or `(namespace, key)`.
type Pair = (String, String);

/// The keys of one object.
pub type KeyFn<K> = fn(&K) -> Vec<String>;

/// One watch's objects (or only their names, for a watch whose objects another store
/// keeps), indexed by key.
pub struct Index<K> {
    state: Arc<RwLock<State<K>>>,
    keys: KeyFn<K>,
    keep_objects: bool,
    synced: watch::Sender<bool>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            keys: self.keys,
            keep_objects: self.keep_objects,
            synced: self.synced.clone(),
        }
    }
}

struct State<K> {
    current: Content<K>,
    /// A relist in progress: it becomes `current` at its `InitDone`.
    relist: Option<Content<K>>,
}

struct Content<K> {
    objects: HashMap<Pair, Arc<K>>,
    names: HashMap<Pair, BTreeSet<String>>,
    keys_of: HashMap<Pair, Vec<String>>,
}

impl<K> Default for Content<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            names: HashMap::new(),
            keys_of: HashMap::new(),
        }
    }
}

impl<K> Content<K> {
    fn insert(&mut self, at: Pair, keys: Vec<String>, object: Option<Arc<K>>) {
        self.remove(&at);
        for key in &keys {
            self.names
                .entry((at.0.clone(), key.clone()))
                .or_default()
                .insert(at.1.clone());
        }
        self.keys_of.insert(at.clone(), keys);
        if let Some(object) = object {
            self.objects.insert(at, object);
        }
    }

    fn remove(&mut self, at: &Pair) {
        self.objects.remove(at);
        for key in self.keys_of.remove(at).into_iter().flatten() {
            let slot = (at.0.clone(), key);
            if let Some(names) = self.names.get_mut(&slot) {
                names.remove(&at.1);
                if names.is_empty() {
                    self.names.remove(&slot);
                }
            }
        }
    }
}

impl<K: Resource> Index<K> {
    /// Keeps the objects, and their names under `keys`.
    pub fn new(keys: KeyFn<K>) -> Self {
        Self::build(keys, true)
    }

    /// Keeps only the names under `keys` (the objects are in another store).
    pub fn names_only(keys: KeyFn<K>) -> Self {
        Self::build(keys, false)
    }

    fn build(keys: KeyFn<K>, keep_objects: bool) -> Self {
        Self {
            state: Arc::new(RwLock::new(State {
                current: Content::default(),
                relist: None,
            })),
            keys,
            keep_objects,
            synced: watch::Sender::new(false),
        }
    }

    /// Follows one event of the watch.
    pub fn apply(&self, event: &Event<K>)
    where
        K: Clone,
    {
        let entry = |object: &K| {
            let meta = object.meta();
            let at = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            );
            let kept = self.keep_objects.then(|| Arc::new(object.clone()));
            (at, (self.keys)(object), kept)
        };
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Apply(object) => {
                let (at, keys, kept) = entry(object);
                state.current.insert(at, keys, kept);
            }
            Event::Delete(object) => {
                let (at, _, _) = entry(object);
                state.current.remove(&at);
            }
            Event::Init => state.relist = Some(Content::default()),
            Event::InitApply(object) => {
                let (at, keys, kept) = entry(object);
                state
                    .relist
                    .get_or_insert_with(Content::default)
                    .insert(at, keys, kept);
            }
            Event::InitDone => {
                if let Some(done) = state.relist.take() {
                    state.current = done;
                }
                drop(state);
                self.synced.send_replace(true);
            }
        }
    }

    /// The object `name` of `namespace`, if it is watched and exists.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .current
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The names of `namespace` under `key`, in order.
    pub fn names(&self, namespace: &str, key: &str) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .current
            .names
            .get(&(namespace.to_string(), key.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The objects of `namespace` under `key`, in name order.
    pub fn keyed(&self, namespace: &str, key: &str) -> Vec<Arc<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let slot = (namespace.to_string(), key.to_string());
        state
            .current
            .names
            .get(&slot)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                state
                    .current
                    .objects
                    .get(&(namespace.to_string(), name.clone()))
            })
            .cloned()
            .collect()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.current.keys_of.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether its first list is complete.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Returns once its first list is complete.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        // Only fails when the sender is gone, and `self` holds it.
        let _ = synced.wait_for(|done| *done).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn map(namespace: &str, name: &str, owner: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([("owner".to_string(), owner.to_string())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn owner(object: &ConfigMap) -> Vec<String> {
        object
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| *k == "owner")
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn names(objects: Vec<Arc<ConfigMap>>) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn finds_objects_by_name_and_by_key_within_their_namespace() {
        let index = Index::new(owner);
        index.apply(&Event::Apply(map("a", "one", "meet")));
        index.apply(&Event::Apply(map("a", "two", "meet")));
        index.apply(&Event::Apply(map("b", "three", "meet")));
        assert_eq!(names(index.keyed("a", "meet")), ["one", "two"]);
        assert_eq!(names(index.keyed("b", "meet")), ["three"]);
        assert!(index.keyed("a", "other").is_empty());
        assert!(index.get("a", "three").is_none());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn a_changed_key_moves_the_object_and_a_delete_forgets_it() {
        let index = Index::new(owner);
        index.apply(&Event::Apply(map("a", "one", "meet")));
        index.apply(&Event::Apply(map("a", "one", "chat")));
        assert!(index.keyed("a", "meet").is_empty());
        assert_eq!(names(index.keyed("a", "chat")), ["one"]);
        index.apply(&Event::Delete(map("a", "one", "chat")));
        assert!(index.keyed("a", "chat").is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end_only() {
        let index = Index::new(owner);
        assert!(!index.is_synced());
        index.apply(&Event::Apply(map("a", "gone", "meet")));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(map("a", "kept", "meet")));
        // In the middle of the relist readers still see the old content.
        assert_eq!(names(index.keyed("a", "meet")), ["gone"]);
        assert!(!index.is_synced());
        index.apply(&Event::InitDone);
        assert_eq!(names(index.keyed("a", "meet")), ["kept"]);
        assert!(index.is_synced());
    }

    #[test]
    fn names_only_keeps_no_objects() {
        let index = Index::names_only(owner);
        index.apply(&Event::Apply(map("a", "one", "meet")));
        assert_eq!(index.names("a", "meet"), ["one"]);
        assert!(index.get("a", "one").is_none());
        assert!(index.keyed("a", "meet").is_empty());
    }

    #[tokio::test]
    async fn wait_synced_returns_after_the_first_list() {
        let index = Index::new(owner);
        let waiter = tokio::spawn({
            let index = index.clone();
            async move { index.wait_synced().await }
        });
        index.apply(&Event::Init);
        index.apply(&Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }

    /// One event of a generated watch history over a few names, namespaces and owners.
    #[derive(Clone, Debug)]
    enum Step {
        Apply(usize, usize, usize),
        Delete(usize, usize),
        Relist(Vec<(usize, usize, usize)>),
    }

    fn step() -> impl Strategy<Value = Step> {
        let at = (0usize..2, 0usize..4, 0usize..3);
        prop_oneof![
            4 => at.clone().prop_map(|(n, o, k)| Step::Apply(n, o, k)),
            2 => (0usize..2, 0usize..4).prop_map(|(n, o)| Step::Delete(n, o)),
            1 => proptest::collection::vec(at, 0..6).prop_map(Step::Relist),
        ]
    }

    proptest! {
        /// Whatever the history, each key lists exactly the objects that carry it now, as a
        /// model (a plain map of what exists) says.
        #[test]
        fn keys_follow_the_objects(steps in proptest::collection::vec(step(), 0..40)) {
            let ns = |n: usize| format!("ns{n}");
            let object = |o: usize| format!("o{o}");
            let key = |k: usize| format!("k{k}");
            let index = Index::new(owner);
            let mut model: BTreeMap<(String, String), String> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Apply(n, o, k) => {
                        index.apply(&Event::Apply(map(&ns(n), &object(o), &key(k))));
                        model.insert((ns(n), object(o)), key(k));
                    }
                    Step::Delete(n, o) => {
                        index.apply(&Event::Delete(map(&ns(n), &object(o), "any")));
                        model.remove(&(ns(n), object(o)));
                    }
                    Step::Relist(items) => {
                        index.apply(&Event::Init);
                        model.clear();
                        for (n, o, k) in items {
                            index.apply(&Event::InitApply(map(&ns(n), &object(o), &key(k))));
                            model.insert((ns(n), object(o)), key(k));
                        }
                        index.apply(&Event::InitDone);
                    }
                }
            }
            for n in 0..2 {
                for k in 0..3 {
                    let want: Vec<String> = model
                        .iter()
                        .filter(|((m, _), v)| *m == ns(n) && **v == key(k))
                        .map(|((_, o), _)| o.clone())
                        .collect();
                    prop_assert_eq!(names(index.keyed(&ns(n), &key(k))), want.clone());
                    prop_assert_eq!(index.names(&ns(n), &key(k)), want);
                }
            }
            prop_assert_eq!(index.len(), model.len());
        }
    }
}
