//! The real Kubernetes control plane as local processes on loopback: etcd, kube-apiserver
//! (TLS, Node+RBAC authorization, the default admission plugins, service-account tokens,
//! an audit log of every request), kube-controller-manager and kube-scheduler, built from the
//! official Go modules by `testbed/build.sh`.
//!
//! Nothing plays the kubelet here: Pods are created and scheduled (once a Node exists) but
//! never run. `crate::testbed` adds KWOK and a fake Node for the scenarios.
//!
//! Certificates are made with the `openssl` command line (OpenSSL 3), so the harness needs no
//! X.509 crate.
//!
//! Every process dies with the test: SIGKILL on drop, and `PR_SET_PDEATHSIG` for a test that
//! is itself killed. The death signal is tied to the *thread* that spawned the process, so
//! start the control plane from a thread that lives as long as it (the test's own thread, as
//! `#[tokio::test]` does), not from `spawn_blocking`.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The service network: the `kubernetes` Service gets its first address.
const SERVICE_CIDR: &str = "10.0.0.0/24";

/// The controller-manager's and the scheduler's client-side rate limit. Their defaults (20
/// requests a second, bursts of 30, for each of the controller-manager's controllers; 50 and
/// 100 for the scheduler: `component-base` and `cmd/kube-scheduler/app/options`) are sized for
/// a few changes at a time and would make a thousand rollouts at once (the scale bench) take
/// many minutes of throttling; a production cluster sizes them to its load the same way.
const CLIENT_RATE: [&str; 2] = ["--kube-api-qps=500", "--kube-api-burst=1000"];

/// Every request at Metadata level (who, what, which object, the answer), except the writes
/// to Deployments in [`BODIES_AUDITED_IN`], which keep the stored object (RequestResponse):
/// the GitOps scenario counts image changes from them. Subresources (`deployments/status`)
/// are not matched by `deployments`.
fn audit_policy_text() -> String {
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n\
         - level: RequestResponse\n  verbs: [create, update, patch]\n  \
         resources: [{{group: apps, resources: [deployments]}}]\n  namespaces: [{}]\n\
         - level: Metadata\n",
        BODIES_AUDITED_IN.join(", ")
    )
}
/// The namespaces whose Deployment writes the audit log records with their bodies (the
/// scenario namespaces are `e2e-NAME`).
pub const BODIES_AUDITED_IN: &[&str] =
    &["e2e-gitops-flux", "e2e-gitops-fight", "e2e-gitops-argocd"];
/// How long each component may take to become healthy.
const READY_LIMIT: Duration = Duration::from_secs(90);

