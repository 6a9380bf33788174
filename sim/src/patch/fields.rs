//! Field paths and field sets as server-side apply tracks them in `managedFields`
//! (`fieldsV1`): `f:<field>` for object fields, `k:{...}` for list items keyed by their merge
//! keys, `v:<value>` for members of set-like lists, and `.` for the item itself.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    /// An object field.
    Field(String),
    /// A list item identified by its key fields (canonical JSON object).
    Key(String),
    /// A set member (canonical JSON value).
    Value(String),
}

/// A path from the object root.
pub type Path = Vec<Element>;
/// A set of owned paths.
pub type FieldSet = BTreeSet<Path>;

/// How a list merges.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Items merged by these key fields.
    Map(Vec<String>),
    /// Primitive items merged as a set.
    Set,
}

/// Where list kinds come from: built-in knowledge, or a CRD's structural schema.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'a> {
    crd: Option<&'a Value>,
    builtin: bool,
}

impl<'a> Schema<'a> {
    /// The schema for a resource type.
    pub fn of(rt: &'a crate::registry::ResourceType) -> Self {
        Self {
            crd: rt.schema.as_deref(),
            builtin: rt.builtin,
        }
    }

    /// The list kind of the list at `path`.
    pub fn list_kind(&self, path: &[Element]) -> ListKind {
        let in_metadata = matches!(path.first(), Some(Element::Field(f)) if f == "metadata");
        if self.builtin || in_metadata {
            return builtin_list_kind(path);
        }
        let Some(mut node) = self.crd else {
            return ListKind::Atomic;
        };
        for element in path {
            let next = match element {
                Element::Field(f) => node
                    .pointer(&format!(
                        "/properties/{}",
                        f.replace('~', "~0").replace('/', "~1")
                    ))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object())),
                Element::Key(_) | Element::Value(_) => node.get("items"),
            };
            match next {
                Some(n) => node = n,
                None => return ListKind::Atomic,
            }
        }
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ListKind::Map(
                node.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Some("set") => ListKind::Set,
            _ => ListKind::Atomic,
        }
    }
}

/// List kinds of the built-in types, by field name (and context where names are ambiguous).
fn builtin_list_kind(path: &[Element]) -> ListKind {
    let Some(Element::Field(name)) = path.last() else {
        return ListKind::Atomic;
    };
    let under = |parent: &str| {
        path.iter()
            .any(|e| matches!(e, Element::Field(f) if f == parent))
    };
    let key = |k: &str| ListKind::Map(vec![k.to_string()]);
    match name.as_str() {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => key("name"),
        "volumeMounts" => key("mountPath"),
        "volumeDevices" => key("devicePath"),
        "ports" if under("containers") || under("initContainers") => key("containerPort"),
        "ports" => key("port"),
        "conditions" => key("type"),
        "ownerReferences" => key("uid"),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The key of a list item, if it has all key fields.
pub fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut map = Map::new();
    for k in keys {
        map.insert(k.clone(), item.get(k)?.clone());
    }
    Some(Value::Object(map).to_string())
}

/// The leaf paths (and list-item markers) set in `value`, below `path`.
pub fn collect(value: &Value, path: &mut Path, schema: Schema<'_>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                path.push(Element::Field(k.clone()));
                collect(child, path, schema, out);
                path.pop();
            }
        }
        Value::Array(items) => match schema.list_kind(path) {
            ListKind::Map(keys) if !keys.is_empty() => {
                let keyed: Option<Vec<String>> = items.iter().map(|i| item_key(i, &keys)).collect();
                let Some(keyed) = keyed else {
                    // Items without their keys cannot be tracked one by one.
                    out.insert(path.clone());
                    return;
                };
                for (item, key) in items.iter().zip(keyed) {
                    path.push(Element::Key(key));
                    out.insert(path.clone());
                    collect(item, path, schema, out);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(Element::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// The fields of an object that a write to `subresource` ("" or "status") can own:
/// labels, annotations, finalizers and ownerReferences of metadata, and the spec-like
/// top-level fields (or only `status`).
pub fn object_fields(
    obj: &Value,
    schema: Schema<'_>,
    status_only: bool,
    skip_status: bool,
) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        let wanted = match k.as_str() {
            "apiVersion" | "kind" => false,
            "status" => status_only || !skip_status,
            "metadata" => !status_only,
            _ => !status_only,
        };
        if !wanted {
            continue;
        }
        let mut path = vec![Element::Field(k.clone())];
        if k == "metadata" {
            for owned in ["labels", "annotations", "finalizers", "ownerReferences"] {
                if let Some(child) = v.get(owned) {
                    path.push(Element::Field(owned.to_string()));
                    collect(child, &mut path, schema, &mut out);
                    path.pop();
                }
            }
        } else {
            collect(v, &mut path, schema, &mut out);
        }
    }
    out
}

fn find_item(items: &[Value], element: &Element) -> Option<usize> {
    items.iter().position(|item| match element {
        Element::Key(key) => serde_json::from_str::<Value>(key)
            .ok()
            .and_then(|k| k.as_object().cloned())
            .is_some_and(|k| k.iter().all(|(f, v)| item.get(f) == Some(v))),
        Element::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|v| *item == v),
        Element::Field(_) => false,
    })
}

/// The value at `path`, if present.
pub fn get<'v>(obj: &'v Value, path: &[Element]) -> Option<&'v Value> {
    path.iter().try_fold(obj, |v, element| match element {
        Element::Field(f) => v.get(f.as_str()),
        _ => {
            let items = v.as_array()?;
            items.get(find_item(items, element)?)
        }
    })
}

