//! Delivery of webhook messages, in the background: reconciles only enqueue.
//!
//! Each AppRelease has a lane — a bounded queue and one task — so its messages arrive in the
//! order they happened (`Started` before `Succeeded`), while a receiver that is down delays
//! only the releases that use it. A lane ends after a minute without work and is made again
//! by the next message. Each message is tried `Policy::attempts` times, each attempt bounded
//! by `Policy::timeout`, with exponential backoff in between (a receiver's `Retry-After`, when
//! shorter than the cap, instead). A message that cannot be delivered is counted and reported
//! as a Warning Event `NotificationFailed` on the AppRelease; the upgrade never waits for it.
//!
//! Delivery is at most once: a message is enqueued after the status that describes it is
//! written, so one lost in a crash before it went out is not sent again, and no message is
//! sent for a status that was never written.
//!
//! The URL is read from the Secret at every attempt and lives only in the request. It is
//! never logged, put in an Event or in an error: every failure is described from its kind
//! (connection refused, timeout, HTTP status, …), never from the HTTP client's own error
//! text, which may name the address. Credentials in it (`user:password@`) are sent as an
//! Authorization header, so that the HTTP client only ever sees scheme, host and port —
//! which its connection pool logs at debug level (`RUST_LOG=hyper_util=debug`); the path and
//! query, where webhook tokens live, never are.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::Api;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::SecretKeyRef;
use crate::k8s::Reporter;
use crate::metrics::{AttemptLabels, Metrics, NotificationLabels};
use crate::plan::{Note, NoteType};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// How hard delivery tries.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Attempts per message, the first included.
    pub attempts: u32,
    /// How long one attempt may take, from connecting to the end of the answer.
    pub timeout: Duration,
    /// The wait after the first failed attempt; it doubles after each further one.
    pub backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Messages that may wait per AppRelease; beyond, new ones are dropped (and counted).
    pub queue: usize,
}

impl Default for Policy {
    /// 5 attempts of at most 10 s each, 1 + 2 + 4 + 8 s apart: a message is given up about
    /// 15 s after the first attempt when the receiver refuses connections, 65 s at most when
    /// it never answers.
    fn default() -> Self {
        Self {
            attempts: 5,
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            queue: 64,
        }
    }
}

impl Policy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        self.backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff)
    }
}

/// A lane with nothing to do for this long ends.
const LANE_IDLE: Duration = Duration::from_secs(60);

/// A receiver's answer is read (so the connection can be reused) up to this size.
const MAX_ANSWER: usize = 64 * 1024;

/// One message on its way.
pub struct Delivery {
    /// The AppRelease it is about, for the failure Event.
    pub reference: ObjectReference,
    /// Where the URL is.
    pub secret: SecretKeyRef,
    /// What it says, for logs and the failure Event: `Succeeded (1.0.0 → 1.1.0)`.
    pub what: String,
    /// The JSON body.
    pub body: Bytes,
}

impl Delivery {
    fn namespace(&self) -> &str {
        self.reference.namespace.as_deref().unwrap_or_default()
    }

    fn release(&self) -> &str {
        self.reference.name.as_deref().unwrap_or_default()
    }

    /// The lane: one per AppRelease.
    fn lane(&self) -> String {
        format!("{}/{}", self.namespace(), self.release())
    }
}

/// Sends deliveries, each AppRelease's in order, without ever blocking the caller.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    http: HttpClient<Https, Full<Bytes>>,
    policy: Policy,
    lanes: Mutex<HashMap<String, mpsc::Sender<Delivery>>>,
    /// Deliveries enqueued and not yet finished.
    pending: AtomicUsize,
}

