//! get and list.

use axum::response::Response;
use serde_json::{Value, json};

use super::{Request, json_response, metadata_only, partial, present, table, view};
use crate::cluster::Cluster;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::selectors::{FieldSelector, LabelSelector};

/// Reads the object a request names (404 when absent).
pub fn current(cluster: &Cluster, req: &Request) -> ApiResult<Value> {
    let name = req.path.name.as_deref().unwrap_or_default();
    cluster
        .store
        .get(&req.rt.key(), req.namespace(), name)
        .ok_or_else(|| ApiError::not_found(&req.rt.key(), name))
}

/// The autoscaling/v1 Scale view of an object with `spec.replicas`.
pub fn scale_of(req: &Request, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta::name(obj), "namespace": req.namespace(), "uid": meta::uid(obj),
            "resourceVersion": meta::resource_version(obj),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
                   "selector": selector},
    })
}

/// GET of one object (or its status / scale).
pub fn get(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let obj = current(cluster, req)?;
    if req.path.subresource.as_deref() == Some("scale") {
        return Ok(json_response(200, &scale_of(req, &obj)));
    }
    let obj = present(req, obj);
    if table::wanted(&req.headers) {
        let meta = json!({"resourceVersion": meta::resource_version(&obj)});
        let include = table::Include::parse(req.param("includeObject"));
        return Ok(json_response(
            200,
            &table::table(&req.rt, &[obj], meta, include),
        ));
    }
    Ok(json_response(200, &obj))
}

/// The objects a list or watch selects.
pub struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    /// From the request's namespace and selectors (400 for malformed selectors).
    pub fn from_request(req: &Request) -> ApiResult<Self> {
        Ok(Self {
            namespace: req.path.namespace.clone(),
            labels: LabelSelector::parse(req.param("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(req.param("fieldSelector").unwrap_or_default())?,
        })
    }

    /// Whether an object is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta::namespace(obj) == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

/// LIST, with selectors and `limit`/`continue` paging (continue tokens name the last key
/// served; pages are read from the live state, not a snapshot).
pub fn list(cluster: &Cluster, req: &Request) -> ApiResult<Response> {
    let filter = Filter::from_request(req)?;
    let (items, rv) = cluster
        .store
        .list(&req.rt.key(), req.path.namespace.as_deref());
    let mut items: Vec<Value> = items
        .into_iter()
        .map(|o| view(&req.rt, &req.path.version, &o))
        .filter(|o| filter.matches(o))
        .collect();
    if let Some(token) = req.param("continue").filter(|t| !t.is_empty()) {
        let (ns, name) = token
            .split_once('/')
            .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
        items.retain(|o| (meta::namespace(o), meta::name(o)) > (ns, name));
    }
    let limit: usize = match req.param("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().expect("limit > 0");
        list_meta["continue"] = json!(format!("{}/{}", meta::namespace(last), meta::name(last)));
        list_meta["remainingItemCount"] = json!(remaining);
    }
    if table::wanted(&req.headers) {
        let include = table::Include::parse(req.param("includeObject"));
        return Ok(json_response(
            200,
            &table::table(&req.rt, &items, list_meta, include),
        ));
    }
    if metadata_only(&req.headers) {
        let items: Vec<Value> = items.iter().map(partial).collect();
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta, "items": items}),
        ));
    }
    Ok(json_response(
        200,
        &json!({
            "kind": format!("{}List", req.rt.kind),
            "apiVersion": req.rt.api_version(&req.path.version),
            "metadata": list_meta,
            "items": items,
        }),
    ))
}
