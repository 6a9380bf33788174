//! Request-level tests of the I/O layer: a mock API server behind a real `kube::Client`
//! checks each request the executor sends, in order, and answers it.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use crate::api::{AppRelease, Step, TargetKind};
use crate::k8s::{Error, Executor, Reporter};
use crate::plan::fixtures::*;
use crate::plan::{Action, Decision, decide};

/// One request as the server saw it.
struct Seen {
    method: String,
    uri: String,
    content_type: String,
    body: Value,
}

struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

impl ApiServer {
    fn start() -> (Client, Self) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), Self { handle })
    }

    /// Waits for the next request, answers it with `status` and `body`, and returns it.
    async fn answer(&mut self, status: u16, body: Value) -> Seen {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
                .await
                .expect("a request within 5s")
                .expect("the client is alive");
        let (parts, body_in) = request.into_parts();
        let bytes = body_in.collect_bytes().await.unwrap();
        let seen = Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            content_type: parts
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            },
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        respond.send_response(response);
        seen
    }

    /// Asserts that no further request arrives.
    async fn expect_silence(&mut self) {
        // Ok(None) means the client is gone: nothing more can come.
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await
        {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

fn status_error(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

/// A decision that only carries `actions`, with the release's status unchanged.
fn only(release: &mut AppRelease, actions: Vec<Action>) -> Decision {
    release.status = Some(Default::default());
    Decision {
        status: Default::default(),
        actions,
        notes: vec![],
        milestones: vec![],
        requests: vec![],
        requeue_after: Duration::from_secs(30),
        finalizer: false,
        telemetry: Default::default(),
    }
}

/// Asserts that `seen` adds the operator's finalizer and changes nothing else of the
/// AppRelease (invariant 4: never its spec).
fn assert_finalizer_added(seen: &Seen) {
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.uri,
        "/apis/apprelease.io/v1alpha1/namespaces/meet/appreleases/meet?&fieldManager=apprelease-operator"
    );
    assert_eq!(seen.content_type, "application/json-patch+json");
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["apprelease.io/upgrade-in-flight"]}
        ])
    );
}

/// What the API server returns for a status write: the object.
fn stored(release: &AppRelease) -> Value {
    serde_json::to_value(release).unwrap()
}

async fn run(client: Client, release: AppRelease, decision: Decision) -> Result<(), Error> {
    let reporter = Reporter::new(client.clone());
    Executor {
        client: &client,
        events: &reporter,
        notifier: None,
        metrics: None,
        expectations: None,
    }
    .execute(&release, &decision)
    .await
}

#[tokio::test]
async fn image_change_is_a_forced_apply_of_only_the_images() {
    let (client, mut server) = ApiServer::start();
    let mut release = release("2.0");
    let decision = only(
        &mut release,
        vec![Action::SetImages {
            kind: TargetKind::Deployment,
            deployment: "backend".into(),
            images: vec![("backend".into(), "ghcr.io/meet/backend:2.0".into())],
        }],
    );
    let task = tokio::spawn(run(client, release, decision));
    let seen = server
        .answer(
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend"}}),
        )
        .await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.uri,
        "/apis/apps/v1/namespaces/meet/deployments/backend?&force=true&fieldManager=apprelease-operator"
    );
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(
        seen.body,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend"},
               "spec": {"template": {"spec": {"containers": [{"name": "backend", "image": "ghcr.io/meet/backend:2.0"}]}}}})
    );
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_statefulset_gets_the_same_partial_apply_and_scale_under_the_same_manager() {
    let (client, mut server) = ApiServer::start();
    let mut release = release("2.0");
    let decision = only(
        &mut release,
        vec![
            Action::SetImages {
                kind: TargetKind::StatefulSet,
                deployment: "worker".into(),
                images: vec![("worker".into(), "ghcr.io/meet/worker:2.0".into())],
            },
            Action::Scale {
                kind: TargetKind::StatefulSet,
                deployment: "worker".into(),
                replicas: 3,
            },
        ],
    );
    let task = tokio::spawn(run(client, release, decision));
    let seen = server
        .answer(
            200,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "worker"}}),
        )
        .await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.uri,
        "/apis/apps/v1/namespaces/meet/statefulsets/worker?&force=true&fieldManager=apprelease-operator"
    );
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(
        seen.body,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "worker"},
               "spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "ghcr.io/meet/worker:2.0"}]}}}})
    );
    let seen = server.answer(200, json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "worker"}, "spec": {"replicas": 3}})).await;
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/meet/statefulsets/worker/scale?&fieldManager=apprelease-operator"
        )
    );
    assert_eq!(seen.body, json!({"spec": {"replicas": 3}}));
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stuck_pod_is_deleted_only_if_it_is_still_the_pod_seen() {
    for (code, ok) in [(200, true), (404, true), (409, true), (403, false)] {
        let (client, mut server) = ApiServer::start();
        let mut release = release("2.0");
        let decision = only(
            &mut release,
            vec![Action::DeletePod {
                pod: "worker-2".into(),
                uid: "uid-w2".into(),
            }],
        );
        let task = tokio::spawn(run(client, release, decision));
        let answer = if code == 200 {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker-2"}})
        } else {
            status_error(code, "x")
        };
        let seen = server.answer(code, answer).await;
        assert_eq!(seen.method, "DELETE");
        assert_eq!(seen.uri, "/api/v1/namespaces/meet/pods/worker-2?");
        assert_eq!(seen.body["preconditions"], json!({"uid": "uid-w2"}));
        assert_eq!(task.await.unwrap().is_ok(), ok, "answer {code}");
    }
}

