//! Garbage collection: objects whose owners are all gone are deleted (background
//! propagation), and owners being deleted in the foreground wait for their dependents.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::meta;
use crate::registry;
use crate::store::{DeleteOptions, Target};

/// One garbage collection pass over the whole store.
pub fn sweep(cluster: &Cluster) {
    let objects = cluster.store.all_objects();
    let types = registry::all(&cluster.store);
    let type_of = |key: &str| types.iter().find(|t| t.key() == key);
    let live: HashSet<&str> = objects.iter().map(|(_, o)| meta::uid(o)).collect();
    for (key, obj) in &objects {
        let owners = meta::owner_uids(obj);
        let orphaned = !owners.is_empty() && owners.iter().all(|u| !live.contains(u.as_str()));
        let Some(rt) = type_of(key) else {
            continue;
        };
        if orphaned {
            // Already gone (another pass or a client) is fine.
            let _ = cluster.store.delete(
                rt,
                meta::namespace(obj),
                meta::name(obj),
                &DeleteOptions::default(),
            );
            continue;
        }
        let foreground = obj.pointer("/metadata/deletionTimestamp").is_some()
            && meta::finalizers(obj)
                .iter()
                .any(|f| f == "foregroundDeletion");
        if !foreground {
            continue;
        }
        let mut waiting = false;
        let uid = meta::uid(obj);
        let dependents = objects
            .iter()
            .filter(|(_, o)| meta::owner_uids(o).iter().any(|u| u == uid));
        for (dep_key, dep) in dependents {
            waiting = true;
            if dep.pointer("/metadata/deletionTimestamp").is_none()
                && let Some(dep_rt) = type_of(dep_key)
            {
                let _ = cluster.store.delete(
                    dep_rt,
                    meta::namespace(dep),
                    meta::name(dep),
                    &DeleteOptions::default(),
                );
            }
        }
        if !waiting {
            let mut done = obj.clone();
            let rest: Vec<Value> = meta::finalizers(obj)
                .into_iter()
                .filter(|f| f != "foregroundDeletion")
                .map(|f| json!(f))
                .collect();
            meta::metadata_mut(&mut done).insert("finalizers".into(), json!(rest));
            // A concurrent change just means the next pass retries.
            let _ = cluster.store.update(rt, done, Target::Main);
        }
    }
}
