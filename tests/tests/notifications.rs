//! Upgrade notifications end to end: a webhook receiver on loopback, its URL in a Secret,
//! and the messages it gets for an upgrade that succeeds, one that is rolled back, and what
//! happens when it is down.

use std::time::Duration;

use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, RELEASE, V1, V2, V4};
use apprelease_e2e::webhook::{self, Receiver};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::{NotificationsSpec, SecretKeyRef, WebhookSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde_json::{Value, json};

/// The token of the webhook URL, as a chat service puts one in the path: it must never show
/// outside the Secret and the requests.
const TOKEN: &str = "e2e-T0KEN-4b1d";
const SECRET: &str = "shop-webhook";

/// Creates or replaces the Secret holding the webhook URL (in `data`, as a real server
/// stores it).
async fn put_url(s: &Scenario, url: &str) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.into()),
            ..Default::default()
        },
        data: Some([("url".to_string(), ByteString(url.as_bytes().to_vec()))].into()),
        ..Default::default()
    };
    let mut body = serde_json::to_value(&secret)?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    Api::<Secret>::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .patch(
            SECRET,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

/// The fields of a message a receiver program reads, without its time and texts.
fn fields(message: &Value) -> Value {
    json!({
        "event": message["event"], "release": message["release"],
        "namespace": message["namespace"], "from": message["from"], "to": message["to"],
        "step": message["step"], "reason": message["reason"], "backup": message["backup"],
    })
}

/// The value of one series in the metrics text, 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn n01_a_webhook_hears_each_milestone_in_order_and_a_dead_one_holds_nothing_up()
-> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let s = Scenario::start("notify").await?;
    let url = receiver.url(&format!("/hooks/{TOKEN}"));
    put_url(&s, &url).await?;
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &Jobs::default());
    release.spec.notifications = Some(NotificationsSpec {
        webhook: WebhookSpec {
            url_secret_ref: SecretKeyRef {
                name: SECRET.into(),
                key: "url".into(),
            },
        },
    });
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    let ns = s.cluster.namespace.as_str();

    // An upgrade that succeeds: started, then succeeded. Adopting V1 was no upgrade.
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;
    let messages = receiver.wait_for(2, Duration::from_secs(30)).await?;
    let got: Vec<Value> = messages.iter().map(|m| fields(&m.body)).collect();
    assert_eq!(
        got,
        [
            json!({"event": "Started", "release": RELEASE, "namespace": ns, "from": V1, "to": V2,
                   "step": "BackingUp", "reason": "UpgradeStarted", "backup": null}),
            json!({"event": "Succeeded", "release": RELEASE, "namespace": ns, "from": V1, "to": V2,
                   "step": "Verifying", "reason": "Succeeded", "backup": "shop-backup-1"}),
        ]
    );
    for m in &messages {
        assert_eq!(m.path, format!("/hooks/{TOKEN}"));
        assert_eq!(m.content_type, "application/json");
    }
    assert_eq!(
        messages[1].body["text"],
        format!("{ns}/{RELEASE}: upgrade {V1} → {V2} succeeded")
    );

    // A version that never becomes ready: started, failed at the rollout, rolled back.
    fixtures::set_version(&s.cluster, RELEASE, BAD_VERSION).await?;
    s.wait_settled(RELEASE, "RolledBack").await?;
    let messages = receiver.wait_for(5, Duration::from_secs(30)).await?;
    let got: Vec<Value> = messages[2..].iter().map(|m| fields(&m.body)).collect();
    assert_eq!(
        got,
        [
            json!({"event": "Started", "release": RELEASE, "namespace": ns, "from": V2, "to": BAD_VERSION,
                   "step": "BackingUp", "reason": "UpgradeStarted", "backup": null}),
            json!({"event": "Failed", "release": RELEASE, "namespace": ns, "from": V2, "to": BAD_VERSION,
                   "step": "RollingOut", "reason": "RolloutFailed", "backup": "shop-backup-2"}),
            json!({"event": "RolledBack", "release": RELEASE, "namespace": ns, "from": V2, "to": BAD_VERSION,
                   "step": "RollingBack", "reason": "RolloutFailed", "backup": "shop-backup-2"}),
        ]
    );
    let rolled_back = messages[4].body["message"].as_str().unwrap_or_default();
    assert!(
        rolled_back.contains("did not become available")
            && rolled_back.ends_with(&format!("rolled back to {V2}")),
        "{rolled_back}"
    );
    let (code, metrics) = s.operator.get("/metrics").await?;
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &metrics,
            "apprelease_notifications_total{outcome=\"delivered\"}"
        ),
        5,
        "{metrics}"
    );

    // The receiver goes away: the next upgrade runs to the end all the same, and the message
    // that could not be delivered is a Warning Event (about 15 s later: 5 attempts refused,
    // 1 + 2 + 4 + 8 s apart) and a metric.
    put_url(&s, &webhook::down_url(&format!("/hooks/{TOKEN}")).await?).await?;
    fixtures::set_version(&s.cluster, RELEASE, V4).await?;
    s.wait_ready(RELEASE, V4).await?;
    let events = s.events_with(RELEASE, &["NotificationFailed"]).await?;
    let failed: Vec<&String> = events
        .iter()
        .filter(|(reason, _)| reason == "NotificationFailed")
        .map(|(_, note)| note)
        .collect();
    assert!(
        failed[0].starts_with(&format!(
            "the webhook notification Started ({V2} → {V4}) was not delivered in 5 attempts over 1"
        )) && failed[0].contains("s: connection refused. The upgrade is not affected. The URL is read from key url of Secret shop-webhook."),
        "{failed:?}"
    );
    assert_eq!(
        receiver.messages().len(),
        5,
        "nothing more reached the old receiver"
    );
    let (_, metrics) = s.operator.get("/metrics").await?;
    // Started was given up after 5 refused attempts; Succeeded may be on its way by now.
    assert!(
        metric(
            &metrics,
            "apprelease_notifications_total{outcome=\"failed\"}"
        ) >= 1
            && metric(
                &metrics,
                "apprelease_notification_attempts_total{result=\"connect\"}"
            ) >= 5,
        "{metrics}"
    );

    // The URL is nowhere but in the Secret: not in the Events, the status or the log.
    let status = serde_json::to_string(&inspect::release(&s.cluster, RELEASE).await?.status)?;
    let events = format!("{:?}", inspect::events(&s.cluster, RELEASE).await?);
    let log = s.operator.log_tail(usize::MAX);
    for (what, text) in [
        ("the Events", &events),
        ("the status", &status),
        ("the operator log", &log),
    ] {
        assert!(
            !text.contains(TOKEN),
            "the webhook URL is in {what}: {text}"
        );
    }
    assert!(
        log.contains("webhook notification delivered"),
        "the log says what it did"
    );
    assert_eq!(inspect::operator_requests_outside_rbac(&s.cluster)?, vec![]);
    Ok(())
}
