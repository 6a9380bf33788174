//! The operator's HTTP endpoints, as the shipped Deployment's probes use them: `/readyz`
//! turns 200 once the AppRelease cache is synced — in an empty namespace, with an
//! AppRelease reconciled, and after a crash — and `/healthz` answers 200 throughout.

use std::time::{Duration, Instant};

use apprelease_e2e::fixtures::{Jobs, RELEASE, V1};
use apprelease_e2e::{Operator, Scenario};

/// How long the cache may take to sync: one list of a namespace. A liveness bound, far above
/// what it takes (tens of milliseconds on the simulator).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Polls `/readyz` until it answers 200 and returns how long that took from `since`.
async fn ready_after(operator: &Operator, since: Instant) -> anyhow::Result<Duration> {
    let deadline = since + READY_WITHIN;
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        // The server may not listen yet right after a (re)start.
        if let Ok(answer) = operator.get("/readyz").await {
            if answer.0 == 200 {
                return Ok(since.elapsed());
            }
            last = answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "/readyz did not answer 200 within {READY_WITHIN:?}; last answer {last:?}\noperator log:\n{}",
        operator.log_tail(30)
    )
}

async fn healthy(operator: &Operator) -> anyhow::Result<()> {
    let (code, body) = operator.get("/healthz").await?;
    anyhow::ensure!(code == 200, "/healthz answered {code}: {body}");
    Ok(())
}

#[tokio::test]
async fn readyz_turns_200_empty_with_a_release_and_after_a_crash() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut s = Scenario::start("endpoints").await?;

    // No AppRelease in the namespace: an empty list is a synced cache too.
    let empty = ready_after(&s.operator, started).await?;
    healthy(&s.operator).await?;

    s.adopt(&Jobs::default()).await?;
    let (code, body) = s.operator.get("/readyz").await?;
    assert_eq!(
        (code, body.trim()),
        (200, "ready"),
        "with {RELEASE} at {V1}"
    );
    healthy(&s.operator).await?;

    let restarted = Instant::now();
    s.operator.crash_and_restart()?;
    let after_crash = ready_after(&s.operator, restarted).await?;
    healthy(&s.operator).await?;
    // Still reconciling after the restart: readiness did not stop the controller.
    s.wait_ready(RELEASE, V1).await?;

    eprintln!(
        "/readyz 200 after: {} ms (empty, from cluster start), {} ms (after SIGKILL restart)",
        empty.as_millis(),
        after_crash.as_millis()
    );
    Ok(())
}
