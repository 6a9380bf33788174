//! The simulator through the real kube client: CRUD, errors, selectors, paging, status
//! subresource, generation, server-side apply and the runtime watcher across a 410.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::watcher;
use serde_json::json;

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                                  "data": {"k": "v"}}))
    .unwrap()
}

fn api_status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_errors_selectors_and_paging() {
    let (_sim, client) = common::start(1.0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(
            &PostParams::default(),
            &config_map("a", json!({"tier": "web"})),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    cms.create(
        &PostParams::default(),
        &config_map("b", json!({"tier": "db"})),
    )
    .await
    .unwrap();
    cms.create(
        &PostParams::default(),
        &config_map("c", json!({"tier": "web"})),
    )
    .await
    .unwrap();

    let dup = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_status(dup), (409, "AlreadyExists".into()));
    assert_eq!(
        api_status(cms.get("nope").await.unwrap_err()),
        (404, "NotFound".into())
    );

    // A stale resourceVersion loses against a newer write.
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    cms.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let conflict = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_status(conflict), (409, "Conflict".into()));

    let web = cms
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    let names: Vec<_> = web
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);

    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("c"));

    cms.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_status(cms.get("b").await.unwrap_err()).0, 404);

    let other_ns: Api<ConfigMap> = Api::namespaced(client, "missing");
    let err = other_ns
        .create(&PostParams::default(), &config_map("x", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_status(err).0, 404);
}

async fn install_widgets(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(common::widget_crd()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = kube::runtime::wait::await_condition(
        crds,
        "widgets.example.com",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

#[tokio::test]
async fn custom_resources_have_generation_and_a_separate_status() {
    let (_sim, client) = common::start(1.0).await;
    let widgets = install_widgets(&client).await;
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 1},
        "status": {"ignored": true}}))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is not set on create"
    );

    let status = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "status": {"conditions": [{"type": "Ready", "status": "True", "message": "ok"}]}});
    let pp = PatchParams::apply("widget-controller").force();
    let after_status = widgets
        .patch_status("w1", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    assert_eq!(
        after_status.data["status"]["conditions"][0]["status"],
        "True"
    );

    let spec = json!({"spec": {"size": 2}});
    let after_spec = widgets
        .patch("w1", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(
        after_spec.data["status"]["conditions"][0]["message"], "ok",
        "spec writes keep status"
    );

    // The main resource ignores status changes.
    let sneaky = json!({"status": {"conditions": []}});
    let kept = widgets
        .patch("w1", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .unwrap();
    assert_eq!(kept.data["status"]["conditions"][0]["type"], "Ready");

    // The CRD schema is enforced: wrong types are 422, unknown fields are pruned.
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": "big"}}))
    .unwrap();
    let err = widgets
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    assert_eq!(api_status(err), (422, "Invalid".into()));
    let extra: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w3"}, "spec": {"size": 1, "bogus": true}}))
    .unwrap();
    let pruned = widgets
        .create(&PostParams::default(), &extra)
        .await
        .unwrap();
    assert_eq!(pruned.data["spec"], json!({"size": 1}));

    let smp = widgets
        .patch("w1", &PatchParams::default(), &Patch::Strategic(&spec))
        .await
        .unwrap_err();
    assert_eq!(api_status(smp).0, 415);
}

#[tokio::test]
async fn server_side_apply_touches_only_the_applied_image() {
    let (_sim, client) = common::start(1.0).await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(common::deployment(
        "web",
        3,
        &[("app", "app:1"), ("side", "side:1")],
    ))
    .unwrap();
    deploys
        .create(
            &PostParams {
                field_manager: Some("gitops".into()),
                ..Default::default()
            },
            &d,
        )
        .await
        .unwrap();

    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    let err = deploys
        .patch(
            "web",
            &PatchParams::apply("apprelease-operator"),
            &Patch::Apply(&body),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected a Status")
    };
    assert_eq!(status.code, 409);
    assert!(status.message.contains("gitops"), "{}", status.message);

    let applied = deploys
        .patch(
            "web",
            &PatchParams::apply("apprelease-operator").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    let spec = applied.spec.unwrap();
    let containers = spec.template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));
    assert_eq!(containers[1].image.as_deref(), Some("side:1"));
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(applied.metadata.generation, Some(2));
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| format!("{}:{}", m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(managers, ["gitops:Update", "apprelease-operator:Apply"]);

    // Re-applying the same image is a no-op for the generation.
    let again = deploys
        .patch(
            "web",
            &PatchParams::apply("apprelease-operator").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.generation, Some(2));
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let (sim, client) = common::start(1.0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &config_map("first", json!({})))
        .await
        .unwrap();

    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    // Drain the initial list.
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::InitDone => break,
            _ => continue,
        }
    }
    // Drop the watch and forget history, then change things while the watcher is away:
    // its resumed watch gets 410 Gone and it must relist to see "second".
    sim.add_fault(apprelease_sim::Fault::Api(apprelease_sim::ApiFault {
        verbs: vec!["watch".into()],
        resources: vec!["configmaps".into()],
        effect: apprelease_sim::ApiEffect::DropWatch { after_millis: 0 },
        rate: 1.0,
        count: Some(1),
    }));
    sim.compact();
    cms.create(&PostParams::default(), &config_map("second", json!({})))
        .await
        .unwrap();
    sim.compact();

    let mut saw_gone = false;
    let mut relisted_second = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(saw_gone && relisted_second) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Err(watcher::Error::WatchError(s)))) if s.code == 410 => saw_gone = true,
            Ok(Some(Ok(watcher::Event::InitApply(cm))))
                if cm.metadata.name.as_deref() == Some("second") =>
            {
                relisted_second = true;
            }
            Ok(Some(Ok(watcher::Event::Apply(cm))))
                if cm.metadata.name.as_deref() == Some("second") =>
            {
                relisted_second = true;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(saw_gone, "the resumed watch was answered with 410 Gone");
    assert!(
        relisted_second,
        "the watcher saw the object created while it was away"
    );
    assert!(
        sim.requests().count("list", "configmaps") >= 2,
        "it relisted"
    );
}

