//! The GitOps scenarios' repository and Flux objects (docs/gitops.md shows the same): the
//! operator's CRDs in `crds/`, the app in `app/` — the two Deployments, whose images in git
//! are the first install's, and the AppRelease — and a Kustomization for each, the app's
//! depending on the CRDs' and health-checking the AppRelease.

use std::time::{Duration, Instant};

use apprelease_operator::api::AppReleaseStatus;
use apprelease_operator::api::conditions::ConditionStatus;

use crate::fixtures::{self, Jobs, RELEASE, REPOSITORY, V1};
use crate::flux::{self, Flux, KustomizationState};
use crate::{Cluster, Scenario, inspect};

/// Flux's reconcile interval for the source and the app: short, so that ten intervals fit
/// in a test.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// The field manager of kustomize-controller's server-side applies.
pub const FLUX_MANAGER: &str = "kustomize-controller";
/// How long Flux and the operator may take for one commit.
pub const PATIENCE: Duration = Duration::from_secs(150);

/// The Deployments as they are in git: the images are the first install's (a Deployment
/// cannot be created without one), and afterwards the operator's (see the Kustomization's
/// `ignore`).
pub fn deployments_yaml() -> String {
    ["backend", "frontend"]
        .iter()
        .zip([2, 1])
        .map(|(name, replicas)| {
            format!(
                "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: 10
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
      - name: {name}
        image: {REPOSITORY}:{V1}
        command: [sleep, \"3600\"]
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
      - name: metrics
        image: busybox:1.36
        command: [sleep, \"3600\"]
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The AppRelease of the scenarios (backup, migration and verification Jobs) at `version`.
pub fn release_yaml(cluster: &Cluster, version: &str) -> anyhow::Result<String> {
    let release = fixtures::release(cluster, RELEASE, version, &Jobs::default());
    let object = serde_json::json!({
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": RELEASE},
        "spec": release.spec,
    });
    Ok(serde_saphyr::to_string(&object)?)
}

/// What is in git at the first commit.
pub fn first_commit(cluster: &Cluster) -> anyhow::Result<Vec<(&'static str, String)>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Ok(vec![
        (
            "crds/Kustomization",
            std::fs::read_to_string(repo.join("crds/Kustomization"))?,
        ),
        (
            "crds/appreleases.yaml",
            std::fs::read_to_string(repo.join("crds/appreleases.yaml"))?,
        ),
        (
            "app/kustomization.yaml",
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 namespace: {}\nresources:\n- deployments.yaml\n- release.yaml\n",
                cluster.namespace
            ),
        ),
        ("app/deployments.yaml", deployments_yaml()),
        ("app/release.yaml", release_yaml(cluster, V1)?),
    ])
}

/// The app Kustomization's rules that leave the operator's image fields to it.
const IGNORE_IMAGES: &str =
    "  # The operator owns these images (field manager apprelease-operator): no drift for Flux,
  # and left out of Flux's applies while the operator owns them.
  ignore:
  - paths: [/spec/template/spec/containers/0/image]
    target: {group: apps, kind: Deployment, name: backend}
  - paths: [/spec/template/spec/containers/0/image]
    target: {group: apps, kind: Deployment, name: frontend}
";

/// The Flux objects, as a user puts them next to `flux install`'s; with `ignore_images`, the
/// app's Kustomization leaves the targets' images alone (docs/gitops.md).
pub fn flux_objects(url: &str, namespace: &str, ignore_images: bool) -> String {
    let interval = format!("{}s", INTERVAL.as_secs());
    let ignore = if ignore_images { IGNORE_IMAGES } else { "" };
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: shop, namespace: flux-system}}
spec:
  interval: {interval}
  url: {url}
  ref: {{branch: main}}
---
# The CRDs first: the app's Kustomization waits for this one to be Ready.
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: apprelease-crds, namespace: flux-system}}
spec:
  interval: 1m
  path: ./crds
  prune: false
  wait: true
  sourceRef: {{kind: GitRepository, name: shop}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: shop, namespace: flux-system}}