impl Deliverer {
    /// A deliverer reading Secrets with `client` and reporting failures through `reporter`.
    pub fn new(
        client: kube::Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        policy: Policy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                reporter,
                metrics,
                http: HttpClient::builder(TokioExecutor::new()).build(connector()),
                policy,
                lanes: Mutex::default(),
                pending: AtomicUsize::new(0),
            }),
        }
    }

    /// Queues `delivery` behind the others of its AppRelease. Never waits: when that queue is
    /// full the delivery is dropped, counted, logged and reported as an Event. Must be called
    /// inside a Tokio runtime.
    pub fn enqueue(&self, delivery: Delivery) {
        let inner = &self.inner;
        let key = delivery.lane();
        let mut lanes = inner.lock();
        let sender = lanes
            .entry(key.clone())
            .or_insert_with(|| inner.spawn_lane(key.clone()));
        inner.pending.fetch_add(1, Ordering::SeqCst);
        let Err(error) = sender.try_send(delivery) else {
            return;
        };
        inner.pending.fetch_sub(1, Ordering::SeqCst);
        let delivery = match error {
            mpsc::error::TrySendError::Full(delivery) => delivery,
            // A lane only ends while holding this lock, after leaving the map: a sender in
            // the map always has its lane. Should that ever change, make a new lane.
            mpsc::error::TrySendError::Closed(delivery) => {
                lanes.remove(&key);
                drop(lanes);
                return self.enqueue(delivery);
            }
        };
        drop(lanes);
        inner
            .metrics
            .notifications
            .get_or_create(&NotificationLabels { outcome: "dropped" })
            .inc();
        let why = format!(
            "{} messages of this AppRelease were still waiting",
            inner.policy.queue
        );
        warn!(release = %key, what = delivery.what, "webhook notification dropped: {why}");
        let inner = inner.clone();
        tokio::spawn(async move { inner.report(&delivery, 0, Duration::ZERO, &why).await });
    }

    /// Waits until every delivery enqueued so far has finished, or `limit` has passed;
    /// returns whether they all did.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.inner.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// An https-or-http connector trusting the system's CA certificates (the ones kube-client's
