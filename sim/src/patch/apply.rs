//! Server-side apply: merge an applied configuration into the live object by field
//! ownership, report conflicts with other managers (or take their fields with `force`), and
//! remove fields this manager applied before but no longer does.

use serde_json::{Value, json};

use super::fields::{self, Element, FieldSet, ListKind, Path, Schema};
use super::managed::{self, Writer};
use crate::error::{ApiError, ApiResult};

/// Applies `applied` over `current` (an empty object when creating) for `writer`.
pub fn apply(
    current: &Value,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> ApiResult<Value> {
    let mut entries = managed::read(current);
    let applied_fields = writer.fields_of(applied);

    // Conflicts: another manager owns a field this apply sets to a different value.
    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for e in &entries {
        if e.manager == writer.manager && e.subresource == writer.subresource {
            continue;
        }
        for p in e.fields.intersection(&applied_fields) {
            if fields::get(current, p) != fields::get(applied, p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts));
        }
        for (manager, _, path) in &conflicts {
            for e in entries.iter_mut().filter(|e| e.manager == *manager) {
                e.fields.remove(path);
            }
        }
    }

    let mut merged = current.clone();
    if let (Some(dst), Some(src)) = (merged.as_object_mut(), applied.as_object()) {
        for (k, v) in src {
            let wanted = match k.as_str() {
                "status" => writer.subresource == "status" || !writer.status_subresource,
                "apiVersion" | "kind" => true,
                _ => writer.subresource != "status",
            };
            if !wanted {
                continue;
            }
            let mut path = vec![Element::Field(k.clone())];
            match dst.get_mut(k) {
                Some(existing) => merge(existing, v, &mut path, writer.schema),
                None => {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
    }

    // Fields this manager applied before, that nobody else owns, and that it no longer
    // applies, are removed (deepest first so list items go before their parents).
    let previous: FieldSet = entries
        .iter()
        .find(|e| {
            e.manager == writer.manager
                && e.operation == "Apply"
                && e.subresource == writer.subresource
        })
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !(e.manager == writer.manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut stale: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied_fields.contains(*p) && !others.contains(*p))
        .collect();
    stale.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in stale {
        fields::remove(&mut merged, p);
    }

    writer.entry(&mut entries, "Apply").fields = applied_fields;
    managed::prune(&mut entries, &merged);
    managed::write(&mut merged, entries);
    Ok(merged)
}

/// Merges `src` into `dst`: objects field by field, keyed lists item by item, sets by
/// union; everything else is replaced.
fn merge(dst: &mut Value, src: &Value, path: &mut Path, schema: Schema<'_>) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                path.push(Element::Field(k.clone()));
                match d.get_mut(k) {
                    Some(existing) => merge(existing, v, path, schema),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(d), Value::Array(s)) => match schema.list_kind(path) {
            ListKind::Map(keys) if !keys.is_empty() => {
                for item in s {
                    let Some(key) = fields::item_key(item, &keys) else {
                        d.push(item.clone());
                        continue;
                    };
                    match d
                        .iter_mut()
                        .find(|x| fields::item_key(x, &keys).as_deref() == Some(key.as_str()))
                    {
                        Some(existing) => {
                            path.push(Element::Key(key));
                            merge(existing, item, path, schema);
                            path.pop();
                        }
                        None => d.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in s {
                    if !d.contains(item) {
                        d.push(item.clone());
                    }
                }
            }
            _ => *d = s.clone(),
        },
        (dst, src) => *dst = src.clone(),
    }
}

fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {}", fields::display(p)))
        .collect();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, v, p)| {
            json!({"type": "FieldManagerConflict",
                   "message": format!("conflict with \"{m}\" using {v}"),
                   "field": fields::display(p)})
        })
        .collect();
    let n = conflicts.len();
    ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            lines.join("\n")
        ),
    )
    .with_details(json!({"causes": causes}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin;

    fn deployment() -> crate::registry::ResourceType {
        builtin("Deployment")
    }

    fn writer<'a>(rt: &'a crate::registry::ResourceType, manager: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            subresource: "",
            schema: Schema::of(rt),
            status_subresource: true,
        }
    }

    fn image_body(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
    }

    #[test]
    fn applying_an_image_changes_only_that_container_and_conflicts_without_force() {
        let rt = deployment();
        let mut live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "side:1"}]}}}});
        writer(&rt, "kubectl").record_update(None, &mut live);

        let err = apply(&live, &image_body("app:2"), &writer(&rt, "operator"), false).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"kubectl\""),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("containers[name=\"app\"].image"),
            "{}",
            err.message
        );

        let out = apply(&live, &image_body("app:2"), &writer(&rt, "operator"), true).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(containers[0]["env"][0]["value"], "1");
        assert_eq!(containers[1]["image"], "side:1");
        assert_eq!(out["spec"]["replicas"], 3);
        let managers: Vec<&str> = out["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["kubectl", "operator"]);
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let rt = deployment();
        let live =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let with_label = json!({"metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}});
        let once = apply(&live, &with_label, &writer(&rt, "m"), false).unwrap();
        let without_b = json!({"metadata": {"name": "web", "labels": {"a": "1"}}});
        let twice = apply(&once, &without_b, &writer(&rt, "m"), false).unwrap();
        assert_eq!(twice["metadata"]["labels"], json!({"a": "1"}));
    }
}
