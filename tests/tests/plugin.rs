//! The kubectl plugin end to end: the built `kubectl-apprelease` binary, run as a user runs
//! it (a kubeconfig, a namespace, stdin not a terminal), against a release the operator
//! upgraded. What it prints is read as a user reads it; what it changes is read back through
//! the API. The on-demand requests are only created here: the controller that carries them
//! out is tested on its own.

use apprelease_e2e::fixtures::{self, Jobs, RELEASE, V1, V2, V4};
use apprelease_e2e::plugin::{self, table};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::{
    APPROVE_ANNOTATION, AppReleaseBackup, AppReleaseRestore, Approval, RETRY_ANNOTATION,
};
use kube::api::{Api, ListParams};
use kube::config::{Context, Kubeconfig, NamedContext};
use serde_json::Value;

/// The example app upgraded from V1 to V2 (attempt 1 took the backup shop-backup-1), with
/// the Events of the upgrade published.
async fn upgraded(name: &str) -> anyhow::Result<Scenario> {
    let s = Scenario::start(name).await?;
    s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    s.wait_ready(RELEASE, V2).await?;
    s.events_with(RELEASE, &["UpgradeStarted", "UpgradeSucceeded"])
        .await?;
    Ok(s)
}

/// `kubectl apprelease ARGS -n NAMESPACE`, which must succeed: its stdout.
async fn ok(s: &Scenario, args: &[&str]) -> anyhow::Result<String> {
    let mut all = args.to_vec();
    all.extend(["-n", &s.cluster.namespace]);
    plugin::run(&s.cluster, &all).await?.ok()
}

/// `kubectl apprelease ARGS -n NAMESPACE`, which must exit 1: its stderr.
async fn refused(s: &Scenario, args: &[&str]) -> anyhow::Result<String> {
    let mut all = args.to_vec();
    all.extend(["-n", &s.cluster.namespace]);
    plugin::run(&s.cluster, &all).await?.failed()
}

fn json(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("not JSON ({e}):\n{text}"))
}

