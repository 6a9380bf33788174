//! Telemetry and safe status writes end to end: what `/metrics` says after an upgrade, that no
//! secret value reaches the logs, Events, statuses or metrics, and that a status write decided
//! from a copy someone else changed meanwhile is refused by the API server and retried
//! without a second Job.

use std::time::{Duration, Instant};

use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, Outcome, RELEASE, V1, V2};
use apprelease_e2e::proxy::{self, Proxy};
use apprelease_e2e::webhook::Receiver;
use apprelease_e2e::{Cluster, Operator, Options, Scenario, inspect, scrape};
use apprelease_operator::api::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

/// Scrapes `/metrics` until `ready` holds for its text (the gauges read the operator's cache,
/// which follows its own last write a moment later), up to `PATIENCE`.
async fn metrics_once(s: &Scenario, ready: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let deadline = Instant::now() + apprelease_e2e::scenario::PATIENCE;
    loop {
        let (code, text) = s.operator.get("/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        if ready(&text) {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("/metrics never got there:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn in_flight(text: &str, kind: &str) -> Option<f64> {
    scrape::value(text, "apprelease_in_flight", &[("kind", kind)])
}

/// Samples of the step histogram, by step.
fn step_counts(text: &str) -> Vec<(String, f64)> {
    scrape::series(text, "apprelease_step_duration_seconds_count")
        .into_iter()
        .map(|(labels, value)| (labels["step"].clone(), value))
        .collect()
}

#[tokio::test]
async fn t01_metrics_count_one_upgrade_its_steps_and_its_backup() -> anyhow::Result<()> {
    let s = Scenario::start("metrics").await?;
    s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;
    // Settled: nothing in flight, and nothing woken is left waiting for its reconcile.
    let text = metrics_once(&s, |t| {
        in_flight(t, "upgrade") == Some(0.0)
            && scrape::value(t, "apprelease_work_queue_depth", &[]) == Some(0.0)
    })
    .await?;
    assert_eq!(
        scrape::value(&text, "apprelease_leader", &[]),
        Some(1.0),
        "the only replica leads"
    );

    let upgrades = scrape::series(&text, "apprelease_upgrades_total");
    assert_eq!(upgrades.len(), 1, "one upgrade, counted once: {upgrades:?}");
    assert_eq!(
        scrape::value(
            &text,
            "apprelease_upgrades_total",
            &[("result", "succeeded"), ("reason", "Succeeded")]
        ),
        Some(1.0)
    );
    // Each step left once, the rollout once per target (backend, frontend); every sample
    // fell in some bucket.
    let mut steps = step_counts(&text);
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        steps,
        [
            ("BackingUp".to_string(), 1.0),
            ("Migrating".to_string(), 1.0),
            ("RollingOut".to_string(), 2.0),
            ("Verifying".to_string(), 1.0),
        ]
    );
    for (step, count) in &steps {
        let inf = scrape::value(
            &text,
            "apprelease_step_duration_seconds_bucket",
            &[("step", step), ("le", "+Inf")],
        );
        assert_eq!(inf, Some(*count), "{step}");
    }
    for (result, count) in [("succeeded", 1.0), ("failed", 0.0)] {
        let value = scrape::value(&text, "apprelease_backups_total", &[("result", result)]);
        assert_eq!(value, Some(count), "backups {result}");
    }
    for kind in ["upgrade", "backup", "restore"] {
        assert_eq!(in_flight(&text, kind), Some(0.0), "{kind} in flight");
    }
    assert_eq!(
        scrape::value(
            &text,
            "apprelease_releases",
            &[("status", "True"), ("reason", "Succeeded")]
        ),
        Some(1.0)
    );
    assert!(scrape::series(&text, "apprelease_stalled_since_timestamp_seconds").is_empty());
    let ok = scrape::value(
        &text,
        "apprelease_reconciliations_total",
        &[("result", "ok")],
    );
    assert!(ok.is_some_and(|n| n >= 5.0), "{ok:?}");
    // Each line says which release, namespace, versions and step it is about.
    let log = s.operator.log();
    let done = log
        .lines()
        .find(|l| l.contains("step done") && l.contains("left=BackingUp"))
        .unwrap_or_else(|| panic!("no step done line for BackingUp in\n{log}"));
    let ns = &s.cluster.namespace;
    for field in [
        format!("release={RELEASE}"),
        format!("namespace={ns}"),
        format!("from={V1}"),
        format!("to={V2}"),
        "step=Migrating".to_string(),
    ] {
        assert!(done.contains(&field), "{field} in {done}");
    }
    Ok(())
}

/// A password of the preset's connection Secret, and the token in the webhook URL: neither
/// may show anywhere but in their Secrets (and the webhook requests).
const PASSWORD: &str = "pg-Pa55w0rd-e2e-91c7";
const TOKEN: &str = "e2e-T0KEN-telemetry-5e2a";

async fn put_secret(cluster: &Cluster, name: &str, data: &[(&str, &str)]) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// The claim the preset writes its backups to. On the control plane it is bound to a
/// hostPath volume of its own, or the Job's pod would never be scheduled; the simulator
/// schedules it anyway.
async fn backup_claim(cluster: &Cluster) -> anyhow::Result<String> {
    let name = "shop-backups";
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if cluster.testbed().is_some() {
        let volume = format!("{}-backups", cluster.namespace);
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": volume},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "", "hostPath": {"path": format!("/tmp/{volume}")},
                     "claimRef": {"namespace": cluster.namespace, "name": name}}
        }))?;
        Api::<PersistentVolume>::all(cluster.client.clone())
            .create(&PostParams::default(), &pv)
            .await?;
        spec["storageClassName"] = "".into();
        spec["volumeName"] = volume.into();
    }
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &pvc)
        .await?;
    Ok(name.into())
}

