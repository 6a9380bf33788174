//! Flux syncs an AppRelease from git on the real control plane, and stays in sync while the
//! operator works (docs/gitops.md is the recipe this follows):
//!
//! - a git repository served on loopback (`git http-backend`), with the operator's CRDs in
//!   `crds/` and the app in `app/`: the two Deployments, whose images in git are the first
//!   install's, and the AppRelease;
//! - Flux's source-controller and kustomize-controller (`testbed/build.sh --flux`), a
//!   Kustomization for the CRDs and one for the app that `dependsOn` it, health-checks the
//!   AppRelease (kstatus) and tells Flux to leave the operator's image fields alone
//!   (`spec.ignore`);
//! - commit a new version: Flux applies it, the operator upgrades, and the Kustomization is
//!   Ready at that commit only once the AppRelease is; ten reconcile intervals later the audit
//!   log holds no image change and no Deployment write by Flux, though git still names the
//!   first version's images; commit a version that never becomes ready: the operator rolls it
//!   back, and the Kustomization is not Ready, naming the AppRelease as failed.
//!
//! The control plane only: the simulator implements the API the operator and kubectl use,
//! not the dry-run server-side apply, managedFields bookkeeping, and CRD serving that Flux's
//! controllers depend on — whether they and the operator fight is a question about the real
//! server. It starts the shared testbed whatever `APPRELEASE_E2E_BACKEND` says, and needs
//! `APPRELEASE_FLUX_BIN` (scripts/test.sh builds Flux and sets it).

use std::time::{Duration, Instant};

use apprelease_e2e::cluster::{Backend, Cluster};
use apprelease_e2e::fixtures::{self, BAD_VERSION, Jobs, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::flux::{self, Flux, KustomizationState};
use apprelease_e2e::git_server::GitServer;
use apprelease_e2e::testbed::{self, DeploymentWrite, ImageChange, image_changes};
use apprelease_e2e::{Operator, Scenario, inspect};
use apprelease_operator::api::FIELD_MANAGER;
use apprelease_operator::api::conditions::ConditionStatus;

/// Flux's reconcile interval for the source and the app: short, so that ten intervals fit
/// in a test.
const INTERVAL: Duration = Duration::from_secs(5);
/// The field manager of kustomize-controller's server-side applies.
const FLUX_MANAGER: &str = "kustomize-controller";
/// How long Flux and the operator may take for one commit.
const PATIENCE: Duration = Duration::from_secs(150);

/// The Deployments as they are in git: the images are the first install's (a Deployment
/// cannot be created without one), and afterwards the operator's (see the Kustomization's
/// `ignore`).
fn deployments_yaml() -> String {
    ["backend", "frontend"]
        .iter()
        .zip([2, 1])
        .map(|(name, replicas)| {
            format!(
                "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: 10
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
      - name: {name}
        image: {REPOSITORY}:{V1}
        command: [sleep, \"3600\"]
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
      - name: metrics
        image: busybox:1.36
        command: [sleep, \"3600\"]
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The AppRelease of the scenarios (backup, migration and verification Jobs) at `version`.
fn release_yaml(cluster: &Cluster, version: &str) -> anyhow::Result<String> {
    let release = fixtures::release(cluster, RELEASE, version, &Jobs::default());
    let object = serde_json::json!({
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": RELEASE},
        "spec": release.spec,
    });
    Ok(serde_saphyr::to_string(&object)?)
}

/// What is in git at the first commit.
fn first_commit(cluster: &Cluster) -> anyhow::Result<Vec<(&'static str, String)>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Ok(vec![
        (
            "crds/Kustomization",
            std::fs::read_to_string(repo.join("crds/Kustomization"))?,
        ),
        (
            "crds/appreleases.yaml",
            std::fs::read_to_string(repo.join("crds/appreleases.yaml"))?,
        ),
        (
            "app/kustomization.yaml",
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 namespace: {}\nresources:\n- deployments.yaml\n- release.yaml\n",
                cluster.namespace
            ),
        ),
        ("app/deployments.yaml", deployments_yaml()),
        ("app/release.yaml", release_yaml(cluster, V1)?),
    ])
}

/// The Flux objects, as a user puts them next to `flux install`'s.
fn flux_objects(url: &str, namespace: &str) -> String {
    let interval = format!("{}s", INTERVAL.as_secs());
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: shop, namespace: flux-system}}
spec:
  interval: {interval}
  url: {url}
  ref: {{branch: main}}
---
# The CRDs first: the app's Kustomization waits for this one to be Ready.
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: apprelease-crds, namespace: flux-system}}
spec:
  interval: 1m
  path: ./crds
  prune: false
  wait: true
  sourceRef: {{kind: GitRepository, name: shop}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: shop, namespace: flux-system}}
