//! Delivery against real HTTP receivers on loopback (an axum server, a port nobody listens
//! on, a receiver that answers late or not at all), with the Kubernetes side — the Secret and
//! the Events — served by a fake API behind a real `kube::Client`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::Request;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::{Notifier, Policy};
use crate::api::{AppRelease, NotificationsSpec, SecretKeyRef, Step, WebhookSpec};
use crate::k8s::{Error, Executor, Reporter};
use crate::metrics::Metrics;
use crate::plan::fixtures::{release, t0};
use crate::plan::{Decision, Milestone, MilestoneKind};

/// The part of the URL a leak would show: the receivers' path carries it, as a Slack
/// webhook's does.
const TOKEN: &str = "T0KEN-9f8e7d";

// --- the Kubernetes side -------------------------------------------------------------------

#[derive(Default)]
struct ApiState {
    /// Secret name → its data.
    secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// When set, every Secret read is answered with this code.
    secret_code: Option<u16>,
    /// The code status writes are answered with (200 when unset).
    status_code: Option<u16>,
    /// Every Event created, in order.
    events: Vec<Value>,
}

/// Answers the operator's requests as an API server would, for as long as the client lives.
#[derive(Clone, Default)]
struct Api(Arc<Mutex<ApiState>>);

impl Api {
    fn start() -> (Client, Self) {
        let (service, mut handle) = mock::pair::<Request<Body>, http::Response<Body>>();
        let api = Self::default();
        let state = api.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (code, body) = state.answer(request).await;
                respond.send_response(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        (Client::new(service, "default"), api)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.0.lock().unwrap()
    }

    fn secret(&self, name: &str, key: &str, value: &str) {
        self.lock().secrets.insert(
            name.into(),
            [(key.to_string(), value.as_bytes().to_vec())].into(),
        );
    }

    fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    async fn answer(&self, request: Request<Body>) -> (u16, Value) {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        let mut state = self.lock();
        let failure = |code: u16| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code});
        if let Some(name) = path.strip_prefix("/api/v1/namespaces/meet/secrets/") {
            if let Some(code) = state.secret_code {
                return (code, failure(code));
            }
            return match state.secrets.get(name) {
                Some(data) => {
                    let data: serde_json::Map<String, Value> = data
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(k8s_openapi::ByteString(v.clone()))))
                        .collect();
                    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": name, "namespace": "meet"}, "data": data});
                    (200, secret)
                }
                None => (404, failure(404)),
            };
        }
        if path.starts_with("/apis/events.k8s.io/v1/namespaces/meet/events") {
            if parts.method == "POST" {
                state.events.push(body.clone());
            }
            let mut event = body;
            event["apiVersion"] = "events.k8s.io/v1".into();
            event["kind"] = "Event".into();
            return (if parts.method == "POST" { 201 } else { 200 }, event);
        }
        if path.ends_with("/appreleases/meet/status") {
            let code = state.status_code.unwrap_or(200);
            let mut stored = serde_json::to_value(webhooked(release("2.0"))).unwrap();
            stored["apiVersion"] = "apprelease.io/v1alpha1".into();
            stored["kind"] = "AppRelease".into();
            return (code, if code == 200 { stored } else { failure(code) });
        }
        panic!("unexpected request {} {path}", parts.method);
    }
}

// --- the receiver --------------------------------------------------------------------------

/// How the receiver answers one request.
#[derive(Clone, Copy)]
struct Answer {
    code: u16,
    delay: Duration,
    retry_after: Option<u64>,
}

const OK: Answer = Answer {
    code: 200,
    delay: Duration::ZERO,
    retry_after: None,
};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    path: String,
    content_type: String,
    authorization: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    /// Answers for the next requests, in order; then 200 at once.
    script: Arc<Mutex<Vec<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A real HTTP server on a loopback port; its webhook URL carries `TOKEN`.
    async fn start(script: Vec<Answer>) -> (Self, String) {
        let receiver = Self {
            script: Arc::new(Mutex::new(script)),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/hooks/{token}", post(hook))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url(addr))
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.body["event"].as_str().unwrap().to_string())
            .collect()
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/hooks/{TOKEN}")
}

