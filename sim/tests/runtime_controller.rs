//! A kube-runtime `Controller` (the machinery the operator is built on) against the
//! simulator: it reconciles custom resources, owns children, writes status through the
//! status subresource, and its children are garbage-collected with their owner.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

struct Ctx {
    client: kube::Client,
    ar: ApiResource,
}

async fn reconcile(w: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let ns = w.namespace().unwrap_or_default();
    let size = w.data["spec"]["size"].as_i64().unwrap_or(0);
    let owner = w
        .controller_owner_ref(&ctx.ar)
        .expect("stored objects have a uid");
    let child = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{}-child", w.name_any()), "ownerReferences": [owner]},
        "data": {"size": size.to_string()}});
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    cms.patch(
        &format!("{}-child", w.name_any()),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(&child),
    )
    .await?;
    let widgets: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ctx.ar);
    let status = json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {
        "observedGeneration": w.meta().generation,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Sized",
                        "message": format!("size {size}")}]}});
    widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<DynamicObject>, _: &kube::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn a_runtime_controller_reconciles_owns_and_writes_status() {
    let (sim, client) = common::start(1.0).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::from_value(common::widget_crd()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        ar: ar.clone(),
    });
    let controller = Controller::new_with(widgets.clone(), watcher::Config::default(), ar.clone())
        .owns(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1",
        "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 2}}))
    .unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();
    let ready = common::wait_for(&widgets, "w1", "status written", |w| {
        w.data["status"]["conditions"][0]["message"] == "size 2"
    })
    .await;
    assert_eq!(ready.metadata.generation, Some(1));
    assert_eq!(ready.data["status"]["observedGeneration"], 1);

    // A spec change is seen and reconciled; the status write does not loop.
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    common::wait_for(&cms, "w1-child", "child updated", |cm| {
        cm.data.as_ref().is_some_and(|d| d["size"] == "5")
    })
    .await;
    common::wait_for(&widgets, "w1", "status follows", |w| {
        w.data["status"]["observedGeneration"] == 2
    })
    .await;
    let patches_before = sim.requests().count("patch", "widgets/status");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let patches_after = sim.requests().count("patch", "widgets/status");
    assert!(
        patches_after - patches_before <= 1,
        "an unchanged status does not wake the controller forever"
    );

    // Deleting the owner collects the child.
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cms.get_opt("w1-child").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child is garbage-collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.abort();
}
