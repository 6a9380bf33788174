//! Manual approval end to end: the upgrade to a new version waits until a human runs the
//! command Ready names; an approval of another version approves nothing.

use std::time::Duration;

use apprelease_e2e::fixtures::{self, Jobs, RELEASE, REPOSITORY, V1, V2, V4};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::conditions::{ConditionStatus, READY};
use apprelease_operator::api::{APPROVE_ANNOTATION, Approval, UpgradeResult};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn an_upgrade_waits_for_approval_of_its_version_then_runs() -> anyhow::Result<()> {
    let s = Scenario::start("approval").await?;
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &Jobs::default());
    release.spec.approval = Approval::Manual;
    fixtures::apply(&s.cluster, &release).await?;
    // A release that runs its version needs no approval.
    s.wait_ready(RELEASE, V1).await?;

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "AwaitingApproval").await?;
    let ready = inspect::condition(&status, READY).unwrap();
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(inspect::jobs(&s.cluster).await?.is_empty(), "no Job ran");
    assert_eq!(
        inspect::image(&s.cluster, "backend", "backend").await?,
        format!("{REPOSITORY}:{V1}")
    );

    // Approving another version changes nothing.
    let releases = Api::<apprelease_operator::api::AppRelease>::namespaced(
        s.cluster.client.clone(),
        &s.cluster.namespace,
    );
    let other = json!({"metadata": {"annotations": {APPROVE_ANNOTATION: V4}}});
    releases
        .patch(RELEASE, &PatchParams::default(), &Patch::Merge(&other))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = inspect::status(&s.cluster, RELEASE).await;
    assert!(status.upgrade.is_none(), "{:?}", status.upgrade);
    assert_eq!(inspect::ready(&status).unwrap().1, "AwaitingApproval");
    assert!(inspect::jobs(&s.cluster).await?.is_empty());

    // The command Ready names approves it.
    let command = ready
        .message
        .split_once("waits for approval: ")
        .map(|(_, c)| c.to_string())
        .expect("the message says what to run");
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[0], "kubectl", "{command}");
    s.cluster.run_kubectl(&args[1..]).await?;

    let status = s.wait_ready(RELEASE, V2).await?;
    let entry = &status.history[0];
    assert_eq!(
        (entry.to.as_str(), entry.result),
        (V2, UpgradeResult::Succeeded)
    );
    let mut jobs = inspect::jobs(&s.cluster).await?;
    jobs.sort();
    assert_eq!(jobs, ["shop-backup-1", "shop-migrate-1", "shop-verify-1"]);
    let events = s
        .events_with(RELEASE, &["AwaitingApproval", "UpgradeSucceeded"])
        .await?;
    let waited = events
        .iter()
        .filter(|(r, _)| r == "AwaitingApproval")
        .count();
    assert_eq!(waited, 1, "told once: {events:?}");
    assert_eq!(inspect::operator_requests_outside_rbac(&s.cluster)?, vec![]);
    Ok(())
}
