//! Garbage collection: objects whose owners are all gone are deleted (background
//! propagation), and owners being deleted in the foreground wait for their dependents.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::meta;
use crate::registry;
use crate::store::{Change, ChangeType, DeleteOptions, Owned, Target};

/// Whether a change can leave garbage behind: a deletion, a deletion being started, or
/// an object created with owners (which may not exist).
pub fn concerns(change: &Change) -> bool {
    change.type_ == ChangeType::Deleted
        || change
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        || (change.type_ == ChangeType::Added && !meta::owner_uids(&change.object).is_empty())
}

/// One garbage collection pass over the whole store.
pub fn sweep(cluster: &Cluster) {
    let objects = cluster.store.owners();
    let live: HashSet<&str> = objects.iter().map(|o| o.uid.as_str()).collect();
    let types = registry::all(&cluster.store);
    let delete = |o: &Owned| {
        if let Some(rt) = types.iter().find(|t| t.key() == o.key) {
            // Already gone (another pass or a client) is fine.
            let _ = cluster
                .store
                .delete(rt, &o.namespace, &o.name, &DeleteOptions::default());
        }
    };
    for o in &objects {
        if !o.owners.is_empty() && o.owners.iter().all(|u| !live.contains(u.as_str())) {
            delete(o);
            continue;
        }
        if !(o.deleting && o.foreground) {
            continue;
        }
        let mut waiting = false;
        for dependent in objects.iter().filter(|d| d.owners.contains(&o.uid)) {
            waiting = true;
            if !dependent.deleting {
                delete(dependent);
            }
        }
        if !waiting {
            finish_foreground(cluster, &types, o);
        }
    }
}

/// Removes the `foregroundDeletion` finalizer of an owner whose dependents are gone.
fn finish_foreground(cluster: &Cluster, types: &[registry::ResourceType], o: &Owned) {
    let Some(rt) = types.iter().find(|t| t.key() == o.key) else {
        return;
    };
    let Some(mut obj) = cluster.store.get(&o.key, &o.namespace, &o.name) else {
        return;
    };
    let rest: Vec<Value> = meta::finalizers(&obj)
        .into_iter()
        .filter(|f| f != "foregroundDeletion")
        .map(|f| json!(f))
        .collect();
    meta::metadata_mut(&mut obj).insert("finalizers".into(), json!(rest));
    // A concurrent change just means the next pass retries.
    let _ = cluster.store.update(rt, obj, Target::Main);
}
