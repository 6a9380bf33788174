//! `meta.k8s.io/v1 Table` output, which kubectl requests for `get`: NAME plus the
//! resource's printer columns (a CRD's `additionalPrinterColumns`), computed server-side.

use http::HeaderMap;
use serde_json::{Value, json};

use crate::jsonpath;
use crate::registry::ResourceType;

/// Whether the client accepts a Table (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// How much of each object rows carry (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Include {
    /// No object.
    None,
    /// Only metadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// From the `includeObject` query parameter.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Kubernetes' short age format (`45s`, `3m12s`, `5h`, `12d`).
pub fn age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<invalid>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        _ => format!("{d}d"),
    }
}

/// `{.a}/{.b}`: each braced path replaced by its value, counts that are absent (Kubernetes
/// omits zero counts) reading as 0.
fn template_cell(obj: &Value, template: &str) -> Value {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let path = &rest[start + 1..start + len];
        let value = jsonpath::find(obj, path)
            .first()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "0".into());
        out.push_str(&value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    json!(out)
}

fn cell(obj: &Value, path: &str, type_: &str) -> Value {
    if path.starts_with('{') {
        return template_cell(obj, path);
    }
    let found = jsonpath::find(obj, path);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match (type_, first) {
        ("date", Value::String(s)) => json!(age(s)),
        (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) if found.len() == 1 => {
            (*first).clone()
        }
        _ => {
            let parts: Vec<String> = found
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

/// A Table of `objects` with list metadata `list_meta`.
pub fn table(rt: &ResourceType, objects: &[Value], list_meta: Value, include: Include) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    columns.extend(rt.columns.iter().map(|c| {
        json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
               "format": "", "description": c.description, "priority": c.priority})
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![json!(crate::meta::name(o))];
            cells.extend(rt.columns.iter().map(|c| cell(o, &c.json_path, &c.type_)));
            let object = match include {
                Include::None => Value::Null,
                Include::Metadata => json!({"kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata")}),
                Include::Object => o.clone(),
            };
            let mut row = json!({"cells": cells});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
           "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_name_and_printer_columns() {
        let rt = crate::registry::from_crd(&json!({"spec": {"group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets"}, "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "priority": 1,
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}]}]}}))
        .unwrap();
        let obj = json!({"metadata": {"name": "w1"}, "spec": {"size": 3},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let t = table(&rt, &[obj], json!({}), Include::Object);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Size", "Ready"]);
        assert_eq!(t["columnDefinitions"][2]["priority"], 1);
        assert_eq!(t["rows"][0]["cells"], json!(["w1", 3, "True"]));
        let deploy = crate::registry::builtin("Deployment");
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3},
                       "status": {"updatedReplicas": 3}});
        let t = table(&deploy, &[d], json!({}), Include::None);
        assert_eq!(t["rows"][0]["cells"][1], "0/3");
    }

    #[test]
    fn ages_are_short() {
        let ten_min_ago = (chrono::Utc::now() - chrono::Duration::minutes(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(age(&ten_min_ago), "10m");
    }
}
