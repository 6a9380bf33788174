//! The object store: every object as JSON, one global resourceVersion counter (like etcd's
//! revision), a bounded history of changes so watches can resume from a resourceVersion (and
//! get `410 Gone` when it is older than the history), and a broadcast channel that fans changes
//! out to watches and controllers.
//!
//! The store also owns the write semantics every writer must get, API or controller alike:
//! uid/timestamps, optimistic concurrency, generation bumps on spec changes only, the status
//! subresource split, no-op detection, finalizers and deletionTimestamp.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::registry::{CRD_GROUP, ResourceType};

/// How many changes are kept for watches resuming from an older resourceVersion (each holds
/// the object before and after; a real server's etcd compacts every few minutes instead).
const HISTORY_LIMIT: usize = 10_000;
/// Buffer of the fan-out channel; a watch that falls this far behind is ended with 410.
const CHANNEL_CAPACITY: usize = 8_192;

/// A receiver of store changes.
pub type Changes = broadcast::Receiver<Arc<Change>>;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Updated (including deletionTimestamp being set).
    Modified,
    /// Removed from the store.
    Deleted,
}

impl ChangeType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Added, modified or deleted.
    pub type_: ChangeType,
    /// Resource key (`deployments.apps`).
    pub key: String,
    /// The object after the change (before removal, for deletions).
    pub object: Value,
    /// The object before a modification (lets selector-filtered watches turn a change
    /// that leaves or enters the selection into DELETED or ADDED).
    pub previous: Option<Value>,
    /// The resourceVersion of this change.
    pub rv: u64,
}

/// What the garbage collector needs to know about an object.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Resource key.
    pub key: String,
    /// Namespace ("" for cluster scope).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Uids of its owners.
    pub owners: Vec<String>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Whether it waits for its dependents (`foregroundDeletion` finalizer).
    pub foreground: bool,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The main resource: everything but `status` when there is a status subresource.
    Main,
    /// The `/status` subresource: only `status`.
    Status,
}

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Owner goes at once; the garbage collector deletes dependents afterwards.
    #[default]
    Background,
    /// Owner stays (with a `foregroundDeletion` finalizer) until its dependents are gone.
    Foreground,
    /// Dependents lose their ownerReference and stay.
    Orphan,
}

/// Preconditions and policy of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Propagation policy.
    pub propagation: Propagation,
    /// Only delete if the uid matches.
    pub uid: Option<String>,
    /// Only delete if the resourceVersion matches.
    pub resource_version: Option<String>,
}

struct State {
    rv: u64,
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Change>>,
    /// Oldest resourceVersion a watch may resume from.
    floor: u64,
    /// Counts CRD changes (invalidates the cached custom resource types).
    crd_version: u64,
}

