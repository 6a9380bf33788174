//! What the operator finds when it first looks, and what it refuses to start: sidecars with
//! tags of their own, targets on different versions, a paused target, and a spec that goes
//! back to an older version.

use apprelease_e2e::fixtures::{self, Jobs, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::DowngradePolicy;
use apprelease_operator::api::conditions::STALLED;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

async fn patch_deployment(
    s: &Scenario,
    name: &str,
    patch: serde_json::Value,
) -> anyhow::Result<()> {
    Api::<Deployment>::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// Without a `containers` list only the containers tagged with the release's version move;
/// the `metrics` sidecars (busybox:1.36) keep their tag and are named in the status.
#[tokio::test]
async fn s13a_sidecars_keep_their_own_tags() -> anyhow::Result<()> {
    let s = Scenario::start("sidecars").await?;
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &Jobs::default());
    for target in &mut release.spec.targets {
        target.containers = None;
    }
    fixtures::apply(&s.cluster, &release).await?;
    let status = s.wait_ready(RELEASE, V1).await?;
    let untouched: Vec<(String, String)> = status
        .untouched_containers
        .iter()
        .map(|c| (format!("{}/{}", c.deployment, c.container), c.image.clone()))
        .collect();
    assert_eq!(
        untouched,
        [
            ("backend/metrics".to_string(), "busybox:1.36".to_string()),
            ("frontend/metrics".to_string(), "busybox:1.36".to_string())
        ]
    );
    s.events_with(RELEASE, &["ContainersLeftAlone"]).await?;

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;
    for name in ["backend", "frontend"] {
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("{REPOSITORY}:{V2}")
        );
        assert_eq!(
            inspect::image(&s.cluster, name, "metrics").await?,
            "busybox:1.36"
        );
    }
    Ok(())
}

/// First sight of targets on two versions: nothing is changed and the message names each
/// container's tag; once they agree the release is adopted.
#[tokio::test]
async fn s13b_targets_on_different_versions_are_refused_until_they_agree() -> anyhow::Result<()> {
    let s = Scenario::start("mixed").await?;
    let on_v2 = json!({"spec": {"template": {"spec": {"containers": [{"name": "backend", "image": format!("{REPOSITORY}:{V2}")}]}}}});
    patch_deployment(&s, "backend", on_v2).await?;
    let release = fixtures::release(&s.cluster, RELEASE, V2, &Jobs::default());
    fixtures::apply(&s.cluster, &release).await?;
    let status = s.wait_settled(RELEASE, "MixedVersions").await?;
    let message = inspect::condition(&status, "Ready").unwrap().message;
    assert!(
        message.contains(&format!("backend/backend={V2}"))
            && message.contains(&format!("frontend/frontend={V1}")),
        "{message}"
    );
    assert!(inspect::is_true(&status, STALLED));
    assert_eq!(status.attempts, 0);
    assert!(inspect::jobs(&s.cluster).await?.is_empty());
    let writes = inspect::workload_writes(&s.cluster, "apprelease-operator");
    assert!(writes.is_empty(), "{writes:?}");

    let on_v1 = json!({"spec": {"template": {"spec": {"containers": [{"name": "backend", "image": format!("{REPOSITORY}:{V1}")}]}}}});
    patch_deployment(&s, "backend", on_v1).await?;
    // Both on V1 now: an upgrade from V1 to V2, with its backup.
    let status = s.wait_ready(RELEASE, V2).await?;
    assert_eq!(
        (
            status.history[0].from.as_str(),
            status.history[0].to.as_str()
        ),
        (V1, V2)
    );
    assert_eq!(status.backups.len(), 1);
    Ok(())
}

/// A paused target holds the upgrade before the backup; resuming it lets it go on.
#[tokio::test]
async fn s13c_a_paused_target_holds_the_upgrade_until_resumed() -> anyhow::Result<()> {
    let s = Scenario::start("paused").await?;
    s.adopt(&Jobs::default()).await?;
    patch_deployment(&s, "frontend", json!({"spec": {"paused": true}})).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_settled(RELEASE, "TargetPaused").await?;
    let message = inspect::condition(&status, "Ready").unwrap().message;
    assert!(
        message.contains("Deployment frontend is paused"),
        "{message}"
    );
    assert!(!inspect::is_true(&status, STALLED));
    assert!(
        inspect::jobs(&s.cluster).await?.is_empty(),
        "not even the backup ran"
    );
    patch_deployment(&s, "frontend", json!({"spec": {"paused": false}})).await?;
    s.wait_ready(RELEASE, V2).await?;
    Ok(())
}

/// Going back to an older version by spec is refused by default, and changes nothing; with
/// `downgrade: Allow` it is installed, with a warning that its migrations do not undo.
#[tokio::test]
async fn s13d_going_back_to_an_older_version_is_refused_unless_allowed() -> anyhow::Result<()> {
    let s = Scenario::start("downgrade-by-spec").await?;
    let release = s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;
    let jobs = inspect::jobs(&s.cluster).await?;

    fixtures::set_version(&s.cluster, RELEASE, V1).await?;
    let status = s.wait_settled(RELEASE, "DowngradeRefused").await?;
    assert!(inspect::is_true(&status, STALLED));
    let message = inspect::condition(&status, "Ready").unwrap().message;
    assert!(
        message.contains(&format!("{V1} is older than the running {V2}"))
            && message.contains(&format!("backups taken at {V1}: shop-backup-1")),
        "{message}"
    );
    assert_eq!(inspect::jobs(&s.cluster).await?, jobs, "no Job ran");
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2)
    );

    let mut allowed = release;
    allowed.spec.version = V1.into();
    allowed.spec.downgrade = DowngradePolicy::Allow;
    fixtures::apply(&s.cluster, &allowed).await?;
    s.wait_ready(RELEASE, V1).await?;
    let events = s
        .events_with(RELEASE, &["DowngradeRefused", "Downgrade"])
        .await?;
    let warned: Vec<_> = events.iter().filter(|(r, _)| r == "Downgrade").collect();
    assert_eq!(warned.len(), 1, "{events:?}");
    assert!(
        warned[0]
            .1
            .contains(&format!("older than the running {V2}"))
            && warned[0].1.contains("do not undo"),
        "{}",
        warned[0].1
    );
    Ok(())
}

/// The scenario namespaces enforce Pod Security `restricted`, so every Job the operator
/// created in the other scenarios passed that admission on a real server. The simulator does
/// not evaluate Pod Security (it only stores the label), so there this checks the label.
#[tokio::test]
async fn s13e_scenario_namespaces_enforce_pod_security_restricted() -> anyhow::Result<()> {
    let s = Scenario::start("restricted").await?;
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(s.cluster.client.clone())
        .get(&s.cluster.namespace)
        .await?;
    assert_eq!(
        namespace.metadata.labels.unwrap_or_default()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    if s.cluster.is_simulated() {
        return Ok(());
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let root: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "asks-for-nothing"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))?;
    match pods.create(&Default::default(), &root).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("restricted"), "{}", status.message);
        }
        other => {
            anyhow::bail!("a pod without a restricted securityContext was admitted: {other:?}")
        }
    }
    Ok(())
}
