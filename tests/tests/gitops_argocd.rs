//! Argo CD syncs an AppRelease from git on the real control plane (docs/gitops.md, Argo CD):
//! the application controller and repo server of Argo CD v3.6.1 (`testbed/build.sh --argocd`),
//! our health check in `argocd-cm`, and the diff settings for the operator's images
//! (`ignoreDifferences.managedFieldsManagers`, `RespectIgnoreDifferences=true`,
//! `ServerSideApply=true`) with automated sync and self-heal. Commit a new version: the
//! Application is Progressing while the operator upgrades, then Synced and Healthy, and stays
//! Synced while git names the old images; commit a bad version: Degraded after the rollback,
//! never OutOfSync over the operator's image changes, and no image change by Argo CD (audit
//! log).
//!
//! The control plane only, for the reasons of tests/tests/gitops_flux.rs.

use std::time::{Duration, Instant};

use apprelease_e2e::argocd::{self, AppState, ArgoCd};
use apprelease_e2e::cluster::{Backend, Cluster};
use apprelease_e2e::fixtures::{BAD_VERSION, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::git_server::GitServer;
use apprelease_e2e::gitops::{first_commit, ready_at, release_yaml};
use apprelease_e2e::testbed::{self, image_changes};
use apprelease_e2e::{Operator, Scenario, inspect};
use apprelease_operator::api::{AppReleaseStatus, FIELD_MANAGER};

/// Argo CD's field manager for server-side applies.
const ARGO_MANAGER: &str = "argocd-controller";
const PATIENCE: Duration = Duration::from_secs(150);

fn settings() -> String {
    let lua = include_str!("../../manifests/integrations/argocd/health.lua");
    let body: String = lua.lines().map(|l| format!("  {l}\n")).collect();
    format!("resource.customizations.health.apprelease.io_AppRelease: |\n{body}")
}

fn application(url: &str, server: &str, namespace: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: shop, namespace: argocd}}
spec:
  project: default
  source: {{repoURL: '{url}', targetRevision: main, path: app}}
  destination: {{server: '{server}', namespace: {namespace}}}
  syncPolicy:
    automated: {{prune: true, selfHeal: true}}
    syncOptions: [ServerSideApply=true, RespectIgnoreDifferences=true]
  ignoreDifferences:
  - group: apps
    kind: Deployment
    managedFieldsManagers: [{FIELD_MANAGER}]
"
    )
}

struct Seen {
    lines: Vec<String>,
    states: Vec<(AppState, AppReleaseStatus)>,
}