#[tokio::test]
async fn events_from_kube_runtime_are_visible_as_core_events() {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
    use kube::runtime::events::{Event, EventType, Recorder};

    let (sim, client) = common::start(1.0).await;
    let recorder = Recorder::new(client.clone(), "apprelease-operator".into());
    let target = ObjectReference {
        api_version: Some("example.com/v1".into()),
        kind: Some("Widget".into()),
        name: Some("w1".into()),
        namespace: Some("default".into()),
        uid: Some("1234".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "BackupSucceeded".into(),
        note: Some("backup w1-1 taken".into()),
        action: "Backup".into(),
        secondary: None,
    };
    recorder.publish(&event, &target).await.unwrap();
    recorder.publish(&event, &target).await.unwrap();
    assert_eq!(sim.requests().count("create", "events"), 1);
    assert_eq!(
        sim.requests().count("patch", "events"),
        1,
        "a repeat is a series patch"
    );

    // What `kubectl describe` reads: core/v1 Events selected by the involved object.
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let selected = core
        .list(&ListParams::default().fields("involvedObject.name=w1,involvedObject.kind=Widget"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    let e = &selected.items[0];
    assert_eq!(e.message.as_deref(), Some("backup w1-1 taken"));
    assert_eq!(e.reason.as_deref(), Some("BackupSucceeded"));
    assert_eq!(e.count, Some(2));
}

#[tokio::test]
async fn streaming_list_watch_and_selector_transitions() {
    let (_sim, client) = common::start(1.0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["s1", "s2"] {
        cms.create(
            &PostParams::default(),
            &config_map(name, json!({"pick": "yes"})),
        )
        .await
        .unwrap();
    }
    // kube's opt-in streaming list (sendInitialEvents) ends its initial events with a bookmark.
    let cfg = watcher::Config::default()
        .streaming_lists()
        .labels("pick=yes");
    let mut events = watcher(cms.clone(), cfg).boxed();
    let mut initial = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.try_next());
        match next.await.unwrap().unwrap().unwrap() {
            watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["s1", "s2"]);

    // Leaving the selection is a deletion for this watch.
    let unpick = json!({"metadata": {"labels": {"pick": "no"}}});
    cms.patch("s1", &PatchParams::default(), &Patch::Merge(&unpick))
        .await
        .unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.try_next());
        if let watcher::Event::Delete(cm) = next.await.unwrap().unwrap().unwrap() {
            assert_eq!(cm.metadata.name.as_deref(), Some("s1"));
            break;
        }
    }
}

#[tokio::test]
async fn leases_round_trip_micro_times() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (_sim, client) = common::start(1.0).await;
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                 "renewTime": "2026-01-01T00:00:00.123456Z"}}))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &taken)
        .await
        .unwrap();
    // A second holder working from the old version loses.
    let mut late = created;
    late.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = leases
        .replace("leader", &PostParams::default(), &late)
        .await
        .unwrap_err();
    assert_eq!(api_status(err).0, 409);
    let now = leases.get("leader").await.unwrap().spec.unwrap();
    assert_eq!(now.holder_identity.as_deref(), Some("b"));
    assert!(now.renew_time.is_some());
}

