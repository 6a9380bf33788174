//! Where the scenarios run. By default each scenario gets its own simulated cluster, so
//! scenarios run in parallel without seeing each other. With `APPRELEASE_E2E_KUBECONFIG`
//! they share that real cluster, each in its own namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use apprelease_operator::api::AppRelease;
use apprelease_sim::{Fault, ImageEffect, JobMatch, JobResult, JobRule, Sim, SimConfig, SimHandle};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt};

use crate::fixtures::{BAD_VERSION, Outcome, RELEASE};

/// Simulated seconds per real second: a 10 s progress deadline takes half a second.
pub const TIME_SCALE: f64 = 20.0;

/// A cluster and a namespace of one scenario.
pub struct Cluster {
    /// A client for the scenario's own checks.
    pub client: Client,
    /// The namespace the scenario works in.
    pub namespace: String,
    /// Kubeconfig file the operator process uses.
    pub kubeconfig: PathBuf,
    /// A scratch directory (logs, kubeconfig).
    pub dir: PathBuf,
    sim: Option<SimServer>,
}

/// The simulated cluster on a runtime of its own, as a separate server would be: its work
/// neither competes with the test's single-threaded runtime nor shares that thread's stack.
struct SimServer {
    handle: Option<SimHandle>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SimServer {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(16 << 20)
            .thread_name("sim")
            .enable_all()
            .build()?;
        let starting = runtime.spawn(Sim::start(SimConfig {
            time_scale: TIME_SCALE,
            ..Default::default()
        }));
        // Wait on a plain thread: the caller may be inside another runtime.
        let handle = std::thread::scope(|scope| scope.spawn(|| runtime.block_on(starting)).join())
            .map_err(|_| anyhow::anyhow!("the simulator panicked while starting"))???;
        Ok(Self {
            handle: Some(handle),
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &SimHandle {
        self.handle.as_ref().expect("running until dropped")
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Cluster {
    /// A cluster for the scenario `name`, with the CRD installed and a fresh namespace.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let cluster = Self::start_bare(name).await?;
        cluster.install_crd().await?;
        cluster.create_namespace().await?;
        Ok(cluster)
    }

    /// A cluster for the scenario `name` with nothing installed by the harness (neither the
    /// CRD nor the namespace): for tests that install the shipped manifests themselves.
    pub async fn start_bare(name: &str) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("apprelease-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (sim, kubeconfig) = match std::env::var_os("APPRELEASE_E2E_KUBECONFIG") {
            Some(path) => (None, PathBuf::from(path)),
            None => {
                let sim = SimServer::start()?;
                let path = dir.join("kubeconfig");
                sim.handle().write_kubeconfig(&path)?;
                // A tag that does not exist never becomes ready on a real cluster; say the same here.
                sim.handle()
                    .fault_image(&format!("*:{BAD_VERSION}"), ImageEffect::NeverReady);
                (Some(sim), path)
            }
        };
        let client = client(&kubeconfig).await?;
        let namespace = format!("e2e-{name}");
        Ok(Self {
            client,
            namespace,
            kubeconfig,
            dir,
            sim,
        })
    }

    /// Whether this is the simulated cluster.
    pub fn is_simulated(&self) -> bool {
        self.sim.is_some()
    }

    /// The simulated cluster, for request counts and API faults.
    pub fn sim(&self) -> Option<&SimHandle> {
        self.sim.as_ref().map(SimServer::handle)
    }

    /// Scripts how the `kind` Jobs of the release `release` end. On a real cluster the Job
    /// templates themselves carry the outcome (see `fixtures::job_template`), so this only
    /// scripts the simulation.
    pub fn script_jobs(&self, release: &str, kind: &str, outcome: &Outcome) {
        let Some(sim) = self.sim() else { return };
        let matcher = JobMatch {
            labels: [
                ("apprelease.io/release".to_string(), release.to_string()),
                ("apprelease.io/job-kind".to_string(), kind.to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let (after, result) = match outcome {
            Outcome::Succeed { report } => (
                1.0,
                JobResult::Succeed {
                    message: report.clone(),
                },
            ),
            Outcome::Fail { message } => (
                1.0,
                JobResult::Fail {
                    exit_code: 1,
                    message: Some(message.clone()),
                },
            ),
            Outcome::RunFor(duration) => (
                duration.as_secs_f64() * TIME_SCALE,
                JobResult::Succeed { message: None },
            ),
        };
        sim.add_fault(Fault::Job(JobRule {
            matcher,
            after_seconds: after,
            result,
        }));
    }

    /// Applies the CRD generated from the operator's types.
    async fn install_crd(&self) -> anyhow::Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let params = PatchParams::apply("apprelease-e2e").force();
        api.patch(
            "appreleases.apprelease.io",
            &params,
            &Patch::Apply(AppRelease::crd()),
        )
        .await
        .context("applying the CRD")?;
        // A real API server serves a new CRD after a moment; wait until the resource answers.
        let releases: Api<AppRelease> = Api::all(self.client.clone());
        crate::wait::until(Duration::from_secs(30), "the CRD is served", || async {
            releases.list(&Default::default()).await.is_ok()
        })
        .await
    }

    async fn create_namespace(&self) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(self.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(e).context("creating the namespace"),
        }
    }

    /// The default release name of the fixtures.
    pub fn release_name(&self) -> &'static str {
        RELEASE
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}
