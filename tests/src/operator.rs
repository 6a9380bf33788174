//! The real operator binary, run as a separate process against the scenario's cluster, with
//! leader election on as it ships: each scenario has a Lease of its own (`lease_name`), and
//! each process an identity, as the pod name gives one in a cluster. A restarted process
//! keeps its identity (a container restarted in the same pod), so it takes its own Lease back
//! at once; two processes with different identities are two replicas.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Cluster;

/// A running `apprelease-operator run`, killed (SIGKILL) when dropped.
pub struct Operator {
    /// None once killed or terminated, until restarted.
    child: Option<Child>,
    identity: String,
    log: PathBuf,
    args: Vec<String>,
    log_filter: String,
    /// The image it runs from with podman instead of the binary ([`Options::image`]).
    image: Option<String>,
    /// The name of its containers, before the start count.
    container_prefix: String,
    starts: u32,
    /// Where the current process's lines begin in the (appended) log.
    log_start: u64,
}

/// How [`Operator::start_with`] runs the operator.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The kubeconfig it uses instead of the cluster's (a proxy in front of the API server).
    pub kubeconfig: Option<PathBuf>,
    /// `RUST_LOG` instead of the default `info,kube=warn`.
    pub log_filter: Option<String>,
    /// Its name in the Lease instead of [`FIRST`]: another replica.
    pub identity: Option<String>,
    /// A container image of the operator, run with podman ([`PODMAN_RUN`]) instead of the
    /// binary.
    pub image: Option<String>,
    /// Watch every namespace, not only the scenario's.
    pub all_namespaces: bool,
}

/// How podman runs [`Options::image`]: on the host's network, so the cluster and the
/// operator's HTTP port are where they are for the binary, with the kubeconfig's directory
/// mounted read-only at the same path. runc and explicit limits because without them podman
/// 4.3 starts no container on the Debian 12 machines the tests run on: crun 1.8 refuses their
/// hybrid cgroups
/// ("cgroups in hybrid mode not supported"), and podman's limits for root (RLIMIT_NOFILE
/// 1048576) need CAP_SYS_RESOURCE, which they do not grant. `--timeout` stops a container
/// that a killed test leaves behind.
pub const PODMAN_RUN: &[&str] = &[
    "run",
    "--rm",
    "--runtime=runc",
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
    "--network=host",
    "--timeout=900",
];

/// The identity of the operator a scenario starts first.
pub const FIRST: &str = "operator-a";

/// What the operator logs once its HTTP server listens; the line ends with `addr=IP:PORT`.
const SERVING: &str = "serving /metrics, /healthz and /readyz";