async fn hook(
    State(receiver): State<Receiver>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    receiver.received.lock().unwrap().push(Received {
        at: Instant::now(),
        path: format!("/hooks/{token}"),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let answer = {
        let mut script = receiver.script.lock().unwrap();
        if script.is_empty() {
            OK
        } else {
            script.remove(0)
        }
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = (StatusCode::from_u16(answer.code).unwrap(), "{}").into_response();
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

/// A loopback URL nobody listens on: the port of a listener just closed.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    url(addr)
}

// --- the operator side ---------------------------------------------------------------------

/// Fast enough for tests, the shape of the default: 4 attempts, 100 + 200 + 400 ms apart.
fn policy() -> Policy {
    Policy {
        attempts: 4,
        timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        queue: 8,
    }
}

fn webhooked(mut release: AppRelease) -> AppRelease {
    release.spec.notifications = Some(NotificationsSpec {
        webhook: WebhookSpec {
            url_secret_ref: SecretKeyRef {
                name: "meet-webhook".into(),
                key: "url".into(),
            },
        },
    });
    release
}

fn milestone(kind: MilestoneKind) -> Milestone {
    Milestone {
        kind,
        from: "1.0".into(),
        to: "2.0".into(),
        attempt: 1,
        step: Step::RollingOut,
        reason: "RolloutFailed".into(),
        message: "Deployment backend did not become available".into(),
        backup: Some("meet-backup-1".into()),
        at: t0(),
    }
}

struct Operator {
    notifier: Notifier,
    metrics: Arc<Metrics>,
    api: Api,
    client: Client,
    reporter: Reporter,
}

impl Operator {
    fn start(policy: Policy) -> Self {
        let (client, api) = Api::start();
        let metrics = Arc::new(Metrics::default());
        let reporter = Reporter::new(client.clone());
        let notifier = Notifier::new(client.clone(), reporter.clone(), metrics.clone(), policy);
        Self {
            notifier,
            metrics,
            api,
            client,
            reporter,
        }
    }

    /// Notifies and returns how long the call itself took.
    fn notify(&self, release: &AppRelease, kinds: &[MilestoneKind]) -> Duration {
        let milestones: Vec<Milestone> = kinds.iter().map(|k| milestone(*k)).collect();
        let started = Instant::now();
        self.notifier.notify(release, &milestones);
        started.elapsed()
    }

    async fn drain(&self) {
        assert!(
            self.notifier.drain(Duration::from_secs(20)).await,
            "every delivery finished"
        );
    }

    /// A metric's value from the exposition text, 0 when absent.
    fn metric(&self, series: &str) -> u64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The notes of the NotificationFailed Events, in order.
    fn failures(&self) -> Vec<String> {
        self.api
            .events()
            .iter()
            .filter(|e| e["reason"] == "NotificationFailed")
            .inspect(|e| assert_eq!(e["type"], "Warning"))
            .map(|e| e["note"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Everything the operator logs, at every level, while `f` runs: the URL must never be in it.
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(writer.clone()))
            .finish();
        (Self(buffer), tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The password of the URL with credentials below.
const PASSWORD: &str = "s3cr:et";

/// Neither the URL, nor its token, nor a password in it is in `text`. (Scheme, host and port
/// may be: the HTTP client's pool logs them at debug level.)
fn assert_no_url(text: &str, url: &str, what: &str) {
    assert!(
        !text.contains(TOKEN) && !text.contains(url) && !text.contains("s3cr"),
        "the webhook URL leaked into {what}: {text}"
    );
}

// --- the tests -----------------------------------------------------------------------------

#[tokio::test]
async fn each_milestone_is_posted_as_json_in_order() {
    let (logs, _guard) = Logs::capture();
    let (receiver, url) = Receiver::start(vec![]).await;
    let operator = Operator::start(policy());
    // As `kubectl create secret generic --from-file=url=…` stores it: with a final newline;
    // and with credentials, percent-encoded as a URL has them.
    let url = url.replace("http://", "http://hook%40user:s3cr%3Aet@");
    operator
        .api
        .secret("meet-webhook", "url", &format!("{url}\n"));
    let release = webhooked(release("2.0"));
    use MilestoneKind::*;
    operator.notify(&release, &[Started, Failed, RolledBack]);
    operator.drain().await;

    assert_eq!(receiver.events(), ["Started", "Failed", "RolledBack"]);
    let first = &receiver.received()[0];
    assert_eq!(first.path, format!("/hooks/{TOKEN}"));
    assert_eq!(first.content_type, "application/json");
    let credentials = format!("hook@user:{PASSWORD}");
    assert_eq!(
        first.authorization,
        format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials)
        )
    );
    assert_eq!(
        first.body,
        super::message::body("meet", "meet", &milestone(Started))
    );
    assert_eq!(first.body["release"], "meet");
    assert_eq!(first.body["backup"], "meet-backup-1");
    assert!(first.body["text"].as_str().unwrap().contains("1.0 → 2.0"));
    assert_eq!(
        operator.metric("apprelease_notifications_total{outcome=\"delivered\"}"),
        3
    );
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"ok\"}"),
        3
    );
    assert!(operator.failures().is_empty());
    assert!(logs.text().contains("webhook notification delivered"));
    assert_no_url(&logs.text(), &url, "the logs");
}

#[tokio::test]
async fn a_release_without_a_webhook_sends_nothing() {
    let (receiver, url) = Receiver::start(vec![]).await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    operator.notify(&release("2.0"), &[MilestoneKind::Started]);
    operator.drain().await;
    assert!(receiver.received().is_empty());
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"ok\"}"),
        0
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_is_retried_with_backoff_then_reported() {
    let (logs, _guard) = Logs::capture();
    let url = closed_url().await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    let release = webhooked(release("2.0"));
    let started = Instant::now();
    let took = operator.notify(&release, &[MilestoneKind::Succeeded]);
    assert!(took < Duration::from_millis(50), "notify waited {took:?}");
    operator.drain().await;
    let elapsed = started.elapsed();

    // Refused at once, four times, 100 + 200 + 400 ms apart.
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(3),
        "gave up after {elapsed:?}"
    );
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"connect\"}"),
        4
    );
    assert_eq!(
        operator.metric("apprelease_notifications_total{outcome=\"failed\"}"),
        1
    );
    let failures = operator.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with(
            "the webhook notification Succeeded (1.0 → 2.0) was not delivered in 4 attempts over 0."
        ) && failures[0].contains("s: connection refused. The upgrade is not affected.")
            && failures[0].contains("key url of Secret meet-webhook"),
        "{}",
        failures[0]
    );
    assert_eq!(operator.api.events()[0]["regarding"]["name"], "meet");
    assert_no_url(&failures[0], &url, "the Event");
    assert_no_url(&logs.text(), &url, "the logs");
}

