//! The demo's world: the simulated cluster, the operator process, and the example app.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apprelease_operator::api::conditions::{self, ConditionStatus};
use apprelease_operator::api::{AppRelease, AppReleaseStatus};
use apprelease_sim::{Fault, ImageEffect, JobMatch, JobRule, Sim, SimConfig, SimHandle};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, Config};
use serde_json::{Value, json};

use crate::show;

/// The example app, as shipped.
const EXAMPLE: &str = include_str!("../../manifests/examples/meet.yaml");
const NAMESPACE: &str = "meet";
const RELEASE: &str = "meet";

/// Whether Ready is True.
pub fn ready(status: &AppReleaseStatus) -> bool {
    conditions::get(&status.conditions, conditions::READY)
        .is_some_and(|c| c.status == ConditionStatus::True)
}

/// The running demo.
pub struct Demo {
    sim: SimHandle,
    client: Client,
    operator: Child,
    /// The simulation's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The operator's log file.
    pub operator_log: PathBuf,
    events_seen: std::cell::Cell<usize>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.operator.kill();
        let _ = self.operator.wait();
    }
}

impl Demo {
    /// Starts the simulation (scripted so that `broken` never becomes ready and backups
    /// report what they wrote) and the operator.
    pub async fn start(
        port: u16,
        time_scale: f64,
        kubeconfig: Option<PathBuf>,
        broken: &str,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("apprelease-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let sim = Sim::start(SimConfig {
            port,
            time_scale,
            ..Default::default()
        })
        .await?;
        let kubeconfig = kubeconfig.unwrap_or_else(|| dir.join("kubeconfig"));
        sim.write_kubeconfig(&kubeconfig)?;
        script(&sim, broken);
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = Client::try_from(config)?;

        let operator_log = dir.join("operator.log");
        let log = std::fs::File::create(&operator_log)?;
        let operator = Command::new(std::env::current_exe()?)
            .args([
                "operator",
                "run",
                "--namespace",
                NAMESPACE,
                "--metrics-addr",
                "127.0.0.1:0",
                // One replica: no Lease to elect a leader with.
                "--leader-election=false",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the operator")?;
        Ok(Self {
            sim,
            client,
            operator,
            kubeconfig,
            operator_log,
            events_seen: Default::default(),
        })
    }

    /// The simulated API server's address.
    pub fn url(&self) -> String {
        self.sim.url()
    }

    /// Applies the CRD and every document of the example, as `kubectl apply --server-side`.
    pub async fn install_example(&self) -> anyhow::Result<()> {
        let params = PatchParams::apply("apprelease-demo").force();
        let mut docs = Vec::new();
        for crd in apprelease_operator::crd::all() {
            docs.push(serde_json::to_value(crd)?);
        }
        docs.extend(serde_saphyr::from_multiple::<Value>(EXAMPLE)?);
        for doc in docs {
            let (group, version) = match doc["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .split_once('/')
            {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (
                    String::new(),
                    doc["apiVersion"].as_str().unwrap_or_default().to_string(),
                ),
            };
            let gvk =
                GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().unwrap_or_default());
            let (resource, capabilities) = wait_for_kind(&self.client, &gvk).await?;
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let api: Api<DynamicObject> =
                match (doc["metadata"]["namespace"].as_str(), capabilities.scope) {
                    (Some(ns), kube::discovery::Scope::Namespaced) => {
                        Api::namespaced_with(self.client.clone(), ns, &resource)
                    }
                    _ => Api::all_with(self.client.clone(), &resource),
                };
            api.patch(&name, &params, &Patch::Apply(&doc))
                .await
                .with_context(|| format!("applying {} {name}", gvk.kind))?;
            show::line(&format!("{}/{name} applied", gvk.kind.to_lowercase()));
        }
        Ok(())
    }

    /// Changes spec.version, as a user (or a GitOps tool) would.
    pub async fn set_version(&self, version: &str) -> anyhow::Result<()> {
        show::line(&format!(
            "$ kubectl -n {NAMESPACE} patch apprelease {RELEASE} --type merge -p '{{\"spec\":{{\"version\":\"{version}\"}}}}'"
        ));
        self.releases()
            .patch(
                RELEASE,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"version": version}})),
            )
            .await?;
        Ok(())
    }

    /// Prints every change of step and condition, and every new Event, until `done`.
    pub async fn follow(
        &self,
        version: &str,
        done: impl Fn(&AppReleaseStatus) -> bool,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let release = self.releases().get(RELEASE).await?;
            let status = release.status.clone().unwrap_or_default();
            let ready = conditions::get(&status.conditions, conditions::READY);
            let step = status.upgrade.as_ref().map_or("-", |u| u.step.as_str());
            let line = format!(
                "{step:<12} Ready={:<8} {}",
                ready.map_or("?".into(), |c| format!("{:?}", c.status)),
                ready.map_or(String::new(), |c| format!("{}: {}", c.reason, c.message))
            );
            if line != last {
                show::line(&format!(
                    "[{:>5.1}s] {}",
                    started.elapsed().as_secs_f64(),
                    truncate(&line, 150)
                ));
                last = line;
            }
            self.print_new_events().await?;
            let current = status.observed_generation == release.metadata.generation;
            if current && done(&status) {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "{version} did not settle; see {}",
                self.operator_log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn print_new_events(&self) -> anyhow::Result<()> {
        let mut events = Api::<Event>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await?
            .items;
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        for event in events.iter().skip(self.events_seen.get()) {
            let note = event.note.clone().unwrap_or_default();
            show::line(&format!(
                "         event {:<7} {:<18} {}",
                event.type_.clone().unwrap_or_default(),
                event.reason.clone().unwrap_or_default(),
                truncate(&note, 110)
            ));
        }
        self.events_seen.set(events.len());
        Ok(())
    }

    /// Prints `kubectl get appreleases -o wide`, from the server's own Table (the CRD's
    /// printer columns).
    pub async fn table(&self) -> anyhow::Result<()> {
        show::line(&format!("$ kubectl get appreleases -n {NAMESPACE} -o wide"));
        let request = http::Request::get(format!(
            "/apis/apprelease.io/v1alpha1/namespaces/{NAMESPACE}/appreleases"
        ))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
        let table: Value = self.client.request(request).await?;
        let mut rows = vec![
            table["columnDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["name"].as_str().unwrap_or("").to_uppercase())
                .collect::<Vec<_>>(),
        ];
        for row in table["rows"].as_array().into_iter().flatten() {
            rows.push(
                row["cells"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        truncate(
                            &match c {
                                Value::String(s) => s.clone(),
                                Value::Null => "<none>".into(),
                                other => other.to_string(),
                            },
                            70,
                        )
                    })
                    .collect(),
            );
        }
        show::table(&rows);
        Ok(())
    }

    /// What happened, in numbers.
    pub async fn summary(&self) -> anyhow::Result<()> {
        let status = self
            .releases()
            .get(RELEASE)
            .await?
            .status
            .unwrap_or_default();
        show::line("history (newest first):");
        let mut rows = vec![vec![
            "FROM".into(),
            "TO".into(),
            "RESULT".into(),
            "REASON".into(),
            "BACKUP".into(),
        ]];
        for h in &status.history {
            rows.push(vec![
                h.from.clone(),
                h.to.clone(),
                format!("{:?}", h.result),
                h.reason.clone(),
                h.backup.clone().unwrap_or_default(),
            ]);
        }
        show::table(&rows);
        show::line("backups (newest first):");
        for b in &status.backups {
            show::line(&format!(
                "  {}  of {}  at {}  {}",
                b.id,
                b.version,
                b.taken_at.format("%H:%M:%S"),
                b.location.clone().unwrap_or_default()
            ));
        }
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), NAMESPACE);
        for name in ["backend", "frontend"] {
            let d = deployments.get(name).await?;
            let images: Vec<String> = d
                .spec
                .and_then(|s| s.template.spec)
                .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
                .unwrap_or_default();
            show::line(&format!("deployment/{name} runs {}", images.join(", ")));
        }
        let writes: u64 = ["deployments", "jobs", "appreleases"]
            .iter()
            .map(|r| self.sim.requests().writes(r))
            .sum();
        show::line(&format!(
            "API writes to Deployments, Jobs and AppReleases (all clients): {writes}"
        ));
        Ok(())
    }

    fn releases(&self) -> Api<AppRelease> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }
}