#[tokio::test]
async fn metadata_only_reads_and_watches() {
    let (_sim, client) = common::start(1.0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &config_map("m1", json!({"a": "b"})))
        .await
        .unwrap();
    let meta = cms.get_metadata("m1").await.unwrap();
    assert_eq!(meta.metadata.labels.unwrap()["a"], "b");
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(client, "default");
    let mut events = watcher(metas, watcher::Config::default()).boxed();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.try_next());
        if let watcher::Event::InitApply(m) = next.await.unwrap().unwrap().unwrap() {
            assert_eq!(m.metadata.name.as_deref(), Some("m1"));
            break;
        }
    }
}

#[tokio::test]
async fn a_scripted_410_makes_the_watcher_relist() {
    let (sim, client) = common::start(1.0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    sim.add_fault(apprelease_sim::Fault::Api(apprelease_sim::ApiFault {
        verbs: vec!["watch".into()],
        resources: vec!["configmaps".into()],
        effect: apprelease_sim::ApiEffect::Gone,
        rate: 1.0,
        count: Some(1),
    }));
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut saw_gone = false;
    let mut inits = 0;
    while inits < 2 {
        let next = tokio::time::timeout(Duration::from_secs(10), events.next());
        match next.await.expect("the watcher keeps going").unwrap() {
            Err(watcher::Error::WatchError(s)) if s.code == 410 => saw_gone = true,
            Ok(watcher::Event::InitDone) => inits += 1,
            _ => {}
        }
    }
    assert!(saw_gone);
    assert_eq!(sim.requests().count("list", "configmaps"), 2);
}

#[tokio::test]
async fn the_request_log_names_created_objects_and_their_outcome() {
    let (sim, client) = common::start(1.0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &config_map("logged", json!({})))
        .await
        .unwrap();
    let again = cms
        .create(&PostParams::default(), &config_map("logged", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_status(again).0, 409);
    let creates: Vec<(String, u16)> = sim
        .requests()
        .recent()
        .into_iter()
        .filter(|r| r.verb == "create" && r.resource == "configmaps")
        .map(|r| (r.name, r.code))
        .collect();
    assert_eq!(
        creates,
        [("logged".to_string(), 201), ("logged".to_string(), 409)]
    );
}

/// As kube-apiserver v1.37: a create prunes a field the schema does not declare, a
/// server-side apply refuses the whole request (500, "field not declared in schema").
#[tokio::test]
async fn an_apply_with_an_undeclared_field_is_refused_where_a_create_prunes_it() {
    let (_sim, client) = common::start(1.0).await;
    let widgets = install_widgets(&client).await;
    let created = widgets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "pruned"}, "spec": {"size": 1, "shape": "round"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"], json!({"size": 1}));

    let applied = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "applied"}, "spec": {"size": 2, "shape": "square"}});
    for _ in ["create", "update"] {
        let err = widgets
            .patch(
                "applied",
                &PatchParams::apply("someone"),
                &Patch::Apply(&applied),
            )
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("expected a Status, got {err:?}")
        };
        assert_eq!(
            (status.code, status.reason.as_str()),
            (500, "InternalError")
        );
        assert!(
            status
                .message
                .contains(".spec.shape: field not declared in schema"),
            "{}",
            status.message
        );
        // The second round applies over an existing object.
        widgets
            .patch(
                "applied",
                &PatchParams::apply("someone"),
                &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                    "metadata": {"name": "applied"}, "spec": {"size": 2}})),
            )
            .await
            .unwrap();
    }
}
