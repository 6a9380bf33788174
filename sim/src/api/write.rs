//! create, update, patch (four formats), delete and deletecollection, including the
//! `status` and `scale` subresources.

use axum::response::Response;
use serde_json::{Value, json};

use super::read::{Filter, current, scale_of};
use super::{Request, json_response, present};
use crate::admission;
use crate::cluster::Cluster;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::patch::fields::Schema;
use crate::patch::managed::Writer;
use crate::patch::{self, PatchType, apply, strategic};
use crate::store::{DeleteOptions, Propagation, Target};

/// How often a patch is retried when a concurrent writer got in between read and write.
const PATCH_ATTEMPTS: usize = 5;

fn subresource(req: &Request) -> &str {
    req.path.subresource.as_deref().unwrap_or_default()
}

fn target(req: &Request) -> Target {
    if subresource(req) == "status" {
        Target::Status
    } else {
        Target::Main
    }
}

fn content_type(req: &Request) -> &str {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

/// Parses a body that must be a JSON (or YAML) object.
fn object_body(req: &Request) -> ApiResult<Value> {
    let ct = content_type(req);
    // kubectl's typed clients (`kubectl create configmap ...`) send protobuf; only JSON and
    // YAML are understood here.
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(ct));
    }
    let yaml = ct.contains("yaml");
    let obj = patch::parse_body(&req.body, yaml)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(obj)
}

/// Checks apiVersion/kind (when given) and the namespace and name against the URL, then
/// fills them in.
fn check_identity(req: &Request, obj: &mut Value, require_type: bool) -> ApiResult<()> {
    let expected_version = req.rt.api_version(&req.path.version);
    let version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (require_type || !version.is_empty()) && version != expected_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({version}) does not match the expected API version ({expected_version})"
        )));
    }
    if (require_type || !kind.is_empty()) && kind != req.rt.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            req.rt.kind
        )));
    }
    obj["apiVersion"] = json!(expected_version);
    obj["kind"] = json!(req.rt.kind);
    let body_ns = meta::namespace(obj).to_string();
    let body_name = meta::name(obj).to_string();
    let md = meta::metadata_mut(obj);
    if req.rt.namespaced {
        if !body_ns.is_empty() && body_ns != req.namespace() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        md.insert("namespace".into(), json!(req.namespace()));
    } else {
        md.remove("namespace");
    }
    if let Some(url_name) = &req.path.name {
        if !body_name.is_empty() && body_name != *url_name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
            )));
        }
        md.insert("name".into(), json!(url_name));
    }
    Ok(())
}

fn writer<'a>(req: &'a Request, manager: &'a str, api_version: &'a str) -> Writer<'a> {
    Writer {
        manager,
        api_version,
        subresource: subresource(req),
        schema: Schema::of(&req.rt),
        status_subresource: req.rt.status_subresource,
    }
}

/// Defaulting and validation of an update: built-in strategies apply to the main
/// resource; custom resource schemas to both main and status writes.
fn admit(req: &Request, obj: &mut Value, old: &Value) -> ApiResult<()> {
    if req.param("fieldValidation") == Some("Strict") {
        admission::strict_fields(&req.rt, obj)?;
    }
    if target(req) == Target::Main || !req.rt.builtin {
        admission::default(&req.rt, obj, Some(old));
        admission::validate(&req.rt, obj, Some(old))?;
    }
    Ok(())
}

/// Admission and storage of a new object (shared by POST and apply-creates).
fn store_new(cluster: &Cluster, req: &Request, mut obj: Value) -> ApiResult<Value> {
    admission::validate_name(&req.rt, &obj)?;
    if req.param("fieldValidation") == Some("Strict") {
        admission::strict_fields(&req.rt, &obj)?;
    }
    let md = meta::metadata_mut(&mut obj);
    for server_owned in [
        "uid",
        "resourceVersion",
        "deletionTimestamp",
        "generation",
        "creationTimestamp",
    ] {
        md.remove(server_owned);
    }
    md.insert("uid".into(), json!(crate::rand::uid()));
    if meta::name(&obj).is_empty() {
        let prefix = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = format!("{prefix}{}", crate::rand::name_suffix());
        meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    if req.rt.status_subresource
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    admission::default(&req.rt, &mut obj, None);
    admission::validate(&req.rt, &obj, None)?;
    if req.dry_run() {
        return Ok(obj);
    }
    cluster.store.create(&req.rt, obj)
}

/// POST.
pub fn create(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let mut obj = object_body(req)?;
    check_identity(req, &mut obj, false)?;
    let mut obj = convert::from_view(&req.rt, &obj);
    let manager = req.manager();
    let api_version = req.rt.api_version(&req.path.version);
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("managedFields");
    }
    writer(req, &manager, &api_version).record_update(None, &mut obj);
    let created = store_new(cluster, req, obj)?;
    Ok(json_response(201, &present(req, created)))
}