#[tokio::test]
async fn a_rollback_applies_the_recorded_previous_images() {
    // Drive the planner to the revert: 3.0 never becomes ready.
    let mut world = World::new(release("3.0"), cluster("1.0"));
    world.faults.bad_tags.push("3.0".into());
    world.step();
    world.settle_deployments();
    let decision = world.step();
    assert_eq!(
        world.status().upgrade.as_ref().unwrap().step,
        Step::RollingBack
    );
    let release = world.release.clone();
    let mut previous = release.clone();
    previous.status = world.log[world.log.len() - 2].status.clone().into();
    assert!(
        crate::k8s::act::has_finalizer(&previous),
        "held since the upgrade started"
    );
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, previous, decision));
    let status = server.answer(200, stored(&release)).await;
    assert!(
        status
            .uri
            .ends_with("/appreleases/meet/status?&fieldManager=apprelease-operator")
    );
    assert_eq!(status.body[0]["value"]["upgrade"]["step"], "RollingBack");
    // Events for the failure and the step change.
    let mut seen = server.answer(201, json!({})).await;
    while seen.uri.contains("/events") {
        seen = server.answer(201, json!({})).await;
    }
    assert_eq!(seen.method, "PATCH");
    assert!(
        seen.uri
            .starts_with("/apis/apps/v1/namespaces/meet/deployments/backend?")
    );
    assert_eq!(
        seen.body["spec"]["template"]["spec"]["containers"],
        json!([{"name": "backend", "image": "ghcr.io/meet/backend:1.0"}])
    );
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_finalizer_then_the_status_go_in_before_any_action() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    let decision = world.step();
    let mut release = full("2.0");
    release.metadata.resource_version = Some("7".into());
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release.clone(), decision));
    let mut with_finalizer = release.clone();
    with_finalizer.metadata.resource_version = Some("8".into());
    let finalizer = server.answer(200, stored(&with_finalizer)).await;
    assert_finalizer_added(&finalizer);
    let status = server.answer(200, stored(&with_finalizer)).await;
    assert_eq!(status.method, "PATCH");
    assert_eq!(
        status.uri,
        "/apis/apprelease.io/v1alpha1/namespaces/meet/appreleases/meet/status?&fieldManager=apprelease-operator"
    );
    assert_eq!(status.content_type, "application/json-patch+json");
    // On the condition that the AppRelease is the one decided from (as the finalizer patch
    // left it), one operation replaces the whole status and touches nothing else (never spec).
    let ops = status.body.as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": "8"})
    );
    assert_eq!(
        (ops[1]["op"].as_str(), ops[1]["path"].as_str()),
        (Some("add"), Some("/status"))
    );
    assert_eq!(ops[1]["value"]["upgrade"]["step"], "BackingUp");
    assert_eq!(ops[1]["value"]["observedGeneration"], 1);
    let event = server.answer(201, json!({})).await;
    assert_eq!(
        (event.method.as_str(), event.uri.as_str()),
        ("POST", "/apis/events.k8s.io/v1/namespaces/meet/events?")
    );
    assert_eq!(event.body["reason"], "UpgradeStarted");
    let create = server.answer(201, json!({})).await;
    assert_eq!(
        (create.method.as_str(), create.uri.as_str()),
        (
            "POST",
            "/apis/batch/v1/namespaces/meet/jobs?&fieldManager=apprelease-operator"
        )
    );
    assert_eq!(create.body["metadata"]["name"], "meet-backup-1");
    assert_eq!(create.body["spec"]["backoffLimit"], 0);
    assert_eq!(
        create.body["metadata"]["ownerReferences"][0]["uid"],
        "uid-meet"
    );
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_finalizer_or_status_write_stops_before_any_action() {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    let decision = world.step();
    let mut release = full("2.0");
    release.metadata.resource_version = Some("7".into());
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release.clone(), decision.clone()));
    // The AppRelease changed since it was read: the patch's test fails, and the stored one
    // has no finalizer either.
    server.answer(422, status_error(422, "Invalid")).await;
    let get = server.answer(200, stored(&release)).await;
    assert_eq!(
        (get.method.as_str(), get.uri.as_str()),
        (
            "GET",
            "/apis/apprelease.io/v1alpha1/namespaces/meet/appreleases/meet"
        )
    );
    server.expect_silence().await;
    assert!(matches!(task.await.unwrap(), Err(Error::Finalizer(_))));

    // The status write meets a newer AppRelease: its test fails (422), or the server reports
    // a conflict (409): stale, nothing done.
    for code in [422, 409] {
        let (client, mut server) = ApiServer::start();
        let task = tokio::spawn(run(client, release.clone(), decision.clone()));
        server.answer(200, stored(&release)).await;
        server.answer(code, status_error(code, "Invalid")).await;
        server.expect_silence().await;
        assert!(
            matches!(task.await.unwrap(), Err(Error::Stale(_))),
            "{code}"
        );
    }

    // Any other refusal of the status write stops everything too.
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release.clone(), decision));
    server.answer(200, stored(&release)).await;
    server.answer(500, status_error(500, "InternalError")).await;
    server.expect_silence().await;
    assert!(matches!(task.await.unwrap(), Err(Error::WriteStatus(_))));
}

