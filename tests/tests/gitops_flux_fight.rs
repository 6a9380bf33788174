//! The trap docs/gitops.md steers around, shown with the real Flux: the same repository and
//! Kustomization as tests/tests/gitops_flux.rs but without `spec.ignore`, so git's image tags
//! (the first install's) are Flux's desired state. After an upgrade Flux's drift correction
//! puts the old images back at every interval; the operator puts its own back a few times,
//! spaced out, then stops and says who changes them (Ready False and Stalled, reason
//! `Drifted`, naming kustomize-controller), and the Kustomization's health check fails on
//! it. Counted from the audit log: the operator's writes stop, Flux's go on, nobody loops.
//!
//! The control plane only, for the reasons of tests/tests/gitops_flux.rs.

use std::time::Instant;

use apprelease_e2e::fixtures::{RELEASE, REPOSITORY, V1, V2};
use apprelease_e2e::flux;
use apprelease_e2e::gitops::{FLUX_MANAGER, GitOps, INTERVAL, ready_at};
use apprelease_e2e::inspect;
use apprelease_e2e::testbed::{self, image_changes};
use apprelease_operator::api::FIELD_MANAGER;
use apprelease_operator::api::conditions::ConditionStatus;

/// Repairs before the operator stops (README, "Someone else changed an image": at once,
/// after 30 s, after 60 s; the fourth drift within ten minutes stops it).
const REPAIRS: usize = 3;

#[tokio::test]
async fn without_ignore_rules_flux_reverts_the_images_and_the_operator_stops_and_says_so()
-> anyhow::Result<()> {
    let t0 = Instant::now();
    flux::bin_dir()?;
    let testbed = testbed::shared()?;
    let mut g = GitOps::start("gitops-fight", false).await?;
    let ns = g.s.cluster.namespace.clone();
    let first = g.first.clone();
    g.watch_until("the first commit is Ready", |k, a| {
        (k.ready_at(&first) && ready_at(a, V1)).then_some(())
    })
    .await?;
    let second = g.commit_version(V2)?;
    g.watch_until("the second commit is Ready", |k, a| {
        (k.ready_at(&second) && ready_at(a, V2)).then_some(())
    })
    .await?;
    let upgraded = t0.elapsed();

    // Flux corrects the drift from git; the operator repairs, then stops.
    let status = g
        .watch_until("the operator stops repairing", |_, a| {
            inspect::ready(a)
                .is_some_and(|(_, r)| r == "Drifted")
                .then(|| a.clone())
        })
        .await?;
    let stopped = t0.elapsed();
    let message = inspect::condition(&status, "Ready")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains(FLUX_MANAGER) && message.contains(&format!("{REPOSITORY}:{V1}")),
        "the report names who sets which image: {message}"
    );
    assert!(inspect::is_true(&status, "Stalled"), "{status:#?}");
    // Flux's health check reads the Stalled AppRelease as failed.
    let k = g
        .watch_until("the Kustomization's health check fails", |k, _| {
            (k.ready == "False" && k.reason == "HealthCheckFailed").then(|| k.clone())
        })
        .await?;
    assert!(
        k.message
            .contains(&format!("AppRelease/{ns}/{RELEASE} status: 'Failed'")),
        "{k:?}"
    );

    // Three more intervals: Flux goes on comparing, the operator writes nothing.
    let before = testbed.deployment_writes(&ns).len();
    tokio::time::sleep(INTERVAL * 3).await;
    let writes = testbed.deployment_writes(&ns);
    let operator_after_stop = writes[before..]
        .iter()
        .filter(|w| !w.dry_run && w.field_manager == FIELD_MANAGER)
        .count();
    assert_eq!(operator_after_stop, 0, "the operator stopped fighting");

    let changes = image_changes(&writes);
    for deployment in ["backend", "frontend"] {
        let by = |manager: &str, version: &str| {
            changes
                .iter()
                .filter(|c| c.deployment == deployment && c.from.is_some())
                .filter(|c| c.field_manager == manager && c.to == format!("{REPOSITORY}:{version}"))
                .count()
        };
        // The upgrade, then one repair per Flux correction but the last.
        let (operator, flux) = (by(FIELD_MANAGER, V2), by(FLUX_MANAGER, V1));
        assert_eq!(operator, 1 + REPAIRS, "{deployment}: {changes:#?}");
        assert_eq!(flux, REPAIRS + 1, "{deployment}: {changes:#?}");
    }
    let events = inspect::events(&g.s.cluster, RELEASE).await?;
    let count = |reason: &str| events.iter().filter(|(r, _)| r == reason).count();
    assert_eq!(count("DriftRepaired"), REPAIRS, "{events:#?}");
    assert_eq!(count("Drifted"), 1, "one Event for the report: {events:#?}");
    assert_eq!(
        inspect::ready(&inspect::status(&g.s.cluster, RELEASE).await),
        Some((ConditionStatus::False, "Drifted".to_string()))
    );
    println!(
        "upgraded after {:.1} s; stopped after {:.1} s; image changes after the creates: {} \
         ({} by {FIELD_MANAGER}, {} by {FLUX_MANAGER})",
        upgraded.as_secs_f64(),
        stopped.as_secs_f64(),
        changes.iter().filter(|c| c.from.is_some()).count(),
        changes
            .iter()
            .filter(|c| c.from.is_some() && c.field_manager == FIELD_MANAGER)
            .count(),
        changes
            .iter()
            .filter(|c| c.from.is_some() && c.field_manager == FLUX_MANAGER)
            .count(),
    );
    println!("Ready: {message}");
    println!("Kustomization: {}", k.message);
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
