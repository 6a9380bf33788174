//! Argo CD on the real control plane: the application controller and the repo server (one
//! multi-call `argocd` binary, built from `github.com/argoproj/argo-cd/v3` by
//! `testbed/build.sh --argocd`, called by the names of the symlinks next to it), with Debian's
//! `redis-server` as their cache, as local processes against the testbed (the controller as
//! the admin, as an Argo CD installation's controller has cluster-wide rights). The CRDs come
//! from the module zip (the build copies them into `../crds`). No API server or UI: the
//! scenario reads the Application's status.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::Cluster;

/// Where Argo CD's objects live, as its install manifests put them.
pub const NAMESPACE: &str = "argocd";

/// The directory with `argocd` and its `argocd-application-controller` and
/// `argocd-repo-server` links: `APPRELEASE_ARGOCD_BIN`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("APPRELEASE_ARGOCD_BIN")
        .map(PathBuf::from)
        .context(
            "APPRELEASE_ARGOCD_BIN is not set: build Argo CD with `bash testbed/build.sh \
             --argocd` and set APPRELEASE_ARGOCD_BIN to the directory it prints last; \
             scripts/test.sh does both",
        )
}

/// redis, the repo server and the application controller, killed when dropped.
pub struct ArgoCd {
    dir: PathBuf,
    bin: PathBuf,
    children: Vec<(&'static str, Child)>,
}

impl ArgoCd {
    /// Installs the CRDs, the `argocd` namespace, `argocd-cm` (with `settings`), an empty
    /// `argocd-secret` and the `default` AppProject, and starts the processes.
    pub async fn start(
        cluster: &Cluster,
        testbed: &crate::testbed::Testbed,
        settings: &str,
    ) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let crds = bin.join("../crds");
        let crds = crds.display().to_string();
        cluster
            .run_kubectl(&["apply", "--server-side", "-f", &crds])
            .await?;
        cluster
            .run_kubectl(&["wait", "--for=condition=Established", "-f", &crds])
            .await?;
        let dir = cluster.dir.join("argocd");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let setup = dir.join("setup.yaml");
        std::fs::write(&setup, setup_objects(settings, testbed)?)?;
        cluster
            .run_kubectl(&["apply", "-f", &setup.display().to_string()])
            .await?;

        let mut argo = Self {
            dir: dir.clone(),
            bin: bin.clone(),
            children: Vec::new(),
        };
        let [redis, repo, repo_metrics, controller_metrics] = free_ports()?;
        argo.spawn(
            "redis",
            Path::new("redis-server"),
            cluster,
            &[
                "--port".into(),
                redis.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
            ],
        )?;
        let redis_addr = format!("127.0.0.1:{redis}");
        argo.spawn(
            "argocd-repo-server",
            &bin.join("argocd-repo-server"),
            cluster,
            &[
                "--address=127.0.0.1".into(),
                format!("--port={repo}"),
                "--metrics-address=127.0.0.1".into(),
                format!("--metrics-port={repo_metrics}"),
                // Plain gRPC on loopback; the mTLS CA path has a default that then refuses to
                // start (an Argo CD 3.6 check), so it is emptied.
                "--disable-tls".into(),
                "--client-ca-path=".into(),
                // Resolve `main` again at every comparison (cached for 3 minutes by default).
                "--revision-cache-expiration=1s".into(),
                format!("--redis={redis_addr}"),
            ],
        )?;
        argo.spawn(
            "argocd-application-controller",
            &bin.join("argocd-application-controller"),
            cluster,
            &[
                format!("--kubeconfig={}", cluster.kubeconfig.display()),
                format!("--namespace={NAMESPACE}"),
                format!("--redis={redis_addr}"),
                format!("--repo-server=127.0.0.1:{repo}"),
                "--repo-server-plaintext".into(),
                format!("--metrics-port={controller_metrics}"),
                // Compare with git every 5 s (120 s by default), so that a test sees many.
                "--app-resync=5".into(),
                "--app-resync-jitter=0".into(),
            ],
        )?;
        let addr = format!("127.0.0.1:{controller_metrics}").parse()?;
        let ready = crate::wait::until(
            Duration::from_secs(60),
            "the application controller serves metrics",
            || async {
                crate::operator::http_get(addr, "/metrics")
                    .await
                    .is_ok_and(|(code, _)| code == 200)
            },
        )
        .await;
        if let Err(e) = ready {
            anyhow::bail!(
                "{e:#}\n{}\n{}",
                argo.log_tail("argocd-application-controller", 30),
                argo.log_tail("argocd-repo-server", 10)
            );
        }
        Ok(argo)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        program: &Path,
        cluster: &Cluster,
        args: &[String],
    ) -> anyhow::Result<()> {
        let out = File::create(self.dir.join(format!("{name}.log")))?;
        let mut command = Command::new(program);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(args)
            .env("KUBECONFIG", &cluster.kubeconfig)
            // The repo server clones into TMPDIR and would otherwise sign-check with gpg.
            .env("TMPDIR", self.dir.join("tmp"))
            .env("HOME", &self.dir)
            .env("ARGOCD_GPG_ENABLED", "false")
            // The repo server runs `git-verify-wrapper.sh` for every revision, signed or not
            // (as its image has it on PATH); the build puts it next to the binary.
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .current_dir(&self.dir)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        self.children.push((name, child));
        Ok(())
    }

