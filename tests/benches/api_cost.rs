//! What one upgrade costs the API server: the operator's requests, by verb and resource,
//! for the example app's upgrade (backup, migration, two targets, verification) on the
//! simulated cluster. Run: `cargo bench -p apprelease-e2e --bench api_cost`. Results:
//! BENCHMARKS.md.

use std::collections::BTreeMap;
use std::time::Instant;

use apprelease_e2e::Scenario;
use apprelease_e2e::fixtures::{self, Jobs, RELEASE, V2};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let s = Box::pin(Scenario::start("api-cost")).await?;
    Box::pin(s.adopt(&Jobs::default())).await?;
    let sim = s.cluster.sim().expect("runs on the simulated cluster");
    sim.requests().reset();
    let started = Instant::now();
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    Box::pin(s.wait_ready(RELEASE, V2)).await?;
    let elapsed = started.elapsed();
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in sim
        .requests()
        .recent()
        .into_iter()
        .filter(|r| r.user_agent.contains("apprelease-operator"))
        // The Lease renewals (every 5 s, in the operator's namespace) cost the same whether
        // an upgrade runs or not: not an upgrade's cost.
        .filter(|r| r.namespace == s.cluster.namespace)
    {
        *counts.entry((r.verb, r.resource)).or_default() += 1;
    }
    println!("{:<10} {:<22} {:>6}", "verb", "resource", "count");
    for ((verb, resource), n) in &counts {
        println!("{verb:<10} {resource:<22} {n:>6}");
    }
    let writes: u64 = counts
        .iter()
        .filter(|((v, _), _)| !matches!(v.as_str(), "get" | "list" | "watch"))
        .map(|(_, n)| n)
        .sum();
    let total: u64 = counts.values().sum();
    println!(
        "total {total} requests, {writes} writes, upgrade took {:.2} s (time scale {})",
        elapsed.as_secs_f64(),
        apprelease_e2e::cluster::TIME_SCALE
    );
    Ok(())
}
