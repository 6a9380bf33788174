//! What a user would look at: the AppRelease status, its Events, the Deployments' images,
//! the Jobs — and the requests made: the simulated cluster's request log, or the real
//! control plane's audit log (`Cluster::requests`).

use apprelease_operator::api::conditions::{self, Condition, ConditionStatus};
use apprelease_operator::api::{AppRelease, AppReleaseStatus};
use apprelease_sim::requests::RequestRecord;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

use crate::Cluster;

/// The AppRelease as stored.
pub async fn release(cluster: &Cluster, name: &str) -> anyhow::Result<AppRelease> {
    Ok(
        Api::<AppRelease>::namespaced(cluster.client.clone(), &cluster.namespace)
            .get(name)
            .await?,
    )
}

/// Its status (empty before the operator wrote one).
pub async fn status(cluster: &Cluster, name: &str) -> AppReleaseStatus {
    release(cluster, name)
        .await
        .ok()
        .and_then(|r| r.status)
        .unwrap_or_default()
}

/// A condition of the status.
pub fn condition(status: &AppReleaseStatus, type_: &str) -> Option<Condition> {
    conditions::get(&status.conditions, type_).cloned()
}

/// `(status, reason)` of Ready, if set.
pub fn ready(status: &AppReleaseStatus) -> Option<(ConditionStatus, String)> {
    condition(status, conditions::READY).map(|c| (c.status, c.reason))
}

/// Whether the condition is True.
pub fn is_true(status: &AppReleaseStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

/// The spec of the scenario's Lease (leader election), if it exists yet.
pub async fn lease(cluster: &Cluster) -> anyhow::Result<Option<LeaseSpec>> {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), &cluster.lease_namespace());
    let lease = api.get_opt(&crate::operator::lease_name(cluster)).await?;
    Ok(lease.map(|l| l.spec.unwrap_or_default()))
}

/// Who holds the scenario's Lease ("" when released, None before it exists).
pub async fn lease_holder(cluster: &Cluster) -> anyhow::Result<Option<String>> {
    Ok(lease(cluster)
        .await?
        .map(|spec| spec.holder_identity.unwrap_or_default()))
}

/// The image of one container of a Deployment.
pub async fn image(cluster: &Cluster, deployment: &str, container: &str) -> anyhow::Result<String> {
    let d = Api::<Deployment>::namespaced(cluster.client.clone(), &cluster.namespace)
        .get(deployment)
        .await?;
    let pod = d.spec.and_then(|s| s.template.spec).unwrap_or_default();
    let c = pod.containers.into_iter().find(|c| c.name == container);
    Ok(c.and_then(|c| c.image).unwrap_or_default())
}

/// The tag every target container runs, or None when they differ.
pub async fn running_version(cluster: &Cluster) -> anyhow::Result<Option<String>> {
    let backend = image(cluster, "backend", "backend").await?;
    let frontend = image(cluster, "frontend", "frontend").await?;
    let tag = |i: &str| i.rsplit_once(':').map(|(_, t)| t.to_string());
    Ok(if tag(&backend) == tag(&frontend) {
        tag(&backend)
    } else {
        None
    })
}

/// `(reason, note)` of the Events about the AppRelease, oldest first.
pub async fn events(cluster: &Cluster, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let list = Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await?;
    let mut events: Vec<_> = list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(events
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

/// `(reason, note, occurrences)` of the Events about the AppRelease, oldest first: an Event
/// repeated as a series counts `series.count` times.
pub async fn event_counts(
    cluster: &Cluster,
    name: &str,
) -> anyhow::Result<Vec<(String, String, i32)>> {
    let list = Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await?;
    let mut events: Vec<_> = list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(events
        .into_iter()
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                count,
            )
        })
        .collect())
}

/// Names of the Jobs in the namespace.
pub async fn jobs(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let list = Api::<Job>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect())
}

/// Requests that changed Deployments, StatefulSets, Jobs or pods, by anyone, in the
/// namespace (empty on a cluster given by kubeconfig: no request log):
/// `(verb, resource, name)`.
pub fn workload_writes(
    cluster: &Cluster,
    user_agent_contains: &str,
) -> Vec<(String, String, String)> {
    let Some(log) = cluster.requests() else {
        return Vec::new();
    };
    log.into_iter()
        .filter(|r| r.namespace == cluster.namespace && r.user_agent.contains(user_agent_contains))
        .filter(|r| ["create", "update", "patch", "delete"].contains(&r.verb.as_str()))
        .filter(|r| {
            ["deployments", "statefulsets", "jobs", "pods"]
                .iter()
                .any(|kind| r.resource.starts_with(kind))
        })
        .map(|r| (r.verb, r.resource, r.name))
        .collect()
}

/// How many create requests for this Job took effect (201), from the request log.
pub fn job_creates(cluster: &Cluster, job: &str) -> usize {
    let Some(log) = cluster.requests() else {
        return 0;
    };
    creates_in(&log, cluster, job)
}

