//! Where the scenarios run, chosen by the environment ([`Backend::from_env`]):
//!
//! - the simulator (the default, `APPRELEASE_E2E_BACKEND=sim`): each scenario gets its own
//!   simulated cluster, so scenarios run in parallel without seeing each other;
//! - the real control plane (`APPRELEASE_E2E_BACKEND=control-plane`): one kube-apiserver,
//!   etcd, controller-manager, scheduler and KWOK per test process (`crate::testbed`), the
//!   operator running as its ServiceAccount under the shipped RBAC;
//! - any cluster (`APPRELEASE_E2E_KUBECONFIG=PATH`, or `APPRELEASE_E2E_BACKEND=kubeconfig`
//!   with it): kind, k3d, a real one, with the operator running as that kubeconfig's user.
//!
//! On the shared backends every scenario works in a namespace of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use apprelease_operator::api::{AppRelease, AppReleaseBackup, AppReleaseRestore};
use apprelease_sim::requests::RequestRecord;
use apprelease_sim::{Fault, ImageEffect, JobMatch, JobResult, JobRule, Sim, SimConfig, SimHandle};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::fixtures::{BAD_VERSION, Outcome, RELEASE};
use crate::testbed::{self, Testbed};

/// Where the scenarios run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A simulated cluster per scenario (`apprelease-sim`).
    Simulator,
    /// The local real control plane with KWOK, shared by the test process.
    ControlPlane,
    /// The cluster of this kubeconfig, shared.
    Kubeconfig(PathBuf),
}

impl Backend {
    /// `APPRELEASE_E2E_BACKEND` (`sim`, `control-plane`, `kubeconfig`), else
    /// `APPRELEASE_E2E_KUBECONFIG` when set, else the simulator.
    pub fn from_env() -> anyhow::Result<Self> {
        let kubeconfig = std::env::var_os("APPRELEASE_E2E_KUBECONFIG").map(PathBuf::from);
        let chosen = std::env::var("APPRELEASE_E2E_BACKEND").unwrap_or_default();
        match (chosen.as_str(), kubeconfig) {
            ("" | "kubeconfig", Some(path)) => Ok(Self::Kubeconfig(path)),
            ("kubeconfig", None) => {
                anyhow::bail!("APPRELEASE_E2E_BACKEND=kubeconfig needs APPRELEASE_E2E_KUBECONFIG")
            }
            ("" | "sim" | "simulator", None) => Ok(Self::Simulator),
            ("control-plane", None) => Ok(Self::ControlPlane),
            (other, Some(_)) => anyhow::bail!(
                "APPRELEASE_E2E_BACKEND={other} and APPRELEASE_E2E_KUBECONFIG disagree: set one"
            ),
            (other, None) => anyhow::bail!(
                "APPRELEASE_E2E_BACKEND={other:?}: expected sim, control-plane or kubeconfig"
            ),
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Simulator => "sim",
            Self::ControlPlane => "control-plane",
            Self::Kubeconfig(_) => "kubeconfig",
        }
    }
}

/// Simulated seconds per real second: a 10 s progress deadline takes half a second.
pub const TIME_SCALE: f64 = 20.0;

/// Fails, naming the reason, unless the scenarios run on the simulated cluster: for the
/// scenarios only the simulator can stage (each says why in its doc comment). On the other
/// backends they are excluded explicitly (`--skip NAME`, as scripts/test.sh does), never
/// passed silently.
pub fn require_simulator(why: &str) -> anyhow::Result<()> {
    let backend = Backend::from_env()?;
    anyhow::ensure!(
        backend == Backend::Simulator,
        "this scenario runs on the simulated cluster only: {why}. On the {} backend, exclude \
         it explicitly (cargo test ... -- --skip NAME)",
        backend.name()
    );
    Ok(())
}

