//! Shared test helpers: a simulator with a kube client, and the test CRD.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use apprelease_sim::{Sim, SimConfig, SimHandle};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// Starts a simulator (time sped up `scale` times) and a kube client using its kubeconfig.
pub async fn start(scale: f64) -> (SimHandle, kube::Client) {
    let sim = Sim::start(SimConfig {
        time_scale: scale,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let client = client_for(&sim).await;
    (sim, client)
}

/// A kube client configured from the simulator's kubeconfig, as the operator would be.
pub async fn client_for(sim: &SimHandle) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(&sim.kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    kube::Client::try_from(config).expect("client builds")
}

/// A small CRD (`widgets.example.com`) with a status subresource, printer columns and
/// conditions, standing in for the operator's own.
pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget",
                      "shortNames": ["wd"], "categories": ["examples"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Message", "type": "string", "priority": 1,
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].message"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer"}, "color": {"type": "string"}}},
                    "status": {"type": "object", "properties": {
                        "observedGeneration": {"type": "integer"},
                        "conditions": {"type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["type"],
                            "items": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": true}}}}}}}
            }]
        }
    })
}

/// The test CRD as YAML, for kubectl.
pub fn widget_crd_yaml() -> String {
    serde_json::to_string_pretty(&widget_crd()).expect("serializes")
}

/// A Deployment with the given containers (name, image).
pub fn deployment(name: &str, replicas: i32, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({"name": n, "image": i}))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": containers}}
        }
    })
}

/// Polls `get` until `done` holds for the object, failing the test after 30 s.
pub async fn wait_for<K, F>(api: &kube::Api<K>, name: &str, what: &str, done: F) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let last = api.get_opt(name).await.expect("get works");
        if let Some(obj) = &last
            && done(obj)
        {
            return obj.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {name}: {what}; last seen: {last:#?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A Job whose single container runs `image`.
pub fn job(name: &str, image: &str, labels: Value, backoff_limit: i32) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "main", "image": image}]}}
        }
    })
}
