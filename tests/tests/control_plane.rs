//! The real control plane (testbed/build.sh, `apprelease_e2e::control_plane`) comes up and
//! behaves as a cluster: the right version, the controllers at work, RBAC enforced, every
//! request audited; and the shipped ClusterRole is what lets the operator work on it.
//!
//! These need the real server whatever the backend of the scenarios: they start it (the
//! first run builds Kubernetes from source via testbed/build.sh, about 13 minutes on two
//! cores; see testbed/README.md).

use std::time::{Duration, Instant};

use apprelease_e2e::cluster::{Backend, Cluster};
use apprelease_e2e::control_plane::ControlPlane;
use apprelease_e2e::fixtures::{self, Jobs, RELEASE, V1, V2};
use apprelease_e2e::testbed::{self, OPERATOR_NAMESPACE};
use apprelease_e2e::{Operator, inspect};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, ListParams, PostParams};

const NS: &str = "testbed-check";

#[tokio::test]
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

/// RBAC is really enforced on the operator: run as a ServiceAccount bound to the shipped
/// ClusterRole less one verb (`create` on Jobs), the operator cannot take the backup, the
/// upgrade never gets past it, and the audit log holds the 403 — what fails every scenario
/// on the control plane (`Scenario`'s drop check) when manifests/rbac.yaml lacks a verb.
#[tokio::test]
async fn one_verb_less_in_the_cluster_role_is_refused_and_caught() -> anyhow::Result<()> {
    const ACCOUNT: &str = "apprelease-operator-no-job-create";
    let testbed = testbed::shared()?;
    let cluster = Cluster::start_on("rbac-one-verb-less", Backend::ControlPlane).await?;
    let admin = cluster.client.clone();

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac.yaml");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(path)?)?;
    let mut role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .cloned()
        .expect("a ClusterRole in manifests/rbac.yaml");
    let mut removed = false;
    for rule in role["rules"].as_array_mut().expect("rules") {
        if rule["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "jobs"))
        {
            let verbs = rule["verbs"].as_array_mut().expect("verbs");
            let before = verbs.len();
            verbs.retain(|v| v != "create");
            removed = verbs.len() < before;
        }
    }
    assert!(
        removed,
        "the shipped ClusterRole lets the operator create Jobs"
    );
    role["metadata"] = serde_json::json!({"name": ACCOUNT});
    let role: ClusterRole = serde_json::from_value(role)?;
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await?;
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ACCOUNT, "namespace": OPERATOR_NAMESPACE}
    }))?;
    Api::<ServiceAccount>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &account)
        .await?;
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": OPERATOR_NAMESPACE}],
    }))?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    // The shipped leader election Role too: this is about the ClusterRole.
    let lease_role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("a Role in manifests/rbac.yaml");
    let lease_binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ACCOUNT, "namespace": OPERATOR_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease_role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": OPERATOR_NAMESPACE}],
    }))?;
    Api::<RoleBinding>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &lease_binding)
        .await?;
    let token = testbed::service_account_token(&admin, ACCOUNT).await?;
    let kubeconfig = cluster.dir.join("no-job-create.kubeconfig");
    testbed::write_token_kubeconfig(
        &kubeconfig,
        &testbed.server,
        &testbed.dir.join("ca.crt"),
        ACCOUNT,
        &token,
    )?;
    let mut cluster = cluster;
    cluster.operator_kubeconfig = kubeconfig;

    fixtures::deploy_app(&cluster).await?;
    let operator = Operator::start(&cluster)?;
    let release = fixtures::release(&cluster, RELEASE, V1, &Jobs::default());
    fixtures::apply(&cluster, &release).await?;
    // Adopting the running version needs no Job: that much works.
    apprelease_e2e::wait::until(Duration::from_secs(60), "adopted at V1", || async {
        inspect::status(&cluster, RELEASE)
            .await
            .current_version
            .as_deref()
            == Some(V1)
    })
    .await?;
    fixtures::set_version(&cluster, RELEASE, V2).await?;
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{ACCOUNT}");
    let refused = eventually(Duration::from_secs(60), "a 403 in the audit log", || {
        let found = testbed.forbidden(&user, Some(&cluster.namespace));
        async move { Ok((!found.is_empty()).then_some(found)) }
    })
    .await?;
    println!("refused: {refused:?}");
    // (A refused create has no name in the audit log: it is refused before the body is read.)
    assert!(
        refused
            .iter()
            .any(|(verb, resource, _, _)| verb == "create" && resource == "batch/jobs"),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = inspect::status(&cluster, RELEASE).await;
    assert_eq!(
        status.current_version.as_deref(),
        Some(V1),
        "{}",
        operator.log_tail(20)
    );
    assert_eq!(
        inspect::running_version(&cluster).await?.as_deref(),
        Some(V1)
    );
    assert!(inspect::jobs(&cluster).await?.is_empty());
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
