//! On-demand backups and restores end to end: an `AppReleaseBackup` of a backup set taken at
//! rest, an `AppReleaseRestore` of it after an upgrade (the targets come back on the backup's
//! images and replica counts), and a restore that is refused without changing anything.

use std::time::{Duration, Instant};

use apprelease_e2e::fixtures::{self, Jobs, Outcome, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::{Cluster, Scenario, inspect};
use apprelease_operator::api::conditions::{self, READY};
use apprelease_operator::api::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ObjectMeta, PostParams};

/// A backup set of two template components, `db` and `files`, each with its restore Job.
fn with_set(cluster: &Cluster, release: &mut AppRelease, jobs: &Jobs) {
    let restore = Outcome::Succeed { report: None };
    cluster.script_jobs(RELEASE, "restore", &restore);
    let component = |name: &str| BackupComponent {
        name: name.into(),
        template: Some(fixtures::job_template(&jobs.backup, Some("busybox:1.36"))),
        preset: None,
        restore: Some(JobTemplate {
            template: fixtures::job_template(&restore, Some("busybox:1.36")),
            timeout: "5m".into(),
        }),
    };
    let backup = release.spec.backup.as_mut().unwrap();
    backup.template = None;
    backup.components = vec![component("db"), component("files")];
}

/// Waits until the request's status says it is over, and returns it.
async fn wait_over<K>(s: &Scenario, name: &str) -> anyhow::Result<RequestStatus>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + for<'de> k8s_openapi::serde::Deserialize<'de>
        + HasRequestStatus,
{
    let api: Api<K> = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let deadline = Instant::now() + apprelease_e2e::scenario::PATIENCE;
    let mut last = RequestStatus::default();
    while Instant::now() < deadline {
        if let Ok(object) = api.get(name).await {
            last = object.request_status().unwrap_or_default();
            if last.phase.is_some_and(|p| p.is_final()) {
                return Ok(last);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "timed out waiting for {name} to end\nlast status: {last:#?}\noperator log:\n{}",
        s.operator.log_tail(40)
    )
}

/// The status of either request kind.
trait HasRequestStatus {
    fn request_status(&self) -> Option<RequestStatus>;
}

impl HasRequestStatus for AppReleaseBackup {
    fn request_status(&self) -> Option<RequestStatus> {
        self.status.clone()
    }
}

impl HasRequestStatus for AppReleaseRestore {
    fn request_status(&self) -> Option<RequestStatus> {
        self.status.clone()
    }
}

fn meta(cluster: &Cluster, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(cluster.namespace.clone()),
        ..Default::default()
    }
}

async fn request_backup(cluster: &Cluster, name: &str) -> anyhow::Result<()> {
    let api: Api<AppReleaseBackup> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut backup = AppReleaseBackup::new(
        name,
        AppReleaseBackupSpec {
            release: RELEASE.into(),
        },
    );
    backup.metadata = meta(cluster, name);
    api.create(&PostParams::default(), &backup).await?;
    Ok(())
}

async fn request_restore(cluster: &Cluster, name: &str, backup: &str) -> anyhow::Result<()> {
    let api: Api<AppReleaseRestore> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut restore = AppReleaseRestore::new(
        name,
        AppReleaseRestoreSpec {
            release: RELEASE.into(),
            backup: backup.into(),
            components: Vec::new(),
        },
    );
    restore.metadata = meta(cluster, name);
    api.create(&PostParams::default(), &restore).await?;
    Ok(())
}

fn ready_reason(status: &RequestStatus) -> String {
    conditions::get(&status.conditions, READY)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_set_backed_up_on_request_is_restored_on_request_with_its_version() -> anyhow::Result<()>
{
    let s = Scenario::start("requests").await?;
    let jobs = Jobs::default();
    let mut release = fixtures::release(&s.cluster, RELEASE, V1, &jobs);
    with_set(&s.cluster, &mut release, &jobs);
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;

    request_backup(&s.cluster, "before-upgrade").await?;
    let backup = wait_over::<AppReleaseBackup>(&s, "before-upgrade").await?;
    assert_eq!(backup.phase, Some(RequestPhase::Succeeded), "{backup:#?}");
    assert_eq!(backup.version.as_deref(), Some(V1));
    let id = backup.backup.clone().expect("the backup's id");
    let status = inspect::status(&s.cluster, RELEASE).await;
    let set = status
        .backups
        .iter()
        .find(|b| b.id == id)
        .expect("in the inventory");
    let names: Vec<&str> = set.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["db", "files"]);
    assert_eq!(set.size_bytes, Some(2 * 4096));
    let listing = s
        .cluster
        .run_kubectl(&["get", "appreleasebackups", "-n", &s.cluster.namespace])
        .await?;
    assert!(
        listing.contains("before-upgrade")
            && listing.contains("Succeeded")
            && listing.contains(&id),
        "{listing}"
    );

    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;

    request_restore(&s.cluster, "back-to-v1", &id).await?;
    let restore = wait_over::<AppReleaseRestore>(&s, "back-to-v1").await?;
    assert_eq!(restore.phase, Some(RequestPhase::Succeeded), "{restore:#?}");
    assert_eq!(ready_reason(&restore), "Restored");
    // The images of the backup's version, and the replica counts from before.
    let deployments: Api<Deployment> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    for (name, replicas) in [("backend", 2), ("frontend", 1)] {
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("{REPOSITORY}:{V1}"),
            "{name}"
        );
        let d = deployments.get(name).await?;
        assert_eq!(d.spec.unwrap().replicas, Some(replicas), "{name}");
    }
    let status = s.wait_settled(RELEASE, "Restored").await?;
    assert_eq!(status.current_version.as_deref(), Some(V1));
    let ready = inspect::condition(&status, READY).unwrap();
    assert!(
        ready.message.contains(&format!("spec.version says {V2}")),
        "{}",
        ready.message
    );
    // Both components were restored, db first, each once.
    let events = s.events_with(RELEASE, &["RestoreSucceeded"]).await?;
    let restored: Vec<&str> = events
        .iter()
        .filter(|(reason, _)| reason == "RestoreSucceeded")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(restored.len(), 2, "{restored:?}");
    assert!(
        restored[0].contains("component db") && restored[1].contains("component files"),
        "{restored:?}"
    );
    assert_eq!(
        inspect::each_job_ran_once(&s.cluster).await?,
        inspect::jobs(&s.cluster).await?.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_restore_of_a_backup_not_in_the_inventory_is_refused_and_changes_nothing()
-> anyhow::Result<()> {
    let s = Scenario::start("requests-refused").await?;
    let release = fixtures::release(&s.cluster, RELEASE, V1, &Jobs::default());
    fixtures::apply(&s.cluster, &release).await?;
    s.wait_ready(RELEASE, V1).await?;
    let jobs_before = inspect::jobs(&s.cluster).await?;

    request_restore(&s.cluster, "nope", "shop-backup-42").await?;
    let restore = wait_over::<AppReleaseRestore>(&s, "nope").await?;
    assert_eq!(restore.phase, Some(RequestPhase::Failed));
    assert_eq!(ready_reason(&restore), "BackupNotFound");
    let message = &conditions::get(&restore.conditions, READY).unwrap().message;
    assert!(
        message.contains("shop-backup-42") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(inspect::jobs(&s.cluster).await?, jobs_before, "no Job");
    let status = inspect::status(&s.cluster, RELEASE).await;
    assert_eq!(
        inspect::ready(&status).map(|r| r.1).as_deref(),
        Some("Succeeded")
    );
    assert!(status.upgrade.is_none());
    Ok(())
}
