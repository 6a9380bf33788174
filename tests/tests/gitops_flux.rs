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
//! - a Deployment without an image is refused by the API server: git must name one;
//! - commit a new version: Flux applies it, the operator upgrades, and the Kustomization is
//!   Ready at that commit only once the AppRelease is; ten reconcile intervals later the audit
//!   log holds no image change and no Deployment write by Flux, though git still names the
//!   first version's images; commit a version that never becomes ready: the operator rolls it
//!   back, and the Kustomization is not Ready, naming the AppRelease as failed.
//!
//! The control plane only. Whether Flux and the operator fight over a field is a question
//! about the real server's server-side apply: dry runs, field ownership and conflicts in
//! managedFields, and how Flux's `ignore` strips a field another apply manager owns. The
//! simulator models those, but where it and the real server disagree the real server is
//! right, and Flux's controllers (controller-runtime clients, kstatus) were not tried against
//! it. So this starts the shared testbed whatever `APPRELEASE_E2E_BACKEND` says, and needs
//! `APPRELEASE_FLUX_BIN` (scripts/test.sh builds Flux and sets it, and runs this in its
//! control-plane pass).

use std::time::Instant;

use apprelease_e2e::fixtures::{BAD_VERSION, RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::flux;
use apprelease_e2e::gitops::{FLUX_MANAGER, GitOps, INTERVAL, ready_at};
use apprelease_e2e::inspect;
use apprelease_e2e::testbed::{self, DeploymentWrite, ImageChange, image_changes};
use apprelease_operator::api::FIELD_MANAGER;
use apprelease_operator::api::conditions::ConditionStatus;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};

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
    let mut g = GitOps::start("gitops-flux", true).await?;
    let ns = g.s.cluster.namespace.clone();
    let first = g.first.clone();
    let started = t0.elapsed();

    // Why git keeps an image: the API server refuses a Deployment whose container has none
    // (the pod template is validated as a pod is), so "leave the image out of git and let
    // the operator set it" cannot create the app.
    let imageless: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "imageless"},
        "spec": {
            "selector": {"matchLabels": {"app": "imageless"}},
            "template": {"metadata": {"labels": {"app": "imageless"}},
                         "spec": {"containers": [{"name": "app"}]}}
        }
    }))?;
    let refused = Api::<Deployment>::namespaced(g.s.cluster.client.clone(), &ns)
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &imageless,
        )
        .await;
    match refused {
        Err(kube::Error::Api(e)) if e.code == 422 => assert!(
            e.message
                .contains("spec.template.spec.containers[0].image: Required value"),
            "{e:?}"
        ),
        other => panic!("a Deployment without an image: {other:?}"),
    }

    // The first install: Flux creates the Deployments and the AppRelease, the operator
    // adopts what runs.
    let at_ready = g
        .watch_until("the first commit is Ready", |k, a| {
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
    let second = g.commit_version(V2)?;
    let upgrade_start = Instant::now();
    let mark = g.seen.len();
    let at_ready = g
        .watch_until("the second commit is Ready", |k, a| {
            k.ready_at(&second).then(|| a.clone())
        })
        .await?;
    let upgrade_time = upgrade_start.elapsed();
    assert!(
        ready_at(&at_ready, V2),
        "the Kustomization is Ready at the new commit only when the AppRelease is Ready at \
         {V2}: {at_ready:#?}"
    );
    let during = &g.seen[mark..];
    assert!(
        during
            .iter()
            .any(|l| l.starts_with("Kustomization Ready=Unknown Progressing")
                && l.contains("step=Some")),
        "while the operator upgraded, the Kustomization was Progressing: {during:#?}"
    );
    assert_eq!(
        inspect::running_version(&g.s.cluster).await?.as_deref(),
        Some(V2)
    );

    // Ten reconcile intervals: git still says V1's images, and nobody changes any image.
    // On a loaded machine Flux's reconciles come later than its interval: the window lasts
    // ten intervals, longer (up to twenty) until Flux has compared the Deployments five times.
    let before = testbed.deployment_writes(&ns);
    let flux_compares = |writes: &[DeploymentWrite]| {
        writes
            .iter()
            .filter(|w| w.dry_run && w.field_manager == FLUX_MANAGER && w.name == "backend")
            .count()
    };
    tokio::time::sleep(INTERVAL * 10).await;
    for _ in 0..10 {
        if flux_compares(&testbed.deployment_writes(&ns)[before.len()..]) >= 5 {
            break;
        }
        tokio::time::sleep(INTERVAL).await;
    }
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
    let compared = flux_compares(window);
    assert!(
        compared >= 5,
        "Flux compared the backend Deployment {compared} times in ten to twenty intervals"
    );
    let k = g.kustomization().await?;
    assert!(k.ready_at(&second), "{k:?}");
    let status = inspect::status(&g.s.cluster, RELEASE).await;
    assert!(
        ready_at(&status, V2) && status.drift.is_none(),
        "{status:#?}"
    );
    let events = inspect::events(&g.s.cluster, RELEASE).await?;
    assert!(
        !events.iter().any(|(r, _)| r.starts_with("Drift")),
        "{events:?}"
    );
    let steady = format!(
        "{} Deployment writes in the window ({} stored, {} by Flux), {} dry-run compares of \
         backend by Flux, {} image changes",
        window.len(),
        stored.len(),
        corrections.len(),
        compared,
        flips_in_window.len()
    );
    println!("{steady}");

    // A version that never becomes ready: rolled back, and the Kustomization says so.
    let third = g.commit_version(BAD_VERSION)?;
    let mark = g.seen.len();
    let failed = g
        .watch_until("the third commit fails its health check", |k, a| {
            (k.attempted.ends_with(&third) && k.ready == "False").then(|| (k.clone(), a.clone()))
        })
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
        inspect::running_version(&g.s.cluster).await?.as_deref(),
        Some(V2)
    );
    let rollback_seen = g.seen[mark..].to_vec();

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