spec:
  dependsOn:
  - name: apprelease-crds
  interval: {interval}
  retryInterval: {interval}
  timeout: 2m
  path: ./app
  prune: true
  sourceRef: {{kind: GitRepository, name: shop}}
  # Ready only when the AppRelease is (kstatus: its Ready, Reconciling and Stalled).
  healthChecks:
  - apiVersion: apprelease.io/v1alpha1
    kind: AppRelease
    name: shop
    namespace: {namespace}
  # The operator owns these images (field manager apprelease-operator): no drift for Flux,
  # and left out of Flux's applies while the operator owns them.
  ignore:
  - paths: [/spec/template/spec/containers/0/image]
    target: {{group: apps, kind: Deployment, name: ^backend$}}
  - paths: [/spec/template/spec/containers/0/image]
    target: {{group: apps, kind: Deployment, name: ^frontend$}}
"
    )
}

/// Polls every 200 ms until `check` returns Some, recording each new Kustomization state
/// seen on the way (with the AppRelease's Ready reason and step next to it).
async fn watch_until<T>(
    s: &Scenario,
    flux: &Flux,
    seen: &mut Vec<String>,
    what: &str,
    check: impl Fn(&KustomizationState, &apprelease_operator::api::AppReleaseStatus) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    loop {
        let k = flux::kustomization(&s.cluster, "shop")
            .await
            .map(|k| KustomizationState::of(&k))
            .unwrap_or_default();
        let status = inspect::status(&s.cluster, RELEASE).await;
        let line = format!(
            "Kustomization Ready={} {}: {} | AppRelease Ready={:?} step={:?}",
            k.ready,
            k.reason,
            k.message,
            inspect::ready(&status).map(|(_, r)| r),
            status.upgrade.as_ref().map(|u| u.step.as_str().to_string()),
        );
        if line != last {
            println!("{line}");
            seen.push(line.clone());
            last = line;
        }
        if let Some(found) = check(&k, &status) {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out waiting until {what}; last: {last}\n{}\n{}\noperator:\n{}",
                flux.log_tail("kustomize-controller", 20),
                flux.log_tail("source-controller", 10),
                s.operator.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready_at(status: &apprelease_operator::api::AppReleaseStatus, version: &str) -> bool {
    status.current_version.as_deref() == Some(version)
        && inspect::ready(status).is_some_and(|(c, _)| c == ConditionStatus::True)
}

fn by(changes: &[ImageChange]) -> Vec<(String, String, String)> {
    changes
        .iter()
        .map(|c| (c.deployment.clone(), c.to.clone(), c.field_manager.clone()))
        .collect()
}

#[tokio::test]
async fn flux_syncs_an_apprelease_from_git_and_never_fights_the_operator() -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Before starting anything: without Flux, say how to get it.
    flux::bin_dir()?;
    let testbed = testbed::shared()?;
    let cluster = Cluster::start_on("gitops-flux", Backend::ControlPlane).await?;
    let ns = cluster.namespace.clone();
    let flux = Flux::start(&cluster).await?;
    let repo = GitServer::start(&cluster.dir.join("git"), "shop")?;
    let first = repo.commit(&first_commit(&cluster)?, "shop 1.36.0")?;
    let objects = cluster.dir.join("flux-objects.yaml");
    std::fs::write(&objects, flux_objects(&repo.url(), &ns))?;
    let operator = Operator::start(&cluster)?;
    let s = Scenario { cluster, operator };
    s.cluster
        .run_kubectl(&["apply", "-f", &objects.display().to_string()])
        .await?;
    let started = t0.elapsed();
    let mut seen = Vec::new();

    // The first install: Flux creates the Deployments and the AppRelease, the operator
    // adopts what runs.
    let at_ready = watch_until(&s, &flux, &mut seen, "the first commit is Ready", |k, a| {
        k.ready_at(&first).then(|| a.clone())
    })
    .await?;
    let installed = t0.elapsed();
    assert!(
        ready_at(&at_ready, V1),
        "the Kustomization is Ready only once the AppRelease is Ready at {V1} (its targets \
         available): {at_ready:#?}"
    );

    // A new version in git: Ready at that commit only once the AppRelease is Ready there.
    let second = repo.commit(
        &[("app/release.yaml", release_yaml(&s.cluster, V2)?)],
        "shop 1.36.1",
    )?;
    let upgrade_start = Instant::now();
    let mark = seen.len();
    let at_ready = watch_until(
        &s,
        &flux,
        &mut seen,
        "the second commit is Ready",
        |k, a| k.ready_at(&second).then(|| a.clone()),
    )
    .await?;
    let upgrade_time = upgrade_start.elapsed();
    assert!(
        ready_at(&at_ready, V2),
        "the Kustomization is Ready at the new commit only when the AppRelease is Ready at \
         {V2}: {at_ready:#?}"
    );
    let during = &seen[mark..];
    assert!(
        during
            .iter()
            .any(|l| l.starts_with("Kustomization Ready=Unknown Progressing")
                && l.contains("step=Some")),
        "while the operator upgraded, the Kustomization was Progressing: {during:#?}"
    );
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2)
    );

    // Ten reconcile intervals: git still says V1's images, and nobody changes any image.
    let before = testbed.deployment_writes(&ns);
    tokio::time::sleep(INTERVAL * 10).await;
    let writes = testbed.deployment_writes(&ns);
    let window: &[DeploymentWrite] = &writes[before.len()..];
    let flips_in_window: Vec<_> = image_changes(&writes)
        .into_iter()
        .filter(|c| c.write >= before.len())
        .collect();
    assert!(
        flips_in_window.is_empty(),
        "image flips: {flips_in_window:#?}"
    );
    let stored: Vec<_> = window.iter().filter(|w| !w.dry_run).collect();
    let corrections: Vec<_> = stored
        .iter()
        .filter(|w| w.field_manager == FLUX_MANAGER)
        .collect();
    assert!(
        corrections.is_empty(),
        "Flux wrote Deployments: {corrections:#?}"
    );
    // Flux did look: each interval's reconcile compares every object by a dry-run apply.
    let compared = window
        .iter()
        .filter(|w| w.dry_run && w.field_manager == FLUX_MANAGER && w.name == "backend")
        .count();
    assert!(
        compared >= 5,
        "Flux compared the backend Deployment {compared} times in ten intervals"
    );
    let k = KustomizationState::of(&flux::kustomization(&s.cluster, "shop").await?);
    assert!(k.ready_at(&second), "{k:?}");
    let status = inspect::status(&s.cluster, RELEASE).await;
    assert!(
        ready_at(&status, V2) && status.drift.is_none(),
        "{status:#?}"
    );
    let events = inspect::events(&s.cluster, RELEASE).await?;
    assert!(
        !events.iter().any(|(r, _)| r.starts_with("Drift")),
        "{events:?}"
    );
    let steady = format!(
        "{} Deployment writes in ten intervals ({} stored, {} by Flux), {} dry-run compares of \
         backend by Flux, {} image changes",
        window.len(),
        stored.len(),
        corrections.len(),
        compared,
        flips_in_window.len()
    );
    println!("{steady}");

    // A version that never becomes ready: rolled back, and the Kustomization says so.
    let third = repo.commit(
        &[("app/release.yaml", release_yaml(&s.cluster, BAD_VERSION)?)],
        "shop 9.9.9-never-ready",
    )?;
    let mark = seen.len();
    let failed = watch_until(
        &s,
        &flux,
        &mut seen,
        "the third commit fails its health check",
        |k, a| {
            (k.attempted.ends_with(&third) && k.ready == "False").then(|| (k.clone(), a.clone()))
        },
    )
    .await?;
    let (k, status) = failed;
    assert_eq!(k.reason, "HealthCheckFailed", "{k:?}");
    assert!(
        k.message
            .contains(&format!("AppRelease/{ns}/{RELEASE} status: 'Failed'")),
        "{k:?}"
    );
    assert_eq!(
        inspect::ready(&status),
        Some((ConditionStatus::False, "RolledBack".to_string())),
        "{status:#?}"
    );
    assert!(
        k.applied.ends_with(&second),
        "the last applied revision stays: {k:?}"
    );
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2)
    );
    let rollback_seen = seen[mark..].to_vec();

    // Over the whole scenario: Flux created the Deployments and never wrote them again; every
    // image change after that was the operator's (the upgrade, the bad version and its
    // rollback).
    let writes = testbed.deployment_writes(&ns);
    let flux_stored: Vec<_> = writes
        .iter()
        .filter(|w| !w.dry_run && w.field_manager == FLUX_MANAGER)
        .map(|w| (w.name.as_str(), w.verb.as_str(), w.code))
        .collect();
    assert_eq!(
        flux_stored,
        [("backend", "patch", 201), ("frontend", "patch", 201)],
        "Flux's stored writes to the Deployments: the creates only"
    );
    let changes = image_changes(&writes);
    let after_create: Vec<_> = changes
        .iter()
        .filter(|c| c.from.is_some())
        .cloned()
        .collect();
    let image = |v: &str| format!("{REPOSITORY}:{v}");
    let sequence = |d: &str| -> Vec<String> {
        after_create
            .iter()
            .filter(|c| c.deployment == d)
            .map(|c| c.to.clone())
            .collect()
    };
    // Targets move in order: the bad version stops at backend, which never becomes ready.
    assert_eq!(
        sequence("backend"),
        [image(V2), image(BAD_VERSION), image(V2)],
        "{after_create:#?}"
    );
    let frontend = sequence("frontend");
    assert!(
        frontend == [image(V2)] || frontend == [image(V2), image(BAD_VERSION), image(V2)],
        "{after_create:#?}"
    );
    assert!(
        after_create
            .iter()
            .all(|c| c.field_manager == FIELD_MANAGER),
        "every image change after the creates is the operator's: {:#?}",
        by(&after_create)
    );
    let reverted_by_flux = after_create
        .iter()
        .filter(|c| c.field_manager == FLUX_MANAGER)
        .count();

    println!(
        "testbed and Flux up in {:.1} s; first commit Ready after {:.1} s; upgrade commit Ready \
         after {:.1} s",
        started.as_secs_f64(),
        installed.as_secs_f64(),
        upgrade_time.as_secs_f64()
    );
    println!("steady state: {steady}");
    println!(
        "image changes after the creates: {} (all by {FIELD_MANAGER}; {reverted_by_flux} by \
         {FLUX_MANAGER})",
        after_create.len()
    );
    println!("after the bad commit: {rollback_seen:#?}");
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
