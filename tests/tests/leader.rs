//! Two replicas, one writer: two operator processes with identities of their own share the
//! scenario's Lease (`Operator::start_as`). The leader is killed (SIGKILL) at each step of an
//! upgrade; the other replica takes over once the Lease expires and finishes the upgrade with
//! no Job created twice, no step repeated, and no write by a replica out of its turn. Then a
//! leader is stopped as the kubelet stops a pod (SIGTERM): it releases the Lease and the
//! standby takes over at once.
//!
//! Both run on both backends. The simulator serves `coordination.k8s.io/v1` Leases like any
//! stored object — the resourceVersion precondition (409 on a stale update), an existing
//! namespace required — which is all leader election uses; the control plane enforces the
//! shipped Role on them. Takeover times come from the Lease's `acquireTime`, which the new
//! leader writes from its own clock (this machine's, as the test's): kill → acquireTime.
//! Who wrote what comes from the request log (the simulator's, or the audit log): the
//! operator's User-Agent names the replica.

use std::time::{Duration, Instant, SystemTime};

use apprelease_e2e::cluster::TIME_SCALE;
use apprelease_e2e::fixtures::{self, Jobs, Outcome, RELEASE, V2, V4};
use apprelease_e2e::operator::FIRST;
use apprelease_e2e::{Cluster, Operator, Scenario, inspect};
use apprelease_operator::api::UpgradeResult;
use apprelease_operator::leader::Timing;
use apprelease_sim::requests::WRITE_VERBS;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The second replica.
const SECOND: &str = "operator-b";

/// How long each Job runs: its step is still in force when the leader is killed at it.
const JOB_RUNS: Duration = Duration::from_secs(4);

/// Seconds each new pod of a target must be ready before it counts as available: the
/// rollout (2 + 1 pods, one at a time) is still going on when its leader is killed.
const MIN_READY_SECONDS: u64 = 6;

