//! The `apprelease-sim serve` binary as a separate process: kubeconfig, `--fault`, the
//! `/sim/...` control endpoints, API faults, request counters, and SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn sim_request(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn serve_writes_a_kubeconfig_takes_faults_counts_requests_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("apprelease-sim-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_apprelease-sim"))
        .args(["serve", "--port", "0", "--time-scale", "50", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--fault",
            r#"{"kind":"job","match":{"name":"fail-*"},"result":{"type":"fail","exitCode":2}}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .expect("the server announces itself")
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with("apprelease-sim listening on http://127.0.0.1:"),
        "{line}"
    );

    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    // An API fault scripted over HTTP: the next create of a ConfigMap fails with 500
    // (not 503: kube retries 429/503/504 by itself).
    let fault = json!({"kind": "api", "verbs": ["create"], "resources": ["configmaps"],
                       "effect": {"type": "error", "code": 500}, "count": 1});
    let faults = sim_request(&client, "POST", "/sim/faults", Some(fault)).await;
    assert_eq!(faults["api"].as_array().unwrap().len(), 1);
    assert_eq!(
        faults["jobs"].as_array().unwrap().len(),
        1,
        "the --fault flag is in force"
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    match cms.create(&PostParams::default(), &cm).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (500, "InternalError")),
        other => panic!("expected a Status, got {other:?}"),
    }
    cms.create(&PostParams::default(), &cm).await.unwrap();

    // The Job rule from the command line.
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job = json!({"metadata": {"name": "fail-1"}, "spec": {"backoffLimit": 0, "template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}});
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job).unwrap(),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let j = jobs.get("fail-1").await.unwrap();
        if j.status.and_then(|s| s.failed) == Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Job fails as scripted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let requests = sim_request(&client, "GET", "/sim/requests", None).await;
    let count = |verb: &str, resource: &str| {
        requests["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["verb"] == verb && c["resource"] == resource)
            .map(|c| c["count"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(count("create", "configmaps"), 2);
    assert_eq!(count("create", "jobs"), 1);
    let cm_creates: Vec<u64> = requests["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"] == "create" && r["resource"] == "configmaps")
        .map(|r| r["code"].as_u64().unwrap())
        .collect();
    assert_eq!(
        cm_creates,
        [500, 201],
        "the log tells failed requests from effective ones"
    );
    let job_counts = requests["counts"].as_array().unwrap();
    assert!(
        job_counts
            .iter()
            .any(|c| c["verb"] == "create" && c["group"] == "batch" && c["resource"] == "jobs"),
        "counts name the API group, as RBAC rules do"
    );
    assert!(count("get", "jobs") >= 1);

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