#[tokio::test]
async fn an_unchanged_status_is_not_written() {
    let mut world = World::new(release("1.0"), cluster("1.0"));
    world.step();
    let decision = decide(&world.release, &world.cluster);
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, world.release.clone(), decision));
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

fn backup_request_decision() -> (AppRelease, Decision) {
    let mut world = World::new(full("2.0"), cluster("1.0"));
    world.step();
    let release = world.release.clone();
    let decision = decide(&release, &{
        let mut c = world.cluster.clone();
        c.jobs.clear();
        c
    });
    assert!(matches!(decision.actions[..], [Action::CreateJob(_)]));
    assert_eq!(
        Some(&decision.status),
        release.status.as_ref(),
        "only the create is left to do"
    );
    (release, decision)
}

#[tokio::test]
async fn an_existing_job_of_ours_is_adopted() {
    let (release, decision) = backup_request_decision();
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release, decision));
    let create = server.answer(409, status_error(409, "AlreadyExists")).await;
    assert_eq!(create.method, "POST");
    let get = server
        .answer(200, json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "meet-backup-1", "ownerReferences": [{"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "name": "meet", "uid": "uid-meet"}]}}))
        .await;
    assert_eq!(
        (get.method.as_str(), get.uri.as_str()),
        ("GET", "/apis/batch/v1/namespaces/meet/jobs/meet-backup-1")
    );
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_foreign_job_of_the_same_name_is_not_adopted() {
    let (release, decision) = backup_request_decision();
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release, decision));
    server.answer(409, status_error(409, "AlreadyExists")).await;
    server
        .answer(200, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "meet-backup-1", "ownerReferences": []}}))
        .await;
    assert!(matches!(task.await.unwrap(), Err(Error::ForeignJob { .. })));
}