#[tokio::test]
async fn a_slow_receiver_is_cut_off_at_the_timeout_and_retried() {
    // The first answer would come after 2 s; the attempt gives up at 500 ms.
    let slow = Answer {
        delay: Duration::from_secs(2),
        ..OK
    };
    let (receiver, url) = Receiver::start(vec![slow]).await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    let release = webhooked(release("2.0"));
    let took = operator.notify(&release, &[MilestoneKind::Started]);
    assert!(took < Duration::from_millis(50), "notify waited {took:?}");
    operator.drain().await;

    let received = receiver.received();
    assert_eq!(received.len(), 2, "sent again after the timeout");
    // 500 ms of timeout + 100 ms of backoff between the starts of the two attempts; the
    // receiver sees each a few ms after its start (Secret read, connect), the first a little
    // later than the second at times.
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(550) && gap < Duration::from_millis(1500),
        "second attempt {gap:?} after the first: timeout 500 ms + backoff 100 ms"
    );
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"timeout\"}"),
        1
    );
    assert_eq!(
        operator.metric("apprelease_notifications_total{outcome=\"delivered\"}"),
        1
    );
    assert!(operator.failures().is_empty());
}

#[tokio::test]
async fn a_receiver_that_never_answers_in_time_is_given_up_and_reported() {
    let slow = Answer {
        delay: Duration::from_secs(2),
        ..OK
    };
    let (receiver, url) = Receiver::start(vec![slow; 4]).await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    operator.notify(&webhooked(release("2.0")), &[MilestoneKind::Started]);
    operator.drain().await;
    assert_eq!(receiver.received().len(), 4);
    let failures = operator.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("in 4 attempts over 2.") // 4 × 0.5 s + 0.7 s of backoff
            && failures[0].contains("s: no answer within 0.5s."),
        "{}",
        failures[0]
    );
    assert_no_url(&failures[0], &url, "the Event");
}

