//! Defaulting and validation on create and update, the part of each kind's API strategy
//! clients notice: defaulted Deployment and Job fields, Job selectors and pod labels,
//! established CRDs, and 422s for objects a real server would reject.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::registry::{CRD_GROUP, ResourceType};

/// Whether a name is a valid DNS subdomain (what most kinds require).
fn valid_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks the name of a new object (before `generateName` is resolved).
pub fn validate_name(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let name = meta::name(obj);
    let generate = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            &rt.kind,
            "",
            &[(
                "metadata.name",
                "Required value: name or generateName is required".into(),
            )],
        ));
    }
    if !name.is_empty() && !valid_name(name) {
        return Err(ApiError::invalid(
            &rt.kind,
            name,
            &[(
                "metadata.name",
                format!(
                    "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            )],
        ));
    }
    Ok(())
}

fn set_default(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some() {
        return;
    }
    let mut node = obj;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_object() {
            *node = json!({});
        }
        let map = node.as_object_mut().expect("made an object");
        if i == parts.len() - 1 {
            map.insert(part.clone(), value);
            return;
        }
        node = map.entry(part.clone()).or_insert_with(|| json!({}));
    }
}

/// Fills defaults on a new object or an update (`old` given); for custom resources also
/// prunes fields their schema does not define.
pub fn default(rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
    if !rt.builtin {
        if let Some(schema) = &rt.schema {
            crate::schema::prune_and_default(schema, obj);
        }
        return;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
                set_default(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                set_default(
                    obj,
                    "/spec/strategy/rollingUpdate/maxUnavailable",
                    json!("25%"),
                );
            }
            set_default(obj, "/spec/progressDeadlineSeconds", json!(600));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/template/spec/restartPolicy", json!("Always"));
            default_pod_spec(obj, "/spec/template/spec");
        }
        ("apps", "StatefulSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
                set_default(
                    obj,
                    "/spec/updateStrategy/rollingUpdate/partition",
                    json!(0),
                );
            }
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            set_default(obj, "/spec/template/spec/restartPolicy", json!("Always"));
            default_pod_spec(obj, "/spec/template/spec");
        }
        ("batch", "Job") => {
            set_default(obj, "/spec/backoffLimit", json!(6));
            set_default(obj, "/spec/completions", json!(1));
            set_default(obj, "/spec/parallelism", json!(1));
            set_default(obj, "/spec/completionMode", json!("NonIndexed"));
            set_default(obj, "/spec/suspend", json!(false));
            default_pod_spec(obj, "/spec/template/spec");
            // The selector and pod labels tie pods to this Job's uid, like the real server.
            let uid = old.map(meta::uid).unwrap_or(meta::uid(obj)).to_string();
            let name = meta::name(obj).to_string();
            if !uid.is_empty() {
                set_default(
                    obj,
                    "/spec/selector",
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                );
                for (k, v) in [
                    ("controller-uid", &uid),
                    ("batch.kubernetes.io/controller-uid", &uid),
                    ("job-name", &name),
                    ("batch.kubernetes.io/job-name", &name),
                ] {
                    set_default(
                        obj,
                        &format!("/spec/template/metadata/labels/{}", k.replace('/', "~1")),
                        json!(v),
                    );
                }
            }
        }
        ("", "Namespace") => set_default(obj, "/status/phase", json!("Active")),
        ("", "Service") => {
            set_default(obj, "/spec/type", json!("ClusterIP"));
            let ip = format!(
                "10.96.{}.{}",
                crate::rand::next_u64() % 250,
                1 + crate::rand::next_u64() % 250
            );
            set_default(obj, "/spec/clusterIP", json!(ip));
        }
        ("", "PersistentVolumeClaim") => set_default(obj, "/status/phase", json!("Bound")),
        (CRD_GROUP, "CustomResourceDefinition") => {
            let names = obj.pointer("/spec/names").cloned().unwrap_or_default();
            let storage: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["storage"] == json!(true))
                        .map(|v| v["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            let now = meta::now();
            let condition = |type_: &str, reason: &str, message: &str| {
                json!({"type": type_, "status": "True", "reason": reason, "message": message,
                       "lastTransitionTime": now})
            };
            obj["status"] = json!({
                "acceptedNames": names,
                "storedVersions": storage,
                "conditions": [
                    condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
            });
        }
        _ => {}
    }
}

/// With `fieldValidation=Strict`, fields a custom resource's schema does not declare are a
/// 400 (as kubectl's default `--validate=strict` gets from a real server) instead of being
/// pruned silently.
pub fn strict_fields(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let Some(schema) = rt.schema.as_ref().filter(|_| !rt.builtin) else {
        return Ok(());
    };
    let unknown = crate::schema::prune_and_default(schema, &mut obj.clone());
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    Err(ApiError::bad_request(format!(
        "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
        rt.kind,
        rt.versions.first().map(String::as_str).unwrap_or_default(),
        rt.kind,
        fields.join(", ")
    )))
}

/// A server-side apply of a custom resource builds a typed object from the patch with the
/// CRD's schema, so a field the schema does not declare fails the whole request, whatever
/// `fieldValidation` says: kube-apiserver answers 500 "failed to create typed patch object
/// (/NAME; GROUP/VERSION, Kind=KIND): .spec.x: field not declared in schema" (seen on
/// v1.37.2) where a create or an update prunes the field silently.
pub fn apply_fields(rt: &ResourceType, name: &str, patch: &Value) -> ApiResult<()> {
    let Some(schema) = rt.schema.as_ref().filter(|_| !rt.builtin) else {
        return Ok(());
    };
    let unknown = crate::schema::prune_and_default(schema, &mut patch.clone());
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let version = rt.versions.first().map(String::as_str).unwrap_or_default();
    Err(ApiError::internal(format!(
        "failed to create typed patch object (/{name}; {}/{version}, Kind={}): .{first}: field not declared in schema",
        rt.group, rt.kind
    )))
}

/// The pod spec defaults a real server fills in (shown by `kubectl get -o yaml`).
fn default_pod_spec(obj: &mut Value, pointer: &str) {
    if obj.pointer(pointer).is_none_or(|s| !s.is_object()) {
        return;
    }
    for (field, value) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("terminationGracePeriodSeconds", json!(30)),
    ] {
        set_default(obj, &format!("{pointer}/{field}"), value);
    }
    let Some(containers) = obj
        .pointer_mut(&format!("{pointer}/containers"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in containers.iter_mut().filter(|c| c.is_object()) {
        let image = c["image"].as_str().unwrap_or_default();
        let tag = image.rsplit('/').next().unwrap_or_default();
        let pull = if !tag.contains(':') || tag.ends_with(":latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        set_default(c, "/imagePullPolicy", json!(pull));
        set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
        set_default(c, "/terminationMessagePolicy", json!("File"));
        set_default(c, "/resources", json!({}));
        if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter(|p| p.is_object()) {
                set_default(port, "/protocol", json!("TCP"));
            }
        }
    }
}

/// Rejects objects a real server would reject with 422.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let name = meta::name(obj);
    let invalid =
        |field: &str, msg: String| Err(ApiError::invalid(&rt.kind, name, &[(field, msg)]));
    if let Some(schema) = rt.schema.as_ref().filter(|_| !rt.builtin) {
        let errors = crate::schema::validate(schema, obj);
        if !errors.is_empty() {
            let causes: Vec<(&str, String)> = errors
                .iter()
                .map(|(f, m)| (f.as_str(), m.clone()))
                .collect();
            return Err(ApiError::invalid(&rt.kind, name, &causes));
        }
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => {
            let Some(selector) = obj
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
            else {
                return invalid("spec.selector", "Required value".into());
            };
            let labels = obj.pointer("/spec/template/metadata/labels");
            let matches = selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if !matches {
                return invalid(
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`".into(),
                );
            }
            validate_containers(rt, obj)?;
            if let Some(old) = old
                && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
            {
                return invalid("spec.selector", "Invalid value: field is immutable".into());
            }
        }
        ("batch", "Job") => {
            let policy = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str);
            if !matches!(policy, Some("Never" | "OnFailure")) {
                return invalid(
                    "spec.template.spec.restartPolicy",
                    "Required value: valid values: \"OnFailure\", \"Never\"".into(),
                );
            }
            validate_containers(rt, obj)?;
            if let Some(old) = old
                && old.pointer("/spec/template/spec") != obj.pointer("/spec/template/spec")
            {
                return invalid("spec.template", "Invalid value: field is immutable".into());
            }
        }
        (CRD_GROUP, "CustomResourceDefinition") => {
            let group = obj.pointer("/spec/group").and_then(Value::as_str);
            let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str);
            let kind = obj.pointer("/spec/names/kind").and_then(Value::as_str);
            let versions = obj.pointer("/spec/versions").and_then(Value::as_array);
            let (Some(group), Some(plural), Some(_), Some(versions)) =
                (group, plural, kind, versions)
            else {
                return invalid(
                    "spec",
                    "Required value: group, names.plural, names.kind and versions are required"
                        .into(),
                );
            };
            if name != format!("{plural}.{group}") {
                return invalid(
                    "metadata.name",
                    format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                );
            }
            let storage = versions
                .iter()
                .filter(|v| v["storage"] == json!(true))
                .count();
            if storage != 1 {
                return invalid(
                    "spec.versions",
                    "Invalid value: must have exactly one version marked as storage version".into(),
                );
            }
        }
        _ => {}
    }
    Ok(())
}

fn validate_containers(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let containers = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array);
    let ok = containers.is_some_and(|cs| {
        !cs.is_empty()
            && cs.iter().all(|c| {
                c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(valid_name)
                    && c.get("image")
                        .and_then(Value::as_str)
                        .is_some_and(|i| !i.is_empty())
            })
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &rt.kind,
            meta::name(obj),
            &[(
                "spec.template.spec.containers",
                "Required value: every container needs a name and an image".into(),
            )],
        ))
    }
}