#[tokio::test]
async fn status_history_and_backups_after_an_upgrade() -> anyhow::Result<()> {
    let s = upgraded("plugin-read").await?;
    let attempt = inspect::status(&s.cluster, RELEASE).await.history[0]
        .attempt
        .to_string();

    let status = ok(&s, &["status", RELEASE]).await?;
    for line in [
        "Target version:   1.36.1".to_string(),
        "Current version:  1.36.1".into(),
        format!("Namespace:        {}", s.cluster.namespace),
        "In flight:        <none>".into(),
    ] {
        assert!(status.lines().any(|l| l == line), "{line:?} in\n{status}");
    }
    let targets = table(&status, "KIND");
    assert_eq!(targets[0], ["KIND", "NAME", "READY", "IMAGES"], "{status}");
    assert_eq!(
        targets[1..],
        [
            vec![
                "Deployment",
                "backend",
                "2/2",
                "backend=busybox:1.36.1,metrics=busybox:1.36"
            ],
            vec![
                "Deployment",
                "frontend",
                "1/1",
                "frontend=busybox:1.36.1,metrics=busybox:1.36"
            ],
        ],
        "{status}"
    );
    let conditions = table(&status, "TYPE");
    let ready = conditions
        .iter()
        .find(|c| c[0] == "Ready")
        .unwrap_or_else(|| panic!("a Ready condition in\n{status}"));
    assert_eq!(ready[1..3], ["True", "Succeeded"], "{status}");
    let events = table(&status, "LAST SEEN");
    let reasons: Vec<&str> = events[1..].iter().map(|e| e[2]).collect();
    assert!(events.len() <= 11, "at most 10 Events:\n{status}");
    assert_eq!(
        reasons.last(),
        Some(&"UpgradeSucceeded"),
        "newest last:\n{status}"
    );
    assert!(reasons.contains(&"UpgradeStarted"), "{status}");

    let view = json(&ok(&s, &["status", RELEASE, "-o", "json"]).await?)?;
    assert_eq!(view["targetVersion"], V2);
    assert_eq!(view["currentVersion"], V2);
    assert_eq!(view["targets"][0]["readyReplicas"], 2);
    assert!(view["upgrade"].is_null());
    let conditions = view["conditions"].as_array().cloned().unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{view}"
    );

    let history = ok(&s, &["history", RELEASE]).await?;
    let rows = table(&history, "ATTEMPT");
    assert_eq!(
        rows[0],
        [
            "ATTEMPT", "FROM", "TO", "RESULT", "REASON", "STARTED", "DURATION", "BACKUP"
        ]
    );
    assert_eq!(rows.len(), 2, "one upgrade:\n{history}");
    let row = &rows[1];
    assert_eq!(
        [row[0], row[1], row[2], row[3], row[4], row[7]],
        [
            attempt.as_str(),
            V1,
            V2,
            "Succeeded",
            "Succeeded",
            "shop-backup-1"
        ],
        "{history}"
    );
    let entries = json(&ok(&s, &["history", RELEASE, "-o", "json"]).await?)?;
    assert_eq!(entries[0]["to"], V2);

    // keepLast 3: the next backup keeps the two newest; this one is also the last upgrade's.
    let backups = ok(&s, &["backups", RELEASE]).await?;
    let rows = table(&backups, "ID");
    assert_eq!(
        rows[0],
        ["ID", "VERSION", "AGE", "SIZE", "COMPONENTS", "PROTECTED BY"]
    );
    assert_eq!(rows.len(), 2, "{backups}");
    let row = &rows[1];
    assert_eq!(
        [row[0], row[1], row[3], row[4], row[5]],
        [
            "shop-backup-1",
            V1,
            "4.0 KiB",
            "<none>",
            "last upgrade, keepLast"
        ],
        "{backups}"
    );
    let inventory = json(&ok(&s, &["backups", RELEASE, "-o", "json"]).await?)?;
    assert_eq!(inventory[0]["sizeBytes"], 4096);
    assert_eq!(inventory[0]["protectedBy"]["lastUpgrade"], true);

    // A release that is not there, whatever the command.
    for command in [
        &["status", "nope"][..],
        &["history", "nope"],
        &["backups", "nope"],
        &["retry", "nope"],
        &["approve", "nope", V2],
        &["backup", "nope"],
        &["restore", "nope", "--backup", "shop-backup-1", "--yes"],
    ] {
        let stderr = refused(&s, command).await?;
        assert!(
            stderr.contains("appreleases.apprelease.io \"nope\" not found"),
            "{command:?}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_namespace_comes_from_the_kubeconfig_context() -> anyhow::Result<()> {
    let s = Scenario::start("plugin-context").await?;
    s.adopt(&Jobs::default()).await?;
    // A second context naming the scenario's namespace; the current one stays.
    let mut config = Kubeconfig::read_from(&s.cluster.kubeconfig)?;
    let current = config
        .current_context
        .clone()
        .and_then(|c| config.contexts.iter().find(|n| n.name == c).cloned())
        .and_then(|n| n.context)
        .expect("a current context");
    config.contexts.push(NamedContext {
        name: "e2e-namespaced".into(),
        context: Some(Context {
            namespace: Some(s.cluster.namespace.clone()),
            ..current
        }),
        ..Default::default()
    });
    let path = s.cluster.dir.join("plugin.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config)?)?;
    let path = path.display().to_string();

    let args = [
        "--kubeconfig",
        &path,
        "--context",
        "e2e-namespaced",
        "status",
        RELEASE,
    ];
    let status = plugin::run_with(&args, &[]).await?.ok()?;
    assert!(
        status.contains(&format!("Namespace:        {}\n", s.cluster.namespace)),
        "{status}"
    );
    // The current context has another namespace, where there is no such release.
    let args = ["--kubeconfig", &path, "status", RELEASE];
    let stderr = plugin::run_with(&args, &[]).await?.failed()?;
    assert!(
        stderr.contains("appreleases.apprelease.io \"shop\" not found"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn retry_and_approve_set_the_annotations_the_operator_reads() -> anyhow::Result<()> {
    let s = Scenario::start("plugin-annotate").await?;
    let release = s.adopt(&Jobs::default()).await?;
    let annotation = |key: &'static str| {
        let cluster = &s.cluster;
        async move {
            let release = inspect::release(cluster, RELEASE).await?;
            anyhow::Ok(
                release
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .get(key)
                    .cloned(),
            )
        }
    };

    let stderr = refused(&s, &["approve", RELEASE, V1]).await?;
    assert!(stderr.contains("approval: Automatic"), "{stderr}");
    assert_eq!(annotation(APPROVE_ANNOTATION).await?, None);

    let mut values = Vec::new();
    for _ in 0..2 {
        let out = ok(&s, &["retry", RELEASE]).await?;
        let value = out
            .trim()
            .strip_prefix("appreleases.apprelease.io/shop annotated: apprelease.io/retry=")
            .unwrap_or_else(|| panic!("{out}"))
            .to_string();
        assert_eq!(annotation(RETRY_ANNOTATION).await?.as_ref(), Some(&value));
        values.push(value);
    }
    assert_ne!(values[0], values[1], "each retry is a new value");

    let mut manual = release.clone();
    manual.spec.approval = Approval::Manual;
    manual.spec.version = V2.into();
    fixtures::apply(&s.cluster, &manual).await?;
    s.wait_settled(RELEASE, "AwaitingApproval").await?;
    let stderr = refused(&s, &["approve", RELEASE, V4]).await?;
    assert!(
        stderr.contains(&format!("wants version {V2} (spec.version), not {V4}")),
        "{stderr}"
    );
    assert_eq!(annotation(APPROVE_ANNOTATION).await?, None);

    let out = ok(&s, &["approve", RELEASE, V2]).await?;
    assert_eq!(
        out.trim(),
        format!("appreleases.apprelease.io/shop annotated: apprelease.io/approve={V2}")
    );
    assert_eq!(annotation(APPROVE_ANNOTATION).await?.as_deref(), Some(V2));
    // The operator takes it as the approval it waited for.
    s.wait_ready(RELEASE, V2).await?;
    Ok(())
}

#[tokio::test]
async fn backup_and_restore_create_requests_only_after_their_checks() -> anyhow::Result<()> {
    let s = upgraded("plugin-requests").await?;
    let backups: Api<AppReleaseBackup> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let restores: Api<AppReleaseRestore> =
        Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let no_restore = || async {
        let list = restores.list(&ListParams::default()).await?;
        anyhow::ensure!(list.items.is_empty(), "a restore was created: {list:?}");
        anyhow::Ok(())
    };

    let out = ok(&s, &["backup", RELEASE]).await?;
    let name = out
        .trim()
        .strip_prefix("appreleasebackup.apprelease.io/")
        .and_then(|rest| rest.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(name.starts_with("shop-"), "{name}");
    assert_eq!(backups.get(name).await?.spec.release, RELEASE);
    let created = json(&ok(&s, &["backup", RELEASE, "-o", "json"]).await?)?;
    let name = created["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(backups.get(name).await?.spec.release, RELEASE);

    let stderr = refused(&s, &["restore", RELEASE, "--backup", "unknown", "--yes"]).await?;
    assert!(
        stderr.contains("backup \"unknown\" is not in the inventory of AppRelease shop"),
        "{stderr}"
    );
    let args = [
        "restore",
        RELEASE,
        "--backup",
        "shop-backup-1",
        "--component",
        "db",
        "--yes",
    ];
    let stderr = refused(&s, &args).await?;
    assert!(stderr.contains("is a single backup, not a set"), "{stderr}");
    no_restore().await?;

    // Without --yes and with no terminal to ask on: what would happen, then a refusal.
    let mut args = vec!["restore", RELEASE, "--backup", "shop-backup-1"];
    args.extend(["-n", &s.cluster.namespace]);
    let run = plugin::run(&s.cluster, &args).await?;
    assert!(
        run.stdout
            .starts_with("Restore backup shop-backup-1 (version 1.36.0, taken "),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("Deployment backend and Deployment frontend are scaled to zero"),
        "{run:?}"
    );
    let stderr = run.failed()?;
    assert!(
        stderr.contains("stdin is not a terminal") && stderr.contains("--yes"),
        "{stderr}"
    );
    no_restore().await?;

    let out = ok(
        &s,
        &["restore", RELEASE, "--backup", "shop-backup-1", "--yes"],
    )
    .await?;
    let last = out.lines().last().unwrap_or_default();
    let name = last
        .strip_prefix("appreleaserestore.apprelease.io/")
        .and_then(|rest| rest.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(name.starts_with("shop-restore-"), "{name}");
    let restore = restores.get(name).await?;
    assert_eq!(
        (
            restore.spec.release.as_str(),
            restore.spec.backup.as_str(),
            restore.spec.components.len()
        ),
        (RELEASE, "shop-backup-1", 0)
    );
    Ok(())
}