/// Waits until the on-demand backup `name` is over, and returns its phase.
async fn backup_request_over(s: &Scenario, name: &str) -> anyhow::Result<RequestPhase> {
    let api: Api<AppReleaseBackup> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let deadline = Instant::now() + apprelease_e2e::scenario::PATIENCE;
    while Instant::now() < deadline {
        let phase = api.get(name).await?.status.and_then(|st| st.phase);
        if let Some(phase) = phase.filter(|p| p.is_final()) {
            return Ok(phase);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the backup request {name} did not end")
}

fn base64(text: &str) -> String {
    // Only to look for a Secret's value as the API server stores it (`data`).
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[tokio::test]
async fn t02_no_secret_value_reaches_logs_events_statuses_or_metrics() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let cluster = Cluster::start("secrets").await?;
    fixtures::deploy_app(&cluster).await?;
    // Debug lines of the operator's own crate too: none of them may carry a secret either.
    let operator = Operator::start_with(
        &cluster,
        Options {
            log_filter: Some("info,apprelease_operator=debug,kube=warn".into()),
            ..Options::default()
        },
    )?;
    let s = Scenario { cluster, operator };
    let url = receiver.url(&format!("/hooks/{TOKEN}"));
    put_secret(&s.cluster, "shop-webhook", &[("url", &url)]).await?;
    let db = [
        ("PGHOST", "db.example.internal"),
        ("PGUSER", "shop"),
        ("PGPASSWORD", PASSWORD),
        ("PGDATABASE", "shop"),
    ];
    put_secret(&s.cluster, "shop-db", &db).await?;
    let claim = backup_claim(&s.cluster).await?;

    // The preset's Job ends without the report it must write, on every backend (KWOK is told
    // nothing about it): a failed backup, with the connection Secret in use.
    let jobs = Jobs {
        backup: Outcome::Succeed { report: None },
        ..Jobs::default()
    };
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &jobs);
    release.spec.notifications = Some(NotificationsSpec {
        webhook: WebhookSpec {
            url_secret_ref: SecretKeyRef {
                name: "shop-webhook".into(),
                key: "url".into(),
            },
        },
    });
    let backup = release.spec.backup.as_mut().unwrap();
    backup.template = None;
    backup.preset = Some(BackupPreset::Postgres(DatabasePreset {
        connection_secret: "shop-db".into(),
        storage: BackupStorage { pvc: claim },
        image: None,
        security_context: None,
    }));
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "BackupFailed").await?;
    assert_eq!(status.history[0].result, UpgradeResult::Aborted);
    let preset_job: Job = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .get("shop-backup-1")
        .await?;
    let env_from = serde_json::to_value(
        &preset_job.spec.unwrap().template.spec.unwrap().containers[0].env_from,
    )?;
    assert_eq!(
        env_from[0]["secretRef"]["name"], "shop-db",
        "the Secret is used by name"
    );

    // A backup that reports: the upgrade succeeds; then a version that never becomes ready
    // is rolled back; then a backup on request.
    let report = Outcome::Succeed {
        report: Some(fixtures::backup_report()),
    };
    s.cluster.script_jobs(RELEASE, "backup", &report);
    let template = fixtures::job_template(&report, Some("busybox:1.36"));
    let change = json!({"spec": {"version": V2, "backup": {"preset": null, "template": template}}});
    Api::<AppRelease>::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .patch(RELEASE, &PatchParams::default(), &Patch::Merge(change))
        .await?;
    s.wait_ready(RELEASE, V2).await?;
    fixtures::set_version(&s.cluster, RELEASE, BAD_VERSION).await?;
    s.wait_settled(RELEASE, "RolledBack").await?;
    let requests: Api<AppReleaseBackup> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let mut request = AppReleaseBackup::new(
        "now",
        AppReleaseBackupSpec {
            release: RELEASE.into(),
        },
    );
    request.metadata.namespace = Some(s.cluster.namespace.clone());
    requests.create(&PostParams::default(), &request).await?;
    assert_eq!(
        backup_request_over(&s, "now").await?,
        RequestPhase::Succeeded
    );
    // Started and Failed (the backup), Started and Succeeded, Started, Failed and RolledBack:
    // the webhook's Secret was read for each.
    let messages = receiver.wait_for(7, Duration::from_secs(30)).await?;
    assert!(messages.iter().all(|m| m.path == format!("/hooks/{TOKEN}")));

    let text = metrics_once(&s, |t| in_flight(t, "backup") == Some(0.0)).await?;
    for (labels, count) in [
        (&[("result", "aborted"), ("reason", "BackupFailed")], 1.0),
        (&[("result", "succeeded"), ("reason", "Succeeded")], 1.0),
        (
            &[("result", "rolled_back"), ("reason", "RolloutFailed")],
            1.0,
        ),
    ] {
        let value = scrape::value(&text, "apprelease_upgrades_total", labels);
        assert_eq!(value, Some(count), "{labels:?}\n{text}");
    }
    // The preset's, then the two upgrades' and the request's.
    for (result, count) in [("failed", 1.0), ("succeeded", 3.0)] {
        let value = scrape::value(&text, "apprelease_backups_total", &[("result", result)]);
        assert_eq!(value, Some(count), "backups {result}");
    }

    let ns = &s.cluster.namespace;
    let client = &s.cluster.client;
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let release = inspect::release(&s.cluster, RELEASE).await?;
    let requests = requests.list(&ListParams::default()).await?;
    let jobs = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    anyhow::ensure!(
        events.items.len() >= 10,
        "too few Events to tell: {}",
        events.items.len()
    );
    let places = [
        ("the operator's log", s.operator.log()),
        ("the Events", serde_json::to_string(&events.items)?),
        ("the AppRelease", serde_json::to_string(&release)?),
        (
            "the backup requests",
            serde_json::to_string(&requests.items)?,
        ),
        ("the Jobs", serde_json::to_string(&jobs.items)?),
        ("/metrics", text),
    ];
    for secret in [PASSWORD, TOKEN, &base64(PASSWORD), &base64(&url)] {
        for (place, text) in &places {
            assert!(!text.contains(secret), "{secret} is in {place}:\n{text}");
        }
    }
    Ok(())
}