/// A cluster and a namespace of one scenario.
pub struct Cluster {
    /// A client for the scenario's own checks.
    pub client: Client,
    /// The namespace the scenario works in.
    pub namespace: String,
    /// Kubeconfig file of the harness's client (an administrator on the shared backends).
    pub kubeconfig: PathBuf,
    /// Kubeconfig file the operator process uses: on the control plane, the
    /// `apprelease-operator` ServiceAccount's; elsewhere the same as `kubeconfig`.
    pub operator_kubeconfig: PathBuf,
    /// A scratch directory (logs, kubeconfig).
    pub dir: PathBuf,
    /// Where this runs.
    pub backend: Backend,
    sim: Option<SimServer>,
    testbed: Option<&'static Testbed>,
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
        Self::start_on(name, Backend::from_env()?).await
    }

    /// [`Cluster::start`] on this backend, whatever the environment says: for tests that need
    /// one backend (the real server's RBAC, say).
    pub async fn start_on(name: &str, backend: Backend) -> anyhow::Result<Self> {
        let cluster = Self::start_bare_on(name, backend).await?;
        // The control plane has the CRD already, from `kubectl apply -k manifests/`.
        if cluster.testbed.is_none() {
            cluster.install_crd().await?;
        }
        cluster.create_namespace(&cluster.namespace).await?;
        // The operator's namespace, for its Lease: the control plane has it from the
        // manifests too.
        if cluster.is_simulated() {
            cluster
                .create_namespace(testbed::OPERATOR_NAMESPACE)
                .await?;
        }
        Ok(cluster)
    }

    /// A cluster for the scenario `name` with nothing installed by the harness (neither the
    /// CRD nor the namespace): for tests that install the shipped manifests themselves.
    pub async fn start_bare(name: &str) -> anyhow::Result<Self> {
        Self::start_bare_on(name, Backend::from_env()?).await
    }

    async fn start_bare_on(name: &str, backend: Backend) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("apprelease-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (sim, testbed, kubeconfig, operator_kubeconfig) = match &backend {
            Backend::Kubeconfig(path) => (None, None, path.clone(), path.clone()),
            Backend::ControlPlane => {
                // Started on a thread of its own; waiting for it blocks only this test's thread.
                let testbed = testbed::shared()?;
                let (admin, operator) = (
                    testbed.admin_kubeconfig.clone(),
                    testbed.operator_kubeconfig.clone(),
                );
                (None, Some(testbed), admin, operator)
            }
            Backend::Simulator => {
                let sim = SimServer::start()?;
                let path = dir.join("kubeconfig");
                sim.handle().write_kubeconfig(&path)?;
                // A tag that does not exist never becomes ready on a real cluster; say the same here.
                sim.handle()
                    .fault_image(&format!("*:{BAD_VERSION}"), ImageEffect::NeverReady);
                (Some(sim), None, path.clone(), path)
            }
        };
        let client = client(&kubeconfig).await?;
        let namespace = format!("e2e-{name}");
        Ok(Self {
            client,
            namespace,
            kubeconfig,
            operator_kubeconfig,
            dir,
            backend,
            sim,
            testbed,
        })
    }

    /// Whether this is the simulated cluster.
    pub fn is_simulated(&self) -> bool {
        self.sim.is_some()
    }

    /// The shared real control plane, when the scenario runs on it.
    pub fn testbed(&self) -> Option<&'static Testbed> {
        self.testbed
    }

    /// The requests made in the scenario's namespace, in order: the simulator's request log,
    /// or the control plane's audit log. None on a cluster given by kubeconfig (no log to read).
    pub fn requests(&self) -> Option<Vec<RequestRecord>> {
        if let Some(sim) = self.sim() {
            return Some(sim.requests().recent());
        }
        self.testbed.map(|t| t.requests(&self.namespace))
    }

    /// The kubectl to drive this cluster with: the one built with the control plane (the same
    /// version), else the one on PATH.
    pub fn kubectl(&self) -> PathBuf {
        match self.testbed {
            Some(t) => t.bin.join("kubectl"),
            None => PathBuf::from("kubectl"),
        }
    }

    /// Runs this cluster's kubectl as a user would, from the repository root, and returns its
    /// stdout; fails with its stderr.
    pub async fn run_kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // Not blocking the test's runtime while kubectl runs.
        let output = tokio::process::Command::new(self.kubectl())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(&repo)
            .output()
            .await?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        anyhow::ensure!(
            output.status.success(),
            "kubectl {} failed ({}):\n{stderr}{stdout}",
            args.join(" "),
            output.status
        );
        Ok(stdout)
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

    /// Applies the CRDs generated from the operator's types.
    async fn install_crd(&self) -> anyhow::Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let params = PatchParams::apply("apprelease-e2e").force();
        for crd in apprelease_operator::crd::all() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &params, &Patch::Apply(crd))
                .await
                .with_context(|| format!("applying the CRD {name}"))?;
        }
        // A real API server serves a new CRD after a moment; wait until the resources answer.
        let releases: Api<AppRelease> = Api::all(self.client.clone());
        let restores: Api<AppReleaseRestore> = Api::all(self.client.clone());
        let backups: Api<AppReleaseBackup> = Api::all(self.client.clone());
        crate::wait::until(Duration::from_secs(30), "the CRDs are served", || async {
            releases.list(&Default::default()).await.is_ok()
                && backups.list(&Default::default()).await.is_ok()
                && restores.list(&Default::default()).await.is_ok()
        })
        .await
    }

    /// A namespace (the scenario's), enforcing Pod Security `restricted`: on a real server
    /// every pod of the scenario — the operator's Jobs included — must pass that admission.
    async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    [(
                        "pod-security.kubernetes.io/enforce".to_string(),
                        "restricted".to_string(),
                    )]
                    .into(),
                ),
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

    /// Where the scenario's operator keeps its Lease: the operator's namespace, where the
    /// shipped Role lets it (on the simulator too, as the operator defaults to it outside a
    /// cluster); on a cluster given by kubeconfig the scenario's own namespace, which exists.
    pub fn lease_namespace(&self) -> String {
        match self.backend {
            Backend::Kubeconfig(_) => self.namespace.clone(),
            Backend::Simulator | Backend::ControlPlane => testbed::OPERATOR_NAMESPACE.to_string(),
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