impl Operator {
    /// Starts the operator watching the scenario's namespace, as [`FIRST`].
    pub fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        Self::start_with(cluster, Options::default())
    }

    /// Starts another replica of the scenario's operator: the same Lease, this identity.
    pub fn start_as(cluster: &Cluster, identity: &str) -> anyhow::Result<Self> {
        let identity = Some(identity.to_string());
        Self::start_with(
            cluster,
            Options {
                identity,
                ..Options::default()
            },
        )
    }

    /// [`Operator::start`], run as `options` say.
    pub fn start_with(cluster: &Cluster, options: Options) -> anyhow::Result<Self> {
        let kubeconfig = options
            .kubeconfig
            .unwrap_or_else(|| cluster.operator_kubeconfig.clone());
        let identity = options.identity.unwrap_or_else(|| FIRST.to_string());
        let mut args = vec!["run".to_string()];
        if !options.all_namespaces {
            args.extend(["--namespace".into(), cluster.namespace.clone()]);
        }
        args.extend([
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
            "--lease-name".into(),
            lease_name(cluster),
            "--lease-namespace".into(),
            cluster.lease_namespace(),
        ]);
        let log_filter = options
            .log_filter
            .unwrap_or_else(|| "info,kube=warn".into());
        let log = if identity == FIRST {
            cluster.dir.join("operator.log")
        } else {
            cluster.dir.join(format!("{identity}.log"))
        };
        let log_start = log_len(&log);
        let container_prefix = format!(
            "apprelease-e2e-{}-{}-{identity}",
            cluster.namespace,
            std::process::id()
        );
        let name = format!("{container_prefix}-1");
        let container = options.image.as_deref().map(|image| (image, name.as_str()));
        let child = spawn(&args, &identity, &log_filter, &log, container)?;
        Ok(Self {
            child: Some(child),
            identity: identity.to_string(),
            log,
            args,
            log_filter,
            image: options.image,
            container_prefix,
            starts: 1,
            log_start,
        })
    }

    /// The process id of the running operator binary (None when it runs as a container).
    pub fn pid(&self) -> Option<u32> {
        self.image
            .is_none()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    /// This replica's name in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Kills the process at once, as a crash or an eviction would (SIGKILL), and starts it
    /// again.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.restart()
    }

    /// The name of the podman container the current process runs, when it runs the image.
    pub fn container(&self) -> Option<String> {
        let prefix = &self.container_prefix;
        self.image
            .as_ref()
            .map(|_| format!("{prefix}-{}", self.starts))
    }

    /// Kills the process at once (SIGKILL) and leaves it dead until [`Operator::restart`].
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // Killing podman's client would leave its container running.
            if let Some(name) = self.container() {
                Command::new("podman")
                    .args(["rm", "--force", "--time=0", &name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()?;
            }
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again (after [`Operator::kill`] or [`Operator::terminate`]), with
    /// the same identity.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is still running", self.identity);
        self.starts += 1;
        self.log_start = log_len(&self.log);
        let name = self.container();
        let container = self.image.as_deref().zip(name.as_deref());
        self.child = Some(spawn(
            &self.args,
            &self.identity,
            &self.log_filter,
            &self.log,
            container,
        )?);
        Ok(())
    }

    /// Sends SIGTERM, as the kubelet does when it stops a pod, and waits up to `limit` for
    /// the process to exit; returns how it exited and how long that took.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<(ExitStatus, Duration)> {
        let mut child = self.child.take().context("not running")?;
        let sent = Instant::now();
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } == -1 {
            return Err(std::io::Error::last_os_error().into());
        }
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, sent.elapsed()));
            }
            if sent.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "{} did not exit within {limit:?} of SIGTERM\n{}",
                    self.identity,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address the current process serves `/metrics`, `/healthz` and `/readyz` on. It
    /// listens on port 0 (so parallel scenarios never collide), so the address is read from
    /// its log, waiting up to `limit` for the line.
    pub async fn http_addr(&self, limit: Duration) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + limit;
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let own = String::from_utf8_lossy(text.get(self.log_start as usize..).unwrap_or(&[]));
            if let Some(addr) = own.lines().find_map(serving_addr) {
                return Ok(addr);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the operator did not log {SERVING:?} within {limit:?}\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` on the operator's HTTP server: `(status code, body)`.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let addr = self.http_addr(Duration::from_secs(30)).await?;
        http_get(addr, path).await
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Everything the operator logged in this scenario, every process of it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the operator's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- operator log ({}) ---\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

/// The scenario's Lease: one per namespace, since scenarios share the control plane's
/// operator namespace.
pub fn lease_name(cluster: &Cluster) -> String {
    format!("apprelease-{}", cluster.namespace)
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The address in the operator's "serving" log line, if `line` is that line.
fn serving_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains(SERVING) {
        return None;
    }
    let (_, rest) = line.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A one-request HTTP/1.1 GET (the server closes the connection after it): enough for
/// status codes and short bodies, without an HTTP client dependency.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .context("connecting timed out")??;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .context("reading the response timed out")??;
    let text = String::from_utf8_lossy(&response);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP/1.1 response: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// Starts the operator with `args`: the binary, or with `container` = (image, name) podman
/// running the image.
fn spawn(
    args: &[String],
    identity: &str,
    log_filter: &str,
    log: &Path,
    container: Option<(&str, &str)>,
) -> anyhow::Result<Child> {
    let out = File::options().create(true).append(true).open(log)?;
    let mut command = match container {
        None => Command::new(binary()?),
        Some((image, name)) => {
            let kubeconfig = args
                .iter()
                .skip_while(|arg| *arg != "--kubeconfig")
                .nth(1)
                .context("the operator's --kubeconfig")?;
            let dir = Path::new(kubeconfig)
                .parent()
                .context("the kubeconfig's directory")?;
            let mut podman = Command::new("podman");
            podman.args(PODMAN_RUN).args([
                format!("--name={name}"),
                format!("--volume={0}:{0}:ro", dir.display()),
                format!("--env=RUST_LOG={log_filter}"),
                format!("--env=POD_NAME={identity}"),
                "--env=NO_COLOR=1".into(),
                image.into(),
            ]);
            podman
        }
    };
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // Dies with the test (even a killed one) instead of running on as an orphan.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .args(args)
        .env("RUST_LOG", log_filter)
        // As the shipped Deployment sets it, from the downward API.
        .env("POD_NAME", identity)
        .env("NO_COLOR", "1")
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .context("starting apprelease-operator")
}

/// The operator binary: `APPRELEASE_OPERATOR_BIN`, else the one cargo built next to this
/// test (`cargo test --workspace` builds it), else built now.
fn binary() -> anyhow::Result<PathBuf> {
    workspace_binary(
        "apprelease-operator",
        "apprelease-operator",
        "APPRELEASE_OPERATOR_BIN",
    )
}

/// The binary `bin` of the workspace package `package`: the path in the environment
/// variable `env`, else the one cargo built next to this test, else built now. Only built
/// when missing: like the operator's, a changed plugin is rebuilt by `cargo build` or by
/// `cargo test --workspace`, not by one test binary.
pub fn workspace_binary(package: &str, bin: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    // target/<profile>/deps/<test> → target/<profile>/<bin>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary location")?;
    let path = profile_dir.join(bin);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", package]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status()?;
        anyhow::ensure!(status.success(), "building {package} failed");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::serving_addr;

    #[test]
    fn reads_the_address_of_the_serving_line_only() {
        let line = "2025-01-01T00:00:00Z  INFO apprelease_operator::http: serving /metrics, /healthz and /readyz addr=127.0.0.1:41234";
        assert_eq!(serving_addr(line), Some("127.0.0.1:41234".parse().unwrap()));
        assert_eq!(serving_addr("INFO starting addr=127.0.0.1:1"), None);
    }
}
