//! `metadata.managedFields`: which manager owns which fields, per operation (Apply/Update)
//! and subresource. Non-apply writes move the fields they change to their manager, as the
//! real server does, so a later apply by someone else conflicts on them.

use serde_json::{Value, json};

use super::fields::{self, FieldSet, Schema};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion the fields were written with.
    pub api_version: String,
    /// When the entry last changed.
    pub time: String,
    /// "" or "status".
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

/// Reads the entries of an object.
pub fn read(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                    Entry {
                        manager: s("manager"),
                        operation: s("operation"),
                        api_version: s("apiVersion"),
                        time: s("time"),
                        subresource: s("subresource"),
                        fields: e
                            .get("fieldsV1")
                            .map(fields::from_fields_v1)
                            .unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes entries into an object, dropping the ones that own nothing any more.
pub fn write(obj: &mut Value, entries: Vec<Entry>) {
    let rendered: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields::to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let md = crate::meta::metadata_mut(obj);
    if rendered.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(rendered));
    }
}

/// Who writes, and to which part of the object.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// Field manager name.
    pub manager: &'a str,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// "" or "status".
    pub subresource: &'a str,
    /// List kinds of the resource.
    pub schema: Schema<'a>,
    /// Whether status lives in a subresource (then main writes never own it).
    pub status_subresource: bool,
}

impl Writer<'_> {
    /// The fields of `obj` this writer can own.
    pub fn fields_of(&self, obj: &Value) -> FieldSet {
        fields::object_fields(
            obj,
            self.schema,
            self.subresource == "status",
            self.status_subresource,
        )
    }

    /// Finds (or adds) this writer's entry for `operation`.
    pub fn entry<'e>(&self, entries: &'e mut Vec<Entry>, operation: &str) -> &'e mut Entry {
        let pos = entries.iter().position(|e| {
            e.manager == self.manager
                && e.operation == operation
                && e.subresource == self.subresource
        });
        let pos = pos.unwrap_or_else(|| {
            entries.push(Entry {
                manager: self.manager.to_string(),
                operation: operation.to_string(),
                api_version: self.api_version.to_string(),
                time: String::new(),
                subresource: self.subresource.to_string(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        });
        let entry = &mut entries[pos];
        entry.api_version = self.api_version.to_string();
        entry.time = crate::meta::now();
        entry
    }

    /// Records a create/update/patch (not apply): the fields it changed move to this
    /// manager's `Update` entry; fields that no longer exist are dropped from every entry.
    pub fn record_update(&self, old: Option<&Value>, new: &mut Value) {
        let mut entries = old.map(read).unwrap_or_default();
        let changed: FieldSet = self
            .fields_of(new)
            .into_iter()
            .filter(|p| old.and_then(|o| fields::get(o, p)) != fields::get(new, p))
            .collect();
        if !changed.is_empty() {
            for e in entries.iter_mut() {
                e.fields.retain(|p| !changed.contains(p));
            }
            let entry = self.entry(&mut entries, "Update");
            entry.fields.extend(changed);
        }
        prune(&mut entries, new);
        write(new, entries);
    }
}

/// Drops owned paths that no longer exist in the object.
pub fn prune(entries: &mut [Entry], obj: &Value) {
    for e in entries.iter_mut() {
        e.fields.retain(|p| fields::get(obj, p).is_some());
    }
}
