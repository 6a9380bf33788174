//! Installing as the README says, with the real kubectl: `kubectl apply -f crds/` (the usual
//! habit for CRDs) and `kubectl apply -k manifests/` both succeed and leave the CRD and the
//! operator Deployment in the cluster.
//!
//! On the simulated cluster from nothing; on the control plane again over the installation
//! the testbed made the same way (applying twice is what every upgrade of the operator does).
//! Not on a cluster given by kubeconfig: it would install (and leave behind) a second operator
//! next to the scenarios' own, so there it fails saying so (skip it by name).

use apprelease_e2e::Cluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

#[tokio::test]
async fn kubectl_applies_the_crd_directory_and_the_kustomize_base() -> anyhow::Result<()> {
    let backend = apprelease_e2e::cluster::Backend::from_env()?;
    if let apprelease_e2e::cluster::Backend::Kubeconfig(_) = backend {
        anyhow::bail!(
            "not on a cluster given by kubeconfig: this installs a second operator there; skip it"
        );
    }
    let cluster = Cluster::start_bare("install").await?;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    if cluster.is_simulated() {
        assert!(crds.get_opt("appreleases.apprelease.io").await?.is_none());
    }

    let applied = cluster.run_kubectl(&["apply", "-f", "crds/"]).await?;
    assert!(
        applied.contains("customresourcedefinition.apiextensions.k8s.io/appreleases.apprelease.io"),
        "{applied}"
    );
    let crd = crds.get("appreleases.apprelease.io").await?;
    assert_eq!(crd.spec.names.kind, "AppRelease");

    let applied = cluster.run_kubectl(&["apply", "-k", "manifests/"]).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "apprelease-system");
    let operator = deployments.get("apprelease-operator").await?;
    let labels = operator.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/part-of").map(String::as_str),
        Some("apprelease"),
        "{applied}"
    );
    assert!(crds.get_opt("appreleases.apprelease.io").await?.is_some());

    // Server-side apply of the same directory works too (and takes over the CRD).
    cluster
        .run_kubectl(&["apply", "--server-side", "--force-conflicts", "-f", "crds/"])
        .await?;
    if cluster.testbed().is_some() {
        // The manifests ask for one replica; the scenarios' operator is the binary under test.
        cluster
            .run_kubectl(&[
                "scale",
                "deployment/apprelease-operator",
                "--namespace=apprelease-system",
                "--replicas=0",
            ])
            .await?;
    }
    Ok(())
}