/// A running control plane, stopped (every process killed) when dropped.
pub struct ControlPlane {
    /// Scratch directory: certificates, kubeconfigs, etcd data, logs, the audit log.
    pub dir: PathBuf,
    /// Where the binaries are (kubectl too).
    pub bin: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Kubeconfig of `admin` (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// The CA that signs every certificate here.
    pub ca_cert: PathBuf,
    /// The apiserver's audit log: one JSON event per line, every request at Metadata level
    /// (Deployment writes with bodies in [`BODIES_AUDITED_IN`]).
    pub audit_log: PathBuf,
    /// How long finding (or building) the binaries took.
    pub build_time: Duration,
    /// From the first process started to every component healthy.
    pub ready_time: Duration,
    /// Keep `dir` when dropped (as when a test panicked, or `APPRELEASE_TESTBED_KEEP` is set).
    pub keep: bool,
    processes: Vec<Process>,
}

struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ControlPlane {
    /// Builds or finds the binaries, then starts etcd, kube-apiserver, kube-controller-manager
    /// and kube-scheduler, and waits until all of them are healthy.
    pub async fn start() -> anyhow::Result<Self> {
        let t0 = Instant::now();
        let bin = binaries()?;
        let build_time = t0.elapsed();

        let dir = scratch_dir()?;
        let certs = Certs::make(&dir)?;
        let ports = free_ports(5)?;
        let (etcd_client, etcd_peer, api, kcm, sched) =
            (ports[0], ports[1], ports[2], ports[3], ports[4]);
        let server = format!("https://127.0.0.1:{api}");

        let kubeconfig = dir.join("admin.kubeconfig");
        certs.client("admin", &["system:masters"])?;
        certs.client("front-proxy-client", &[])?;
        write_kubeconfig(&kubeconfig, &server, &certs.ca_cert, &dir, "admin")?;
        for user in ["system:kube-controller-manager", "system:kube-scheduler"] {
            certs.client(user, &[])?;
            let path = dir.join(format!("{}.kubeconfig", file_name(user)));
            write_kubeconfig(&path, &server, &certs.ca_cert, &dir, user)?;
        }
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, audit_policy_text())?;
        let audit_log = dir.join("audit.log");

        let mut plane = Self {
            dir: dir.clone(),
            bin: bin.clone(),
            server: server.clone(),
            kubeconfig: kubeconfig.clone(),
            ca_cert: certs.ca_cert.clone(),
            audit_log: audit_log.clone(),
            build_time,
            ready_time: Duration::ZERO,
            keep: false,
            processes: Vec::new(),
        };

        let started = Instant::now();
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let d = |p: &str| dir.join(p).display().to_string();
        plane.spawn(
            "etcd",
            &[
                "--name=testbed".into(),
                format!("--data-dir={}", d("etcd")),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=testbed={peer_url}"),
                // A test cluster: losing its data on a power cut is fine, fsync waits are not.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        plane
            .wait_healthy("etcd", || async {
                let addr = format!("127.0.0.1:{etcd_client}").parse()?;
                let (code, body) = crate::operator::http_get(addr, "/health").await?;
                anyhow::ensure!(code == 200 && body.contains("true"), "{code} {body}");
                Ok(())
            })
            .await?;

        plane.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // The reconciler refuses a loopback address for the `kubernetes` Service's
                // endpoints ("may not be in the loopback range"); nothing in this cluster
                // reaches the apiserver through that Service anyway (no kubelet, no proxy).
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={api}"),
                format!("--cert-dir={}", d("apiserver")),
                format!("--tls-cert-file={}", d("apiserver.crt")),
                format!("--tls-private-key-file={}", d("apiserver.key")),
                format!("--client-ca-file={}", d("ca.crt")),
                "--authorization-mode=Node,RBAC".into(),
                // The default admission plugins (PodSecurity among them) are left as they are.
                format!("--service-account-issuer={server}"),
                format!("--service-account-key-file={}", d("sa.pub")),
                format!("--service-account-signing-key-file={}", d("sa.key")),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-maxbackup=0".into(),
                // The aggregation layer's front proxy, as kubeadm sets it up (the same CA;
                // only the certificate named front-proxy-client may assert identities).
                format!("--requestheader-client-ca-file={}", d("ca.crt")),
                "--requestheader-allowed-names=front-proxy-client".into(),
                "--requestheader-username-headers=X-Remote-User".into(),
                "--requestheader-group-headers=X-Remote-Group".into(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
                format!("--proxy-client-cert-file={}", d("front-proxy-client.crt")),
                format!("--proxy-client-key-file={}", d("front-proxy-client.key")),
                "--allow-privileged=false".into(),
                "--profiling=false".into(),
            ],
        )?;
        let admin = plane.client().await?;
        plane
            .wait_healthy("kube-apiserver", || async {
                let request = kube::core::Request::new("/readyz").list(&Default::default())?;
                let body = admin.request_text(request).await?;
                anyhow::ensure!(body.trim() == "ok", "{body}");
                Ok(())
            })
            .await?;

        let common = |name: &str, port: u16| -> Vec<String> {
            let kc = d(&format!("{name}.kubeconfig"));
            vec![
                format!("--kubeconfig={kc}"),
                format!("--authentication-kubeconfig={kc}"),
                format!("--authorization-kubeconfig={kc}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                "--leader-elect=false".into(),
            ]
        };
        let mut args = common("kube-controller-manager", kcm);
        args.extend([
            // Every controller that is on by default: deployment, replicaset, job,
            // garbage collector, namespace, serviceaccount, serviceaccount-token, ...
            "--controllers=*".into(),
            format!("--cert-dir={}", d("controller-manager")),
            format!("--root-ca-file={}", d("ca.crt")),
            format!("--service-account-private-key-file={}", d("sa.key")),
            "--use-service-account-credentials=true".into(),
            format!("--cluster-signing-cert-file={}", d("ca.crt")),
            format!("--cluster-signing-key-file={}", d("ca.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        ]);
        args.extend(CLIENT_RATE.map(String::from));
        plane.spawn("kube-controller-manager", &args)?;
        let mut args = common("kube-scheduler", sched);
        args.extend(CLIENT_RATE.map(String::from));
        plane.spawn("kube-scheduler", &args)?;
        for (name, port) in [("kube-controller-manager", kcm), ("kube-scheduler", sched)] {
            // Their own serving certificates are self-signed; /healthz needs no credentials.
            let mut config = Config::new(format!("https://127.0.0.1:{port}").parse()?);
            config.accept_invalid_certs = true;
            let client = Client::try_from(config)?;
            plane
                .wait_healthy(name, || async {
                    let request = kube::core::Request::new("/healthz").list(&Default::default())?;
                    let body = client.request_text(request).await?;
                    anyhow::ensure!(body.trim() == "ok", "{body}");
                    Ok(())
                })
                .await?;
        }
        plane.ready_time = started.elapsed();
        Ok(plane)
    }

    /// A client as `admin` (group `system:masters`).
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// Writes a kubeconfig for `user` in `groups` (a client certificate signed by the CA) and
    /// returns its path. The user has no rights but those RBAC grants it.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
        let certs = Certs::at(&self.dir);
        certs.client(user, groups)?;
        let path = self.dir.join(format!("{}.kubeconfig", file_name(user)));
        write_kubeconfig(&path, &self.server, &self.ca_cert, &self.dir, user)?;
        Ok(path)
    }

    /// A client as `user` in `groups`.
    pub async fn client_for(&self, user: &str, groups: &[&str]) -> anyhow::Result<Client> {
        client_from(&self.kubeconfig_for(user, groups)?).await
    }

    /// The last `lines` lines of a component's log (`etcd`, `kube-apiserver`, ...).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        tail(&self.dir.join(format!("{name}.log")), lines)
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> anyhow::Result<()> {
        let program = self.bin.join(name);
        self.spawn_program(name, &program, args)
    }

    /// Starts another process that belongs with the control plane (KWOK, say): logged to
    /// `dir/NAME.log`, killed with the rest, and tied to the calling thread the same way.
    pub fn spawn_program(
        &mut self,
        name: &'static str,
        program: &Path,
        args: &[String],
    ) -> anyhow::Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
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
            .current_dir(&self.dir)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        self.processes.push(Process { name, child, log });
        Ok(())
    }

    /// Polls `check` until it succeeds; fails at once if the process `name` exits, and after
    /// `READY_LIMIT`, with the end of its log.
    pub async fn wait_healthy<F, Fut>(&mut self, name: &str, check: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let last = match tokio::time::timeout(Duration::from_secs(5), check()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "the check timed out".to_string(),
            };
            let process = self
                .processes
                .iter_mut()
                .find(|p| p.name == name)
                .context("no such process")?;
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!(
                    "{name} exited ({status}) before it was healthy; last check: {last}\n\
                     --- {} ---\n{}",
                    process.log.display(),
                    tail(&process.log, 40)
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{name} was not healthy within {READY_LIMIT:?}; last check: {last}\n\
                     --- {} ---\n{}",
                    process.log.display(),
                    tail(&process.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The clients first, etcd last.
        for process in self.processes.iter_mut().rev() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        if std::thread::panicking() {
            for process in &self.processes {
                eprintln!(
                    "--- {} ({}) ---\n{}",
                    process.name,
                    process.log.display(),
                    tail(&process.log, 30)
                );
            }
            eprintln!("control plane files kept in {}", self.dir.display());
        } else if self.keep {
            eprintln!("control plane files kept in {}", self.dir.display());
        } else if std::env::var_os("APPRELEASE_TESTBED_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The bin directory: `APPRELEASE_TESTBED_BIN`, else what `testbed/build.sh` builds or finds
/// in its cache (its last stdout line).
pub fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("APPRELEASE_TESTBED_BIN") {
        return Ok(PathBuf::from(dir));
    }
    build_sh(&[])
}

/// The KWOK binary: `APPRELEASE_KWOK_BIN`, else what `testbed/build.sh --kwok` builds or
/// finds in its cache.
pub fn kwok_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("APPRELEASE_KWOK_BIN") {
        return Ok(PathBuf::from(path));
    }
    Ok(build_sh(&["--kwok"])?.join("kwok"))
}

/// Runs `testbed/build.sh ARGS` and returns the bin dir it prints last.
fn build_sh(args: &[&str]) -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({})",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8(output.stdout)?;
    let dir = stdout
        .lines()
        .last()
        .context("testbed/build.sh printed no bin dir")?;
    Ok(PathBuf::from(dir.trim()))
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "apprelease-testbed-{}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `n` distinct free ports on 127.0.0.1 (held together while chosen, so never the same twice).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?)
}

fn file_name(user: &str) -> String {
    user.trim_start_matches("system:").replace(':', "-")
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    dir: &Path,
    user: &str,
) -> anyhow::Result<()> {
    let name = file_name(user);
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: testbed\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
         users:\n- name: {name}\n  user:\n    client-certificate: {}\n    client-key: {}\n\
         contexts:\n- name: {name}@testbed\n  context:\n    cluster: testbed\n    user: {name}\n\
         current-context: {name}@testbed\n",
        ca.display(),
        cert.display(),
        key.display(),
    );
    std::fs::write(path, text)?;
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The certificates, made with the `openssl` CLI: a CA, the apiserver's serving certificate,
/// the service-account signing key, and client certificates on demand.
struct Certs {
    dir: PathBuf,
    ca_cert: PathBuf,
}

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

impl Certs {
    fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
        }
    }

    fn make(dir: &Path) -> anyhow::Result<Self> {
        let certs = Self::at(dir);
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG)?;
        certs.openssl(&[
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "7",
            "-subj",
            "/CN=apprelease-testbed-ca",
        ])?;
        certs.leaf("apiserver", "/CN=kube-apiserver", "server")?;
        certs.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "sa.key",
        ])?;
        certs.openssl(&["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        Ok(certs)
    }

    /// `NAME.crt` and `NAME.key` for `user` in `groups` (the certificate's O).
    fn client(&self, user: &str, groups: &[&str]) -> anyhow::Result<()> {
        let mut subject: String = groups.iter().map(|g| format!("/O={g}")).collect();
        subject.push_str(&format!("/CN={user}"));
        self.leaf(&file_name(user), &subject, "client")
    }

    fn leaf(&self, name: &str, subject: &str, profile: &str) -> anyhow::Result<()> {
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        self.openssl(&[
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            profile,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "7",
            "-subj",
            subject,
        ])
    }

    fn openssl(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running openssl (OpenSSL 3 is needed)")?;
        anyhow::ensure!(
            output.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}