#[tokio::test]
async fn server_errors_are_retried_as_told_and_refusals_are_not() {
    let unavailable = Answer {
        code: 503,
        retry_after: Some(1),
        ..OK
    };
    let (receiver, url) = Receiver::start(vec![unavailable]).await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    operator.notify(&webhooked(release("2.0")), &[MilestoneKind::Started]);
    operator.drain().await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_millis(1800),
        "Retry-After: 1 honoured, not the 100 ms backoff: {gap:?}"
    );
    assert!(operator.failures().is_empty());

    // A webhook that is gone (Slack answers 404 no_service) is not tried again.
    let gone = Answer { code: 404, ..OK };
    let (receiver, url) = Receiver::start(vec![gone; 4]).await;
    operator.api.secret("meet-webhook", "url", &url);
    operator.notify(&webhooked(release("2.0")), &[MilestoneKind::Succeeded]);
    operator.drain().await;
    assert_eq!(receiver.received().len(), 1);
    let failures = operator.failures();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].contains("was not delivered: the receiver answered HTTP 404"),
        "{}",
        failures[0]
    );
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"http_status\"}"),
        2
    );
}

#[tokio::test]
async fn secret_problems_are_reported_without_the_value() {
    let operator = Operator::start(Policy {
        attempts: 2,
        ..policy()
    });
    let release = webhooked(release("2.0"));
    // No Secret at all: tried again (it may be created in a moment), then reported.
    operator.notify(&release, &[MilestoneKind::Started]);
    operator.drain().await;
    // A Secret without the key.
    operator
        .api
        .secret("meet-webhook", "webhook", "http://127.0.0.1:1/x");
    operator.notify(&release, &[MilestoneKind::Started]);
    operator.drain().await;
    // A value that is no http(s) URL: never sent, not tried again.
    let value = format!("ftp://files.example/{TOKEN}");
    operator.api.secret("meet-webhook", "url", &value);
    operator.notify(&release, &[MilestoneKind::Started]);
    operator.drain().await;
    // The operator may not read it.
    operator.api.lock().secret_code = Some(403);
    operator.notify(&release, &[MilestoneKind::Started]);
    operator.drain().await;

    let failures = operator.failures();
    let whys: Vec<&str> = failures
        .iter()
        .map(|f| f.split_once(": ").unwrap().1)
        .collect();
    assert_eq!(
        whys,
        [
            "Secret meet-webhook does not exist. The upgrade is not affected. The URL is read from key url of Secret meet-webhook.",
            "Secret meet-webhook has no key url. The upgrade is not affected. The URL is read from key url of Secret meet-webhook.",
            "the value of key url of Secret meet-webhook is not an http:// or https:// URL. The upgrade is not affected. The URL is read from key url of Secret meet-webhook.",
            "the operator may not read Secret meet-webhook (RBAC: get secrets). The upgrade is not affected. The URL is read from key url of Secret meet-webhook.",
        ]
    );
    assert!(
        failures[2].contains("was not delivered:"),
        "one attempt only"
    );
    assert!(failures.iter().all(|f| !f.contains(TOKEN)));
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"secret\"}"),
        6
    );
    assert_eq!(
        operator.metric("apprelease_notification_attempts_total{result=\"invalid_url\"}"),
        1
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_delays_only_its_own_release() {
    let (receiver, url) = Receiver::start(vec![]).await;
    let operator = Operator::start(policy());
    operator
        .api
        .secret("meet-webhook", "url", &closed_url().await);
    operator.api.secret("shop-webhook", "url", &url);
    let down = webhooked(release("2.0"));
    let mut up = webhooked(release("2.0"));
    up.metadata.name = Some("shop".into());
    up.spec
        .notifications
        .as_mut()
        .unwrap()
        .webhook
        .url_secret_ref
        .name = "shop-webhook".into();

    let started = Instant::now();
    operator.notify(&down, &[MilestoneKind::Started, MilestoneKind::Succeeded]);
    operator.notify(&up, &[MilestoneKind::Started]);
    while receiver.received().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waited = receiver.received()[0].at - started;
    assert!(
        waited < Duration::from_millis(600),
        "shop's message waited {waited:?} behind meet's retries"
    );
    assert_eq!(receiver.received()[0].body["release"], "shop");
    operator.drain().await;
    // meet's two messages were given up one after the other, in order.
    let failures = operator.failures();
    assert_eq!(failures.len(), 2);
    assert!(failures[0].contains("Started (1.0 → 2.0)") && failures[1].contains("Succeeded"));
}

#[tokio::test]
async fn a_retried_message_keeps_the_next_one_of_its_release_behind_it() {
    let unavailable = Answer { code: 502, ..OK };
    let (receiver, url) = Receiver::start(vec![unavailable, unavailable]).await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    let release = webhooked(release("2.0"));
    operator.notify(&release, &[MilestoneKind::Started]);
    operator.notify(&release, &[MilestoneKind::Succeeded]);
    operator.drain().await;
    assert_eq!(
        receiver.events(),
        ["Started", "Started", "Started", "Succeeded"]
    );
}

#[tokio::test]
async fn a_full_queue_drops_new_messages_and_says_so() {
    let slow = Answer {
        delay: Duration::from_millis(300),
        ..OK
    };
    let (receiver, url) = Receiver::start(vec![slow]).await;
    let operator = Operator::start(Policy {
        queue: 1,
        ..policy()
    });
    operator.api.secret("meet-webhook", "url", &url);
    let release = webhooked(release("2.0"));
    use MilestoneKind::*;
    // One in flight at most and one waiting: of five at once, at least three cannot wait.
    operator.notify(&release, &[Started, Failed, RolledBack, Started, Succeeded]);
    operator.drain().await;
    let dropped = operator.metric("apprelease_notifications_total{outcome=\"dropped\"}");
    let delivered = operator.metric("apprelease_notifications_total{outcome=\"delivered\"}");
    assert!(dropped >= 3, "{dropped} dropped");
    assert_eq!(dropped + delivered, 5);
    assert_eq!(receiver.received().len() as u64, delivered);
    // The Events are published by tasks of their own; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while (operator.failures().len() as u64) < dropped && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failures = operator.failures();
    assert_eq!(failures.len() as u64, dropped);
    assert!(
        failures[0].contains("was not sent: 1 messages of this AppRelease were still waiting"),
        "{}",
        failures[0]
    );
}

/// The executor hands milestones over only once the status that records them is written: a
/// refused (stale) status write notifies nothing, a written one notifies at once.
#[tokio::test]
async fn milestones_are_notified_only_after_their_status_is_written() {
    let (receiver, url) = Receiver::start(vec![]).await;
    let operator = Operator::start(policy());
    operator.api.secret("meet-webhook", "url", &url);
    let mut release = webhooked(release("2.0"));
    release.metadata.resource_version = Some("7".into());
    let decision = Decision {
        status: crate::api::AppReleaseStatus {
            attempts: 1,
            ..Default::default()
        },
        actions: vec![],
        notes: vec![],
        milestones: vec![milestone(MilestoneKind::Started)],
        requests: vec![],
        requeue_after: Duration::from_secs(30),
        finalizer: false,
        telemetry: Default::default(),
    };
    let executor = Executor {
        client: &operator.client,
        events: &operator.reporter,
        notifier: Some(&operator.notifier),
        metrics: None,
        expectations: None,
    };
    operator.api.lock().status_code = Some(409);
    let result = executor.execute(&release, &decision).await;
    assert!(matches!(result, Err(Error::Stale(_))), "{result:?}");
    operator.drain().await;
    assert!(receiver.received().is_empty());

    operator.api.lock().status_code = None;
    executor.execute(&release, &decision).await.unwrap();
    operator.drain().await;
    assert_eq!(receiver.events(), ["Started"]);
}

#[test]
fn urls_are_http_or_https_with_a_host() {
    use super::deliver::parse_url;
    let slack = parse_url(b"https://hooks.slack.com/services/T0/B0/x").unwrap();
    assert_eq!(slack.uri, "https://hooks.slack.com/services/T0/B0/x");
    assert!(slack.authorization.is_none());
    let local = parse_url(b"  http://10.0.0.7:8080/hook?token=x\n").unwrap();
    assert_eq!(local.uri, "http://10.0.0.7:8080/hook?token=x");
    let basic = parse_url(b"https://ntfy:pa%20ss@ntfy.example:8443/up").unwrap();
    assert_eq!(
        basic.uri, "https://ntfy.example:8443/up",
        "no credentials left in the URL"
    );
    let header = basic.authorization.unwrap();
    assert!(header.is_sensitive());
    // base64("ntfy:pa ss")
    assert_eq!(header, "Basic bnRmeTpwYSBzcw==");
    for bad in [
        &b"hooks.slack.com/services/x"[..],
        b"ftp://example.com/x",
        b"http://",
        b"",
        b"\xff\xfe",
        b"https://user:%zz@host/x",
    ] {
        assert!(parse_url(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_default_policy_backs_off_exponentially_to_a_cap() {
    let policy = Policy::default();
    let delays: Vec<u64> = (1..=8).map(|a| policy.delay(a).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(policy.attempts, 5);
    assert_eq!(policy.timeout, Duration::from_secs(10));
}