/// Backups report what they wrote, migrations and checks take a moment, and every pod of
/// the broken version stays unready.
fn script(sim: &SimHandle, broken: &str) {
    let kind = |k: &str| JobMatch {
        labels: [("apprelease.io/job-kind".to_string(), k.to_string())].into(),
        ..Default::default()
    };
    let report = r#"{"location":"pvc://meet-backups/meet/meet/latest.dump.gz","sizeBytes":7340032,"sha256":"9f2c4e0d7a1b3c5e8f6a2d4b7c9e1f3a5b7d9e2c4a6f8b1d3e5c7a9f2b4d6e8a"}"#;
    sim.script_job(JobRule::succeed(
        kind("backup"),
        Duration::from_secs(40),
        Some(report),
    ));
    sim.script_job(JobRule::succeed(
        kind("migrate"),
        Duration::from_secs(30),
        None,
    ));
    sim.script_job(JobRule::succeed(
        kind("verify"),
        Duration::from_secs(15),
        None,
    ));
    sim.script_job(JobRule::succeed(
        kind("restore"),
        Duration::from_secs(40),
        None,
    ));
    sim.add_fault(Fault::Image(apprelease_sim::ImageFault {
        image: format!("*:{broken}"),
        effect: ImageEffect::NeverReady,
    }));
}

/// Waits until the API serves a kind (a CRD takes a moment to be served on a real server).
async fn wait_for_kind(
    client: &Client,
    gvk: &GroupVersionKind,
) -> anyhow::Result<(kube::api::ApiResource, kube::discovery::ApiCapabilities)> {
    let started = Instant::now();
    loop {
        match pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                return Err(e).context(format!("{} is not served", gvk.kind));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    format!("{}…", text.chars().take(max - 1).collect::<String>())
}