    /// The last lines of a process's log.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!(
            "--- {name} ---\n{}",
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }
}

impl Drop for ArgoCd {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (name, _) in &self.children {
                eprintln!("{}", self.log_tail(name, 40));
            }
        }
    }
}

/// The cluster Argo CD deploys to, as a cluster Secret: its `in-cluster` default needs a
/// pod's service-account files, and the controller runs outside.
fn cluster_secret(testbed: &crate::testbed::Testbed) -> anyhow::Result<String> {
    // ByteString serializes as base64, as Secrets' data does.
    let file = |name: &str| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(testbed.dir.join(name))?;
        Ok(serde_json::to_value(k8s_openapi::ByteString(bytes))?)
    };
    let config = serde_json::json!({
        "tlsClientConfig": {
            "caData": file("ca.crt")?,
            "certData": file("admin.crt")?,
            "keyData": file("admin.key")?,
        }
    });
    Ok(format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: testbed
  namespace: {NAMESPACE}
  labels: {{argocd.argoproj.io/secret-type: cluster}}
stringData:
  name: testbed
  server: {}
  config: '{config}'
",
        testbed.server
    ))
}

fn setup_objects(settings: &str, testbed: &crate::testbed::Testbed) -> anyhow::Result<String> {
    let indented: String = settings
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>();
    Ok(format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: {NAMESPACE}
  labels: {{app.kubernetes.io/part-of: argocd}}
data:
{indented}---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: {NAMESPACE}
  labels: {{app.kubernetes.io/part-of: argocd}}
stringData: {{server.secretkey: e2e}}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {{name: default, namespace: {NAMESPACE}}}
spec:
  sourceRepos: ['*']
  destinations: [{{server: '*', namespace: '*'}}]
  clusterResourceWhitelist: [{{group: '*', kind: '*'}}]
---
{}",
        cluster_secret(testbed)?
    ))
}

fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// What `argocd app get` shows of an Application: sync and health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    /// `Synced`, `OutOfSync`, `Unknown`.
    pub sync: String,
    /// The revision it is synced to.
    pub revision: String,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`: the worst of its
    /// resources' (Argo CD 3 keeps each resource's own health out of the Application's
    /// status by default).
    pub health: String,
}

/// The Application `name` as the API server has it.
pub async fn app(cluster: &Cluster, name: &str) -> anyhow::Result<AppState> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NAMESPACE,
        &ApiResource::from_gvk(&gvk),
    );
    let object = api.get(name).await?;
    let status = &object.data["status"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Ok(AppState {
        sync: text(&status["sync"]["status"]),
        revision: text(&status["sync"]["revision"]),
        health: text(&status["health"]["status"]),
    })
}
