//! WATCH: newline-delimited JSON events (`{"type": ..., "object": ...}`), resumable from a
//! resourceVersion while it is in the store's history (ERROR 410 after that), with periodic
//! BOOKMARKs, `sendInitialEvents` streaming lists, and `timeoutSeconds`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval};

use super::read::Filter;
use super::{Request, table};
use crate::cluster::Cluster;
use crate::error::{ApiError, ApiResult};
use crate::faults::ApiEffect;
use crate::registry::ResourceType;
use crate::store::{Change, ChangeType};

/// How often bookmarks are sent to watches that allow them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Server-side watch timeout when the client sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// How events are rendered for one watch.
struct Render {
    rt: ResourceType,
    api_version: String,
    as_table: Option<table::Include>,
    metadata_only: bool,
}

impl Render {
    fn event(&self, type_: &str, obj: &Value) -> Bytes {
        let mut obj = obj.clone();
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), json!(self.api_version));
            map.insert("kind".into(), json!(self.rt.kind));
        }
        if self.metadata_only {
            obj = super::partial(&obj);
        }
        if let Some(include) = self.as_table {
            let meta = json!({"resourceVersion": crate::meta::resource_version(&obj)});
            obj = table::table(&self.rt, &[obj], meta, include);
        }
        line(&json!({"type": type_, "object": obj}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({"type": "BOOKMARK", "object": {
            "kind": self.rt.kind, "apiVersion": self.api_version, "metadata": metadata}}))
    }
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn error_line(err: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": err.to_status()}))
}

struct Stream {
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Change>>,
    key: String,
    filter: Filter,
    render: Render,
    last_rv: u64,
    bookmarks: Option<Interval>,
    deadline: Instant,
    drop_at: Option<Instant>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

/// The event a change produces for a watch of `key` with `filter`, if any.
fn translate(key: &str, filter: &Filter, render: &Render, change: &Change) -> Option<Bytes> {
    if change.key != key {
        return None;
    }
    let object = crate::convert::to_view(&render.rt, &change.object);
    let now = filter.matches(&object);
    let before = change
        .previous
        .as_ref()
        .is_some_and(|p| filter.matches(&crate::convert::to_view(&render.rt, p)));
    let type_ = match (change.type_, before, now) {
        (ChangeType::Added, _, true) => "ADDED",
        (ChangeType::Deleted, _, true) => "DELETED",
        (ChangeType::Modified, true, true) => "MODIFIED",
        (ChangeType::Modified, false, true) => "ADDED",
        (ChangeType::Modified, true, false) => "DELETED",
        _ => return None,
    };
    Some(render.event(type_, &object))
}

impl Stream {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(line) = self.pending.pop_front() {
            return Some(line);
        }
        loop {
            if self.done {
                return None;
            }
            let drop_at = self.drop_at.unwrap_or(self.deadline);
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(change) => {
                        self.last_rv = self.last_rv.max(change.rv);
                        if let Some(line) = translate(&self.key, &self.filter, &self.render, &change) {
                            return Some(line);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow a reader: like a compacted history, it must relist.
                        self.done = true;
                        return Some(error_line(&ApiError::gone("watch fell too far behind; too old resource version")));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = tick(&mut self.bookmarks) => {
                    return Some(self.render.bookmark(self.last_rv, false));
                }
                _ = tokio::time::sleep_until(self.deadline.min(drop_at)) => return None,
                _ = self.shutdown.wait_for(|s| *s) => return None,
            }
        }
    }
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn streaming(body: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    use futures::StreamExt;
    let body = Body::from_stream(body.map(Ok::<_, std::convert::Infallible>));
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default()
}

/// Starts a watch.
pub fn watch(cluster: &Arc<Cluster>, req: &Request, effects: &[ApiEffect]) -> ApiResult<Response> {
    let filter = Filter::from_request(req)?;
    let render = Render {
        rt: req.rt.clone(),
        api_version: req.rt.api_version(&req.path.version),
        as_table: table::wanted(&req.headers)
            .then(|| table::Include::parse(req.param("includeObject"))),
        metadata_only: super::metadata_only(&req.headers),
    };
    if effects.contains(&ApiEffect::Gone) {
        let err = ApiError::gone("too old resource version (simulated fault)");
        return Ok(streaming(futures::stream::iter([error_line(&err)])));
    }
    let key = req.rt.key();
    let send_initial = req.flag("sendInitialEvents");
    let rv_param = req.param("resourceVersion").unwrap_or_default();
    let mut pending = VecDeque::new();
    let (rx, last_rv) = if rv_param.is_empty() || rv_param == "0" || send_initial {
        let (items, rv, rx) = cluster.store.snapshot_and_subscribe(&key);
        for obj in items.iter().map(|o| crate::convert::to_view(&render.rt, o)) {
            if filter.matches(&obj) {
                pending.push_back(render.event("ADDED", &obj));
            }
        }
        if send_initial {
            pending.push_back(render.bookmark(rv, true));
        }
        (rx, rv)
    } else {
        let rv: u64 = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?;
        match cluster.store.watch_from(rv) {
            Ok((replay, rx)) => {
                let mut last = rv;
                for change in &replay {
                    if let Some(line) = translate(&key, &filter, &render, change) {
                        pending.push_back(line);
                    }
                    last = change.rv;
                }
                (rx, last)
            }
            Err(gone) => return Ok(streaming(futures::stream::iter([error_line(&gone)]))),
        }
    };
    // Zero, like absent, means the server's own timeout.
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let drop_after = effects.iter().find_map(|e| match e {
        ApiEffect::DropWatch { after_millis } => Some(Duration::from_millis(*after_millis)),
        _ => None,
    });
    let bookmarks = req.flag("allowWatchBookmarks").then(|| {
        let mut i = tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let stream = Stream {
        pending,
        rx,
        key,
        filter,
        render,
        last_rv,
        bookmarks,
        deadline: Instant::now() + timeout,
        drop_at: drop_after.map(|d| Instant::now() + d),
        shutdown: cluster.shutdown.clone(),
        done: false,
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        let line = s.next().await?;
        Some((line, s))
    });
    Ok(streaming(body))
}