spec:
  dependsOn:
  - name: apprelease-crds
  interval: {interval}
  retryInterval: {interval}
  timeout: 2m
  path: ./app
  prune: true
  sourceRef: {{kind: GitRepository, name: shop}}
  # Ready only when the AppRelease is. kstatus alone counts an AppRelease the operator has
  # not written a status for yet as Current: these expressions wait for its Ready condition
  # (Flux checks status.observedGeneration itself; neither matching means in progress).
  healthCheckExprs:
  - apiVersion: apprelease.io/v1alpha1
    kind: AppRelease
    failed: status.conditions.exists(c, c.type == 'Stalled' && c.status == 'True')
    current: status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')
  healthChecks:
  - apiVersion: apprelease.io/v1alpha1
    kind: AppRelease
    name: shop
    namespace: {namespace}
{ignore}"
    )
}

/// Polls every 200 ms until `check` returns Some, recording each new Kustomization state
/// seen on the way (with the AppRelease's Ready reason and step next to it).
pub async fn watch_until<T>(
    s: &Scenario,
    flux: &Flux,
    seen: &mut Vec<String>,
    what: &str,
    check: impl Fn(&KustomizationState, &AppReleaseStatus) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    loop {
        let k = flux::kustomization(&s.cluster, "shop")
            .await
            .map(|k| KustomizationState::of(&k))
            .unwrap_or_default();
        let status = inspect::status(&s.cluster, RELEASE).await;
        let line = format!(
            "Kustomization Ready={} {}: {} | AppRelease Ready={:?} step={:?}",
            k.ready,
            k.reason,
            k.message,
            inspect::ready(&status).map(|(_, r)| r),
            status.upgrade.as_ref().map(|u| u.step.as_str().to_string()),
        );
        if line != last {
            println!("{line}");
            seen.push(line.clone());
            last = line;
        }
        if let Some(found) = check(&k, &status) {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out waiting until {what}; last: {last}\n{}\n{}\noperator:\n{}",
                flux.log_tail("kustomize-controller", 20),
                flux.log_tail("source-controller", 10),
                s.operator.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn ready_at(status: &AppReleaseStatus, version: &str) -> bool {
    status.current_version.as_deref() == Some(version)
        && inspect::ready(status).is_some_and(|(c, _)| c == ConditionStatus::True)
}

/// A scenario driven from git: the cluster, Flux, the repository and the operator.
pub struct GitOps {
    /// The cluster (the control plane) and the operator.
    pub s: Scenario,
    /// source-controller and kustomize-controller.
    pub flux: Flux,
    /// The repository Flux syncs from.
    pub repo: crate::git_server::GitServer,
    /// The hash of the first commit (the app at V1).
    pub first: String,
    /// Every state [`GitOps::watch_until`] saw, in order.
    pub seen: Vec<String>,
}

impl GitOps {
    /// The scenario `name` (namespace `e2e-NAME`) on the shared control plane: Flux running,
    /// the first commit in git, the Flux objects applied and the operator started.
    pub async fn start(name: &str, ignore_images: bool) -> anyhow::Result<Self> {
        let cluster = crate::Cluster::start_on(name, crate::cluster::Backend::ControlPlane).await?;
        let flux = Flux::start(&cluster).await?;
        let repo = crate::git_server::GitServer::start(&cluster.dir.join("git"), "shop")?;
        let first = repo.commit(&first_commit(&cluster)?, &format!("shop {V1}"))?;
        let objects = cluster.dir.join("flux-objects.yaml");
        std::fs::write(
            &objects,
            flux_objects(&repo.url(), &cluster.namespace, ignore_images),
        )?;
        let operator = crate::Operator::start(&cluster)?;
        let s = Scenario { cluster, operator };
        s.cluster
            .run_kubectl(&["apply", "-f", &objects.display().to_string()])
            .await?;
        Ok(Self {
            s,
            flux,
            repo,
            first,
            seen: Vec::new(),
        })
    }

    /// Commits the AppRelease at `version` and returns the commit's hash.
    pub fn commit_version(&self, version: &str) -> anyhow::Result<String> {
        self.repo.commit(
            &[("app/release.yaml", release_yaml(&self.s.cluster, version)?)],
            &format!("shop {version}"),
        )
    }

    /// The app's Kustomization now.
    pub async fn kustomization(&self) -> anyhow::Result<KustomizationState> {
        Ok(KustomizationState::of(
            &flux::kustomization(&self.s.cluster, "shop").await?,
        ))
    }

    /// [`watch_until`] on this scenario.
    pub async fn watch_until<T>(
        &mut self,
        what: &str,
        check: impl Fn(&KustomizationState, &AppReleaseStatus) -> Option<T>,
    ) -> anyhow::Result<T> {
        watch_until(&self.s, &self.flux, &mut self.seen, what, check).await
    }
}
