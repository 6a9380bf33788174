//! The four patch formats a Kubernetes API server accepts, and field ownership tracking.

pub mod apply;
pub mod fields;
pub mod managed;
pub mod strategic;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The patch formats, by request `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902 (`application/json-patch+json`).
    Json,
    /// RFC 7386 (`application/merge-patch+json`).
    Merge,
    /// Strategic merge patch (`application/strategic-merge-patch+json`), built-ins only.
    Strategic,
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
}

impl PatchType {
    /// Recognises a content type (parameters like `; charset=utf-8` are ignored).
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Parses a request body as JSON, or as YAML (which JSON is a subset of) for apply patches.
pub fn parse_body(body: &[u8], allow_yaml: bool) -> ApiResult<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(json_err) if allow_yaml => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_err})"))
            })
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error decoding request body: {e}"
        ))),
    }
}

/// Applies an RFC 6902 JSON patch (422 when an operation fails, as a test op would).
pub fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {e}"),
        )
    })
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}