/// The object store. Cheap to share behind an `Arc`.
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Change>>,
    /// Resource types defined by the stored CRDs, with the CRD version they were built
    /// from; rebuilt after a CRD changes, because every request looks its resource up here.
    custom_types: Mutex<Option<(u64, Arc<Vec<ResourceType>>)>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store holding the namespaces every cluster has.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let store = Self {
            state: Mutex::new(State {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                floor: 1,
                crd_version: 0,
            }),
            tx,
            custom_types: Mutex::new(None),
        };
        let ns_type = crate::registry::builtin("Namespace");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                             "status": {"phase": "Active"}});
            store
                .create(&ns_type, obj)
                .expect("fresh store accepts namespaces");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the whole simulator would, so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource types the stored CRDs define.
    pub fn custom_types(&self) -> Arc<Vec<ResourceType>> {
        // The state lock and the cache lock are never held together (no lock-order risk).
        let current = self.lock().crd_version;
        if let Some((version, types)) = &*self.custom_cache()
            && *version == current
        {
            return types.clone();
        }
        let (crds, version) = {
            let state = self.lock();
            let crds: Vec<Value> = state
                .objects
                .get(&format!("customresourcedefinitions.{CRD_GROUP}"))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            (crds, state.crd_version)
        };
        let types: Arc<Vec<ResourceType>> =
            Arc::new(crds.iter().filter_map(crate::registry::from_crd).collect());
        *self.custom_cache() = Some((version, types.clone()));
        types
    }

    fn custom_cache(&self) -> MutexGuard<'_, Option<(u64, Arc<Vec<ResourceType>>)>> {
        self.custom_types.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ownership facts of every object, for the garbage collector (without cloning objects).
    pub fn owners(&self) -> Vec<Owned> {
        let state = self.lock();
        state
            .objects
            .iter()
            .flat_map(|(key, m)| {
                m.values().map(move |o| Owned {
                    key: key.clone(),
                    namespace: meta::namespace(o).to_string(),
                    name: meta::name(o).to_string(),
                    uid: meta::uid(o).to_string(),
                    owners: meta::owner_uids(o),
                    deleting: o.pointer("/metadata/deletionTimestamp").is_some(),
                    foreground: meta::finalizers(o)
                        .iter()
                        .any(|f| f == "foregroundDeletion"),
                })
            })
            .collect()
    }

    /// Whether an object exists.
    pub fn contains(&self, key: &str, namespace: &str, name: &str) -> bool {
        self.lock()
            .objects
            .get(key)
            .is_some_and(|m| m.contains_key(&(namespace.to_string(), name.to_string())))
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, key: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(key)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// Objects of a resource (in one namespace or all), sorted by namespace and name, with
    /// the resourceVersion the list is consistent with.
    pub fn list(&self, key: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = state
            .objects
            .get(key)
            .map(|m| match namespace {
                // Keys sort by namespace first: one namespace is one range, not a scan.
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
                None => m.values().cloned().collect(),
            })
            .unwrap_or_default();
        (items, state.rv)
    }

    /// The objects of a resource and a receiver for every later change, taken atomically.
    pub fn snapshot_and_subscribe(&self, key: &str) -> (Vec<Value>, u64, Changes) {
        let state = self.lock();
        let items = state
            .objects
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        (items, state.rv, self.tx.subscribe())
    }

    /// A receiver of all future changes.
    pub fn subscribe(&self) -> Changes {
        self.tx.subscribe()
    }

    /// Changes after `rv` from history plus a receiver for later ones, taken atomically so no
    /// change is missed or seen twice. `410 Gone` when `rv` is older than the history.
    pub fn watch_from(&self, rv: u64) -> ApiResult<(Vec<Arc<Change>>, Changes)> {
        let state = self.lock();
        if rv < state.floor {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                state.floor
            )));
        }
        let replay = state
            .history
            .iter()
            .filter(|c| c.rv > rv)
            .cloned()
            .collect();
        Ok((replay, self.tx.subscribe()))
    }

    /// Forgets all history, so a watch from any earlier resourceVersion gets `410 Gone`
    /// (what etcd compaction does to a real cluster).
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.floor = state.rv;
    }

    fn record(&self, state: &mut State, type_: ChangeType, key: &str, object: Value, rv: u64) {
        self.record_with_previous(state, type_, key, object, None, rv);
    }

    fn record_with_previous(
        &self,
        state: &mut State,
        type_: ChangeType,
        key: &str,
        object: Value,
        previous: Option<Value>,
        rv: u64,
    ) {
        if key == format!("customresourcedefinitions.{CRD_GROUP}") {
            state.crd_version += 1;
        }
        let change = Arc::new(Change {
            type_,
            key: key.to_string(),
            object,
            previous,
            rv,
        });
        state.history.push_back(change.clone());
        if state.history.len() > HISTORY_LIMIT
            && let Some(old) = state.history.pop_front()
        {
            state.floor = old.rv;
        }
        // No receivers is fine: nobody is watching yet.
        let _ = self.tx.send(change);
    }

    fn next_rv(state: &mut State) -> u64 {
        state.rv += 1;
        state.rv
    }

    /// Creates an object; the namespace must already be in `metadata.namespace` for
    /// namespaced kinds. Fills uid, creationTimestamp, resourceVersion, generation and
    /// resolves `generateName`.
    pub fn create(&self, rt: &ResourceType, mut obj: Value) -> ApiResult<Value> {
        let mut state = self.lock();
        let key = rt.key();
        let ns = if rt.namespaced {
            meta::namespace(&obj).to_string()
        } else {
            String::new()
        };
        if rt.namespaced {
            let exists = state
                .objects
                .get("namespaces")
                .is_some_and(|m| m.contains_key(&(String::new(), ns.clone())));
            if !exists {
                return Err(ApiError::not_found("namespaces", &ns));
            }
        }
        let mut name = meta::name(&obj).to_string();
        if name.is_empty() {
            let prefix = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // A collision with a generated name is retried, as the real server does.
            loop {
                name = format!("{prefix}{}", crate::rand::name_suffix());
                let taken = state
                    .objects
                    .get(&key)
                    .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())));
                if !taken {
                    break;
                }
            }
        }
        let id = (ns.clone(), name.clone());
        if state.objects.get(&key).is_some_and(|m| m.contains_key(&id)) {
            return Err(ApiError::already_exists(&key, &name));
        }
        let rv = Self::next_rv(&mut state);
        let md = meta::metadata_mut(&mut obj);
        md.insert("name".into(), json!(name));
        if rt.namespaced {
            md.insert("namespace".into(), json!(ns));
        } else {
            md.remove("namespace");
        }
        // The API layer assigns the uid before admission (Job selectors need it).
        md.entry("uid").or_insert_with(|| json!(crate::rand::uid()));
        md.insert("creationTimestamp".into(), json!(meta::now()));
        md.insert("resourceVersion".into(), json!(rv.to_string()));
        md.remove("deletionTimestamp");
        if rt.has_generation() {
            md.insert("generation".into(), json!(1));
        } else {
            md.remove("generation");
        }
        state
            .objects
            .entry(key.clone())
            .or_default()
            .insert(id, obj.clone());
        self.record(&mut state, ChangeType::Added, &key, obj.clone(), rv);
        Ok(obj)
    }

    /// Replaces an object (main resource or status). A non-empty `metadata.resourceVersion`
    /// in `new` must match the stored one (409 otherwise). Returns the stored result; a write
    /// that changes nothing returns the object unchanged without a new resourceVersion.
    pub fn update(&self, rt: &ResourceType, new: Value, target: Target) -> ApiResult<Value> {
        let mut state = self.lock();
        let key = rt.key();
        let ns = if rt.namespaced {
            meta::namespace(&new).to_string()
        } else {
            String::new()
        };
        let name = meta::name(&new).to_string();
        let id = (ns, name.clone());
        let Some(old) = state.objects.get(&key).and_then(|m| m.get(&id)).cloned() else {
            return Err(ApiError::not_found(&key, &name));
        };
        let wanted_rv = meta::resource_version(&new);
        if !wanted_rv.is_empty() && wanted_rv != meta::resource_version(&old) {
            return Err(ApiError::conflict(&key, &name));
        }
        let mut result = match target {
            Target::Main => {
                let mut result = new;
                if rt.status_subresource {
                    set_or_remove(&mut result, "status", old.get("status").cloned());
                }
                result
            }
            Target::Status => {
                let mut result = old.clone();
                set_or_remove(&mut result, "status", new.get("status").cloned());
                let fields = new.pointer("/metadata/managedFields").cloned();
                let md = meta::metadata_mut(&mut result);
                match fields {
                    Some(f) => md.insert("managedFields".into(), f),
                    None => md.remove("managedFields"),
                };
                result
            }
        };
        // Server-owned metadata is never taken from the client.
        let old_md = old.get("metadata").cloned().unwrap_or_default();
        let md = meta::metadata_mut(&mut result);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "name",
        ] {
            match old_md.get(field) {
                Some(v) => md.insert(field.into(), v.clone()),
                None => md.remove(field),
            };
        }
        if rt.namespaced {
            md.insert("namespace".into(), old_md["namespace"].clone());
        }
        md.insert("resourceVersion".into(), old_md["resourceVersion"].clone());
        if without_volatile(&result) == without_volatile(&old) {
            return Ok(old);
        }
        if rt.has_generation() && spec_changed(rt, &old, &result) {
            let generation = meta::generation(&old) + 1;
            meta::metadata_mut(&mut result).insert("generation".into(), json!(generation));
        }
        let rv = Self::next_rv(&mut state);
        meta::metadata_mut(&mut result).insert("resourceVersion".into(), json!(rv.to_string()));
        let finished = result.pointer("/metadata/deletionTimestamp").is_some()
            && meta::finalizers(&result).is_empty();
        if finished {
            self.remove_locked(&mut state, &key, &id, result.clone(), rv);
        } else {
            state
                .objects
                .entry(key.clone())
                .or_default()
                .insert(id, result.clone());
            self.record_with_previous(
                &mut state,
                ChangeType::Modified,
                &key,
                result.clone(),
                Some(old),
                rv,
            );
        }
        Ok(result)
    }

    /// Deletes an object, or marks it with deletionTimestamp while finalizers remain.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut state = self.lock();
        let key = rt.key();
        let ns = if rt.namespaced { namespace } else { "" };
        let id = (ns.to_string(), name.to_string());
        let Some(mut obj) = state.objects.get(&key).and_then(|m| m.get(&id)).cloned() else {
            return Err(ApiError::not_found(&key, name));
        };
        let uid = meta::uid(&obj).to_string();
        if opts.uid.as_ref().is_some_and(|u| *u != uid)
            || opts
                .resource_version
                .as_ref()
                .is_some_and(|v| v != meta::resource_version(&obj))
        {
            return Err(ApiError::conflict(&key, name));
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(&mut state, &uid);
        }
        let mut finalizers = meta::finalizers(&obj);
        if opts.propagation == Propagation::Foreground
            && !finalizers.iter().any(|f| f == "foregroundDeletion")
        {
            finalizers.push("foregroundDeletion".into());
        }
        let rv = Self::next_rv(&mut state);
        if !finalizers.is_empty() {
            let md = meta::metadata_mut(&mut obj);
            md.entry("deletionTimestamp").or_insert(json!(meta::now()));
            md.insert("deletionGracePeriodSeconds".into(), json!(0));
            md.insert("finalizers".into(), json!(finalizers));
            md.insert("resourceVersion".into(), json!(rv.to_string()));
            state
                .objects
                .entry(key.clone())
                .or_default()
                .insert(id, obj.clone());
            self.record(&mut state, ChangeType::Modified, &key, obj.clone(), rv);
            return Ok(obj);
        }
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        // Whatever lives inside a namespace, or is an instance of a deleted CRD, goes with it.
        if rt.kind == "Namespace" && rt.builtin {
            let keys: Vec<String> = state.objects.keys().cloned().collect();
            for k in keys {
                let ids: Vec<(String, String)> = state.objects[&k]
                    .keys()
                    .filter(|(n, _)| n == name)
                    .cloned()
                    .collect();
                for inner in ids {
                    self.remove_now(&mut state, &k, &inner);
                }
            }
        }
        if rt.group == CRD_GROUP
            && let Some(cr) = crate::registry::from_crd(&obj)
        {
            let ids: Vec<(String, String)> = state
                .objects
                .get(&cr.key())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for inner in ids {
                self.remove_now(&mut state, &cr.key(), &inner);
            }
        }
        self.remove_locked(&mut state, &key, &id, obj.clone(), rv);
        Ok(obj)
    }

    fn remove_now(&self, state: &mut State, key: &str, id: &(String, String)) {
        if let Some(mut obj) = state.objects.get(key).and_then(|m| m.get(id)).cloned() {
            let rv = Self::next_rv(state);
            meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
            self.remove_locked(state, key, id, obj, rv);
        }
    }

    fn remove_locked(
        &self,
        state: &mut State,
        key: &str,
        id: &(String, String),
        obj: Value,
        rv: u64,
    ) {
        if let Some(m) = state.objects.get_mut(key) {
            m.remove(id);
        }
        self.record(state, ChangeType::Deleted, key, obj, rv);
    }

    fn orphan_dependents(&self, state: &mut State, owner_uid: &str) {
        let mut changed = Vec::new();
        for (key, objects) in &state.objects {
            for (id, obj) in objects {
                if meta::owner_uids(obj).iter().any(|u| u == owner_uid) {
                    let mut obj = obj.clone();
                    if let Some(refs) = obj
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    }
                    changed.push((key.clone(), id.clone(), obj));
                }
            }
        }
        for (key, id, mut obj) in changed {
            let rv = Self::next_rv(state);
            meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
            state
                .objects
                .entry(key.clone())
                .or_default()
                .insert(id, obj.clone());
            self.record(state, ChangeType::Modified, &key, obj, rv);
        }
    }
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = obj.as_object_mut() {
        match value {
            Some(v) => map.insert(field.to_string(), v),
            None => map.remove(field),
        };
    }
}