/// PUT.
pub fn update(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let mut obj = object_body(req)?;
    if subresource(req) == "scale" {
        let replicas = obj
            .pointer("/spec/replicas")
            .cloned()
            .ok_or_else(|| ApiError::bad_request("Scale.spec.replicas is required"))?;
        let mut target = current(cluster, req)?;
        let wanted_rv = meta::resource_version(&obj).to_string();
        if !wanted_rv.is_empty() {
            meta::metadata_mut(&mut target).insert("resourceVersion".into(), json!(wanted_rv));
        }
        meta::set(&mut target, &["spec", "replicas"], replicas);
        let stored = cluster.store.update(&req.rt, target, Target::Main)?;
        return Ok(json_response(200, &scale_of(req, &stored)));
    }
    check_identity(req, &mut obj, false)?;
    let mut obj = convert::from_view(&req.rt, &obj);
    let old = current(cluster, req)?;
    admit(req, &mut obj, &old)?;
    let manager = req.manager();
    let api_version = req.rt.api_version(&req.path.version);
    writer(req, &manager, &api_version).record_update(Some(&old), &mut obj);
    if req.dry_run() {
        return Ok(json_response(200, &present(req, obj)));
    }
    let stored = cluster.store.update(&req.rt, obj, target(req))?;
    Ok(json_response(200, &present(req, stored)))
}

/// PATCH in any of the four formats.
pub fn patch(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let ptype = PatchType::from_content_type(content_type(req))?;
    if ptype == PatchType::Strategic && !req.rt.builtin {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json (not supported for custom resources)",
        ));
    }
    let body = patch::parse_body(&req.body, ptype == PatchType::Apply)?;
    if subresource(req) == "scale" {
        return patch_scale(cluster, req, ptype, &body);
    }
    let manager = req.manager();
    if ptype == PatchType::Apply && req.param("fieldManager").is_none() {
        return Err(ApiError::invalid(
            "PatchOptions.meta.k8s.io",
            "",
            &[(
                "fieldManager",
                "Required value: is required for apply patch".into(),
            )],
        ));
    }
    let api_version = req.rt.api_version(&req.path.version);
    let w = writer(req, &manager, &api_version);
    let force = req.flag("force");
    let name = req.path.name.as_deref().unwrap_or_default();
    // An explicit resourceVersion in the patch is the client's precondition; otherwise the
    // version read here guards against lost updates, and a lost race is simply retried.
    let explicit_rv = body.pointer("/metadata/resourceVersion").is_some();
    for _ in 0..PATCH_ATTEMPTS {
        let Some(old) = cluster.store.get(&req.rt.key(), req.namespace(), name) else {
            if ptype != PatchType::Apply || target(req) == Target::Status {
                return Err(ApiError::not_found(&req.rt.key(), name));
            }
            return apply_create(cluster, req, &body, &w, force);
        };
        let mut new = patched(req, &old, ptype, &body, &w, force)?;
        if !explicit_rv {
            let rv = meta::resource_version(&old).to_string();
            meta::metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        }
        if ptype != PatchType::Apply {
            w.record_update(Some(&old), &mut new);
        }
        admit(req, &mut new, &old)?;
        if req.dry_run() {
            return Ok(json_response(200, &present(req, new)));
        }
        match cluster.store.update(&req.rt, new, target(req)) {
            Ok(stored) => return Ok(json_response(200, &present(req, stored))),
            Err(e) if e.reason == "Conflict" && !explicit_rv => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&req.rt.key(), name))
}

/// Server-side apply of an object that does not exist yet creates it.
fn apply_create(
    cluster: &Cluster,
    req: &Request,
    body: &Value,
    w: &Writer<'_>,
    force: bool,
) -> ApiResult<Response> {
    let mut applied = body.clone();
    check_identity(req, &mut applied, true)?;
    admission::apply_fields(&req.rt, meta::name(&applied), &applied)?;
    let skeleton = json!({"apiVersion": applied["apiVersion"], "kind": req.rt.kind,
                          "metadata": applied["metadata"].clone()});
    let merged = apply::apply(&skeleton, &applied, w, force)?;
    let created = store_new(cluster, req, convert::from_view(&req.rt, &merged))?;
    Ok(json_response(201, &present(req, created)))
}

