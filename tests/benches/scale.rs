//! The operator at scale: N AppReleases (one Deployment each, no Jobs) in one namespace, the
//! operator started cold against them, left idle, then upgraded — a few releases one at a
//! time, then a thousand at once while a few releases of another namespace are upgraded one
//! by one (a single user's changes amid another's burst). Prints the figures of
//! BENCHMARKS.md's scale table.
//!
//!     cargo bench -p apprelease-e2e --bench scale -- 1000 3000
//!     APPRELEASE_E2E_BACKEND=control-plane cargo bench -p apprelease-e2e --bench scale -- 1000
//!
//! The sizes are the arguments (default 1000). `APPRELEASE_SCALE_IDLE` is the idle phase in
//! seconds (default 60). A release build of the operator (made first, in
//! `target/scale-operator`, unless `APPRELEASE_OPERATOR_BIN` names one) is run as the
//! scenarios run it; its requests come from the simulator's request log or the control
//! plane's audit log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use apprelease_e2e::fixtures::{self, Jobs, V1, V2};
use apprelease_e2e::{Cluster, Operator, Options, inspect};
use apprelease_operator::api::AppRelease;
use apprelease_operator::api::conditions::ConditionStatus;
use apprelease_sim::requests::RequestRecord;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// Releases upgraded one at a time, for the latency at rest and the cost of one upgrade.
const PROBES: usize = 20;
/// Releases upgraded at once.
const MASS: usize = 1000;
/// Releases of a namespace of their own, upgraded one at a time during the mass upgrade.
const BYSTANDERS: usize = 10;
/// Between two of their upgrades.
const BYSTANDER_PAUSE: Duration = Duration::from_millis(500);
/// Requests the harness sends at the same time while it sets things up or upgrades.
const PARALLEL: usize = 16;
/// Longest any phase may take.
const PATIENCE: Duration = Duration::from_secs(1800);

fn main() -> anyhow::Result<()> {
    // Before any thread starts: setting the environment is only sound then.
    if std::env::var_os(OPERATOR_BIN).is_none() {
        let binary = build_operator()?;
        // SAFETY: no other thread exists yet to read the environment meanwhile.
        unsafe { std::env::set_var(OPERATOR_BIN, binary) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run_all())
}

/// Where the scenarios' harness finds the operator binary.
const OPERATOR_BIN: &str = "APPRELEASE_OPERATOR_BIN";

/// Builds the operator (release) in a target directory of its own and returns the binary.
/// The harness builds one only when it is missing, and a bench must neither measure a stale
/// one nor count a build in its cold start. Its own directory, because the workspace's
/// release directory holds the bench's build, whose dependencies have other features: the
/// two builds would rebuild each other's kube crates every time.
fn build_operator() -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the e2e crate")
        .to_path_buf();
    let target = workspace.join("target").join("scale-operator");
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "apprelease-operator",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&workspace)
        .status()?;
    anyhow::ensure!(built.success(), "building the operator failed");
    Ok(target.join("release").join("apprelease-operator"))
}

async fn run_all() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![1000] } else { sizes };
    let idle = Duration::from_secs(
        std::env::var("APPRELEASE_SCALE_IDLE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    for n in sizes {
        Box::pin(run(n, idle)).await?;
    }
    Ok(())
}

