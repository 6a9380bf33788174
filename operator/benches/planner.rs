//! How long one planner decision takes, for the states a controller sees most.
//! Run: `cargo bench -p apprelease-operator --bench planner`. Results: BENCHMARKS.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use apprelease_operator::api::AppRelease;
use apprelease_operator::plan::{DeploymentState, Observed, decide};
use chrono::Utc;
use serde_json::json;

fn release(version: &str, targets: usize) -> AppRelease {
    let targets: Vec<_> = (0..targets)
        .map(|i| json!({"deployment": format!("app-{i}")}))
        .collect();
    let mut r: AppRelease = serde_json::from_value(json!({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
        "metadata": {"name": "bench", "namespace": "bench", "uid": "u", "generation": 1},
        "spec": {"version": version, "targets": targets,
            "backup": {"template": {"spec": {"containers": [{"name": "b", "image": "busybox"}]}}},
            "migration": {"template": {"spec": {"containers": [{"name": "m"}]}}}}
    }))
    .unwrap();
    r.status = None;
    r
}

fn cluster(version: &str, targets: usize) -> Observed {
    let deployments: BTreeMap<String, DeploymentState> = (0..targets)
        .map(|i| {
            let state = DeploymentState {
                containers: vec![
                    ("app".into(), format!("registry/app-{i}:{version}")),
                    ("sidecar".into(), "envoy:1".into()),
                ],
                replicas: 3,
                generation: 1,
                observed_generation: 1,
                status_replicas: 3,
                updated_replicas: 3,
                available_replicas: 3,
                ..Default::default()
            };
            (format!("app-{i}"), state)
        })
        .collect();
    Observed {
        now: Utc::now(),
        deployments,
        jobs: BTreeMap::new(),
        peers: Vec::new(),
        requests: Vec::new(),
    }
}

/// Median and 90th percentile of `runs` timings of `f`, in nanoseconds.
fn measure(runs: usize, mut f: impl FnMut()) -> (u128, u128) {
    let mut samples: Vec<u128> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    (samples[runs / 2], samples[runs * 9 / 10])
}

fn main() {
    println!("{:<48} {:>12} {:>12}", "case", "median ns", "p90 ns");
    for targets in [1, 10, 100] {
        // At rest: every target runs the version (the common, idle reconcile).
        let idle = release("1.0", targets);
        let idle_cluster = cluster("1.0", targets);
        let at_rest = decide(&idle, &idle_cluster);
        let mut settled = idle.clone();
        settled.status = Some(at_rest.status);
        let (median, p90) = measure(2000, || {
            black_box(decide(black_box(&settled), black_box(&idle_cluster)));
        });
        println!(
            "{:<48} {median:>12} {p90:>12}",
            format!("idle, {targets} target(s)")
        );

        // Starting an upgrade: validation, image resolution, the write-ahead record.
        let upgrade = release("2.0", targets);
        let (median, p90) = measure(2000, || {
            black_box(decide(black_box(&upgrade), black_box(&idle_cluster)));
        });
        println!(
            "{:<48} {median:>12} {p90:>12}",
            format!("start an upgrade, {targets} target(s)")
        );
    }
}