/// The object without fields that change on every write, to detect no-op writes.
fn without_volatile(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("resourceVersion");
        md.remove("managedFields");
    }
    obj
}

/// Whether anything outside metadata (and outside status, when status is a subresource)
/// changed: that, and only that, bumps `metadata.generation`.
fn spec_changed(rt: &ResourceType, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if rt.status_subresource {
                m.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    #[test]
    fn a_namespaced_list_holds_that_namespace_only_in_name_order() {
        let store = Store::new();
        let maps = registry::builtin("ConfigMap");
        for ns in ["a", "ab", "b"] {
            store
                .create(
                    &registry::builtin("Namespace"),
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
                .unwrap();
        }
        // "a" sorts before "ab", whose keys follow "a"'s: the range must stop at the end of "a".
        for (ns, name) in [("ab", "x"), ("a", "z"), ("b", "y"), ("a", "m")] {
            store
                .create(
                    &maps,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": ns}}),
                )
                .unwrap();
        }
        let names = |namespace: Option<&str>| -> Vec<String> {
            store
                .list(&maps.key(), namespace)
                .0
                .iter()
                .map(|o| format!("{}/{}", meta::namespace(o), meta::name(o)))
                .collect()
        };
        assert_eq!(names(Some("a")), ["a/m", "a/z"]);
        assert_eq!(names(Some("ab")), ["ab/x"]);
        assert!(names(Some("c")).is_empty());
        assert_eq!(names(None), ["a/m", "a/z", "ab/x", "b/y"]);
    }
}