/// Removes the value at `path` (an object field or a list item); absent paths are ignored.
pub fn remove(obj: &mut Value, path: &[Element]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut parent = obj;
    for element in parent_path {
        let next = match element {
            Element::Field(f) => parent.get_mut(f.as_str()),
            _ => match parent.as_array_mut() {
                Some(items) => match find_item(items, element) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            },
        };
        match next {
            Some(n) => parent = n,
            None => return,
        }
    }
    match last {
        Element::Field(f) => {
            if let Some(m) = parent.as_object_mut() {
                m.remove(f);
            }
        }
        _ => {
            if let Some(items) = parent.as_array_mut()
                && let Some(i) = find_item(items, last)
            {
                items.remove(i);
            }
        }
    }
}

/// Renders a set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = json!({});
    for path in set {
        let mut node = &mut root;
        for element in path {
            let name = match element {
                Element::Field(f) => format!("f:{f}"),
                Element::Key(k) => format!("k:{k}"),
                Element::Value(v) => format!("v:{v}"),
            };
            node = node
                .as_object_mut()
                .expect("nodes are objects")
                .entry(name)
                .or_insert_with(|| json!({}));
        }
        if matches!(path.last(), Some(Element::Key(_) | Element::Value(_))) {
            node.as_object_mut()
                .expect("nodes are objects")
                .insert(".".into(), json!({}));
        }
    }
    root
}

/// Parses `fieldsV1` back into a set.
pub fn from_fields_v1(value: &Value) -> FieldSet {
    fn walk(node: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(map) = node.as_object() else {
            return;
        };
        if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (name, child) in map {
            let canonical = |s: &str| {
                serde_json::from_str::<Value>(s)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| s.to_string())
            };
            let element = if let Some(f) = name.strip_prefix("f:") {
                Element::Field(f.to_string())
            } else if let Some(k) = name.strip_prefix("k:") {
                Element::Key(canonical(k))
            } else if let Some(v) = name.strip_prefix("v:") {
                Element::Value(canonical(v))
            } else {
                continue;
            };
            path.push(element);
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// `.spec.template.spec.containers[name="app"].image`, as conflict messages show paths.
pub fn display(path: &[Element]) -> String {
    path.iter()
        .map(|e| match e {
            Element::Field(f) => format!(".{f}"),
            Element::Key(k) => {
                let parsed: Value = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| m.iter().map(|(f, v)| format!("{f}={v}")).collect())
                    .unwrap_or_default();
                format!("[{}]", parts.join(","))
            }
            Element::Value(v) => format!("[={v}]"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Schema<'static> {
        Schema {
            crd: None,
            builtin: true,
        }
    }

    #[test]
    fn containers_are_tracked_by_name_and_round_trip_through_fields_v1() {
        let obj = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "a:1"}]}}}});
        let set = object_fields(&obj, builtin(), false, true);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"app\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
        let image: Vec<&Path> = set
            .iter()
            .filter(|p| display(p).ends_with(".image"))
            .collect();
        assert_eq!(
            display(image[0]),
            ".spec.template.spec.containers[name=\"app\"].image"
        );
        assert_eq!(get(&obj, image[0]), Some(&json!("a:1")));
    }

    #[test]
    fn crd_schema_list_types_are_honoured() {
        let schema = json!({"properties": {"spec": {"properties": {"items": {
            "type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["id"], "items": {"type": "object"}}}}}});
        let s = Schema {
            crd: Some(&schema),
            builtin: false,
        };
        let path = [
            Element::Field("spec".into()),
            Element::Field("items".into()),
        ];
        assert_eq!(s.list_kind(&path), ListKind::Map(vec!["id".into()]));
        let other = [
            Element::Field("spec".into()),
            Element::Field("other".into()),
        ];
        assert_eq!(s.list_kind(&other), ListKind::Atomic);
    }

    #[test]
    fn remove_drops_keyed_items_and_fields() {
        let mut obj = json!({"a": [{"name": "x", "v": 1}, {"name": "y"}], "b": 1});
        remove(
            &mut obj,
            &[
                Element::Field("a".into()),
                Element::Key(r#"{"name":"x"}"#.into()),
            ],
        );
        remove(&mut obj, &[Element::Field("b".into())]);
        assert_eq!(obj, json!({"a": [{"name": "y"}]}));
    }
}
