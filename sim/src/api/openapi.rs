//! A minimal OpenAPI v3 surface. kubectl downloads it to decide whether the server
//! validates fields itself (`fieldValidation`); when it does, kubectl skips client-side
//! schema validation, so these documents only need each kind's PATCH operation with that
//! parameter. CRD schemas are published too (for `kubectl explain`); the schemas of the
//! built-in kinds are not. Strategic
//! merge is deliberately not advertised: kubectl then falls back to its built-in type
//! knowledge for patches of built-ins, and to JSON merge patches for custom resources.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::registry::ResourceType;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group-version, with a hash that changes with its content.
pub fn root(types: &[ResourceType]) -> Value {
    let mut paths = Map::new();
    for t in types {
        for v in &t.versions {
            let path = gv_path(&t.group, v);
            if paths.contains_key(&path) {
                continue;
            }
            let doc = group_version(types, &t.group, v)
                .map(|d| d.to_string())
                .unwrap_or_default();
            let hash = doc.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash:016X}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<gv>`.
pub fn group_version(types: &[ResourceType], group: &str, version: &str) -> ApiResult<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        .collect();
    if served.is_empty() {
        return Err(ApiError::unknown_path());
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in served {
        if let Some(schema) = &t.schema {
            schemas.insert(
                schema_name(t, version),
                published_schema(t, version, schema),
            );
        }
        let prefix = format!("/{}", gv_path(group, version));
        let path = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let content: Map<String, Value> = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
        .iter()
        .map(|c| (c.to_string(), json!({"schema": {"type": "object"}})))
        .collect();
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", t.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": t.kind},
                "parameters": [
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                ],
                "requestBody": {"content": content},
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (apprelease-sim)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `com.example.v1.Widget`, the naming real servers use for CRD schemas.
fn schema_name(t: &ResourceType, version: &str) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), t.kind)
}

/// A CRD's schema as published for `kubectl explain`: tagged with its group-version-kind,
/// with the standard apiVersion/kind/metadata fields described.
fn published_schema(t: &ResourceType, version: &str, schema: &Value) -> Value {
    let mut schema = schema.clone();
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": t.group, "version": version, "kind": t.kind}]);
    let standard = [
        (
            "apiVersion",
            "APIVersion defines the versioned schema of this representation of an object.",
        ),
        (
            "kind",
            "Kind is a string value representing the REST resource this object represents.",
        ),
    ];
    for (field, description) in standard {
        meta::set(
            &mut schema,
            &["properties", field],
            json!({"type": "string", "description": description}),
        );
    }
    meta::set(
        &mut schema,
        &["properties", "metadata"],
        json!({"type": "object", "description": "Standard object's metadata."}),
    );
    schema
}