async fn watch_until<T>(
    s: &Scenario,
    argo: &ArgoCd,
    seen: &mut Seen,
    what: &str,
    check: impl Fn(&AppState, &AppReleaseStatus) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    loop {
        let app = argocd::app(&s.cluster, "shop").await.unwrap_or_default();
        let status = inspect::status(&s.cluster, RELEASE).await;
        let line = format!(
            "Application {} {} at {:.7} | AppRelease Ready={:?} step={:?}",
            app.sync,
            app.health,
            app.revision,
            inspect::ready(&status).map(|(_, r)| r),
            status.upgrade.as_ref().map(|u| u.step.as_str().to_string()),
        );
        if line != last {
            println!("{line}");
            seen.lines.push(line.clone());
            last = line;
        }
        seen.states.push((app.clone(), status.clone()));
        if let Some(found) = check(&app, &status) {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out waiting until {what}; last: {last}\n{}\n{}\noperator:\n{}",
                argo.log_tail("argocd-application-controller", 30),
                argo.log_tail("argocd-repo-server", 10),
                s.operator.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn argo_cd_syncs_an_apprelease_from_git_and_never_reports_the_operators_images_as_drift()
-> anyhow::Result<()> {
    let t0 = Instant::now();
    argocd::bin_dir()?;
    let testbed = testbed::shared()?;
    let cluster = Cluster::start_on("gitops-argocd", Backend::ControlPlane).await?;
    let ns = cluster.namespace.clone();
    let argo = ArgoCd::start(&cluster, testbed, &settings()).await?;
    let repo = GitServer::start(&cluster.dir.join("git"), "shop")?;
    // A plain directory of manifests for Argo CD (a kustomization.yaml would need the
    // kustomize binary next to the repo server); the destination namespace applies to them.
    let files: Vec<_> = first_commit(&cluster)?
        .into_iter()
        .filter(|(path, _)| *path != "app/kustomization.yaml")
        .collect();
    let first = repo.commit(&files, &format!("shop {V1}"))?;
    let objects = cluster.dir.join("application.yaml");
    std::fs::write(&objects, application(&repo.url(), &testbed.server, &ns))?;
    let operator = Operator::start(&cluster)?;
    let s = Scenario { cluster, operator };
    s.cluster
        .run_kubectl(&["apply", "-f", &objects.display().to_string()])
        .await?;
    let mut seen = Seen {
        lines: Vec::new(),
        states: Vec::new(),
    };

    watch_until(
        &s,
        &argo,
        &mut seen,
        "the first commit is Synced and Healthy",
        |a, r| {
            (a.revision == first && a.sync == "Synced" && a.health == "Healthy" && ready_at(r, V1))
                .then_some(())
        },
    )
    .await?;

    let second = repo.commit(
        &[("app/release.yaml", release_yaml(&s.cluster, V2)?)],
        &format!("shop {V2}"),
    )?;
    let mark = seen.states.len();
    watch_until(
        &s,
        &argo,
        &mut seen,
        "the second commit is Synced and Healthy",
        |a, r| {
            (a.revision == second && a.sync == "Synced" && a.health == "Healthy" && ready_at(r, V2))
                .then_some(())
        },
    )
    .await?;
    let during = &seen.states[mark..];
    assert!(
        during
            .iter()
            .any(|(a, r)| a.health == "Progressing" && r.upgrade.is_some()),
        "Progressing while the operator upgraded: {:#?}",
        seen.lines
    );
    // Six resyncs later: still Synced, though git names the old images.
    let before = testbed.deployment_writes(&ns).len();
    let steady_from = seen.states.len();
    let until = Instant::now() + Duration::from_secs(30);
    watch_until(&s, &argo, &mut seen, "30 s passed", |_, _| {
        (Instant::now() >= until).then_some(())
    })
    .await?;
    assert!(
        seen.states[steady_from..]
            .iter()
            .all(|(a, _)| a.sync == "Synced" && a.health == "Healthy"),
        "{:#?}",
        seen.lines
    );
    let writes = testbed.deployment_writes(&ns);
    let flips: Vec<_> = image_changes(&writes)
        .into_iter()
        .filter(|c| c.write >= before)
        .collect();
    assert!(flips.is_empty(), "{flips:#?}");

    let third = repo.commit(
        &[("app/release.yaml", release_yaml(&s.cluster, BAD_VERSION)?)],
        &format!("shop {BAD_VERSION}"),
    )?;
    let (app, status) = watch_until(
        &s,
        &argo,
        &mut seen,
        "Degraded after the rollback",
        |a, r| {
            // Degraded already while backend is past its progress deadline (Argo CD's own
            // Deployment health); after the rollback the Deployments are Healthy again, so
            // what keeps the Application Degraded is the AppRelease's, from our Lua check.
            let rolled_back = inspect::ready(r).is_some_and(|(_, why)| why == "RolledBack");
            (a.revision == third && a.health == "Degraded" && rolled_back && r.upgrade.is_none())
                .then(|| (a.clone(), r.clone()))
        },
    )
    .await?;
    assert_eq!(app.sync, "Synced", "{app:?}");
    assert_eq!(
        inspect::ready(&status).map(|(_, r)| r).as_deref(),
        Some("RolledBack")
    );
    // OutOfSync only between a commit and Argo CD's sync of it (the new AppRelease spec),
    // never again once it was Synced at that revision: the operator's image changes are not
    // drift for it.
    let mut synced = std::collections::BTreeSet::new();
    for (a, _) in &seen.states {
        if a.sync == "Synced" {
            synced.insert(a.revision.clone());
        }
        assert!(
            !(a.sync == "OutOfSync" && synced.contains(&a.revision)),
            "OutOfSync at {} after it was Synced: {:#?}",
            a.revision,
            seen.lines
        );
    }
    let out_of_sync: Vec<_> = seen
        .lines
        .iter()
        .filter(|l| l.contains("OutOfSync"))
        .collect();
    let writes = testbed.deployment_writes(&ns);
    let changes = image_changes(&writes);
    let by_argo: Vec<_> = changes
        .iter()
        .filter(|c| c.from.is_some() && c.field_manager == ARGO_MANAGER)
        .collect();
    assert!(by_argo.is_empty(), "Argo CD changed images: {by_argo:#?}");
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2)
    );
    println!("OutOfSync lines: {out_of_sync:#?}");
    println!(
        "image changes after the creates: {} (by {ARGO_MANAGER}: {}); images {REPOSITORY}",
        changes.iter().filter(|c| c.from.is_some()).count(),
        by_argo.len()
    );
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