/// The stored object with the patch applied (in the served shape, then back to storage);
/// name and namespace cannot be patched.
fn patched(
    req: &Request,
    old: &Value,
    ptype: PatchType,
    body: &Value,
    w: &Writer<'_>,
    force: bool,
) -> ApiResult<Value> {
    let mut new = convert::to_view(&req.rt, old);
    match ptype {
        PatchType::Json => patch::json_patch(&mut new, body)?,
        PatchType::Merge => patch::merge_patch(&mut new, body),
        PatchType::Strategic => strategic::patch(&mut new, body, Schema::of(&req.rt)),
        PatchType::Apply => {
            let mut applied = body.clone();
            check_identity(req, &mut applied, true)?;
            admission::apply_fields(&req.rt, meta::name(old), &applied)?;
            new = apply::apply(&new, &applied, w, force)?;
        }
    }
    if !new.is_object() {
        return Err(ApiError::bad_request("the patch result is not an object"));
    }
    let mut new = convert::from_view(&req.rt, &new);
    let md = meta::metadata_mut(&mut new);
    md.insert("name".into(), json!(meta::name(old)));
    if req.rt.namespaced {
        md.insert("namespace".into(), json!(req.namespace()));
    }
    Ok(new)
}

fn patch_scale(
    cluster: &Cluster,
    req: &Request,
    ptype: PatchType,
    body: &Value,
) -> ApiResult<Response> {
    let mut target = current(cluster, req)?;
    let mut scale = scale_of(req, &target);
    match ptype {
        PatchType::Json => patch::json_patch(&mut scale, body)?,
        _ => patch::merge_patch(&mut scale, body),
    }
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    meta::set(&mut target, &["spec", "replicas"], replicas);
    let stored = cluster.store.update(&req.rt, target, Target::Main)?;
    Ok(json_response(200, &scale_of(req, &stored)))
}

fn delete_options(req: &Request) -> ApiResult<DeleteOptions> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        patch::parse_body(&req.body, false)?
    };
    let policy = req
        .param("propagationPolicy")
        .map(str::to_string)
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_string));
    let propagation = match policy.as_deref() {
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some("Background") | None if body["orphanDependents"] == json!(true) => Propagation::Orphan,
        Some("Background") | None => Propagation::Background,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid propagationPolicy {other:?}"
            )));
        }
    };
    Ok(DeleteOptions {
        propagation,
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// DELETE of one object.
pub fn delete(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let opts = delete_options(req)?;
    let name = req.path.name.as_deref().unwrap_or_default();
    if req.rt.kind == "Namespace"
        && req.rt.builtin
        && ["default", "kube-system", "kube-public"].contains(&name)
    {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
        ));
    }
    if req.dry_run() {
        return Ok(json_response(200, &present(req, current(cluster, req)?)));
    }
    let obj = cluster
        .store
        .delete(&req.rt, req.namespace(), name, &opts)?;
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        // Finalizers hold it: the object, as it now is, tells the client deletion is pending.
        return Ok(json_response(200, &present(req, obj)));
    }
    Ok(json_response(
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": req.rt.group, "kind": req.rt.plural,
                            "uid": meta::uid(&obj)}}),
    ))
}

/// DELETE of a collection (with selectors).
pub fn delete_collection(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let opts = delete_options(req)?;
    let filter = Filter::from_request(req)?;
    let (items, _) = cluster
        .store
        .list(&req.rt.key(), req.path.namespace.as_deref());
    let mut deleted = Vec::new();
    for obj in items
        .iter()
        .filter(|o| filter.matches(&present(req, (*o).clone())))
    {
        if req.dry_run() {
            deleted.push(present(req, obj.clone()));
            continue;
        }
        match cluster
            .store
            .delete(&req.rt, meta::namespace(obj), meta::name(obj), &opts)
        {
            Ok(gone) => deleted.push(present(req, gone)),
            // Deleted concurrently: nothing left to do for it.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", req.rt.kind),
                "apiVersion": req.rt.api_version(&req.path.version),
                "metadata": {"resourceVersion": cluster.store.current_rv().to_string()},
                "items": deleted}),
    ))
}
