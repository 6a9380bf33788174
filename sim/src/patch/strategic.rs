//! Strategic merge patch for built-in kinds: like a JSON merge patch, except that lists
//! with a merge key (containers by name, ...) merge item by item, and the `$patch`,
//! `$setElementOrder` and `$deleteFromPrimitiveList` directives kubectl sends are honoured.

use serde_json::{Map, Value};

use super::fields::{Element, ListKind, Path, Schema};

/// Applies a strategic merge patch to `target`.
pub fn patch(target: &mut Value, patch: &Value, schema: Schema<'_>) {
    merge(target, patch, &mut Vec::new(), schema);
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge(target: &mut Value, patch: &Value, path: &mut Path, schema: Schema<'_>) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                target.get_mut(field).and_then(Value::as_array_mut),
                v.as_array(),
            ) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            // $setElementOrder and $retainKeys only affect ordering and pruning details.
            continue;
        }
        let t = target.as_object_mut().expect("made an object above");
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(Element::Field(k.clone()));
        match t.get_mut(k) {
            Some(existing) if existing.is_object() && v.is_object() => {
                if v.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                } else {
                    merge(existing, v, path, schema);
                }
            }
            Some(Value::Array(existing)) if v.is_array() => {
                merge_list(existing, v.as_array().expect("checked"), path, schema);
            }
            _ => {
                t.insert(k.clone(), strip_directives(v));
            }
        }
        path.pop();
    }
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], path: &mut Path, schema: Schema<'_>) {
    let directive = |item: &Value| {
        item.get("$patch")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if patch
        .iter()
        .any(|i| directive(i).as_deref() == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|i| directive(i).is_none())
            .map(strip_directives)
            .collect();
        return;
    }
    match schema.list_kind(path) {
        ListKind::Map(keys) if !keys.is_empty() => {
            // Strategic merge patch identifies items by the first (patchMergeKey) key only.
            let key = &keys[0];
            for item in patch {
                let id = item.get(key);
                let pos = id.and_then(|id| target.iter().position(|t| t.get(key) == Some(id)));
                match (directive(item).as_deref(), pos) {
                    (Some("delete"), Some(i)) => {
                        target.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => merge(&mut target[i], item, path, schema),
                    (_, None) => target.push(strip_directives(item)),
                }
            }
        }
        ListKind::Set => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        ListKind::Atomic | ListKind::Map(_) => {
            *target = patch.iter().map(strip_directives).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_directives_apply() {
        let rt = crate::registry::builtin("Deployment");
        let mut obj = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}]}}}});
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
            "containers": [{"name": "app", "image": "a:2"}, {"name": "side", "$patch": "delete"}]}}}});
        patch(&mut obj, &p, Schema::of(&rt));
        assert_eq!(
            obj,
            json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "app", "image": "a:2"}]}}}})
        );
    }
}
