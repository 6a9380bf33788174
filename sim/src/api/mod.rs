//! The HTTP API: routing, discovery, and the verbs on resources.

mod discovery;
mod openapi;
mod read;
pub mod route;
pub mod table;
mod watch;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, Uri};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::{ApiError, ApiResult};
use crate::faults::ApiEffect;
use crate::registry::{self, ResourceType};
use crate::requests::RequestRecord;
use route::{ResourcePath, Route};

/// A resource request after routing and resource lookup.
pub struct Request {
    /// Parsed path.
    pub path: ResourcePath,
    /// The resource type addressed.
    pub rt: ResourceType,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl Request {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A boolean query parameter (`true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    /// The namespace addressed ("" for cluster scope).
    pub fn namespace(&self) -> &str {
        self.path.namespace.as_deref().unwrap_or_default()
    }

    /// The field manager: `fieldManager`, else the User-Agent's program name.
    pub fn manager(&self) -> String {
        if let Some(m) = self.param("fieldManager") {
            return m.to_string();
        }
        let agent = self
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        agent.split('/').next().unwrap_or(agent).to_string()
    }

    /// Whether `dryRun=All` was asked for.
    pub fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }
}

/// A JSON response with a status code.
pub fn json_response(code: u16, body: &Value) -> Response {
    let code = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The router: everything goes through one handler that does its own routing, because
/// Kubernetes paths (optional namespace, subresources, CRDs appearing at runtime) do not fit
/// a static route table.
pub fn router(cluster: Arc<Cluster>) -> axum::Router {
    // A real API server takes request bodies up to 3 MiB (axum's default is 2 MiB).
    axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(3 << 20))
        .with_state(cluster)
}

async fn handle(
    State(cluster): State<Arc<Cluster>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = axum::extract::Query::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let route = route::parse(uri.path());
    tracing::debug!(%method, path = uri.path(), "request");
    let result = match route {
        Route::Control(path) => {
            return crate::control::handle(&cluster, &method, &path, &body).await;
        }
        Route::Resource(path) => {
            resource_request(&cluster, method, path, query, headers, body).await
        }
        other if method == Method::GET => non_resource(&cluster, other),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn non_resource(cluster: &Cluster, route: Route) -> ApiResult<Response> {
    let types = || registry::all(&cluster.store);
    let body = match route {
        Route::Version => discovery::version(),
        Route::Health => return Ok((http::StatusCode::OK, "ok").into_response()),
        Route::CoreVersions => discovery::core_versions(),
        Route::Groups => discovery::groups(&types()),
        Route::Group(g) => discovery::group(&types(), &g)?,
        Route::GroupVersion(g, v) => discovery::resources(&types(), &g, &v)?,
        Route::OpenApiRoot => openapi::root(&types()),
        Route::OpenApiGroupVersion(g, v) => openapi::group_version(&types(), &g, &v)?,
        Route::Resource(_) | Route::Control(_) | Route::Unknown => {
            return Err(ApiError::unknown_path());
        }
    };
    Ok(json_response(200, &body))
}

fn verb_of(
    method: &Method,
    path: &ResourcePath,
    query: &HashMap<String, String>,
) -> ApiResult<&'static str> {
    let named = path.name.is_some();
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    Ok(match *method {
        Method::GET if named => "get",
        Method::GET if watch => "watch",
        Method::GET => "list",
        Method::POST if !named => "create",
        Method::PUT if named => "update",
        Method::PATCH if named => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not allowed on this path"
            )));
        }
    })
}

/// The `metadata.name` of a create's JSON body, or "" (a `generateName` create, or another verb).
fn created_name(verb: &str, body: &[u8]) -> String {
    if verb != "create" {
        return String::new();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["metadata"]["name"].as_str().map(String::from))
        .unwrap_or_default()
}

async fn resource_request(
    cluster: &Arc<Cluster>,
    method: Method,
    path: ResourcePath,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let verb = verb_of(&method, &path, &query)?;
    let resource = match &path.subresource {
        Some(sub) => format!("{}/{sub}", path.plural),
        None => path.plural.clone(),
    };
    let mut record = RequestRecord {
        verb: verb.to_string(),
        resource: resource.clone(),
        group: path.group.clone(),
        namespace: path.namespace.clone().unwrap_or_default(),
        // A create names its object in the body, not the path.
        name: path
            .name
            .clone()
            .unwrap_or_else(|| created_name(verb, &body)),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        code: 0,
    };
    let result = serve_resource(cluster, verb, &resource, path, query, headers, body).await;
    record.code = match &result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.code,
    };
    cluster.requests.record(record);
    result
}

/// A resource request after it was counted: faults, resource lookup, then the verb.
async fn serve_resource(
    cluster: &Arc<Cluster>,
    verb: &'static str,
    resource: &str,
    path: ResourcePath,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let effects = cluster.faults.api_effects(verb, resource);
    for effect in &effects {
        match effect {
            ApiEffect::Latency { millis } => {
                tokio::time::sleep(std::time::Duration::from_millis(*millis)).await;
            }
            ApiEffect::Error { code, message } => {
                return Err(fault_error(*code, message.as_deref()));
            }
            ApiEffect::Gone if verb != "watch" => {
                return Err(ApiError::gone("too old resource version (simulated fault)"));
            }
            ApiEffect::Gone | ApiEffect::DropWatch { .. } => {}
        }
    }
    let rt = registry::lookup(&cluster.store, &path.group, &path.version, &path.plural)
        .ok_or_else(ApiError::unknown_path)?;
    // Namespaced kinds are addressed with a namespace except for cross-namespace reads;
    // cluster-scoped kinds never are.
    let cross_namespace_ok = matches!(verb, "list" | "watch");
    if rt.namespaced && path.namespace.is_none() && !cross_namespace_ok
        || !rt.namespaced && path.namespace.is_some()
    {
        return Err(ApiError::unknown_path());
    }
    if let Some(sub) = &path.subresource {
        let pod_log = sub == "log" && rt.builtin && rt.kind == "Pod" && verb == "get";
        let ok =
            (sub == "status" && rt.status_subresource) || (sub == "scale" && rt.scale_subresource);
        if !pod_log && (!ok || !matches!(verb, "get" | "update" | "patch")) {
            return Err(ApiError::unknown_path());
        }
    }
    let req = Request {
        path,
        rt,
        query,
        headers,
        body,
    };
    match verb {
        "get" => read::get(cluster, &req),
        "list" => read::list(cluster, &req),
        "watch" => watch::watch(cluster, &req, &effects),
        "create" => write::create(cluster, &req),
        "update" => write::update(cluster, &req),
        "patch" => write::patch(cluster, &req),
        "delete" => write::delete(cluster, &req),
        _ => write::delete_collection(cluster, &req),
    }
}

fn fault_error(code: u16, message: Option<&str>) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(
        code,
        reason,
        message.unwrap_or("simulated API fault").to_string(),
    )
}

/// The object as served at the requested version (CRD versions share storage unconverted).
pub fn view(rt: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut obj = crate::convert::to_view(rt, obj);
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version(version)));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

/// Whether the client asked for metadata only
/// (`Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`).
pub fn metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=PartialObjectMetadata"))
}

/// A served object reduced to a `PartialObjectMetadata`.
pub fn partial(obj: &Value) -> Value {
    serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": obj.get("metadata")})
}

/// The object in the shape the client asked for.
pub fn present(req: &Request, obj: Value) -> Value {
    let obj = view(&req.rt, &req.path.version, &obj);
    if metadata_only(&req.headers) {
        partial(&obj)
    } else {
        obj
    }
}