async fn run(n: usize, idle: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(n > PROBES, "at least {} releases", PROBES + 1);
    let cluster = Cluster::start(&format!("scale-{n}")).await?;
    let bystanders = format!("{}-bystanders", cluster.namespace);
    Api::<Namespace>::all(cluster.client.clone())
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": bystanders}}))?,
        )
        .await?;
    let t = Instant::now();
    create(&cluster, &cluster.namespace, n).await?;
    create(&cluster, &bystanders, BYSTANDERS).await?;
    println!(
        "{n} releases on {}: created in {:.1} s",
        cluster.backend.name(),
        t.elapsed().as_secs_f64()
    );
    // The cluster's own work (a pod for each Deployment, scheduled and started) is not the
    // operator's: it is done before the operator starts.
    let t = Instant::now();
    available(&cluster, &cluster.namespace, n).await?;
    available(&cluster, &bystanders, BYSTANDERS).await?;
    println!(
        "all {n} Deployments available after {:.1} s more",
        t.elapsed().as_secs_f64()
    );
    let tracker = Tracker::start(&cluster, &cluster.namespace);
    let bystander_tracker = Tracker::start(&cluster, &bystanders);
    let mut log = OperatorRequests::new(&cluster, &bystanders);
    log.phase();

    // Cold start.
    let started = Instant::now();
    let operator = Operator::start_with(
        &cluster,
        Options {
            log_filter: Some("warn".into()),
            all_namespaces: true,
            ..Default::default()
        },
    )?;
    let pid = operator.pid().expect("the binary, not the image");
    tracker
        .wait(|states| states.values().filter(|s| s.ready_at(V1)).count() == n)
        .await?;
    let cold = started.elapsed();
    bystander_tracker
        .wait(|states| states.values().filter(|s| s.ready_at(V1)).count() == BYSTANDERS)
        .await?;
    // The Events of the last reconciles follow their status writes: let them land first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cold_requests = log.phase();
    let settled = memory(pid)?;
    println!(
        "cold start to all {n} Ready: {:.1} s; operator requests {}; status writes per release {:.2}, reads per release {:.2}",
        cold.as_secs_f64(),
        summary(&cold_requests),
        count(&cold_requests, |r| r.resource == "appreleases/status"
            && is_write(r)) as f64
            / n as f64,
        count(&cold_requests, is_read) as f64 / n as f64,
    );
    println!(
        "memory settled: RSS {:.1} MiB; peak so far (the initial lists) {:.1} MiB, {:.2}× settled",
        settled.rss_kib as f64 / 1024.0,
        settled.peak_kib as f64 / 1024.0,
        settled.peak_kib as f64 / settled.rss_kib.max(1) as f64,
    );

    // Idle.
    tokio::time::sleep(idle).await;
    // The Lease renewals cost the same at any scale (leader election, every 5 s): apart.
    let (leases, idle_requests): (Vec<_>, Vec<_>) = log
        .phase()
        .into_iter()
        .partition(|r| r.resource == "leases");
    println!(
        "idle for {} s: {} requests ({:.0} a minute) {}, and {} of the Lease",
        idle.as_secs(),
        idle_requests.len(),
        idle_requests.len() as f64 * 60.0 / idle.as_secs_f64(),
        summary(&idle_requests),
        leases.len()
    );

    // One upgrade at a time.
    let probes: Vec<String> = (0..PROBES).map(release_name).collect();
    let latencies =
        upgrade_one_by_one(&cluster, &cluster.namespace, &tracker, &probes, None).await?;
    let probe_requests = log.phase();
    println!(
        "first write after a spec change, at rest: p50 {} p99 {} (of {PROBES})",
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
    );
    println!(
        "one upgrade (one target, no Jobs): {:.1} reads, {:.1} writes ({}); {}",
        count(&probe_requests, is_read) as f64 / PROBES as f64,
        count(&probe_requests, is_write) as f64 / PROBES as f64,
        per_upgrade(&probe_requests),
        summary(&probe_requests),
    );

    // A thousand at once.
    let mass: Vec<String> = (PROBES..n.min(PROBES + MASS)).map(release_name).collect();
    let started = Instant::now();
    let mass_upgrade = async {
        let patched: Vec<(String, i64, Instant)> = futures::stream::iter(mass.clone())
            .map(|name| {
                let cluster = &cluster;
                async move {
                    let (generation, at) =
                        set_version(cluster, &cluster.namespace, &name, V2).await?;
                    anyhow::Ok((name, generation, at))
                }
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        let mut latencies = Vec::new();
        for (name, generation, at) in &patched {
            let seen = tracker.observed(name, *generation).await?;
            latencies.push(seen.saturating_duration_since(*at));
        }
        tracker
            .wait(|states| {
                mass.iter()
                    .all(|m| states.get(m).is_some_and(|s| s.ready_at(V2)))
            })
            .await?;
        anyhow::Ok((started.elapsed(), latencies))
    };
    let bystander_names: Vec<String> = (0..BYSTANDERS).map(release_name).collect();
    let ((all, latencies), bystander_latencies) = futures::future::try_join(
        mass_upgrade,
        upgrade_one_by_one(
            &cluster,
            &bystanders,
            &bystander_tracker,
            &bystander_names,
            Some(BYSTANDER_PAUSE),
        ),
    )
    .await?;
    let mass_requests = log.phase();
    let peak = memory(pid)?;
    println!(
        "{} upgraded at once: all Ready in {:.1} s; first write after the spec change p50 {} p99 {} max {}; {}",
        mass.len(),
        all.as_secs_f64(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(percentile(&latencies, 100)),
        summary(&mass_requests),
    );
    println!(
        "meanwhile, {BYSTANDERS} releases of another namespace upgraded one at a time: first write p50 {} max {}",
        ms(percentile(&bystander_latencies, 50)),
        ms(percentile(&bystander_latencies, 100)),
    );
    println!(
        "memory after: RSS {:.1} MiB, peak {:.1} MiB",
        peak.rss_kib as f64 / 1024.0,
        peak.peak_kib as f64 / 1024.0
    );
    drop(operator);
    Ok(())
}

fn release_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// Upgrades the releases `names` of `namespace` to V2 one after the other, each after
/// `pause` if given, waiting for each to be Ready; returns the time from each spec change to
/// its first answer.
async fn upgrade_one_by_one(
    cluster: &Cluster,
    namespace: &str,
    tracker: &Tracker,
    names: &[String],
    pause: Option<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    for name in names {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let (generation, at) = set_version(cluster, namespace, name, V2).await?;
        let seen = tracker.observed(name, generation).await?;
        latencies.push(seen.saturating_duration_since(at));
        tracker
            .wait(|states| states.get(name).is_some_and(|s| s.ready_at(V2)))
            .await?;
    }
    Ok(latencies)
}

/// N Deployments at V1 in `namespace` and an AppRelease for each.
async fn create(cluster: &Cluster, namespace: &str, n: usize) -> anyhow::Result<()> {
    futures::stream::iter((0..n).map(release_name))
        .map(|name| async move {
            fixtures::deploy_single_app(cluster, &name, V1, &Jobs::default(), |release| {
                release.metadata.namespace = Some(namespace.to_string());
                release.spec.backup = None;
                // A thousand rollouts at once take the control plane's controllers minutes:
                // the scenarios' 60 s would roll them back.
                release.spec.rollout.timeout = "30m".into();
            })
            .await
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Waits until all `n` Deployments of `namespace` have an available replica.
async fn available(cluster: &Cluster, namespace: &str, n: usize) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = deployments.list(&Default::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0)
                    >= 1
            })
            .count();
        if ready >= n {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{ready} of {n} available");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sets the version; returns the generation it gave the AppRelease and when it was answered.
async fn set_version(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    version: &str,
) -> anyhow::Result<(i64, Instant)> {
    let api: Api<AppRelease> = Api::namespaced(cluster.client.clone(), namespace);
    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": version}})),
        )
        .await?;
    Ok((patched.metadata.generation.unwrap_or(0), Instant::now()))
}

/// What the harness's own watch has seen of one AppRelease.
#[derive(Default)]
struct State {
    current: Option<String>,
    ready: bool,
    /// What `status.failed` says: no upgrade of the bench is meant to fail.
    failed: Option<String>,
    observed_generation: i64,
    /// When each observed generation was first seen.
    first_seen: BTreeMap<i64, Instant>,
}

impl State {
    fn ready_at(&self, version: &str) -> bool {
        self.ready && self.current.as_deref() == Some(version)
    }
}

/// The AppReleases of a namespace as a watch of the harness shows them.
struct Tracker {
    states: Arc<Mutex<HashMap<String, State>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    fn start(cluster: &Cluster, namespace: &str) -> Self {
        let states: Arc<Mutex<HashMap<String, State>>> = Arc::default();
        let api: Api<AppRelease> = Api::namespaced(cluster.client.clone(), namespace);
        let task = tokio::spawn({
            let states = states.clone();
            async move {
                let mut releases = std::pin::pin!(
                    watcher(api, watcher::Config::default())
                        .default_backoff()
                        .applied_objects()
                );
                while let Some(Ok(release)) = releases.next().await {
                    let now = Instant::now();
                    let status = release.status.clone().unwrap_or_default();
                    let mut states = states.lock().unwrap_or_else(PoisonError::into_inner);
                    let state = states.entry(release.name_any()).or_default();
                    state.current = status.current_version.clone();
                    state.ready =
                        inspect::ready(&status).is_some_and(|(c, _)| c == ConditionStatus::True);
                    state.observed_generation = status.observed_generation.unwrap_or(0);
                    state.failed = status
                        .failed
                        .as_ref()
                        .map(|f| format!("{} {}: {}", f.version, f.reason, f.message));
                    state
                        .first_seen
                        .entry(state.observed_generation)
                        .or_insert(now);
                }
            }
        });
        Self { states, task }
    }

    /// Waits until `done` holds of the states.
    async fn wait(
        &self,
        mut done: impl FnMut(&HashMap<String, State>) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((name, failed)) = states
                    .iter()
                    .find_map(|(name, s)| s.failed.as_ref().map(|f| (name, f)))
                {
                    anyhow::bail!("{name} failed its upgrade: {failed}");
                }
                if done(&states) {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "not within {PATIENCE:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When the status of `name` first showed `generation` (or a later one) as observed.
    async fn observed(&self, name: &str, generation: i64) -> anyhow::Result<Instant> {
        let mut at = None;
        self.wait(|states| {
            at = states
                .get(name)
                .and_then(|s| s.first_seen.range(generation..).next().map(|(_, at)| *at));
            at.is_some()
        })
        .await?;
        Ok(at.expect("seen"))
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operator's requests in the namespace, phase by phase: from the simulator's request log
/// (drained every 50 ms, so that none falls out of its bounded log) or the control plane's
/// audit log. Watches aside: a watch is counted when it starts, and is no per-release cost.
/// The bystanders' namespace aside too: the figures are per release of the scenario's.
struct OperatorRequests<'a> {
    cluster: &'a Cluster,
    excluded: String,
    /// On the simulator: what the drain kept since the last phase.
    drained: Arc<Mutex<Vec<RequestRecord>>>,
    drain: Option<tokio::task::JoinHandle<()>>,
    /// On the control plane: how many records earlier phases took.
    taken: usize,
}

impl<'a> OperatorRequests<'a> {
    fn new(cluster: &'a Cluster, excluded: &str) -> Self {
        let drained: Arc<Mutex<Vec<RequestRecord>>> = Arc::default();
        let drain = cluster.sim().map(|sim| {
            let (sim, drained) = (sim.cluster().clone(), drained.clone());
            let excluded = excluded.to_string();
            tokio::spawn(async move {
                loop {
                    let new: Vec<_> = sim
                        .requests
                        .take()
                        .into_iter()
                        .filter(|r| is_operators(r) && r.namespace != excluded)
                        .collect();
                    drained
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(new);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        Self {
            cluster,
            excluded: excluded.to_string(),
            drained,
            drain,
            taken: 0,
        }
    }

    /// The operator's requests since the last call.
    fn phase(&mut self) -> Vec<RequestRecord> {
        match self.cluster.sim() {
            Some(sim) => {
                let mut drained = self.drained.lock().unwrap_or_else(PoisonError::into_inner);
                drained.extend(
                    sim.requests()
                        .take()
                        .into_iter()
                        .filter(|r| is_operators(r) && r.namespace != self.excluded),
                );
                std::mem::take(&mut *drained)
            }
            None => {
                let all = self.cluster.requests().unwrap_or_default();
                let new = all[self.taken.min(all.len())..].to_vec();
                self.taken = all.len();
                new.into_iter().filter(is_operators).collect()
            }
        }
    }
}

impl Drop for OperatorRequests<'_> {
    fn drop(&mut self) {
        if let Some(drain) = self.drain.take() {
            drain.abort();
        }
    }
}

fn is_operators(r: &RequestRecord) -> bool {
    r.user_agent.contains("apprelease-operator") && r.verb != "watch"
}

fn is_read(r: &RequestRecord) -> bool {
    matches!(r.verb.as_str(), "get" | "list")
}

fn is_write(r: &RequestRecord) -> bool {
    !is_read(r) && r.verb != "watch"
}

fn count(records: &[RequestRecord], which: impl Fn(&RequestRecord) -> bool) -> usize {
    records.iter().filter(|r| which(r)).count()
}

/// `verb resource ×count`, most first.
fn summary(records: &[RequestRecord]) -> String {
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in records {
        *counts
            .entry((r.verb.clone(), r.resource.clone()))
            .or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let parts: Vec<String> = counts
        .iter()
        .map(|((verb, resource), n)| format!("{verb} {resource} ×{n}"))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The writes of the probe phase per upgrade, by resource.
fn per_upgrade(records: &[RequestRecord]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in records.iter().filter(|r| is_write(r)) {
        *counts.entry(r.resource.clone()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(resource, n)| format!("{resource} {:.1}", *n as f64 / PROBES as f64))
        .collect();
    parts.join(", ")
}

/// The `p`th percentile (nearest rank); 100 is the maximum.
fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The operator's resident memory now and at its peak.
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
    })
}