/// Names the test's own write to the AppRelease apart from the operator's.
const BUMPED: &str = "e2e.apprelease.io/bumped";

#[tokio::test]
async fn t03_a_status_write_from_a_changed_copy_is_refused_and_retried_without_a_second_job()
-> anyhow::Result<()> {
    let cluster = Cluster::start("stale").await?;
    fixtures::deploy_app(&cluster).await?;
    let proxy = Proxy::start(&cluster).await?;
    let operator = Operator::start_with(
        &cluster,
        Options {
            kubeconfig: Some(proxy.kubeconfig.clone()),
            ..Options::default()
        },
    )?;
    let s = Scenario { cluster, operator };
    s.adopt(&Jobs::default()).await?;

    // The operator reads the AppRelease with the new version, decides to start the upgrade
    // and writes the status that records it: that write is held while the test changes a
    // label, so the AppRelease it was decided from is no longer the stored one.
    let held = proxy.hold_next("PATCH", &format!("/appreleases/{RELEASE}/status"));
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let held = proxy::arrival(held, apprelease_e2e::scenario::PATIENCE).await?;
    assert_eq!(held.body[0]["op"], "test");
    assert_eq!(held.body[0]["path"], "/metadata/resourceVersion");
    assert_eq!(held.body[1]["value"]["upgrade"]["step"], "BackingUp");
    let decided_from = held.body[0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let releases: Api<AppRelease> = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let bumped = releases
        .patch(
            RELEASE,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {BUMPED: "yes"}}})),
        )
        .await?;
    assert_ne!(
        bumped.metadata.resource_version.as_deref(),
        Some(decided_from.as_str())
    );
    held.release();

    s.wait_ready(RELEASE, V2).await?;
    let status = inspect::status(&s.cluster, RELEASE).await;
    assert_eq!(status.history.len(), 1);
    assert_eq!(
        status.history[0].attempt, 1,
        "the refused start took no attempt"
    );
    assert_eq!(inspect::each_job_ran_once(&s.cluster).await?, 3);
    for job in ["shop-backup-1", "shop-migrate-1", "shop-verify-1"] {
        assert_eq!(inspect::job_creates(&s.cluster, job), 1, "{job}");
    }

    // The request log (the simulator's, or the real server's audit log): the refused write,
    // then the one that went through, before any Job was created.
    let log = s.cluster.requests().expect("a request log on this backend");
    let operator: Vec<_> = log
        .iter()
        .filter(|r| r.user_agent.contains("apprelease-operator") && r.name == RELEASE)
        .filter(|r| r.verb == "patch" && r.resource == "appreleases/status")
        .map(|r| r.code)
        .collect();
    // A failed test operation is 422; 409 would be a resourceVersion conflict.
    let conflict = |code: u16| code == 422 || code == 409;
    let refused = operator
        .iter()
        .position(|c| conflict(*c))
        .expect("a refused status write");
    let retried = operator[refused..].iter().find(|c| !conflict(**c));
    assert_eq!(retried, Some(&200), "the retry went through: {operator:?}");
    let first_create = log
        .iter()
        .position(|r| {
            r.verb == "create" && r.resource == "jobs" && r.namespace == s.cluster.namespace
        })
        .expect("a Job was created");
    let refused_at = log
        .iter()
        .position(|r| r.resource == "appreleases/status" && conflict(r.code))
        .unwrap();
    assert!(
        refused_at < first_create,
        "nothing was created from the stale decision"
    );

    let text = metrics_once(&s, |t| in_flight(t, "upgrade") == Some(0.0)).await?;
    let stale = scrape::value(
        &text,
        "apprelease_reconcile_errors_total",
        &[("error", "stale")],
    );
    assert!(stale.is_some_and(|n| n >= 1.0), "{text}");
    let upgrades = scrape::series(&text, "apprelease_upgrades_total");
    assert_eq!(upgrades.len(), 1, "{upgrades:?}");
    assert_eq!(
        scrape::value(
            &text,
            "apprelease_upgrades_total",
            &[("result", "succeeded"), ("reason", "Succeeded")]
        ),
        Some(1.0),
        "the upgrade was counted once"
    );
    assert_eq!(inspect::operator_requests_outside_rbac(&s.cluster)?, vec![]);
    Ok(())
}
