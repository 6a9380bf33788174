//! Data safety end to end: a Restore rollback in the right order, and retention over many
//! upgrades.

use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, Outcome, RELEASE, REPOSITORY, V1};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::{DatabaseRollback, DowngradePolicy, JobTemplate};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;

#[tokio::test]
async fn restore_scales_down_restores_this_upgrades_backup_then_brings_everything_back()
-> anyhow::Result<()> {
    let s = Scenario::start("restore").await?;
    let jobs = Jobs::default();
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &jobs);
    release.spec.rollback.database = DatabaseRollback::Restore;
    let restore = Outcome::Succeed { report: None };
    s.cluster.script_jobs(RELEASE, "restore", &restore);
    release.spec.rollback.restore = Some(JobTemplate {
        template: fixtures::job_template(&restore, Some("busybox:1.36")),
        timeout: "5m".into(),
    });
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;

    fixtures::set_version(&s.cluster, RELEASE, BAD_VERSION).await?;
    let status = s.wait_settled(RELEASE, "RolledBack").await?;

    // Back on the previous version, with the replica counts it had.
    let deployments: Api<Deployment> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    for (name, replicas) in [("backend", 2), ("frontend", 1)] {
        let d = deployments.get(name).await?;
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(replicas), "{name}");
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("{REPOSITORY}:{V1}")
        );
    }
    // The restore Job restored exactly this upgrade's backup.
    let this_backup = status.history[0]
        .backup
        .clone()
        .expect("the upgrade took a backup");
    let restore: Job = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .get("shop-restore-1")
        .await?;
    let env = restore.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let backup_id = env
        .iter()
        .find(|e| e.name == "APPRELEASE_BACKUP_ID")
        .and_then(|e| e.value.clone());
    assert_eq!(backup_id.as_deref(), Some(this_backup.as_str()));
    // In order: scaled to zero, then restored, then the images came back.
    let events = s
        .events_with(
            RELEASE,
            &[
                "ScalingDown",
                "Restoring",
                "RestoreSucceeded",
                "RollingBack",
            ],
        )
        .await?;
    let order: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    let at = |r: &str| {
        order
            .iter()
            .position(|x| *x == r)
            .unwrap_or_else(|| panic!("no {r} in {order:?}"))
    };
    assert!(
        at("ScalingDown") < at("Restoring")
            && at("Restoring") < at("RestoreSucceeded")
            && at("RestoreSucceeded") < at("RollingBack"),
        "{order:?}"
    );
    if let Some(log) = s.cluster.requests() {
        // The operator's requests in this namespace, in order.
        let ours: Vec<_> = log
            .iter()
            .filter(|r| {
                r.user_agent.contains("apprelease-operator") && r.namespace == s.cluster.namespace
            })
            .collect();
        let scales: Vec<usize> = (0..ours.len())
            .filter(|&i| ours[i].resource == "deployments/scale")
            .collect();
        let restore = ours
            .iter()
            .position(|r| r.verb == "create" && r.name == "shop-restore-1" && r.code == 201)
            .expect("the restore Job was created");
        let (first_scale, last_scale) = (scales[0], scales[scales.len() - 1]);
        assert!(
            first_scale < restore && restore < last_scale,
            "scaled to zero ({first_scale}), restored ({restore}), scaled back ({last_scale})"
        );
    }
    // The shipped ClusterRole allows every request the operator made on the way.
    assert_eq!(inspect::operator_requests_outside_rbac(&s.cluster)?, vec![]);
    Ok(())
}

#[tokio::test]
async fn retention_keeps_exactly_the_newest_five_over_fifteen_upgrades() -> anyhow::Result<()> {
    let s = Scenario::start("retention").await?;
    let jobs = Jobs {
        migration: Outcome::Succeed { report: None },
        ..Jobs::default()
    };
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &jobs);
    release.spec.backup.as_mut().unwrap().keep_last = 5;
    release.spec.verify = None;
    // Each version below is older than the last: downgrades by spec are allowed here.
    release.spec.downgrade = DowngradePolicy::Allow;
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    // Fifteen published busybox tags, so that the same run works on a real cluster.
    let versions = [
        "1.36.1", "1.35.0", "1.34.1", "1.34.0", "1.33.1", "1.33.0", "1.32.1", "1.32.0", "1.31.1",
        "1.31.0", "1.30.1", "1.30.0", "1.29.3", "1.29.2", "1.29.1",
    ];
    for (i, version) in versions.iter().enumerate() {
        fixtures::set_version(&s.cluster, RELEASE, version).await?;
        let status = s.wait_ready(RELEASE, version).await?;
        let ids: Vec<&str> = status.backups.iter().map(|b| b.id.as_str()).collect();
        let newest: Vec<String> = (1..=i + 1)
            .rev()
            .take(5)
            .map(|n| format!("shop-backup-{n}"))
            .collect();
        assert_eq!(ids, newest, "after upgrade {}", i + 1);
        // The backup the last upgrade depends on is always kept.
        assert_eq!(status.history[0].backup.as_deref(), Some(ids[0]));
    }
    // The last backup Job was told to prune exactly the one that fell out of the five.
    let last: Job = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace)
        .get("shop-backup-15")
        .await?;
    let env = last.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let prune = env
        .iter()
        .find(|e| e.name == "APPRELEASE_PRUNE_BACKUPS")
        .and_then(|e| e.value.clone());
    assert_eq!(prune.as_deref(), Some("shop-backup-10"));
    Ok(())
}
