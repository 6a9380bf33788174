//! `/sim/...`: endpoints outside the Kubernetes API for scripting and inspecting the
//! simulator from another process (end-to-end tests running the binary).
//!
//! - `GET /sim/requests` → `{"counts": [{verb, resource, count}], "recent": [...]}`;
//!   `DELETE /sim/requests` resets them.
//! - `GET /sim/faults` → the faults in force; `POST /sim/faults` with one fault or a list
//!   (see [`crate::faults::Fault`]); `DELETE /sim/faults` clears them.
//! - `POST /sim/compact` forgets watch history (watches resuming from before get 410).

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::Method;
use serde_json::{Value, json};

use crate::api::json_response;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::faults::Fault;

/// Handles a `/sim/<path>` request.
pub async fn handle(cluster: &Cluster, method: &Method, path: &str, body: &Bytes) -> Response {
    match (method.as_str(), path) {
        ("GET", "requests") => json_response(
            200,
            &json!({"counts": cluster.requests.counts(), "recent": cluster.requests.recent()}),
        ),
        ("DELETE", "requests") => {
            cluster.requests.reset();
            json_response(200, &json!({}))
        }
        ("GET", "faults") => json_response(200, &json!(cluster.faults.snapshot())),
        ("POST", "faults") => match parse_faults(body) {
            Ok(faults) => {
                for f in faults {
                    cluster.faults.add(f);
                }
                json_response(200, &json!(cluster.faults.snapshot()))
            }
            Err(e) => e.into_response(),
        },
        ("DELETE", "faults") => {
            cluster.faults.clear();
            json_response(200, &json!({}))
        }
        ("POST", "compact") => {
            cluster.store.compact();
            json_response(
                200,
                &json!({"resourceVersion": cluster.store.current_rv().to_string()}),
            )
        }
        _ => ApiError::unknown_path().into_response(),
    }
}

/// One fault or a list of them.
pub fn parse_faults(body: &[u8]) -> Result<Vec<Fault>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    items
        .into_iter()
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| ApiError::bad_request(format!("invalid fault: {e}")))
        })
        .collect()
}
