//! Flux on the real control plane: source-controller and kustomize-controller, built from
//! their Go modules by `testbed/build.sh --flux`, run as local processes against the testbed
//! (as the admin: a Flux installation gives kustomize-controller cluster-admin too), with
//! their CRDs from the module zips (the build copies them next to the binaries).
//!
//! source-controller serves the artifacts it packs from git on a loopback port
//! (`--storage-adv-addr`), and kustomize-controller downloads them from there, as in a
//! cluster through the source-controller Service.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::Cluster;

/// Where Flux's own objects live, as `flux install` puts them.
pub const NAMESPACE: &str = "flux-system";

/// The directory holding `source-controller` and `kustomize-controller`:
/// `APPRELEASE_FLUX_BIN`. Not built here (scripts/test.sh builds and exports it): without it,
/// the error says how to get it.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("APPRELEASE_FLUX_BIN")
        .map(PathBuf::from)
        .context(
            "APPRELEASE_FLUX_BIN is not set: build Flux's controllers with `bash testbed/build.sh \
             --flux` (about 10 minutes of CPU the first time) and set APPRELEASE_FLUX_BIN to the \
             directory it prints last; scripts/test.sh does both",
        )
}

/// The two controllers, killed when dropped.
pub struct Flux {
    dir: PathBuf,
    children: Vec<(&'static str, Child)>,
}

impl Flux {
    /// Installs the CRDs and the `flux-system` namespace on `cluster` (the real control
    /// plane) and starts both controllers, watching every namespace, once they are ready.
    pub async fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let crds = bin.join("../crds");
        anyhow::ensure!(
            crds.is_dir(),
            "{} is missing: rebuild with testbed/build.sh --flux",
            crds.display()
        );
        let crds = crds.display().to_string();
        // Server-side: the CRDs are too large for the last-applied annotation.
        cluster
            .run_kubectl(&["apply", "--server-side", "-f", &crds])
            .await?;
        cluster
            .run_kubectl(&["wait", "--for=condition=Established", "-f", &crds])
            .await?;
        cluster
            .run_kubectl(&["create", "namespace", NAMESPACE])
            .await?;

        let dir = cluster.dir.join("flux");
        std::fs::create_dir_all(dir.join("storage"))?;
        let mut flux = Self {
            dir: dir.clone(),
            children: Vec::new(),
        };
        let [
            storage,
            source_health,
            source_metrics,
            kustomize_health,
            kustomize_metrics,
        ] = free_ports()?;
        let local = |port: u16| format!("127.0.0.1:{port}");
        flux.spawn(
            "source-controller",
            &bin.join("source-controller"),
            cluster,
            &[
                format!("--storage-path={}", dir.join("storage").display()),
                format!("--storage-addr={}", local(storage)),
                format!("--storage-adv-addr={}", local(storage)),
                format!("--health-addr={}", local(source_health)),
                format!("--metrics-addr={}", local(source_metrics)),
                "--enable-leader-election=false".into(),
            ],
        )?;
        flux.spawn(
            "kustomize-controller",
            &bin.join("kustomize-controller"),
            cluster,
            &[
                format!("--health-addr={}", local(kustomize_health)),
                format!("--metrics-addr={}", local(kustomize_metrics)),
                "--enable-leader-election=false".into(),
                // How soon a Kustomization whose dependency is not Ready yet looks again
                // (30 s by default): a new commit makes the CRDs' Kustomization reconcile
                // first.
                "--requeue-dependency=5s".into(),
            ],
        )?;
        for (name, port) in [
            ("source-controller", source_health),
            ("kustomize-controller", kustomize_health),
        ] {
            let addr = local(port).parse()?;
            let ready = crate::wait::until(
                Duration::from_secs(60),
                &format!("{name} answers /readyz"),
                || async {
                    crate::operator::http_get(addr, "/readyz")
                        .await
                        .is_ok_and(|(code, _)| code == 200)
                },
            )
            .await;
            if let Err(e) = ready {
                anyhow::bail!("{e:#}\n{}", flux.log_tail(name, 30));
            }
        }
        Ok(flux)
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
                // Dies with the test (even a killed one) instead of running on as an orphan.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(args)
            // controller-runtime reads the kubeconfig from here; the namespace is where
            // Flux records its leader lease and Events about itself.
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("RUNTIME_NAMESPACE", NAMESPACE)
            .current_dir(&self.dir)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        self.children.push((name, child));
        Ok(())
    }

    /// The last lines of a controller's log.
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

impl Drop for Flux {
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

fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    // Held together while chosen, so never the same twice.
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// A Kustomization (`kustomize.toolkit.fluxcd.io/v1`) as the API server has it.
pub async fn kustomization(cluster: &Cluster, name: &str) -> anyhow::Result<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization");
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NAMESPACE,
        &ApiResource::from_gvk(&gvk),
    );
    Ok(api.get(name).await?)
}

/// What `flux get kustomizations` shows of one: its Ready condition and the revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KustomizationState {
    /// Ready's status (`True`, `False`, `Unknown`; empty before the first reconcile).
    pub ready: String,
    /// Ready's reason.
    pub reason: String,
    /// Ready's message.
    pub message: String,
    /// `status.lastAppliedRevision` (`main@sha1:…`).
    pub applied: String,
    /// `status.lastAttemptedRevision`.
    pub attempted: String,
}

impl KustomizationState {
    /// Reads it from the object.
    pub fn of(object: &DynamicObject) -> Self {
        let status = &object.data["status"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        Self {
            ready: text(&ready["status"]),
            reason: text(&ready["reason"]),
            message: text(&ready["message"]),
            applied: text(&status["lastAppliedRevision"]),
            attempted: text(&status["lastAttemptedRevision"]),
        }
    }

    /// Ready=True at the revision of `commit`.
    pub fn ready_at(&self, commit: &str) -> bool {
        self.ready == "True" && self.applied.ends_with(commit)
    }
}
