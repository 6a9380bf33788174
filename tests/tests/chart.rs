//! The Helm chart installed and upgraded by the real helm (`APPRELEASE_HELM_BIN`, from
//! `testbed/build.sh --helm`) on a real control plane of its own: the CRDs from the chart's
//! crds/ become established, the objects exist with Helm's labels, and an upgrade changes
//! them — the log format, then one watched namespace instead of the whole cluster (a Role
//! there; the ClusterRole removed). Two replicas by default: a PDB and the Lease's Role.
//!
//! Objects, not behaviour: nothing runs the operator's pod here (no kubelet; the image is not
//! pulled), so its Deployment is checked as the API server stores it. What the operator does
//! under the same RBAC is what the other scenarios and tests/tests/namespaced.rs show.
//!
//! This needs the real server whatever the backend of the scenarios; its own, so that the
//! chart's cluster-wide objects never meet the scenarios' installation of manifests/.

use std::time::Instant;

use apprelease_e2e::control_plane::ControlPlane;
use apprelease_e2e::helm::{self, Helm};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};

const RELEASE: &str = "apprelease-operator";
const NAMESPACE: &str = "apprelease-system";
const CHART: &str = "charts/apprelease-operator";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Helm's labels and annotations on an object of the release.
fn assert_helm_owns(meta: &ObjectMeta, what: &str) {
    let label = |name: &str| meta.labels.as_ref().and_then(|l| l.get(name)).cloned();
    let chart = format!("apprelease-operator-{VERSION}");
    for (name, value) in [
        ("app.kubernetes.io/managed-by", "Helm"),
        ("app.kubernetes.io/instance", RELEASE),
        ("app.kubernetes.io/name", "apprelease-operator"),
        ("app.kubernetes.io/part-of", "apprelease"),
        ("app.kubernetes.io/version", VERSION),
        ("helm.sh/chart", chart.as_str()),
    ] {
        assert_eq!(label(name).as_deref(), Some(value), "{what}: label {name}");
    }
    let annotation = |name: &str| meta.annotations.as_ref().and_then(|a| a.get(name)).cloned();
    assert_eq!(
        annotation("meta.helm.sh/release-name").as_deref(),
        Some(RELEASE),
        "{what}"
    );
    assert_eq!(
        annotation("meta.helm.sh/release-namespace").as_deref(),
        Some(NAMESPACE),
        "{what}"
    );
}

fn operator_args(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn helm_installs_and_upgrades_the_chart_on_the_control_plane() -> anyhow::Result<()> {
    // Before starting anything: without helm, say how to get it.
    let bin = helm::binary()?;
    let plane = ControlPlane::start().await?;
    let helm = Helm::new(bin, &plane.kubeconfig, &plane.dir);
    let client = plane.client().await?;

    let t0 = Instant::now();
    helm.run(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
    ])
    .await?;
    let installed = t0.elapsed();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "appreleases.apprelease.io",
        "appreleasebackups.apprelease.io",
        "appreleaserestores.apprelease.io",
    ] {
        let established = crds
            .get(name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is established");
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment = deployments.get(RELEASE).await?;
    assert_helm_owns(&deployment.metadata, "Deployment");
    let args = operator_args(&deployment);
    assert_eq!(
        args,
        [
            "run",
            "--log-format",
            "json",
            "--metrics-addr",
            "0.0.0.0:8080",
            "--lease-name=apprelease-operator"
        ]
    );
    let image = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref()?.containers[0].image.clone());
    assert_eq!(
        image.as_deref(),
        Some(format!("ghcr.io/apprelease/apprelease-operator:{VERSION}").as_str())
    );
    let account = Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE)
        .get(RELEASE)
        .await?;
    assert_helm_owns(&account.metadata, "ServiceAccount");
    let service = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get("apprelease-operator-metrics")
        .await?;
    assert_helm_owns(&service.metadata, "Service");
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    assert_helm_owns(&cluster_roles.get(RELEASE).await?.metadata, "ClusterRole");
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = cluster_bindings.get(RELEASE).await?;
    assert_helm_owns(&binding.metadata, "ClusterRoleBinding");
    assert_eq!(binding.subjects.unwrap_or_default()[0].name, RELEASE);
    // Two replicas, one writer: the Lease's Role in the release's namespace, and a PDB.
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let lease_role = Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .get("apprelease-operator-leader-election")
        .await?;
    assert_helm_owns(&lease_role.metadata, "the Lease's Role");
    let lease_rule = &lease_role.rules.unwrap_or_default()[0];
    assert_eq!(
        lease_rule.resources.as_deref(),
        Some(&["leases".to_string()][..])
    );
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), NAMESPACE)
        .get(RELEASE)
        .await?;
    assert_helm_owns(&pdb.metadata, "PodDisruptionBudget");

    // An upgrade that changes one value: the Deployment follows.
    let t0 = Instant::now();
    helm.run(&[
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--set",
        "logFormat=text",
    ])
    .await?;
    let upgraded = t0.elapsed();
    let deployment = deployments.get(RELEASE).await?;
    assert_eq!(
        operator_args(&deployment),
        [
            "run",
            "--log-format",
            "text",
            "--metrics-addr",
            "0.0.0.0:8080",
            "--lease-name=apprelease-operator"
        ]
    );
    assert_eq!(deployment.metadata.generation, Some(2));
    assert_helm_owns(&deployment.metadata, "Deployment after the upgrade");

    // One namespace: a Role and RoleBinding there, the cluster-wide ones gone.
    let apps: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "apps"}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &apps)
        .await?;
    helm.run(&[
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--reuse-values",
        "--set",
        "watchNamespace=apps",
    ])
    .await?;
    let role = Api::<Role>::namespaced(client.clone(), "apps")
        .get(RELEASE)
        .await?;
    assert_helm_owns(&role.metadata, "Role");
    let binding = Api::<RoleBinding>::namespaced(client.clone(), "apps")
        .get(RELEASE)
        .await?;
    assert_helm_owns(&binding.metadata, "RoleBinding");
    assert_eq!(binding.role_ref.kind, "Role");
    let subject = &binding.subjects.unwrap_or_default()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (RELEASE, Some(NAMESPACE))
    );
    assert!(cluster_roles.get_opt(RELEASE).await?.is_none());
    assert!(cluster_bindings.get_opt(RELEASE).await?.is_none());
    let args = operator_args(&deployments.get(RELEASE).await?);
    assert!(
        args.iter().any(|a| a == "--namespace=apps") && args.iter().any(|a| a == "text"),
        "{args:?}"
    );
    let releases: serde_json::Value = serde_json::from_str(
        &helm
            .run(&["list", "--namespace", NAMESPACE, "-o", "json"])
            .await?,
    )?;
    assert_eq!(releases[0]["revision"], "3", "{releases}");
    assert_eq!(releases[0]["status"], "deployed", "{releases}");
    // The CRDs stay: Helm never deletes what crds/ installed.
    assert!(crds.get_opt("appreleases.apprelease.io").await?.is_some());
    println!(
        "helm install {:.1} s, upgrade {:.1} s",
        installed.as_secs_f64(),
        upgraded.as_secs_f64()
    );
    Ok(())
}