#[tokio::test]
async fn scaling_goes_through_the_scale_subresource() {
    let mut release = release("2.0");
    let decision = only(
        &mut release,
        vec![Action::Scale {
            kind: TargetKind::Deployment,
            deployment: "frontend".into(),
            replicas: 0,
        }],
    );
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release, decision));
    let seen = server.answer(200, json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "frontend"}, "spec": {"replicas": 0}})).await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.uri,
        "/apis/apps/v1/namespaces/meet/deployments/frontend/scale?&fieldManager=apprelease-operator"
    );
    assert_eq!(seen.content_type, "application/merge-patch+json");
    assert_eq!(seen.body, json!({"spec": {"replicas": 0}}));
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_finalizer_comes_off_last_when_the_upgrade_is_over() {
    let mut world = World::new(release("2.0"), cluster("1.0"));
    let (held, decision) = loop {
        let held = world.release.clone();
        let decision = world.step();
        world.settle_deployments();
        if world.status().upgrade.is_none() {
            break (held, decision);
        }
    };
    assert!(crate::k8s::act::has_finalizer(&held) && !decision.finalizer);
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, held.clone(), decision));
    let mut seen = server.answer(200, stored(&held)).await;
    assert!(seen.uri.contains("/appreleases/meet/status?"));
    // Events first (a publish error is only logged), then the finalizer patch; both are
    // answered with the stored object.
    seen = server.answer(200, stored(&held)).await;
    while seen.uri.contains("/events") {
        seen = server.answer(200, stored(&held)).await;
    }
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.uri,
        "/apis/apprelease.io/v1alpha1/namespaces/meet/appreleases/meet?&fieldManager=apprelease-operator"
    );
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "apprelease.io/upgrade-in-flight"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_finalizer_already_gone_from_the_stored_release_is_not_an_error() {
    // The cache still showed the finalizer after it was removed: the removal's test fails,
    // the stored release has none, and the decision goes on.
    let mut held = release("1.0");
    held.metadata.finalizers = Some(vec![crate::api::FINALIZER.into()]);
    let mut decision = only(&mut held, vec![]);
    decision.finalizer = false;
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, held.clone(), decision));
    server.answer(422, status_error(422, "Invalid")).await;
    let mut stored_release = held.clone();
    stored_release.metadata.finalizers = None;
    server.answer(200, stored(&stored_release)).await;
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_decision_from_a_copy_older_than_its_own_finalizer_does_not_act() {
    // The cache shows the release from before this operator's own finalizer patch and
    // status write: the finalizer is found already there, and the status write, tested
    // against the version decided from, is refused; no Event, no Job.
    let mut world = World::new(full("2.0"), cluster("1.0"));
    let decision = world.step();
    let mut stale = full("2.0");
    stale.metadata.resource_version = Some("7".into());
    let mut stored_release = world.release.clone();
    stored_release.metadata.resource_version = Some("9".into());
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, stale, decision));
    server.answer(422, status_error(422, "Invalid")).await;
    server.answer(200, stored(&stored_release)).await;
    let status = server.answer(422, status_error(422, "Invalid")).await;
    assert_eq!(
        status.body[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"})
    );
    server.expect_silence().await;
    assert!(matches!(task.await.unwrap(), Err(Error::Stale(_))));
}

#[tokio::test]
async fn a_decision_that_acts_without_a_new_status_is_conditioned_on_its_version() {
    // Only the create is left to do, so the status is not written; the decision still runs
    // only if the AppRelease is the version it was decided from.
    let (mut release, decision) = backup_request_decision();
    release.metadata.resource_version = Some("7".into());
    for code in [422, 409] {
        let (client, mut server) = ApiServer::start();
        let task = tokio::spawn(run(client, release.clone(), decision.clone()));
        let seen = server.answer(code, status_error(code, "Invalid")).await;
        assert_eq!(
            (seen.method.as_str(), seen.content_type.as_str()),
            ("PATCH", "application/json-patch+json")
        );
        assert!(
            seen.uri.contains("/appreleases/meet/status?"),
            "{}",
            seen.uri
        );
        assert_eq!(
            seen.body,
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "7"}]),
            "a test that changes nothing"
        );
        server.expect_silence().await;
        assert!(
            matches!(task.await.unwrap(), Err(Error::Stale(_))),
            "{code}"
        );
    }
    let (client, mut server) = ApiServer::start();
    let task = tokio::spawn(run(client, release.clone(), decision));
    server.answer(200, stored(&release)).await;
    let create = server.answer(201, json!({})).await;
    assert_eq!(
        (
            create.method.as_str(),
            create.body["metadata"]["name"].as_str()
        ),
        ("POST", Some("meet-backup-1"))
    );
    server.expect_silence().await;
    task.await.unwrap().unwrap();
}