/// own TLS uses outside a cluster). Without any, https URLs fail their handshake, and say so.
fn connector() -> Https {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_native_roots() {
        Ok(builder) => builder,
        Err(error) => {
            warn!(%error, "no CA certificates found: webhooks over https will fail their TLS handshake");
            let empty = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(empty)
        }
    };
    builder.https_or_http().enable_http1().build()
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Delivery>>> {
        // Each use is one lookup, insert or removal: a poisoned map is still consistent.
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_lane(self: &Arc<Self>, key: String) -> mpsc::Sender<Delivery> {
        let (sender, receiver) = mpsc::channel(self.policy.queue.max(1));
        tokio::spawn(self.clone().lane(key, receiver));
        sender
    }

    /// Delivers one AppRelease's messages in order; ends when idle, leaving the map under
    /// its lock only when nothing waits, so no message is left behind in a closed queue.
    async fn lane(self: Arc<Self>, key: String, mut receiver: mpsc::Receiver<Delivery>) {
        loop {
            match tokio::time::timeout(LANE_IDLE, receiver.recv()).await {
                Ok(Some(delivery)) => {
                    self.deliver(&delivery).await;
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(None) => return,
                Err(_idle) => {
                    let mut lanes = self.lock();
                    if receiver.is_empty() {
                        lanes.remove(&key);
                        return;
                    }
                }
            }
        }
    }

    /// Tries one message until it is delivered, cannot be, or the attempts are spent.
    async fn deliver(&self, delivery: &Delivery) {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(delivery).await;
            let label = result.as_ref().err().map_or("ok", Failure::label);
            self.metrics
                .notification_attempts
                .get_or_create(&AttemptLabels { result: label })
                .inc();
            let failure = match result {
                Ok(()) => {
                    self.count("delivered");
                    info!(release = %delivery.lane(), what = delivery.what, attempt, "webhook notification delivered");
                    return;
                }
                Err(failure) => failure,
            };
            let why = failure.describe(&delivery.secret);
            if failure.retryable() && attempt < self.policy.attempts {
                let wait = match failure.retry_after() {
                    Some(asked) if asked <= self.policy.max_backoff => asked,
                    _ => self.policy.delay(attempt),
                };
                info!(release = %delivery.lane(), what = delivery.what, attempt, retry_in = ?wait, "webhook notification not delivered: {why}");
                tokio::time::sleep(wait).await;
                continue;
            }
            self.count("failed");
            warn!(release = %delivery.lane(), what = delivery.what, attempt, "webhook notification given up: {why}");
            self.report(delivery, attempt, started.elapsed(), &why)
                .await;
            return;
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .notifications
            .get_or_create(&NotificationLabels { outcome })
            .inc();
    }

    /// The Warning Event for a message that was not delivered: what, how often tried, why,
    /// and where the URL comes from — never the URL.
    async fn report(&self, delivery: &Delivery, attempts: u32, took: Duration, why: &str) {
        let tried = match attempts {
            0 => "was not sent".to_string(),
            1 => "was not delivered".to_string(),
            n => format!(
                "was not delivered in {n} attempts over {:.1}s",
                took.as_secs_f64()
            ),
        };
        let note = Note {
            type_: NoteType::Warning,
            reason: "NotificationFailed".into(),
            message: format!(
                "the webhook notification {} {tried}: {why}. The upgrade is not affected. The URL is read from key {} of Secret {}.",
                delivery.what, delivery.secret.key, delivery.secret.name
            ),
        };
        self.reporter.publish(&delivery.reference, &note).await;
    }

    async fn attempt(&self, delivery: &Delivery) -> Result<(), Failure> {
        let target = self.url(delivery).await?;
        let mut request = http::Request::post(target.uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("apprelease-operator/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(authorization) = target.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(delivery.body.clone()))
            .map_err(|_| Failure::InvalidUrl)?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| classify(&e))?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            // Read (a bounded part of) the answer, so the connection can serve the next one.
            let _ = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(Failure::Status {
                    code: status.as_u16(),
                    retry_after,
                })
            }
        };
        tokio::time::timeout(self.policy.timeout, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout(self.policy.timeout)))
    }

    /// The webhook URL, from the Secret as it is now.
    async fn url(&self, delivery: &Delivery) -> Result<Target, Failure> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), delivery.namespace());
        let secret = match secrets.get(&delivery.secret.name).await {
            Ok(secret) => secret,
            Err(kube::Error::Api(status)) => return Err(Failure::Secret(Some(status.code))),
            Err(_) => return Err(Failure::Secret(None)),
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&delivery.secret.key))
            .ok_or(Failure::NoKey)?;
        parse_url(&value.0)
    }
}

/// Where a message goes: the URL without credentials, and those as a header.
#[derive(Debug)]
pub struct Target {
    /// The URL, without user information: the HTTP client's connection pool keys (and at
    /// debug level logs) the scheme, host and port only.
    pub uri: http::Uri,
    /// `Basic …` from the URL's `user:password@`, marked sensitive.
    pub authorization: Option<http::HeaderValue>,
}

/// An `http://` or `https://` URL with a host, from a Secret's value. Surrounding whitespace
/// is ignored: `kubectl create secret --from-file` keeps a file's final newline.
pub fn parse_url(value: &[u8]) -> Result<Target, Failure> {
    let text = std::str::from_utf8(value)
        .map_err(|_| Failure::InvalidUrl)?
        .trim();
    let uri: http::Uri = text.parse().map_err(|_| Failure::InvalidUrl)?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(Failure::InvalidUrl);
    }
    let authority = uri
        .authority()
        .ok_or(Failure::InvalidUrl)?
        .as_str()
        .to_string();
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok(Target {
            uri,
            authorization: None,
        });
    };
    let credentials = percent_decode(userinfo).ok_or(Failure::InvalidUrl)?;
    let mut authorization: http::HeaderValue = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials)
    )
    .parse()
    .map_err(|_| Failure::InvalidUrl)?;
    authorization.set_sensitive(true);
    let mut parts = uri.into_parts();
    parts.authority = Some(host.parse().map_err(|_| Failure::InvalidUrl)?);
    Ok(Target {
        uri: http::Uri::from_parts(parts).map_err(|_| Failure::InvalidUrl)?,
        authorization: Some(authorization),
    })
}

