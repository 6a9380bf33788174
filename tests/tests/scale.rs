//! Scenario 10: a hundred AppReleases upgraded at once all converge.

use apprelease_e2e::fixtures::{self, Jobs, REPOSITORY, V1, V2};
use apprelease_e2e::{Scenario, inspect};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

#[tokio::test]
async fn s10_a_hundred_releases_upgrade_at_once() -> anyhow::Result<()> {
    let s = Scenario::start("scale").await?;
    let deployments: Api<Deployment> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let names: Vec<String> = (0..100).map(|i| format!("app-{i:03}")).collect();
    for name in &names {
        fixtures::deploy_single_app(&s.cluster, name, V1, &Jobs::default(), |_| {}).await?;
    }
    for name in &names {
        s.wait_ready(name, V1).await?;
    }
    for name in &names {
        fixtures::set_version(&s.cluster, name, V2).await?;
    }
    for name in &names {
        let status = s.wait_ready(name, V2).await?;
        assert_eq!(status.backups.len(), 1, "{name}");
    }
    for name in &names {
        let d = deployments.get(name).await?;
        assert_eq!(
            d.spec.unwrap().template.spec.unwrap().containers[0]
                .image
                .as_deref(),
            Some(format!("{REPOSITORY}:{V2}").as_str())
        );
    }
    assert_eq!(inspect::each_job_ran_once(&s.cluster).await?, 100);
    // Reconciles read their snapshots from the watch caches: what the operator read of
    // workloads, Jobs and pods is its watches' own lists, and now and then the pods of a
    // backup Job that finished before their watch showed it (operator/src/k8s/observe.rs),
    // not two or three reads for every reconcile of every release as when it read fresh.
    let reads: Vec<_> = s
        .cluster
        .requests()
        .expect("a request log on both backends")
        .into_iter()
        .filter(|r| r.user_agent.contains("apprelease-operator"))
        .filter(|r| matches!(r.verb.as_str(), "get" | "list"))
        .filter(|r| ["deployments", "jobs", "pods"].contains(&r.resource.as_str()))
        .map(|r| (r.verb, r.resource, r.name))
        .collect();
    assert!(
        !reads
            .iter()
            .any(|(verb, resource, _)| verb == "get" && resource == "deployments"),
        "{reads:?}"
    );
    assert!(reads.len() < 25, "{} reads: {reads:?}", reads.len());
    Ok(())
}
