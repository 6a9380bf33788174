//! Namespaced mode on the real control plane: the operator started with `--namespace` and
//! only the Role of overlays/namespaced/ (no ClusterRole: the real server's RBAC refuses
//! anything outside the namespace) adopts and upgrades an AppRelease there, and the audit log
//! shows that it read and wrote nothing outside its namespace — no cluster-wide list or watch
//! — but its Lease in the operator's own namespace.
//! API discovery (non-resource URLs such as `/apis/apprelease.io/v1alpha1`) is all it asks
//! of the cluster as a whole.
//!
//! This needs the real server whatever the backend of the scenarios (the simulator enforces
//! no RBAC): it starts the shared testbed (testbed/build.sh, `apprelease_e2e::testbed`).

use std::time::{Duration, Instant};

use apprelease_e2e::cluster::{Backend, Cluster};
use apprelease_e2e::fixtures::{self, Jobs, RELEASE, V1, V2};
use apprelease_e2e::testbed::{self, NAMESPACED_USER};
use apprelease_e2e::{Operator, Scenario, inspect};

#[tokio::test]
async fn namespaced_operator_upgrades_with_only_a_role_and_reads_nothing_outside()
-> anyhow::Result<()> {
    let t0 = Instant::now();
    let testbed = testbed::shared()?;
    let mut cluster = Cluster::start_on("namespaced", Backend::ControlPlane).await?;
    testbed.use_namespaced_rbac(&mut cluster).await?;
    fixtures::deploy_app(&cluster).await?;
    let operator = Operator::start(&cluster)?;
    let s = Scenario { cluster, operator };

    s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_ready(RELEASE, V2).await?;
    let entry = &status.history[0];
    assert_eq!((entry.from.as_str(), entry.to.as_str()), (V1, V2));
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2)
    );

    // The harness's own checks of the grant run as the same user: only the operator's
    // requests (its User-Agent) count. The upgrade may take less than one renewal period
    // (5 s): wait for the first renewal of the Lease.
    let renewals = Instant::now() + Duration::from_secs(15);
    let requests: Vec<_> = loop {
        let requests: Vec<_> = testbed
            .requests_of(NAMESPACED_USER)
            .into_iter()
            .filter(|r| r.user_agent.starts_with("apprelease-operator/"))
            .collect();
        let renewed = requests
            .iter()
            .any(|r| r.resource == "leases" && r.verb == "update");
        if renewed || Instant::now() > renewals {
            break requests;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        requests
            .iter()
            .any(|r| r.verb == "watch" && r.resource == "appreleases"),
        "the operator's watches are in the audit log: {requests:?}"
    );
    // Its Lease is in the operator's own namespace, as the shipped RoleBinding grants.
    let lease = |r: &&apprelease_sim::requests::RequestRecord| {
        r.resource == "leases" && r.namespace == s.cluster.lease_namespace()
    };
    assert!(
        requests.iter().any(|r| lease(&r) && r.verb == "update"),
        "it holds its Lease: {requests:?}"
    );
    let outside: Vec<_> = requests
        .iter()
        .filter(|r| !r.resource.is_empty() && r.namespace != s.cluster.namespace && !lease(r))
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside {}: {outside:?}",
        s.cluster.namespace
    );
    let refused: Vec<_> = requests.iter().filter(|r| r.code == 403).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    println!(
        "{} requests of the namespaced operator, all in {}; {:.1} s",
        requests.len(),
        s.cluster.namespace,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
