//! Structural schemas of CRDs applied to custom resources as a real server does: unknown
//! fields are pruned (unless `x-kubernetes-preserve-unknown-fields`), `default`s are filled
//! in, and values are checked against `type`, `required`, `enum`, `minimum`/`maximum`,
//! `minLength`/`maxLength` and `minItems`/`maxItems`. CEL rules (`x-kubernetes-validations`)
//! and `pattern` are not evaluated.

use serde_json::{Map, Value};

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

/// Drops fields the schema does not know and fills defaults, below the root's metadata.
/// Returns the dropped fields' paths (`spec.bogus`), which `fieldValidation=Strict` rejects.
pub fn prune_and_default(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut dropped = Vec::new();
    let Some(map) = obj.as_object_mut() else {
        return dropped;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let keep_all = preserves(schema);
    map.retain(|k, _| {
        let keep = matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
            || keep_all
            || props.is_some_and(|p| p.contains_key(k));
        if !keep {
            dropped.push(k.clone());
        }
        keep
    });
    for (k, v) in map.iter_mut() {
        if k == "metadata" {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)) {
            node(s, v, k, &mut dropped);
        }
    }
    if let Some(p) = props {
        fill_defaults(p, map, "", &mut dropped);
    }
    dropped
}

fn fill_defaults(
    props: &Map<String, Value>,
    map: &mut Map<String, Value>,
    path: &str,
    dropped: &mut Vec<String>,
) {
    for (k, s) in props {
        if !map.contains_key(k)
            && let Some(d) = s.get("default")
        {
            let mut d = d.clone();
            node(s, &mut d, &join(path, k), dropped);
            map.insert(k.clone(), d);
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn node(schema: &Value, value: &mut Value, path: &str, dropped: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keep_all =
                preserves(schema) || schema.get("additionalProperties") == Some(&Value::Bool(true));
            map.retain(|k, _| {
                let keep =
                    keep_all || additional.is_some() || props.is_some_and(|p| p.contains_key(k));
                if !keep {
                    dropped.push(join(path, k));
                }
                keep
            });
            for (k, v) in map.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    node(s, v, &join(path, k), dropped);
                }
            }
            if let Some(p) = props {
                fill_defaults(p, map, path, dropped);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    node(s, item, &format!("{path}[{i}]"), dropped);
                }
            }
        }
        _ => {}
    }
}

/// Schema violations as (field path, message) pairs, for a 422.
pub fn validate(schema: &Value, obj: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let (Some(props), Some(map)) = (
        schema.get("properties").and_then(Value::as_object),
        obj.as_object(),
    ) {
        for (k, v) in map {
            if k != "metadata"
                && let Some(s) = props.get(k)
            {
                check(s, v, k, &mut errors);
            }
        }
        required(schema, map, "", &mut errors);
    }
    errors
}

fn required(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<(String, String)>,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(r) {
            let field = if path.is_empty() {
                r.to_string()
            } else {
                format!("{path}.{r}")
            };
            errors.push((field, "Required value".into()));
        }
    }
}

fn type_ok(schema: &Value, v: &Value) -> bool {
    if v.is_null() {
        return schema.get("nullable") == Some(&Value::Bool(true));
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    }
}

fn check(schema: &Value, v: &Value, path: &str, errors: &mut Vec<(String, String)>) {
    if !type_ok(schema, v) {
        let t = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("int-or-string");
        errors.push((
            path.into(),
            format!("Invalid value: {v}: {path} in body must be of type {t}"),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push((
            path.into(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(x) = v.as_f64()
        && (num("minimum").is_some_and(|m| x < m) || num("maximum").is_some_and(|m| x > m))
    {
        errors.push((
            path.into(),
            format!("Invalid value: {v}: {path} in body is out of range"),
        ));
    }
    let len = match v {
        Value::String(s) => Some((s.chars().count() as f64, "minLength", "maxLength")),
        Value::Array(a) => Some((a.len() as f64, "minItems", "maxItems")),
        _ => None,
    };
    if let Some((n, min, max)) = len
        && (num(min).is_some_and(|m| n < m) || num(max).is_some_and(|m| n > m))
    {
        errors.push((
            path.into(),
            format!("Invalid value: {v}: {path} in body has an invalid length"),
        ));
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    check(s, child, &format!("{path}.{k}"), errors);
                }
            }
            required(schema, map, path, errors);
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(s, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["version"], "properties": {
                "version": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "default": 1, "minimum": 0},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"version": "1", "bogus": true, "extra": {"any": 1}}, "junk": 1});
        let dropped = prune_and_default(&schema(), &mut obj);
        assert_eq!(dropped, ["junk", "spec.bogus"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
                   "spec": {"version": "1", "replicas": 1, "extra": {"any": 1}}})
        );
    }

    #[test]
    fn violations_name_their_fields() {
        let obj = json!({"spec": {"replicas": "three", "mode": "C"}});
        let fields: Vec<String> = validate(&schema(), &obj)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["spec.mode", "spec.replicas", "spec.version"]);
        assert!(validate(&schema(), &json!({"spec": {"version": "1", "replicas": 2}})).is_empty());
    }
}