/// Waits until `identity` holds the scenario's Lease and returns when it took it (the
/// Lease's acquireTime).
async fn holder_since(
    cluster: &Cluster,
    identity: &str,
    limit: Duration,
) -> anyhow::Result<SystemTime> {
    let deadline = Instant::now() + limit;
    loop {
        let lease = inspect::lease(cluster).await?.unwrap_or_default();
        if lease.holder_identity.as_deref() == Some(identity)
            && let Some(acquired) = &lease.acquire_time
        {
            return Ok(SystemTime::from(acquired.0));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{identity} did not take the Lease within {limit:?}; last: {lease:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The replica that made each write request in the scenario's namespace, in order: the
/// identity in the operator's User-Agent, `apprelease-operator/0.1.0 (operator-a)`.
fn writers(cluster: &Cluster) -> Vec<String> {
    let log = cluster.requests().unwrap_or_default();
    log.into_iter()
        .filter(|r| r.namespace == cluster.namespace && WRITE_VERBS.contains(&r.verb.as_str()))
        .filter_map(|r| {
            let (_, rest) = r
                .user_agent
                .strip_prefix("apprelease-operator/")?
                .split_once('(')?;
            Some(rest.trim_end_matches(')').to_string())
        })
        .collect()
}

/// Whether every write was made by the leader of its term. `marks` are the lengths of
/// [`writers`] when each leader was stopped, `leaders` who led each term (one more than
/// marks). A stopped leader's own writes may still open the next term's share: requests it
/// had sent before the kill (or made while draining after SIGTERM).
fn one_writer_at_a_time(all: &[String], marks: &[usize], leaders: &[&str]) -> Result<(), String> {
    let mut bounds = vec![0];
    bounds.extend(marks);
    bounds.push(all.len());
    for (term, window) in bounds.windows(2).enumerate() {
        let share = &all[window[0]..window[1]];
        let previous = term.checked_sub(1).map(|t| leaders[t]);
        let mut own = share.iter().skip_while(|w| Some(w.as_str()) == previous);
        if !own.all(|w| w == leaders[term]) {
            return Err(format!(
                "term {term} of {}: writes by {share:?}",
                leaders[term]
            ));
        }
    }
    Ok(())
}

/// Sets how long new pods must be ready before they count (and a progress deadline above
/// it), in the cluster's seconds: the simulator's run `TIME_SCALE` times faster.
async fn set_min_ready(cluster: &Cluster, seconds: u64) -> anyhow::Result<()> {
    let scale = if cluster.is_simulated() {
        TIME_SCALE as u64
    } else {
        1
    };
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for name in ["backend", "frontend"] {
        let patch = json!({"spec": {
            "minReadySeconds": seconds * scale,
            "progressDeadlineSeconds": (seconds * 10).max(10) * scale,
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    Ok(())
}

/// Kills the leader at each step of the upgrade to `V2` and checks that the other replica
/// takes over within the lease duration (plus one look, see below) and finishes it: no Job
/// created twice, no step repeated, one writer at a time. Then, in the upgrade to `V4`, stops
/// the leader with SIGTERM while it migrates: it exits 0, releases the Lease, and the standby
/// (the replica killed last, restarted) takes over at once.
///
/// A standby takes over `leaseDurationSeconds` after it last *saw* the Lease change, by its
/// own clock; it looks every retry period (2 s), and the leader renews every 5 s. So from the
/// kill, a takeover comes after 10 to 17 s (15 ± what the last renewal and the last look were
/// away from the kill).
#[tokio::test]
async fn l01_the_standby_takes_over_a_killed_leader_at_every_step_and_a_released_lease_at_once()
-> anyhow::Result<()> {
    let timing = Timing::default();
    let expiry_limit = timing.lease_duration + timing.retry_period + Duration::from_secs(1);
    let mut s = Scenario::start("leader").await?;
    holder_since(&s.cluster, FIRST, Duration::from_secs(10)).await?;
    let mut second = Operator::start_as(&s.cluster, SECOND)?;
    let slow = Outcome::RunFor(JOB_RUNS);
    let jobs = Jobs {
        backup: slow.clone(),
        migration: slow.clone(),
        verify: slow,
        ..Jobs::default()
    };
    s.adopt(&jobs).await?;

    // The standby is ready (healthy) and says it does not lead.
    let (code, body) = second.get("/readyz").await?;
    assert_eq!((code, body.trim()), (200, "standing by"));
    let leads = |metrics: &str, value: u8| {
        metrics
            .lines()
            .any(|l| l == format!("apprelease_leader {value}"))
    };
    assert!(leads(&second.get("/metrics").await?.1, 0));
    assert!(leads(&s.operator.get("/metrics").await?.1, 1));

    set_min_ready(&s.cluster, MIN_READY_SECONDS).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let identities = [FIRST, SECOND];
    let mut leader = 0;
    let mut leaders = vec![FIRST];
    let mut marks = Vec::new();
    let mut takeovers = Vec::new();
    let mut steps_seen = Vec::new();
    for step in ["BackingUp", "Migrating", "RollingOut", "Verifying"] {
        s.wait_for_step(RELEASE, step).await?;
        let replica = if leader == 0 {
            &mut s.operator
        } else {
            &mut second
        };
        replica.kill()?;
        let killed = SystemTime::now();
        marks.push(writers(&s.cluster).len());
        // Where the killed leader left it: nobody writes until the other takes over.
        let left = inspect::status(&s.cluster, RELEASE).await;
        let upgrade = left.upgrade.clone().expect("an upgrade in flight");
        steps_seen.push(upgrade.step.as_str().to_string());
        let next = 1 - leader;
        let acquired = holder_since(
            &s.cluster,
            identities[next],
            expiry_limit + Duration::from_secs(5),
        )
        .await?;
        let took = acquired.duration_since(killed).unwrap_or_default();
        eprintln!(
            "killed {} at {} (targets done: {}, Jobs: {:?}); {} took over after {:.2} s",
            identities[leader],
            upgrade.step.as_str(),
            upgrade.targets_done,
            inspect::jobs(&s.cluster).await?,
            identities[next],
            took.as_secs_f64()
        );
        takeovers.push((step, took));
        // Back as a standby, as a restarted pod would be.
        let replica = if leader == 0 {
            &mut s.operator
        } else {
            &mut second
        };
        replica.restart()?;
        leader = next;
        leaders.push(identities[leader]);
    }
    let status = s.wait_ready(RELEASE, V2).await?;
    assert_eq!(
        steps_seen,
        ["BackingUp", "Migrating", "RollingOut", "Verifying"]
    );
    assert_eq!(status.attempts, 1, "one attempt");
    assert_eq!(status.history.len(), 1);
    assert_eq!(status.history[0].result, UpgradeResult::Succeeded);
    assert_eq!(
        inspect::running_version(&s.cluster).await?.as_deref(),
        Some(V2)
    );
    assert_eq!(
        inspect::each_job_ran_once(&s.cluster).await?,
        3,
        "backup, migration, verification"
    );
    for (step, took) in &takeovers {
        assert!(
            *took <= expiry_limit,
            "the takeover at {step} took {took:?}, more than {expiry_limit:?}"
        );
    }

    // SIGTERM while migrating to V4: the leader finishes what is in flight, releases the
    // Lease and exits 0; the standby takes over without waiting for expiry.
    set_min_ready(&s.cluster, 0).await?;
    fixtures::set_version(&s.cluster, RELEASE, V4).await?;
    s.wait_for_step(RELEASE, "Migrating").await?;
    let replica = if leader == 0 {
        &mut s.operator
    } else {
        &mut second
    };
    let sent = SystemTime::now();
    marks.push(writers(&s.cluster).len());
    let (exit, exit_took) = replica.terminate(Duration::from_secs(30)).await?;
    assert_eq!(exit.code(), Some(0), "{}", replica.log_tail(20));
    let next = 1 - leader;
    let acquired = holder_since(&s.cluster, identities[next], expiry_limit).await?;
    let handover = acquired.duration_since(sent).unwrap_or_default();
    eprintln!(
        "SIGTERM to {}: exited 0 after {:.2} s; {} took over after {:.2} s",
        identities[leader],
        exit_took.as_secs_f64(),
        identities[next],
        handover.as_secs_f64()
    );
    assert!(
        handover < timing.lease_duration / 3,
        "a released Lease is taken at the standby's next look, not at expiry: {handover:?}"
    );
    leaders.push(identities[next]);
    let status = s.wait_ready(RELEASE, V4).await?;
    assert_eq!(status.attempts, 2);
    assert!(
        status
            .history
            .iter()
            .all(|h| h.result == UpgradeResult::Succeeded),
        "{:?}",
        status.history
    );
    assert_eq!(inspect::each_job_ran_once(&s.cluster).await?, 6);

    // Each step's Event once: a step repeated by a new leader would say so again.
    let events = inspect::event_counts(&s.cluster, RELEASE).await?;
    let mut said: Vec<_> = events
        .iter()
        .map(|(reason, note, _)| (reason, note))
        .collect();
    said.sort();
    let before = said.len();
    said.dedup();
    assert_eq!(said.len(), before, "an Event said twice: {events:?}");
    assert!(events.iter().all(|(_, _, count)| *count == 1), "{events:?}");
    if s.cluster.requests().is_some() {
        let checked = one_writer_at_a_time(&writers(&s.cluster), &marks, &leaders);
        assert_eq!(checked, Ok(()));
    }
    let mut times: Vec<f64> = takeovers.iter().map(|(_, t)| t.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "takeovers after SIGKILL ({}): {:?} s, median {:.2} s; after SIGTERM: {:.2} s",
        s.cluster.backend.name(),
        takeovers
            .iter()
            .map(|(step, t)| format!("{step} {:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>(),
        (times[1] + times[2]) / 2.0,
        handover.as_secs_f64()
    );
    Ok(())
}

/// SIGTERM to a lone leader: it exits 0 within moments and leaves the Lease released
/// (`holderIdentity` empty, one-second duration), so a replica started next takes it at once.
#[tokio::test]
async fn l02_sigterm_exits_0_with_the_lease_released() -> anyhow::Result<()> {
    let mut s = Scenario::start("leader-sigterm").await?;
    s.adopt(&Jobs::default()).await?;
    holder_since(&s.cluster, FIRST, Duration::from_secs(10)).await?;
    let (exit, took) = s.operator.terminate(Duration::from_secs(30)).await?;
    assert_eq!(exit.code(), Some(0), "{}", s.operator.log_tail(20));
    let lease = inspect::lease(&s.cluster).await?.expect("the Lease");
    assert_eq!(lease.holder_identity.as_deref(), Some(""), "{lease:?}");
    assert_eq!(lease.lease_duration_seconds, Some(1));
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    eprintln!(
        "SIGTERM → exit 0 with the Lease released: {:.2} s",
        took.as_secs_f64()
    );

    let sent = SystemTime::now();
    let _next = Operator::start_as(&s.cluster, SECOND)?;
    let acquired = holder_since(&s.cluster, SECOND, Duration::from_secs(10)).await?;
    eprintln!(
        "a new replica took the released Lease {:.2} s after it started",
        acquired
            .duration_since(sent)
            .unwrap_or_default()
            .as_secs_f64()
    );
    assert!(acquired.duration_since(sent).unwrap_or_default() < Duration::from_secs(5));
    Ok(())
}

#[test]
fn one_writer_at_a_time_allows_only_the_stopped_leaders_requests_in_flight() {
    let w = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = w(&["a", "a", "a", "b", "b", "a"]);
    assert_eq!(
        one_writer_at_a_time(&all, &[2, 5], &["a", "b", "a"]),
        Ok(())
    );
    assert!(
        one_writer_at_a_time(&w(&["a", "b", "a", "b"]), &[1], &["a", "b"]).is_err(),
        "a write by the stopped leader after the new one's"
    );
    assert!(
        one_writer_at_a_time(&w(&["a", "c"]), &[1], &["a", "b"]).is_err(),
        "a write by a replica that never led"
    );
}