fn creates_in(log: &[RequestRecord], cluster: &Cluster, job: &str) -> usize {
    log.iter()
        .filter(|r| r.verb == "create" && r.resource == "jobs" && r.namespace == cluster.namespace)
        .filter(|r| r.name == job && r.code == 201)
        .count()
}

/// Every Job ran at most once (one pod attempt each) and, where there is a request log, was
/// created by exactly one create request that took effect (a create refused by an injected
/// fault, or answered 409, created nothing). Returns how many Jobs there are.
pub async fn each_job_ran_once(cluster: &Cluster) -> anyhow::Result<usize> {
    let list = Api::<Job>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await?;
    // Read once: the control plane's audit log is large.
    let log = cluster.requests();
    for job in &list.items {
        let status = job.status.clone().unwrap_or_default();
        let runs = status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0);
        anyhow::ensure!(runs <= 1, "Job {:?} ran {runs} times", job.metadata.name);
        if let Some(log) = &log {
            let name = job.metadata.name.clone().unwrap_or_default();
            let creates = creates_in(log, cluster, &name);
            // The Job exists, so it was created at least once. A real server may record a
            // create whose client was SIGKILLed mid-request without the 201 (the handler's
            // context is cancelled while the write still lands), so there "once" is "no
            // second create took effect"; the simulator always answers, so there it is exact.
            if cluster.is_simulated() {
                anyhow::ensure!(creates == 1, "Job {name} was created {creates} times");
            } else {
                anyhow::ensure!(creates <= 1, "Job {name} was created {creates} times");
            }
        }
    }
    Ok(list.items.len())
}

/// Every (verb, API group, resource) the operator requested that the shipped RBAC
/// (`manifests/rbac.yaml`: the ClusterRole, and in the operator's namespace the leader
/// election Role) does not allow — empty when the manifests grant what the operator needs.
/// On the simulated cluster, its request log is checked against the rules of the file; on the
/// real control plane the server enforced them, and this is what it refused (403) in the
/// scenario's namespace and in the operator's. A cluster given by kubeconfig has neither (the
/// operator runs as that kubeconfig's user): it says so and checks nothing.
pub fn operator_requests_outside_rbac(
    cluster: &Cluster,
) -> anyhow::Result<Vec<(String, String, String)>> {
    if let Some(testbed) = cluster.testbed() {
        let made = cluster.requests().unwrap_or_default();
        anyhow::ensure!(
            made.iter()
                .any(|r| r.user_agent.contains("apprelease-operator")),
            "the audit log holds no request of the operator"
        );
        let user = crate::testbed::OPERATOR_USER;
        let mut refused: Vec<_> = testbed
            .forbidden(user, Some(&cluster.namespace))
            .into_iter()
            .chain(testbed.forbidden(user, Some(crate::testbed::OPERATOR_NAMESPACE)))
            .map(|(verb, resource, _, _)| {
                let (group, resource) = resource.split_once('/').unwrap_or(("", &resource));
                (verb, group.to_string(), resource.to_string())
            })
            .collect();
        refused.sort();
        refused.dedup();
        return Ok(refused);
    }
    let Some(sim) = cluster.sim() else {
        eprintln!("RBAC not checked: no request log on a cluster given by kubeconfig");
        return Ok(Vec::new());
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac.yaml");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(path)?)?;
    let rules_of = |kind: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        let role = docs
            .iter()
            .find(|d| d["kind"] == kind)
            .ok_or_else(|| anyhow::anyhow!("no {kind}"))?;
        Ok(role["rules"].as_array().cloned().unwrap_or_default())
    };
    let (cluster_rules, own_namespace_rules) = (rules_of("ClusterRole")?, rules_of("Role")?);
    let has = |list: &serde_json::Value, item: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == item || v == "*"))
    };
    let made: Vec<_> = sim
        .requests()
        .recent()
        .into_iter()
        .filter(|r| r.user_agent.contains("apprelease-operator"))
        .collect();
    anyhow::ensure!(
        !made.is_empty(),
        "the request log holds no request of the operator"
    );
    let mut outside: Vec<(String, String, String)> = made
        .into_iter()
        .filter(|r| {
            // kustomize puts the Role in the operator's namespace.
            let role =
                (r.namespace == crate::testbed::OPERATOR_NAMESPACE).then_some(&own_namespace_rules);
            !cluster_rules
                .iter()
                .chain(role.into_iter().flatten())
                .any(|rule| {
                    has(&rule["apiGroups"], &r.group)
                        && has(&rule["resources"], &r.resource)
                        && has(&rule["verbs"], &r.verb)
                })
        })
        .map(|r| (r.verb, r.group, r.resource))
        .collect();
    outside.sort();
    outside.dedup();
    Ok(outside)
}
