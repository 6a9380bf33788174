//! The real control plane (testbed/build.sh, `apprelease_e2e::control_plane`) comes up and
//! behaves as a cluster: the right version, the controllers at work, RBAC enforced, every
//! request audited.
//!
//! Ignored by default: the first run builds Kubernetes from source (see testbed/README.md).
//! Run it with `cargo test -p apprelease-e2e --test control_plane -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use apprelease_e2e::control_plane::ControlPlane;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};

const NS: &str = "testbed-check";

#[tokio::test]
#[ignore = "builds and runs the real control plane (testbed/build.sh)"]
async fn the_real_control_plane_runs_controllers_enforces_rbac_and_audits() -> anyhow::Result<()> {
    let plane = ControlPlane::start().await?;
    println!(
        "binaries in {} ({:.1} s to find or build); start to ready: {:.1} s",
        plane.bin.display(),
        plane.build_time.as_secs_f64(),
        plane.ready_time.as_secs_f64()
    );
    let client = plane.client().await?;

    let version = client.apiserver_version().await?;
    println!("server version {}", version.git_version);
    assert_eq!(version.major, "1");
    assert_eq!(version.minor, "37");
    assert!(version.git_version.starts_with("v1.37."), "{version:?}");

    // kubectl of the same build speaks to it with the admin kubeconfig.
    let kubectl = std::process::Command::new(plane.bin.join("kubectl"))
        .args(["--kubeconfig", &plane.kubeconfig.display().to_string()])
        .args(["get", "--raw", "/readyz"])
        .output()?;
    assert!(
        kubectl.status.success() && String::from_utf8_lossy(&kubectl.stdout).trim() == "ok",
        "kubectl: {}",
        String::from_utf8_lossy(&kubectl.stderr)
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NS },
            }))?,
        )
        .await?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "registry.example/web:1" }] },
            },
        },
    }))?;
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let uid = created.metadata.uid.clone().expect("a uid");

    // The deployment controller makes a ReplicaSet owned by it, the replicaset controller a
    // Pod owned by that (once the serviceaccount controller made the namespace's `default`).
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let rs = eventually(
        Duration::from_secs(30),
        "a ReplicaSet owned by the Deployment",
        || {
            let replicasets = replicasets.clone();
            let uid = uid.clone();
            async move {
                let list = replicasets.list(&ListParams::default()).await?;
                Ok(list.items.into_iter().find(|rs| {
                    rs.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid && o.controller == Some(true))
                }))
            }
        },
    )
    .await?;
    let rs_uid = rs.metadata.uid.clone().expect("a uid");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    eventually(
        Duration::from_secs(30),
        "a Pod owned by the ReplicaSet",
        || {
            let pods = pods.clone();
            let rs_uid = rs_uid.clone();
            async move {
                let list = pods.list(&ListParams::default()).await?;
                Ok(list.items.into_iter().find(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == rs_uid)
                }))
            }
        },
    )
    .await?;

    // RBAC: a user the CA vouches for, with no bindings, is authenticated and refused.
    let nobody = plane.client_for("testbed-nobody", &[]).await?;
    let refused = Api::<Deployment>::namespaced(nobody, NS)
        .list(&ListParams::default())
        .await;
    match refused {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            println!("RBAC: {}", status.message);
            assert!(status.message.contains("testbed-nobody"), "{status:?}");
        }
        other => panic!("expected 403 Forbidden for a user with no bindings, got {other:?}"),
    }

    // The audit log has the Deployment's create, at Metadata level, by admin.
    let event = eventually(
        Duration::from_secs(10),
        "the audit event of the create",
        || {
            let log = plane.audit_log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|e| {
                        e["verb"] == "create"
                            && e["stage"] == "ResponseComplete"
                            && e["objectRef"]["resource"] == "deployments"
                            && e["objectRef"]["namespace"] == NS
                    }))
            }
        },
    )
    .await?;
    println!("audit: {event}");
    assert_eq!(event["level"], "Metadata");
    assert_eq!(event["user"]["username"], "admin");
    assert_eq!(event["responseStatus"]["code"], 201);
    assert!(
        event.get("requestObject").is_none(),
        "Metadata level has no bodies"
    );
    Ok(())
}

/// Polls `check` until it returns `Some`, for up to `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        anyhow::ensure!(Instant::now() < deadline, "no {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
