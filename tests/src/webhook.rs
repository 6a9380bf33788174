//! A webhook receiver for the notification scenarios: a real HTTP server on loopback that
//! records every JSON message POSTed to it. The operator process runs on the test's machine
//! on every backend (simulator, local control plane), so it reaches loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;

/// One message as received.
#[derive(Clone, Debug)]
pub struct Message {
    /// The request path (it carries the webhook's token).
    pub path: String,
    /// The Content-Type header.
    pub content_type: String,
    /// The JSON body.
    pub body: Value,
}

/// A running receiver; it stops with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    messages: Arc<Mutex<Vec<Message>>>,
}

impl Receiver {
    /// Listens on a free loopback port and answers every POST with 200.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let receiver = Self {
            addr: listener.local_addr()?,
            messages: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/{*path}", post(record))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(receiver)
    }

    /// The URL of the path `path` (starting with `/`) on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every message so far, in the order received.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `count` messages arrived, up to `limit`, and returns them all.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> anyhow::Result<Vec<Message>> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return Ok(messages);
            }
            if Instant::now() >= deadline {
                let events: Vec<&Value> = messages.iter().map(|m| &m.body["event"]).collect();
                anyhow::bail!("{count} webhook messages expected within {limit:?}, got {events:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A loopback URL nobody listens on (the port of a listener just closed): a receiver that
/// is down.
pub async fn down_url(path: &str) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}{path}"))
}

async fn record(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    receiver.messages.lock().unwrap().push(Message {
        path: uri.path().to_string(),
        content_type,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    "ok"
}
