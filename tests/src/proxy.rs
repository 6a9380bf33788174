//! A loopback HTTP proxy between the operator process and the cluster's API server, which can
//! hold one request until the scenario lets it go: a deterministic way to have someone else
//! write an object between the operator's read and its write. Requests go on with the
//! operator's own credentials (a `kube::Client` of its kubeconfig), so the API server, its
//! audit log and its RBAC see the operator as without the proxy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{Request, Response, StatusCode, header};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::oneshot;

use crate::Cluster;

/// The largest request body the operator sends (a whole AppRelease status), with room.
const BODY_LIMIT: usize = 16 << 20;

/// A running proxy; it stops with the test's runtime.
pub struct Proxy {
    /// A kubeconfig that points at the proxy, for the operator process.
    pub kubeconfig: PathBuf,
    holds: Arc<Mutex<Option<Hold>>>,
}

struct Hold {
    method: String,
    path: String,
    arrived: oneshot::Sender<Held>,
}

/// A request the proxy holds: the scenario reads its body, then lets it go on.
pub struct Held {
    /// The request body, as JSON.
    pub body: serde_json::Value,
    go: oneshot::Sender<()>,
}

impl Held {
    /// Sends the request on to the API server.
    pub fn release(self) {
        let _ = self.go.send(());
    }
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to the cluster as the operator.
    pub async fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        let config = Kubeconfig::read_from(&cluster.operator_kubeconfig)?;
        let config = Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
        let upstream = Client::try_from(config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let holds: Arc<Mutex<Option<Hold>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state((upstream, holds.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let kubeconfig = cluster.dir.join("proxy.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: proxy, cluster: {{server: \"http://{addr}\"}}}}]\n\
                 users: [{{name: proxy, user: {{}}}}]\n\
                 contexts: [{{name: proxy, context: {{cluster: proxy, user: proxy, namespace: {ns}}}}}]\n\
                 current-context: proxy\n",
                ns = cluster.namespace
            ),
        )?;
        Ok(Self { kubeconfig, holds })
    }

    /// Holds the next `method` request whose path ends with `path`; the returned receiver
    /// gets it once it arrives.
    pub fn hold_next(&self, method: &str, path: &str) -> oneshot::Receiver<Held> {
        let (arrived, receiver) = oneshot::channel();
        *self.holds.lock().unwrap() = Some(Hold {
            method: method.into(),
            path: path.into(),
            arrived,
        });
        receiver
    }
}

/// Waits up to `limit` for the held request.
pub async fn arrival(receiver: oneshot::Receiver<Held>, limit: Duration) -> anyhow::Result<Held> {
    tokio::time::timeout(limit, receiver)
        .await
        .context("the request to hold did not come")?
        .context("the proxy stopped")
}

async fn forward(
    State((upstream, holds)): State<(Client, Arc<Mutex<Option<Hold>>>)>,
    request: Request<Body>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let hold = {
        let mut holds = holds.lock().unwrap();
        let matches = holds.as_ref().is_some_and(|h| {
            parts.method == h.method.as_str() && parts.uri.path().ends_with(&h.path)
        });
        if matches { holds.take() } else { None }
    };
    if let Some(hold) = hold {
        let (go, wait) = oneshot::channel();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if hold.arrived.send(Held { body, go }).is_ok() {
            let _ = wait.await;
        }
    }
    // The API server's address, not the proxy's (the client puts its own), and no
    // hop-by-hop headers: each side frames its own connection.
    parts.headers.remove(header::HOST);
    strip_hop_by_hop(&mut parts.headers);
    let request = Request::from_parts(parts, kube::client::Body::from(bytes));
    match upstream.send(request).await {
        // Streamed through: watches stay open as long as the API server keeps them.
        Ok(response) => {
            let mut response = response.map(Body::new);
            strip_hop_by_hop(response.headers_mut());
            response
        }
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn strip_hop_by_hop(headers: &mut header::HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}