/// `%XX` escapes of a URL's user information, decoded.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Why one attempt failed. Described from its kind only, never from a message that may
/// carry the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The Secret could not be read: the API's status code, if it answered.
    Secret(Option<u16>),
    /// The Secret has no such key.
    NoKey,
    /// The Secret's value is not an http(s) URL.
    InvalidUrl,
    /// No connection: refused, unreachable, name not resolved, …
    Connect(ConnectFailure),
    /// The TLS handshake failed.
    Tls,
    /// No complete answer within the timeout.
    Timeout(Duration),
    /// The connection failed after it was made, before a complete answer.
    Request,
    /// The receiver answered with a status other than 2xx.
    Status {
        /// The HTTP status code.
        code: u16,
        /// Its `Retry-After`, in seconds, if it gave one.
        retry_after: Option<Duration>,
    },
}

/// Why no connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens there.
    Refused,
    /// The host's name did not resolve.
    Dns,
    /// Another network error.
    Other,
}

impl Failure {
    /// The metric label of the attempt.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Secret(_) | Self::NoKey => "secret",
            Self::InvalidUrl => "invalid_url",
            Self::Connect(_) => "connect",
            Self::Tls => "tls",
            Self::Timeout(_) => "timeout",
            Self::Request => "request",
            Self::Status { .. } => "http_status",
        }
    }

    /// Whether another attempt may succeed. A malformed URL, a certificate the operator
    /// does not trust, and an answer that refuses this request (4xx other than 408, 425,
    /// 429) will not change by themselves. A Secret may appear or be fixed in a moment.
    pub fn retryable(&self) -> bool {
        match self {
            Self::InvalidUrl | Self::Tls => false,
            Self::Status { code, .. } => matches!(code, 408 | 425 | 429) || *code >= 500,
            _ => true,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// For a human, naming the Secret but never its value.
    pub fn describe(&self, secret: &SecretKeyRef) -> String {
        let name = &secret.name;
        match self {
            Self::Secret(Some(404)) => format!("Secret {name} does not exist"),
            Self::Secret(Some(403)) => {
                format!("the operator may not read Secret {name} (RBAC: get secrets)")
            }
            Self::Secret(Some(code)) => format!("reading Secret {name} failed (HTTP {code})"),
            Self::Secret(None) => format!("reading Secret {name} failed (API unreachable)"),
            Self::NoKey => format!("Secret {name} has no key {}", secret.key),
            Self::InvalidUrl => format!(
                "the value of key {} of Secret {name} is not an http:// or https:// URL",
                secret.key
            ),
            Self::Connect(ConnectFailure::Refused) => "connection refused".into(),
            Self::Connect(ConnectFailure::Dns) => "the host name did not resolve".into(),
            Self::Connect(ConnectFailure::Other) => "could not connect".into(),
            Self::Tls => {
                "the TLS handshake failed (a certificate the operator does not trust, or not for that host)".into()
            }
            Self::Timeout(limit) => format!("no answer within {}s", limit.as_secs_f64()),
            Self::Request => "the connection broke before a complete answer".into(),
            Self::Status { code, .. } => format!("the receiver answered HTTP {code}"),
        }
    }
}

/// The kind of a request error, from the types in its source chain (never its text).
fn classify(error: &hyper_util::client::legacy::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(current) = source {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return Failure::Tls;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return Failure::Tls;
            }
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Failure::Connect(ConnectFailure::Refused);
            }
        }
        // hyper-util's connector says "dns error" for a failed lookup: a fixed text of its
        // own, not the host's name.
        if current.to_string() == "dns error" {
            return Failure::Connect(ConnectFailure::Dns);
        }
        source = current.source();
    }
    if error.is_connect() {
        Failure::Connect(ConnectFailure::Other)
    } else {
        Failure::Request
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not read).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
