//! Legacy (unaggregated) discovery documents. kubectl asks for aggregated discovery first,
//! sees a plain `application/json` answer and falls back to these, as with older servers.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceType;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-apprelease-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

fn group_entry(group: &str, types: &[ResourceType]) -> Value {
    let mut versions: Vec<String> = Vec::new();
    for t in types.iter().filter(|t| t.group == group) {
        for v in &t.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
}

/// `/apis`.
pub fn groups(types: &[ResourceType]) -> Value {
    let mut names: Vec<&str> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        if !names.contains(&t.group.as_str()) {
            names.push(&t.group);
        }
    }
    let groups: Vec<Value> = names.iter().map(|g| group_entry(g, types)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(types: &[ResourceType], group: &str) -> ApiResult<Value> {
    if group.is_empty() || !types.iter().any(|t| t.group == group) {
        return Err(ApiError::unknown_path());
    }
    let mut entry = group_entry(group, types);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(entry)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resources(types: &[ResourceType], group: &str, version: &str) -> ApiResult<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        .collect();
    if served.is_empty() {
        return Err(ApiError::unknown_path());
    }
    let mut resources = Vec::new();
    for t in served {
        let mut main = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": VERBS,
        });
        if !t.short_names.is_empty() {
            main["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            main["categories"] = json!(t.categories);
        }
        resources.push(main);
        if t.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", t.plural), "singularName": "",
                "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        if t.scale_subresource {
            resources.push(json!({
                "name": format!("{}/scale", t.plural), "singularName": "",
                "namespaced": t.namespaced, "group": "autoscaling", "version": "v1",
                "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({"kind": "APIResourceList", "apiVersion": "v1",
              "groupVersion": group_version, "resources": resources}))
}
